"""Open-file-description (OFD) lock primitives: the lock words, and the segment use locks.

OFD locks (``F_OFD_SETLK``) belong to an open file description, not to a process: they conflict
between two descriptions even inside one process, and the kernel drops them when the last
descriptor of the description closes (process death included). ``lock.py`` builds the writer and
reader locks on these words; ``files.py`` uses the segment use locks below.
"""
from __future__ import annotations

import errno
import fcntl
import os
import struct

# struct flock on 64-bit Linux: short l_type, short l_whence, off_t l_start, off_t l_len, pid_t l_pid
FLOCK = struct.Struct("hhxxxxqqixxxx")
F_OFD_GETLK = getattr(fcntl, "F_OFD_GETLK", 36)
F_OFD_SETLK = getattr(fcntl, "F_OFD_SETLK", 37)


# -- segment use locks: a reader's mapping against the writer's recycling
# A reader holds a shared OFD lock on each segment it maps, for as long as it maps it; the writer's
# supplier recycles a retired segment only after renaming it out of the queue and taking an exclusive
# lock on it without waiting. So a segment some reader still maps is never zeroed under it (the
# supplier deletes it instead, and the reader keeps its inode, as with plain retention).

def try_lock_shared(fd: int) -> bool | None:
    """Take a shared OFD lock on ``fd`` without waiting: True if taken, False if an exclusive lock is
    held (the segment is being recycled), None if the file system has no OFD locks."""
    return _try_lock(fd, fcntl.F_RDLCK)


def try_lock_exclusive(fd: int) -> bool | None:
    """Take an exclusive OFD lock on ``fd`` without waiting: True if taken, False if anyone holds a
    lock on the file (a reader maps it), None if the file system has no OFD locks."""
    return _try_lock(fd, fcntl.F_WRLCK)


def unlock(fd: int) -> None:
    """Drop this descriptor's OFD lock (closing the last descriptor of it does the same)."""
    try:
        fcntl.fcntl(fd, F_OFD_SETLK, FLOCK.pack(fcntl.F_UNLCK, os.SEEK_SET, 0, 0, 0))
    except OSError:
        pass


def _try_lock(fd: int, kind: int) -> bool | None:
    try:
        fcntl.fcntl(fd, F_OFD_SETLK, FLOCK.pack(kind, os.SEEK_SET, 0, 0, 0))
        return True
    except OSError as e:
        if e.errno in (errno.EAGAIN, errno.EACCES):
            return False
        if e.errno in (errno.EINVAL, errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
            return None
        raise
