"""A named reader's position file, ``readers/<name>.pos``: locked, mapped, committed by slots.

The file holds a header and two slots written alternately (generation, then a
crc32 of the slot), so a crash mid-commit always leaves one whole slot. Its OFD
lock marks the reader live (retention honours live readers) and makes each
name usable by one process at a time. See docs/format.md, "Reader position files".
"""
from __future__ import annotations

import errno
import os
import struct
import time
import zlib

from . import files as F
from .._errors import CorruptQueueError, DiskFullError, ReaderLockedError, UnsupportedVersionError
from .lock import FileLock, held_in_this_process
from ..hot import layout as L

_HEADER = struct.Struct(L.READER_HEADER_FORMAT)
_SLOT = struct.Struct(L.READER_SLOT_FORMAT)
_SLOT_BODY = struct.Struct(L.READER_SLOT_FORMAT[:-1])  # every slot field but the checksum
_U32 = struct.Struct("<I")
_I64 = struct.Struct("<q")


class PositionFile:
    """The open position file of one named reader. Owns its lock and its mapping."""

    def __init__(self, path: str, lock: FileLock, mapping: F.Mapping, generation: int,
                 saved: tuple[int, int, int] | None):
        self.path = path
        self._lock = lock
        self._map = mapping
        self._gen = generation
        #: ``(segment, offset, next_seq)`` of the newest valid slot, or None if never committed.
        self.saved = saved

    @property
    def generation(self) -> int:
        """The generation of the last slot written (a HotLoop writes slots itself, then hands it back)."""
        return self._gen

    @generation.setter
    def generation(self, value: int) -> None:
        self._gen = value

    @property
    def address(self) -> int:
        """Address of the mapped file, for jitted code that commits positions (``hot.position``)."""
        return self._map.arr.ctypes.data

    @classmethod
    def open(cls, queue_dir: str, name: str, segment_size: int, queue_id: int) -> "PositionFile":
        """Open (creating) ``readers/<name>.pos`` of the queue with ``queue_id``, taking the reader name.

        A file that records another queue's id (the queue was deleted and made again) is refused:
        its position means nothing in this queue.
        """
        rdir = os.path.join(queue_dir, L.READERS_DIR_NAME)
        if os.path.lexists(rdir) and not os.path.isdir(rdir):
            raise CorruptQueueError(f"{rdir} is not a folder; move it aside so reader positions can be kept there")
        F.make_dir(rdir)
        path = os.path.join(rdir, name + L.READER_FILE_SUFFIX)
        lock = FileLock.try_acquire(path, fix=f"reopen reader {name!r} (it starts afresh: from the earliest data)")
        if lock is None:
            if held_in_this_process(path):
                raise ReaderLockedError(
                    f"reader {name!r} of {queue_dir} is already open in this process (pid {os.getpid()}); "
                    "close the other QueueReader first, or use another name",
                    os.getpid(),
                )
            pid = owner_pid(path)
            raise ReaderLockedError(
                f"reader {name!r} of {queue_dir} is already open in another process (pid {pid}); "
                "each reader name is used by one process at a time: close it there, or pick another name",
                pid,
            )
        try:
            return cls._load(path, name, lock, segment_size, queue_id)
        except BaseException:
            lock.release()
            raise

    @classmethod
    def _load(cls, path: str, name: str, lock: FileLock, segment_size: int, queue_id: int) -> "PositionFile":
        fd = lock.fileno()
        size = os.fstat(fd).st_size
        if size == 0 or (size == L.READER_FILE_LENGTH and not any(os.pread(fd, 8, 0))):
            # new, or left half-made by a failed create (header never written): (re)initialise
            try:
                os.posix_fallocate(fd, 0, L.READER_FILE_LENGTH)
                os.pwrite(fd, _HEADER.pack(L.READER_MAGIC, L.READER_VERSION, os.getpid(), queue_id), 0)
            except OSError as e:
                os.unlink(path)  # we hold its lock; leave no broken file behind
                if e.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise DiskFullError(
                        errno.ENOSPC, f"no space left to create reader file {path}; free disk space and retry"
                    ) from None
                raise
        elif size != L.READER_FILE_LENGTH:
            raise CorruptQueueError(
                f"reader file {path} is {size} bytes, expected {L.READER_FILE_LENGTH}: delete it to reset "
                f"reader {name!r} (it will then start from the earliest data)"
            )
        m = F.Mapping(path, fd, L.READER_FILE_LENGTH, writable=True)
        magic, version, _pid, qid = _HEADER.unpack_from(m.mv, 0)
        if magic == L.READER_MAGIC and version == 1:  # no queue identity yet: adopt this queue's
            _HEADER.pack_into(m.mv, 0, magic, L.READER_VERSION, _pid, queue_id)
            version, qid = L.READER_VERSION, queue_id
        if magic == L.READER_MAGIC and version == L.READER_VERSION and qid != queue_id:
            m.close()
            raise CorruptQueueError(
                f"reader file {path} belongs to another queue (queue id {qid:#x}; this queue's is {queue_id:#x}): "
                "the queue was deleted and created again, so the saved position means nothing here. Delete "
                f"{path} to reset reader {name!r} (it then starts where its start mode says)"
            )
        if magic == L.READER_MAGIC and version > L.READER_VERSION:
            m.close()
            raise UnsupportedVersionError(
                f"reader file {path} has format version {version}; this chronicle_async reads up to "
                f"{L.READER_VERSION}: upgrade chronicle_async"
            )
        if magic != L.READER_MAGIC or version != L.READER_VERSION:
            m.close()
            raise CorruptQueueError(
                f"reader file {path} is not a valid position file (magic {magic:#x}, version {version}); "
                f"delete it to reset reader {name!r}"
            )
        _I64.pack_into(m.mv, L.RDR_OWNER_PID_OFFSET, os.getpid())
        # Only valid slots count: a damaged slot's generation word may hold anything (up to 2**63 - 1).
        gen = max((slot[0] for slot in valid_slots(m.mv)), default=0)
        best = best_slot(m.mv)
        saved = None
        if best is not None:
            seg, off, nseq, _hb, _ep = best
            if off < L.SEGMENT_DATA_OFFSET or off >= segment_size or off % L.RECORD_ALIGNMENT:
                m.close()
                raise CorruptQueueError(f"reader file {path} holds an impossible offset {off}; delete it to reset the reader")
            saved = (seg, off, nseq)
        return cls(path, lock, m, max(gen, 0), saved)

    def commit(self, segment: int, offset: int, next_seq: int, writer_epoch: int, durable: bool) -> None:
        """Write the position into the older slot (checksum last); ``durable`` msyncs it."""
        gen = self._gen + 1
        base = L.READER_SLOT0_OFFSET + (gen & 1) * L.READER_SLOT_LENGTH
        body = _SLOT_BODY.pack(gen, segment, offset, next_seq, time.time_ns(), writer_epoch)
        mv = self._map.mv
        mv[base : base + len(body)] = body
        _U32.pack_into(mv, base + L.SLOT_CHECKSUM_OFFSET, zlib.crc32(body))
        self._gen = gen
        if durable:
            self._map.flush()

    def close(self) -> None:
        """Unmap and release the reader name (does not commit)."""
        self._map.close()
        self._lock.release()


def owner_pid(path: str) -> int | None:
    """The pid recorded in a position file's header (the process that last opened it)."""
    data = F.read_head(path, _HEADER.size)
    try:
        return _HEADER.unpack(data or b"")[2] or None
    except struct.error:
        return None


# -- the slot codec: reading a position file without opening it as a reader ----------------------


def read_reader_position(path: str) -> tuple[int, int, int, int, int] | None:
    """``(segment, offset, next_seq, heartbeat_ns, writer_epoch)`` of a reader file's newest valid slot."""
    data = F.read_head(path, L.READER_FILE_LENGTH)  # never through a link, never blocking on a FIFO
    return None if data is None else best_slot(data)


def valid_slots(data: bytes | memoryview) -> list[tuple[int, int, int, int, int, int]]:
    """``(generation, segment, offset, next_seq, heartbeat_ns, writer_epoch)`` of each slot of a
    position file whose generation is positive and whose crc32 matches (damaged slots are ignored)."""
    out = []
    if len(data) < L.READER_FILE_LENGTH:
        return out
    for i in range(2):
        base = L.READER_SLOT0_OFFSET + i * L.READER_SLOT_LENGTH
        gen, seg, off, nseq, hb, ep, ck = _SLOT.unpack_from(data, base)
        if gen > 0 and zlib.crc32(bytes(data[base : base + L.SLOT_CHECKSUM_OFFSET])) == ck:
            out.append((gen, seg, off, nseq, hb, ep))
    return out


def best_slot(data: bytes | memoryview) -> tuple[int, int, int, int, int] | None:
    """``(segment, offset, next_seq, heartbeat_ns, writer_epoch)`` of the newest valid slot, or None."""
    slots = valid_slots(data)
    return max(slots)[1:] if slots else None
