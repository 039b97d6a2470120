"""Open-file-description (OFD) locks: the writer lock and named-reader locks.

OFD locks belong to an open file description, not to a process, so:
- the kernel drops them when the holder dies (``kill -9`` included): a dead
  writer's lock is free the moment its process is gone, nothing to break;
- closing an unrelated descriptor of the same file does not drop them (unlike
  classic POSIX locks);
- they can be probed without taking them (``F_OFD_GETLK``): probing never takes a lock.

Who may block whom: an OFD read lock needs only a descriptor opened for reading, and it
blocks another's exclusive lock. So lock-bearing files (``writer.lock``, ``readers/*.pos``)
get :func:`_files.private_mode` (``0600``, or ``0660`` when the umask grants group write):
whoever may open them may also write them, and a read-only user can neither open nor lock
them. Such a user's liveness probe falls back (see :func:`is_locked`). docs/operations.md,
"Permissions", has the whole picture.

A forked child inherits the descriptor and would keep the lock alive after the
parent dies, so :func:`os.register_at_fork` closes every held lock's descriptor
in children (the parent keeps its lock).
"""
from __future__ import annotations

import errno
import fcntl
import os
import weakref

from . import fork as _fork
from .ofd import F_OFD_GETLK as _F_OFD_GETLK, F_OFD_SETLK as _F_OFD_SETLK, FLOCK as _FLOCK
from .._errors import QueuePermissionError

_held: "weakref.WeakSet[FileLock]" = weakref.WeakSet()


def process_start_time(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat (start time in clock ticks), or None if no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rfind(b")") + 2 :].split()
    return int(fields[19])


class FileLock:
    """An exclusive OFD lock on a whole file, with an owner record ``"pid starttime extra"``."""

    def __init__(self, path: str, fd: int):
        self.path = path
        self._fd = fd
        _held.add(self)
        _fork.track(self._forget_in_child)

    @classmethod
    def try_acquire(cls, path: str, fix: str = "retry") -> "FileLock | None":
        """Take the lock, or return None if another open file description holds it.

        The file is opened read-write, never through a symbolic link, and must be a regular file
        (else a CorruptQueueError naming it; ``fix`` says what to do after moving it aside). A file
        this user owns is given :func:`_files.private_mode`, so that no read-only user can lock it.
        """
        from . import files as F

        want = F.private_mode()
        try:
            fd = F.open_regular(path, os.O_RDWR | os.O_CREAT, mode=want, fix=fix)
        except QueuePermissionError as e:
            raise QueuePermissionError(
                f"cannot create or open lock file {path}: {e}; run as a user who may write to the queue directory"
            ) from None
        try:
            _restrict(fd, want)
        except OSError:
            os.close(fd)
            raise
        try:
            fcntl.fcntl(fd, _F_OFD_SETLK, _FLOCK.pack(fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0))
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EAGAIN, errno.EACCES):
                return None
            raise
        return cls(path, fd)

    def write_owner(self, extra: str = "") -> None:
        """Record this process as the owner (for error messages and tools), through the locked
        descriptor (the file it names was checked to be a regular file, not a link)."""
        pid = os.getpid()
        text = f"{pid} {process_start_time(pid) or 0} {extra}\n".encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, text, 0)

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        _held.discard(self)

    @property
    def held(self) -> bool:
        return self._fd >= 0

    def __del__(self) -> None:  # an object dropped without close() must not keep its name locked
        try:
            self.release()
        except Exception:
            pass

    def fileno(self) -> int:
        """The descriptor of the locked file (the lock is on its open file description); -1 once released."""
        return self._fd

    def _forget_in_child(self) -> None:
        if self._fd >= 0:
            try:
                os.close(self._fd)  # the parent's descriptor keeps the lock; ours must not outlive it
            except OSError:
                pass
            self._fd = -1


def _restrict(fd: int, want: int) -> None:
    """Give a lock file this user owns mode ``want`` if it grants more (an older version made them
    ``0644``); a file owned by someone else is left as it is."""
    st = os.fstat(fd)
    if st.st_uid == os.geteuid() and st.st_mode & 0o777 != want:
        os.fchmod(fd, want)


def held_in_this_process(path: str) -> bool:
    """True if a lock held by this very process (a :class:`FileLock` still open) is on ``path``."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    for lock in list(_held):
        try:
            if lock.held and os.path.samestat(os.fstat(lock.fileno()), st):
                return True
        except OSError:  # released meanwhile by another thread
            continue
    return False


def is_locked(path: str) -> bool | None:
    """True if some open file description holds a lock on ``path``, False if not or if there is no
    such file; None if this user may not open it (lock files are private to those who may write
    them: the caller falls back, see docs/operations.md "Permissions").

    A probe only (``F_OFD_GETLK``): it takes nothing. A path that is a link, FIFO, folder or
    device is a CorruptQueueError naming it (never opened through, never blocked on).
    """
    from . import files as F

    try:
        fd = F.open_regular(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    except QueuePermissionError:
        return None
    try:
        res = fcntl.fcntl(fd, _F_OFD_GETLK, _FLOCK.pack(fcntl.F_RDLCK, os.SEEK_SET, 0, 0, 0))
        return _FLOCK.unpack(res)[0] != fcntl.F_UNLCK
    finally:
        os.close(fd)


def read_owner(path: str) -> tuple[int, int, str] | None:
    """``(pid, starttime, extra)`` from a lock file, or None if absent or unreadable."""
    from .files import read_head

    data = read_head(path, 256)
    try:
        parts = (data or b"").decode(errors="replace").split(None, 2)
        return int(parts[0]), int(parts[1]), (parts[2].strip() if len(parts) > 2 else "")
    except (ValueError, IndexError):
        return None


def pid_alive(pid: int) -> bool:
    """True if process ``pid`` exists (any user's; a fallback when a lock cannot be probed)."""
    return pid > 0 and os.path.exists(f"/proc/{pid}")


def writer_lock_held(queue_dir: str, pid: int, state: int) -> bool:
    """Whether the writer lock of ``queue_dir`` is held: probed with ``F_OFD_GETLK``; for a user who
    may not open ``writer.lock`` (see docs/operations.md "Permissions"), judged from the control
    file instead: the writer's state is open and its recorded process ``pid`` exists."""
    from ..hot import layout as L

    held = is_locked(os.path.join(queue_dir, L.WRITER_LOCK_NAME))
    if held is None:
        return state == L.WRITER_STATE_OPEN and pid_alive(pid)
    return held
