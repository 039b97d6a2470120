"""Cold-path file work: create, open, validate and map control, segment and reader files.

Nothing here runs per message. Every failure becomes a typed error naming the
file and the fix.
"""
from __future__ import annotations

import enum
import errno
import mmap
import os
import secrets
import stat
import struct
import time
from typing import Any

import numpy as np

from .._errors import (
    ChronicleError,
    CorruptQueueError,
    CorruptSegmentError,
    DiskFullError,
    NotAQueueError,
    QueueClosedError,
    QueueNotFoundError,
    QueuePermissionError,
    UnsupportedVersionError,
)
from .fences import TSO
from .ofd import try_lock_exclusive, try_lock_shared, unlock
from ..hot import layout as L

_MADV_POPULATE_WRITE = getattr(mmap, "MADV_POPULATE_WRITE", 23)


def _libc_madvise() -> Any:
    """libc's madvise through ctypes, which releases the GIL for the call (``mmap.madvise``
    does not: pre-faulting a large segment would stall every other thread of the process)."""
    try:
        import ctypes

        fn = ctypes.CDLL(None, use_errno=True).madvise
        fn.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
        fn.restype = ctypes.c_int
        return fn
    except (OSError, AttributeError):
        return None


_madvise = _libc_madvise()
_SEG_HEADER = struct.Struct(L.SEGMENT_HEADER_FORMAT)
_CTL_IDENTITY = struct.Struct(L.CONTROL_IDENTITY_FORMAT)


class ClosedView:
    """Stands in for the views of a closed writer or reader, so that the hot path needs no 'is it
    closed' check: any read or write raises :class:`QueueClosedError`."""

    __slots__ = ("_what",)

    def __init__(self, what: str):
        self._what = what

    def __getitem__(self, _key: object) -> int:
        raise QueueClosedError(f"the queue {self._what} is closed")

    __setitem__ = __getitem__  # type: ignore[assignment]


class Mapping:
    """A shared mapping of a whole file with the views the hot and Python paths need.

    ``arr`` is a ``uint8`` numpy array for jitted kernels; ``mv`` a byte
    memoryview; ``i32``/``q`` the same bytes cast to int32/int64 for single-word
    access from Python (index = byte offset // 4 or // 8). ``inode`` is
    ``(st_dev, st_ino)`` of the mapped file. ``lock_fd``, when not -1, is a descriptor
    holding a shared lock on the file for as long as it is mapped (a reader's
    segment: see ``lock.try_lock_shared``); :meth:`close` releases it.
    """

    __slots__ = ("path", "length", "mm", "arr", "mv", "i32", "q", "writable", "inode", "lock_fd")

    def __init__(self, path: str, fd: int, length: int, writable: bool, prefault: bool = False, lock_fd: int = -1):
        prot = mmap.PROT_READ | (mmap.PROT_WRITE if writable else 0)
        # A writable mapping is pre-faulted writable in one pass (MADV_POPULATE_WRITE, Linux 5.14+);
        # MAP_POPULATE first would map every page read-only, then fault each again: about 1.4x slower.
        populate = prefault and not (writable and _madvise is not None)
        flags = mmap.MAP_SHARED | (getattr(mmap, "MAP_POPULATE", 0) if populate else 0)
        self.path = path
        self.length = length
        self.writable = writable
        st = os.fstat(fd) if fd != -1 else None  # -1: anonymous zero pages (a deleted queue's stand-in)
        self.inode = (st.st_dev, st.st_ino) if st is not None else (0, 0)
        self.lock_fd = lock_fd
        self.mm = mmap.mmap(fd, length, flags=flags, prot=prot)
        self.arr = np.frombuffer(self.mm, np.uint8)
        if prefault and writable:  # fault pages in writable too, so the first append to each page takes no fault
            if _madvise is not None:
                if _madvise(self.arr.ctypes.data, length, _MADV_POPULATE_WRITE) != 0:  # kernel before 5.14
                    int(self.arr[:: L.PAGE_SIZE].sum())  # at least map every page (read faults)
            else:
                try:
                    self.mm.madvise(_MADV_POPULATE_WRITE)
                except (OSError, ValueError):
                    pass
        self.mv = memoryview(self.mm)
        self.i32 = self.mv.cast("i")
        self.q = self.mv.cast("q")

    def flush(self, start: int = 0, end: int | None = None) -> None:
        """msync(MS_SYNC) of ``[start, end)`` (page-aligned outward)."""
        end = self.length if end is None else min(end, self.length)
        start = start - start % L.PAGE_SIZE
        if end > start:
            self.mm.flush(start, end - start)

    def retarget(self, path: str) -> None:
        """The mapped file was renamed to ``path`` (a recycled segment)."""
        self.path = path

    def close(self) -> None:
        """Unmap, unless a caller still holds a payload view (then the GC unmaps later, and the
        shared lock, if any, is held until a later close finds the mapping gone)."""
        self.arr = self.mv = self.i32 = self.q = None  # type: ignore[assignment]
        try:
            self.mm.close()
        except BufferError:
            if self.lock_fd != -1:
                _views_held.append((self.mm, self.lock_fd))
                self.lock_fd = -1
            return
        finally:
            _release_unviewed()
        if self.lock_fd != -1:
            os.close(self.lock_fd)
            self.lock_fd = -1


#: ``(mmap, lock fd)`` of segments closed while a caller still held a payload view into them: the
#: lock stays until the view is gone, so the writer's supplier cannot recycle the file under it.
_views_held: list[tuple[mmap.mmap, int]] = []


def _release_unviewed() -> None:
    for item in list(_views_held):
        try:
            item[0].close()
        except BufferError:
            continue
        try:
            _views_held.remove(item)
        except ValueError:
            continue
        os.close(item[1])


_MADV_DONTNEED = 4


class _Unmapper:
    """One daemon thread per process that closes reader mappings handed to :func:`close_later`.

    Unmapping a 64 MiB segment whose pages a reader touched costs milliseconds of page-table
    teardown, and ``mmap.close`` holds the GIL through it, so done by the reader at a segment end
    it stalls the reader (and every other Python thread). This thread first drops the mapping's
    page-table entries with ``madvise(MADV_DONTNEED)`` through ctypes, GIL released (the file's
    pages stay in the page cache; a payload view still held re-faults them), then closes it (now
    cheap), which also drops the reader's segment use lock. Started on first use, again in a
    forked child.
    """

    def __init__(self) -> None:
        import queue

        self._q: "queue.SimpleQueue[Mapping]" = queue.SimpleQueue()
        self._pid = -1

    def put(self, m: Mapping) -> None:
        if self._pid != os.getpid():
            import threading

            self._pid = os.getpid()
            threading.Thread(target=self._run, name="chronicle-unmapper", daemon=True).start()
        self._q.put(m)

    def _run(self) -> None:
        while True:
            m = self._q.get()
            try:
                arr = m.arr
                if arr is not None and _madvise is not None:
                    _madvise(arr.ctypes.data, m.length, _MADV_DONTNEED)
                del arr
                m.close()
            except Exception:  # never let a close kill the thread; the GC unmaps what is left
                pass


_unmapper = _Unmapper()


def close_later(m: Mapping) -> None:
    """Close a read-only mapping on the process's unmapper thread, off the caller's (a reader at a
    segment end). Its shared segment lock is held until then."""
    if m.writable:
        m.close()
    else:
        _unmapper.put(m)


class _ReleaseStoreView:
    """On machines without total store order, commit-word stores go through a jitted release store."""

    __slots__ = ("_arr",)

    def __init__(self, arr: np.ndarray):
        self._arr = arr

    def __setitem__(self, index: int, value: int) -> None:
        from ..hot.atomics import py_store_release_i32

        py_store_release_i32(self._arr, index * 4, value)


class _AcquireLoadView:
    """On machines without total store order, commit-word loads go through a jitted acquire load."""

    __slots__ = ("_arr",)

    def __init__(self, arr: np.ndarray):
        self._arr = arr

    def __getitem__(self, index: int) -> int:
        from ..hot.atomics import py_load_acquire_i32

        return py_load_acquire_i32(self._arr, index * 4)


def commit_view(m: Mapping) -> Any:
    """``view[offset >> 2] = word`` is a release store into ``m`` (plain int32 view under TSO)."""
    return m.i32 if TSO else _ReleaseStoreView(m.arr)


def load_view(m: Mapping) -> Any:
    """``view[offset >> 2]`` is an acquire load from ``m`` (plain int32 view under TSO)."""
    return m.i32 if TSO else _AcquireLoadView(m.arr)


def _permission_error(path: str, e: OSError) -> QueuePermissionError:
    return QueuePermissionError(
        f"cannot write {path}: {e.strerror}; the queue directory must be writable by this user "
        "(check its permissions, or that the file system is not mounted read-only)"
    )


def read_permission_error(path: str, e: OSError) -> QueuePermissionError:
    """This user may not read ``path``: the error names what blocks it (the file, or a folder
    on the way that it may not enter), its mode and owner, and the fix."""
    blocker = path
    parts = os.path.abspath(path).split(os.sep)
    for i in range(2, len(parts)):  # the first folder on the way this user may not enter
        d = os.sep.join(parts[:i]) or os.sep
        if not os.access(d, os.X_OK):
            blocker = d
            break
    try:
        st = os.stat(blocker)
        where = f"{blocker} is mode {st.st_mode & 0o7777:o}, owned by uid {st.st_uid}"
        grant = "a+rx" if os.path.isdir(blocker) else "a+r"
    except OSError:
        where, grant = f"{blocker} cannot be looked at", "a+r"
    return QueuePermissionError(
        f"cannot read {path}: {e.strerror} (this process runs as uid {os.geteuid()}; {where}); "
        f"run as the queue's owner, or grant read access: chmod {grant} {blocker}"
    )


# -- safe opening: regular files only, never through a symbolic link, never blocking ------------------

_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISLNK, "a symbolic link"))


def _kind(mode: int) -> str:
    for test, name in _KINDS:
        if test(mode):
            return name
    return "not a regular file"


def not_regular_error(path: str, kind: str, fix: str, error: type = CorruptQueueError) -> Exception:
    """The typed error for a queue file that is a link, folder, FIFO, socket or device."""
    return error(
        f"{path} is {kind}, not a regular file: chronicle_async opens its files only as regular files and "
        f"never through a symbolic link; move it aside (mv {path} {path}.bad) and {fix}"
    )


def umask() -> int:
    """This process's umask, read without changing it (``/proc/self/status``; Linux 4.7+)."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    old = os.umask(0o022)  # fallback (not thread safe, but only on kernels without the field)
    os.umask(old)
    return old


def dir_mode() -> int:
    """Mode of a folder this library creates: as the umask allows, but never writable by others."""
    return 0o777 & ~umask() & ~0o002 | 0o700


def file_mode() -> int:
    """Mode of a data file (control, segments): readable as the umask allows, writable by the owner only."""
    return 0o644 & ~umask() | 0o600


def private_mode() -> int:
    """Mode of a lock-bearing file (``writer.lock``, ``readers/*.pos``): opened only by those who may write it.

    Group members get read and write together, if the umask grants group write; otherwise nobody
    but the owner may open it. Others never may: a user who could only read the file could
    otherwise take a read lock on it and block the writer or the named reader.
    """
    return 0o600 | (0o060 if not umask() & 0o020 else 0)


def make_dir(path: str) -> None:
    """Create folder ``path`` (and missing parents) if needed; a folder made here gets :func:`dir_mode`
    whatever the umask. Typed errors for permission, read-only file systems, a full disk, or a file in the way."""
    try:
        if os.path.isdir(path):
            return
        parent = os.path.dirname(path)
        if parent and parent != path and not os.path.isdir(parent):
            os.makedirs(parent, exist_ok=True)
        os.mkdir(path, 0o700)
        os.chmod(path, dir_mode())
    except FileExistsError:
        if not os.path.isdir(path):
            raise NotAQueueError(f"{path} is a file, not a folder; move it aside so the queue can use the folder") from None
    except NotADirectoryError:
        raise NotAQueueError(f"a file is in the way of folder {path}; move it aside or choose another path") from None
    except PermissionError as e:
        raise _permission_error(path, e) from None
    except OSError as e:
        if e.errno == errno.EROFS:
            raise _permission_error(path, e) from None
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise disk_full(path, "create folder") from None
        raise


def disk_full(path: str, doing: str = "create") -> DiskFullError:
    """A DiskFullError naming the file (no space, or no free inodes, or over quota)."""
    return DiskFullError(
        errno.ENOSPC,
        f"no space left to {doing} {path} (the file system is out of space or of inodes); free disk space "
        "or delete files on that file system, then retry. Messages already written are intact",
    )


def open_regular(path: str, flags: int, *, mode: int = 0o644, fix: str = "retry",
                 error: type = CorruptQueueError, writing: bool | None = None) -> int:
    """``os.open`` for queue files: never follows a final symbolic link (O_NOFOLLOW), never blocks
    on a FIFO or device (O_NONBLOCK), and refuses anything but a regular file with ``error``.

    ``FileNotFoundError`` passes through (callers decide what a missing file means); permission,
    read-only file system and disk-full failures become typed errors naming ``path``.
    """
    if writing is None:
        writing = bool(flags & (os.O_RDWR | os.O_WRONLY | os.O_CREAT))
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, mode)
    except PermissionError as e:
        raise (_permission_error if writing else read_permission_error)(path, e) from None
    except (FileNotFoundError, FileExistsError):
        raise
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise not_regular_error(path, "a symbolic link", fix, error) from None
        if e.errno in (errno.EISDIR, errno.ENXIO, errno.ENODEV, errno.ENOTDIR):
            kind = _kind(os.lstat(path).st_mode) if os.path.lexists(path) else "not a regular file"
            raise not_regular_error(path, kind, fix, error) from None
        if e.errno == errno.EROFS:
            raise _permission_error(path, e) from None
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise disk_full(path) from None
        raise
    try:
        st = os.fstat(fd)
    except OSError:
        os.close(fd)
        raise
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise not_regular_error(path, _kind(st.st_mode), fix, error)
    return fd


def read_head(path: str, length: int) -> bytes | None:
    """The first ``length`` bytes of a regular file, or None if it is absent, unreadable or not a
    regular file (never blocks, never follows a link: for tools and error messages)."""
    try:
        fd = open_regular(path, os.O_RDONLY)
    except (OSError, ChronicleError):
        return None
    try:
        return os.pread(fd, length, 0)
    except OSError:
        return None
    finally:
        os.close(fd)


def nearest_existing_dir(path: str) -> str:
    """``path`` itself if it is a folder, else its closest existing ancestor folder (what to watch
    for a queue that does not exist yet)."""
    p = path
    while not os.path.isdir(p):
        parent = os.path.dirname(p)
        if parent == p:
            return p
        p = parent
    return p


def is_blank(path: str) -> bool:
    """True if ``path`` is a regular file holding no byte but zeros (or none): a segment file whose
    creation reached the disk but none of whose contents did (a power cut without fsync)."""
    try:
        fd = open_regular(path, os.O_RDONLY)
    except (OSError, ChronicleError):
        return False
    try:
        at = 0
        size = 64  # a header that is not all zeros answers at once: the usual case costs one small read
        while True:
            chunk = os.pread(fd, size, at)
            size = 1 << 20
            if not chunk:
                return True
            if chunk.count(0) != len(chunk):
                return False
            at += len(chunk)
    except OSError:
        return False
    finally:
        os.close(fd)


def exists(path: str, *, writing: bool = False) -> bool:
    """True if ``path`` exists, False if not; a QueuePermissionError (not False) if this user
    may not look (``writing``: the message says the caller needs to write there)."""
    try:
        os.stat(path)
        return True
    except (FileNotFoundError, NotADirectoryError):
        return False
    except PermissionError as e:
        raise (_permission_error(path, e) if writing else read_permission_error(path, e)) from None


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def list_segments(queue_dir: str) -> list[int]:
    """Sorted ids of the segment files present (temp files excluded)."""
    ids = []
    try:
        it = os.scandir(queue_dir)
    except PermissionError as e:
        raise read_permission_error(queue_dir, e) from None
    with it:
        for entry in it:
            sid = L.parse_segment_file_name(entry.name)
            if sid is not None:
                ids.append(sid)
    ids.sort()
    return ids


def segment_path(queue_dir: str, segment_id: int) -> str:
    return os.path.join(queue_dir, L.segment_file_name(segment_id))


def control_path(queue_dir: str) -> str:
    return os.path.join(queue_dir, L.CONTROL_FILE_NAME)


def queue_gone(queue_dir: str, queue_id: int) -> bool:
    """True if the queue with ``queue_id`` is no longer at ``queue_dir``: its folder or control file
    was deleted, or the control file there now belongs to another queue (deleted and created again).

    False when the control file names ``queue_id``, and when it cannot be read (no evidence).
    A few syscalls: for rare paths (a segment change, a roll, a liveness check), never per message.
    """
    try:
        fd = os.open(control_path(queue_dir), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return True
    except OSError:
        return False
    try:
        head = os.pread(fd, _CTL_IDENTITY.size, L.CTL_MAGIC_OFFSET)
    except OSError:
        return False
    finally:
        os.close(fd)
    if len(head) < _CTL_IDENTITY.size:
        return False
    magic, _version, _size, qid, *_ = _CTL_IDENTITY.unpack(head)
    return magic == L.CONTROL_MAGIC and qid != queue_id


def check_queue_dir(queue_dir: str, *, creating: bool) -> None:
    """Raise NotAQueueError / QueueNotFoundError if ``queue_dir`` cannot be (or become) a queue.

    A folder this user may not look into is a QueuePermissionError, not a missing queue.
    """
    if exists(queue_dir, writing=creating) and not os.path.isdir(queue_dir):
        raise NotAQueueError(f"{queue_dir} is a file, not a queue directory; pass the queue's folder")
    if not os.path.isdir(queue_dir):
        if creating:
            return
        raise QueueNotFoundError(f"no queue at {queue_dir}: the folder does not exist (has a writer created it yet?)")
    if exists(control_path(queue_dir), writing=creating):
        return
    if creating:
        ours = {L.WRITER_LOCK_NAME, L.READERS_DIR_NAME}
        foreign = [
            n for n in os.listdir(queue_dir)
            if n not in ours and L.parse_segment_file_name(n) is None and not n.startswith(L.CONTROL_FILE_NAME)
            and L.SEGMENT_TEMP_SUFFIX not in n
        ]
        if foreign:
            raise NotAQueueError(
                f"{queue_dir} is not a queue and is not empty (it holds {sorted(foreign)[:3]}...); "
                "choose a new or empty folder for the queue"
            )
        return
    raise QueueNotFoundError(
        f"no queue at {queue_dir}: {L.CONTROL_FILE_NAME} is missing (has a writer created it yet?)"
    )


def remove_orphan_temp_files(queue_dir: str) -> list[str]:
    """Delete temp files (``*.seg.tmp-<pid>-*``, ``control.cq.tmp-<pid>``) whose creating process is gone."""
    removed = []
    try:
        names = os.listdir(queue_dir)
    except FileNotFoundError:
        return removed
    for name in names:
        tag = None
        if L.SEGMENT_TEMP_SUFFIX + "-" in name:
            tag = name.split(L.SEGMENT_TEMP_SUFFIX + "-", 1)[1]
        elif name.startswith(L.CONTROL_FILE_NAME + ".tmp-"):
            tag = name[len(L.CONTROL_FILE_NAME) + 5 :]
        if tag is None:
            continue
        pid = tag.split("-", 1)[0]
        if pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
            try:
                os.unlink(os.path.join(queue_dir, name))
                removed.append(name)
            except FileNotFoundError:
                pass
    return removed


def _reserve(fd: int, size: int, path: str) -> None:
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as e:
        if e.errno == errno.ENOSPC:
            raise DiskFullError(
                errno.ENOSPC,
                f"no space left to reserve {size} bytes for {path}; free disk space, or lower "
                "segment_size / set max_bytes. Messages already written are intact and the writer can retry",
            ) from None
        if e.errno in (errno.EOPNOTSUPP, errno.EINVAL):  # file system without fallocate
            os.ftruncate(fd, size)
            return
        raise


def create_segment(queue_dir: str, segment_id: int, segment_size: int, queue_id: int, *, durable: bool = False) -> bool:
    """Create segment ``segment_id`` if it does not exist. Returns True if this call created it.

    Built under a temp name (space reserved with fallocate, header written), then
    published by hard link, which never replaces a file that is already there
    (a segment prepared by someone else is kept as it is).
    """
    final = segment_path(queue_dir, segment_id)
    if os.path.exists(final):
        return False
    tmp = os.path.join(queue_dir, L.segment_temp_name(segment_id, f"{os.getpid()}-{secrets.token_hex(4)}"))
    fd = open_regular(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, mode=file_mode(), error=CorruptSegmentError)
    try:
        os.fchmod(fd, file_mode())  # whatever the umask: never writable by others
        _reserve(fd, segment_size, final)
        os.pwrite(fd, _SEG_HEADER.pack(L.SEGMENT_MAGIC, L.SEGMENT_VERSION, segment_id, queue_id, segment_size, time.time_ns()), 0)
        if durable:
            os.fsync(fd)
        try:
            os.link(tmp, final)
            created = True
        except FileExistsError:
            created = False
        except OSError as e:
            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                raise disk_full(final) from None
            raise
        if durable and created:
            fsync_dir(queue_dir)
        return created
    finally:
        os.close(fd)
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass


def open_segment(queue_dir: str, segment_id: int, segment_size: int, queue_id: int, *, writable: bool, prefault: bool = False) -> Mapping:
    """Map an existing segment after checking its size and header (FileNotFoundError if absent).

    A read-only mapping holds a shared lock on the file until it is closed, so the writer's
    supplier never recycles a segment a reader maps. A segment being recycled (locked exclusively,
    or renamed away between the open and the lock) counts as absent: FileNotFoundError.
    """
    path = segment_path(queue_dir, segment_id)
    fd = open_regular(path, os.O_RDWR if writable else os.O_RDONLY, error=CorruptSegmentError,
                      fix="restore the segment from a backup (readers skip a missing segment)")
    lock_fd = -1
    try:
        st = os.fstat(fd)
        if not writable:
            held = try_lock_shared(fd)
            if held is False or (held and not _still_named(path, st)):
                raise FileNotFoundError(errno.ENOENT, "segment recycled by the writer", path)
            lock_fd = fd if held else -1
        if st.st_size != segment_size:
            raise CorruptSegmentError(
                f"segment {path} is {st.st_size} bytes, expected {segment_size}: it was truncated or replaced; "
                "restore it from a backup, or move it aside to read past it"
            )
        m = Mapping(path, fd, segment_size, writable, prefault, lock_fd=lock_fd)
    except BaseException:
        os.close(fd)
        raise
    if lock_fd == -1:
        os.close(fd)
    magic, version, sid, qid, size, _created = _SEG_HEADER.unpack_from(m.mv, 0)
    problem = None
    if magic != L.SEGMENT_MAGIC:
        problem = f"bad magic {magic:#x}"
    elif version > L.SEGMENT_VERSION:
        m.close()
        raise UnsupportedVersionError(
            f"segment {path} has format version {version}; this chronicle_async reads up to "
            f"{L.SEGMENT_VERSION}: upgrade chronicle_async"
        )
    elif version < L.SEGMENT_MIN_VERSION or sid != segment_id or size != segment_size or qid != queue_id:
        problem = f"header says id={sid} size={size} queue={qid:#x}, expected id={segment_id} size={segment_size} queue={queue_id:#x}"
    if problem:
        m.close()
        raise CorruptSegmentError(
            f"segment {path} is not a valid segment of this queue ({problem}); "
            "move the file out of the queue folder or restore it from a backup"
        )
    if writable and version < L.SEGMENT_VERSION and not commit_view(m)[L.SEGMENT_DATA_OFFSET >> 2]:
        # An empty segment prepared by an older version: the writer makes it current before its
        # first record (a segment holding records keeps its version; the writer rolls past it).
        struct.pack_into("<I", m.mv, L.SEG_VERSION_OFFSET, L.SEGMENT_VERSION)
    return m


def _still_named(path: str, st: os.stat_result) -> bool:
    """True if ``path`` still names the file ``st`` describes (it was not renamed away meanwhile)."""
    try:
        now = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino)


class Recycled(enum.Enum):
    """How :func:`recycle_segment` ended."""

    #: The victim was zeroed and published as the target segment.
    DONE = "done"
    #: The victim was gone already (retention deleted it): nothing changed.
    GONE = "gone"
    #: A reader maps the victim (or the file system has no OFD locks): it was deleted, as
    #: retention would, and the reader keeps reading its copy.
    DELETED = "deleted"
    #: The target exists already (a roll created it meanwhile): the victim was deleted.
    TARGET_EXISTS = "target exists"


def recycle_segment(queue_dir: str, victim_id: int, target_id: int, segment_size: int, queue_id: int,
                    retired: Mapping | None, *, durable: bool = False, last_target: int | None = None,
                    ) -> tuple[Recycled, Mapping | None, int]:
    """Turn retired segment ``victim_id`` into an empty segment ``target_id``, mapped writable.

    The order makes every crash safe: the victim is first renamed out of the queue (a temp name no
    reader opens, removed at the next writer open if this process died), then locked exclusively
    without waiting (a reader that maps it holds a shared lock: then it is deleted instead), zeroed
    and given the target's header, and only then linked in under the target's name. So a file under
    a segment name never shows the victim's records. ``retired`` is the writer's own mapping of the
    victim, if it still holds one: reusing it costs a memset, no page faults. If the target exists
    by then (a roll created it), the next ids up to ``last_target`` are tried (the header is
    rewritten before each link). Returns how it ended, the mapping (None unless DONE; ``retired`` is
    closed whenever it is not returned) and the id of the segment it became.
    """
    src = segment_path(queue_dir, victim_id)
    final = segment_path(queue_dir, target_id)
    tmp = os.path.join(queue_dir, L.segment_temp_name(target_id, f"{os.getpid()}-{secrets.token_hex(4)}"))
    m = None
    try:
        try:
            os.rename(src, tmp)
        except FileNotFoundError:
            return Recycled.GONE, None, target_id
        fd = os.open(tmp, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_size != segment_size or not try_lock_exclusive(fd):
                os.unlink(tmp)
                return Recycled.DELETED, None, target_id
            if retired is not None and retired.mv is not None and retired.inode == (st.st_dev, st.st_ino):
                m, retired = retired, None
            else:
                m = Mapping(tmp, fd, segment_size, True, prefault=True)
            _memset(m.arr.ctypes.data + L.SEGMENT_DATA_OFFSET, segment_size - L.SEGMENT_DATA_OFFSET)
            _SEG_HEADER.pack_into(m.mv, 0, L.SEGMENT_MAGIC, L.SEGMENT_VERSION, target_id, queue_id, segment_size,
                                  time.time_ns())
            if durable:
                m.flush()
            unlock(fd)
        finally:
            os.close(fd)
        while True:
            try:
                os.link(tmp, final)
                break
            except FileExistsError:
                if last_target is None or target_id >= last_target:
                    m.close()
                    m = None
                    return Recycled.TARGET_EXISTS, None, target_id
            except OSError as e:
                m.close()
                m = None
                if e.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise disk_full(final) from None
                raise
            target_id += 1  # a roll made the target meanwhile: become the one after it
            final = segment_path(queue_dir, target_id)
            struct.pack_into("<q", m.mv, L.SEG_ID_OFFSET, target_id)
            if durable:
                m.flush(0, L.PAGE_SIZE)
        if durable:
            fsync_dir(queue_dir)
        m.retarget(final)
        return Recycled.DONE, m, target_id
    finally:
        if retired is not None:
            retired.close()
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass


def _libc_memset() -> Any:
    """libc's memset through ctypes, which releases the GIL (zeroing 64 MiB takes milliseconds)."""
    import ctypes

    fn = ctypes.CDLL(None).memset
    fn.argtypes = (ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t)
    fn.restype = ctypes.c_void_p
    return lambda address, n: fn(address, 0, n)


_memset = _libc_memset()


def segment_version(m: Mapping) -> int:
    """The format version in a mapped segment's header (see ``layout.HEADER_CHECKSUM_VERSION``)."""
    return int(commit_view(m)[L.SEG_VERSION_OFFSET >> 2])


def segment_header_matches(m: Mapping, segment_id: int, segment_size: int, queue_id: int) -> bool:
    """True if a mapped segment's header names this segment of this queue (a cheap re-check)."""
    magic, version, sid, qid, size, _created = _SEG_HEADER.unpack_from(m.mv, 0)
    return (magic == L.SEGMENT_MAGIC and L.SEGMENT_MIN_VERSION <= version <= L.SEGMENT_VERSION and sid == segment_id
            and qid == queue_id and size == segment_size and m.length == segment_size)


def create_queue(queue_dir: str, segment_size: int) -> None:
    """Create the control file and segment 0. The control file appears last, by link, so a
    reader that sees it always finds a complete queue."""
    make_dir(queue_dir)
    queue_id = secrets.randbits(62) | 1
    existing = list_segments(queue_dir)
    if existing:  # a creator died before publishing control.cq: adopt its segments, lose nothing
        head = read_head(segment_path(queue_dir, existing[0]), _SEG_HEADER.size) or b""
        if len(head) == _SEG_HEADER.size:
            magic, version, _sid, qid, size, _c = _SEG_HEADER.unpack(head)
            if magic == L.SEGMENT_MAGIC and L.SEGMENT_MIN_VERSION <= version <= L.SEGMENT_VERSION and not L.check_segment_size(size):
                queue_id, segment_size = qid, size
    if not existing:
        create_segment(queue_dir, 0, segment_size, queue_id, durable=True)
    buf = bytearray(L.CONTROL_FILE_LENGTH)
    _CTL_IDENTITY.pack_into(
        buf, L.CTL_MAGIC_OFFSET, L.CONTROL_MAGIC, L.CONTROL_VERSION, segment_size, queue_id,
        time.time_ns(), 0, 0, L.WRITER_STATE_NONE, 0,
    )
    struct.pack_into("<qqq", buf, L.CTL_WRITE_SEGMENT_OFFSET, 0, L.SEGMENT_DATA_OFFSET, 0)
    final = control_path(queue_dir)
    tmp = f"{final}.tmp-{os.getpid()}"
    fd = open_regular(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, mode=file_mode(),
                      fix="retry (it is a temporary file of a creator that died)")
    try:
        os.fchmod(fd, file_mode())
        try:
            os.pwrite(fd, bytes(buf), 0)
            os.fsync(fd)
            os.link(tmp, final)
        except FileExistsError:
            pass
        except OSError as e:
            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                raise disk_full(final) from None
            raise
    finally:
        os.close(fd)
        os.unlink(tmp)
    fsync_dir(queue_dir)


class ControlInfo:
    """Identity fields of a control file, read once at open."""

    __slots__ = ("segment_size", "queue_id", "created_ns")

    def __init__(self, segment_size: int, queue_id: int, created_ns: int):
        self.segment_size = segment_size
        self.queue_id = queue_id
        self.created_ns = created_ns


def open_control(queue_dir: str, *, writable: bool) -> tuple[Mapping, ControlInfo]:
    """Map and validate ``control.cq``. Raises QueueNotFoundError if the queue does not exist."""
    check_queue_dir(queue_dir, creating=False)
    path = control_path(queue_dir)
    try:
        fd = open_regular(path, os.O_RDWR if writable else os.O_RDONLY,
                          fix="restore the queue's control file from a backup, or start a new queue")
    except FileNotFoundError:
        raise QueueNotFoundError(f"no queue at {queue_dir}: {L.CONTROL_FILE_NAME} is missing") from None
    try:
        size = os.fstat(fd).st_size
        if size < L.CONTROL_FILE_LENGTH:
            raise CorruptQueueError(
                f"control file {path} is truncated ({size} bytes, expected {L.CONTROL_FILE_LENGTH}); "
                "the queue's metadata is damaged: restore the folder from a backup, or move it aside and start a new queue"
            )
        m = Mapping(path, fd, L.CONTROL_FILE_LENGTH, writable)
    finally:
        os.close(fd)
    magic, version, seg_size, qid, created, *_ = _CTL_IDENTITY.unpack_from(m.mv, L.CTL_MAGIC_OFFSET)
    if magic != L.CONTROL_MAGIC:
        m.close()
        raise CorruptQueueError(
            f"control file {path} has bad magic {magic:#x} (expected {L.CONTROL_MAGIC:#x}): it is not a "
            "chronicle_async control file or it was overwritten; restore it from a backup"
        )
    if version > L.CONTROL_VERSION:
        m.close()
        raise UnsupportedVersionError(
            f"queue {queue_dir} has format version {version}; this chronicle_async reads up to "
            f"{L.CONTROL_VERSION}: upgrade chronicle_async to open it"
        )
    why = L.check_segment_size(seg_size)
    if version != L.CONTROL_VERSION or why:
        m.close()
        raise CorruptQueueError(f"control file {path} is damaged (version={version}, segment_size={seg_size}); restore it from a backup")
    return m, ControlInfo(seg_size, qid, created)
