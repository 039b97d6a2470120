"""Deleting a whole queue folder, and nothing the queue did not make.

A queue folder holds only what the library creates: ``control.cq``, ``writer.lock``, the segment
files (and a crashed writer's ``*.seg.tmp-*`` / ``control.cq.tmp-*`` leftovers), and
``readers/*.pos``. :func:`queue_contents` sorts a folder's entries into those and the rest;
:func:`remove_queue` deletes the former, then the emptied folders, and refuses (deleting
nothing) if the rest is not empty, if a writer is live, or if this user may not delete them.
"""
from __future__ import annotations

import os
import stat
import time
from dataclasses import dataclass, field

from . import files as F
from .._errors import NotAQueueError, QueueNotFoundError, QueuePermissionError, WriterLockedError
from .lock import writer_lock_held
from ..hot import layout as L


@dataclass
class QueueContents:
    """What a queue folder holds: the files the queue made (to delete, in order) and anything else."""

    path: str
    #: Files the queue made, control file first (so that readers see the queue gone at once).
    files: list[str] = field(default_factory=list)
    #: Folders the queue made (``readers/``, then the queue folder), removed once empty.
    folders: list[str] = field(default_factory=list)
    #: Entries the queue did not make: their presence stops :func:`remove_queue`.
    foreign: list[str] = field(default_factory=list)
    segments: int = 0
    #: Bytes the queue's files take on disk (allocated blocks).
    bytes_on_disk: int = 0


def _made_by_queue(name: str) -> bool:
    return (
        name in (L.CONTROL_FILE_NAME, L.WRITER_LOCK_NAME)
        or L.parse_segment_file_name(name) is not None
        or name.startswith(L.CONTROL_FILE_NAME + ".tmp-")
        or L.SEGMENT_TEMP_SUFFIX + "-" in name
    )


def _regular(path: str) -> os.stat_result | None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    return st if stat.S_ISREG(st.st_mode) else None


def queue_contents(queue_dir: str) -> QueueContents:
    """Sort the entries of ``queue_dir`` (QueueNotFoundError if it does not exist, NotAQueueError if it
    is a file, or a folder without ``control.cq`` nor any other file a queue makes)."""
    if not F.exists(queue_dir, writing=True):
        raise QueueNotFoundError(f"no queue at {queue_dir}: the folder does not exist; check the path")
    if not os.path.isdir(queue_dir):
        raise NotAQueueError(f"{queue_dir} is a file, not a queue folder; pass the queue's folder")
    c = QueueContents(queue_dir)
    try:
        names = sorted(os.listdir(queue_dir))
    except PermissionError as e:
        raise F.read_permission_error(queue_dir, e) from None
    for name in names:
        p = os.path.join(queue_dir, name)
        if name == L.READERS_DIR_NAME and os.path.isdir(p) and not os.path.islink(p):
            _sort_readers(p, c)
            continue
        st = _regular(p) if _made_by_queue(name) else None
        if st is None:
            c.foreign.append(p)
            continue
        c.files.append(p)
        c.bytes_on_disk += st.st_blocks * 512
        if L.parse_segment_file_name(name) is not None:
            c.segments += 1
    c.files.sort(key=lambda p: os.path.basename(p) != L.CONTROL_FILE_NAME)
    c.folders.append(queue_dir)
    if not any(os.path.basename(p) == L.CONTROL_FILE_NAME for p in c.files) and not c.segments:
        raise NotAQueueError(
            f"{queue_dir} is not a queue: it has no {L.CONTROL_FILE_NAME} and no segment files"
            + (f" (it holds {', '.join(os.path.basename(p) for p in c.foreign[:5])})" if c.foreign else "")
            + "; check the path"
        )
    return c


def _sort_readers(rdir: str, c: QueueContents) -> None:
    try:
        names = sorted(os.listdir(rdir))
    except PermissionError as e:
        raise F.read_permission_error(rdir, e) from None
    for name in names:
        p = os.path.join(rdir, name)
        st = _regular(p) if name.endswith(L.READER_FILE_SUFFIX) else None
        if st is None:
            c.foreign.append(p)
            continue
        c.files.append(p)
        c.bytes_on_disk += st.st_blocks * 512
    c.folders.append(rdir)


def live_writer_pid(queue_dir: str, ttl: float = 1.0) -> int | None:
    """The pid of a live writer of ``queue_dir`` (its lock is held, or the queue is open with a
    heartbeat younger than ``ttl`` seconds), or None; None too when there is no control file."""
    try:
        m, _info = F.open_control(queue_dir, writable=False)
    except QueueNotFoundError:
        return None
    try:
        q, i32 = m.q, m.i32
        pid = int(q[L.CTL_WRITER_PID_OFFSET // 8])
        state = int(i32[L.CTL_WRITER_STATE_OFFSET // 4])
        heartbeat = int(q[L.CTL_HEARTBEAT_NS_OFFSET // 8])
        del q, i32  # our views of the mapping, so close() can unmap at once
    finally:
        m.close()
    fresh = state == L.WRITER_STATE_OPEN and heartbeat > 0 and (time.time_ns() - heartbeat) / 1e9 <= ttl
    if writer_lock_held(queue_dir, pid, state) or fresh:
        return pid
    return None


def check_removable(c: QueueContents, *, force: bool = False) -> None:
    """Raise if :func:`remove_queue` would refuse ``c``: NotAQueueError for foreign entries,
    WriterLockedError for a live writer (unless ``force``), QueuePermissionError for a folder
    this user may not delete from."""
    if c.foreign:
        shown = ", ".join(c.foreign[:10]) + (f" and {len(c.foreign) - 10} more" if len(c.foreign) > 10 else "")
        raise NotAQueueError(
            f"{c.path} holds files the queue did not make: {shown}. Nothing was deleted; move them out of the "
            "queue folder, then run again"
        )
    if not force:
        pid = live_writer_pid(c.path)
        if pid is not None:
            raise WriterLockedError(
                f"queue {c.path} has a live writer (pid {pid}); nothing was deleted. Stop the writer first, "
                "or pass --force to delete the queue under it (its next append fails with QueueDeletedError)",
                pid,
            )
    for folder in c.folders:
        if not os.access(folder, os.W_OK | os.X_OK):
            st = os.stat(folder)
            raise QueuePermissionError(
                f"cannot delete files in {folder} (mode {st.st_mode & 0o777:o}, owned by uid {st.st_uid}; this "
                f"process runs as uid {os.geteuid()}); nothing was deleted: run as the queue's owner"
            )


def remove_queue(c: QueueContents, *, force: bool = False) -> list[str]:
    """Delete the queue files and folders of ``c`` (see :func:`check_removable` for the refusals);
    returns the paths deleted. A file already gone is skipped."""
    check_removable(c, force=force)
    done = []
    for p in c.files:
        try:
            os.unlink(p)
        except FileNotFoundError:
            continue
        except PermissionError as e:
            raise QueuePermissionError(
                f"cannot delete {p}: {e.strerror}; {len(done)} file(s) were deleted before it. Run as the "
                "queue's owner, then run again to delete the rest"
            ) from None
        done.append(p)
    for folder in c.folders:  # readers/ first, the queue folder last
        try:
            os.rmdir(folder)
        except FileNotFoundError:
            continue
        except OSError as e:
            raise NotAQueueError(
                f"cannot remove folder {folder} ({e.strerror}): something was added to it while the queue was "
                "being deleted; look inside, then remove it by hand"
            ) from None
        done.append(folder)
    return done
