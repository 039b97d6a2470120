"""Purging a queue's old messages on demand: whole sealed segments before a seq or a time.

:func:`plan_purge` picks, oldest first, the segments older than the head (the one being
written) all of whose messages are before the limit; it stops at the first segment that is
not, so what remains is always one contiguous run of seqs. Each candidate is scanned with the
jitted record scan (``hot.read.scan``), so a message with an out-of-order timestamp keeps its
segment. Deleting goes through retention's :func:`~.retention.delete_segments`, which is safe
beside a live writer and live readers, as retention is: a reader that has a segment mapped
keeps reading it (the file's blocks are freed when it lets go).

Named readers: the plan lists each reader (live or not) whose committed position lies in a
segment to delete; the caller refuses unless told to go ahead.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from . import files as F
from .._errors import ChronicleError, CorruptSegmentError, InvalidArgumentError, QueuePermissionError
from .lock import is_locked
from .position import read_reader_position
from .retention import delete_segments, reader_files
from ..hot import layout as L


@dataclass(frozen=True)
class PurgedSegment:
    """One segment a purge deletes: its id, messages (first/last seq, -1 if none) and bytes on disk."""

    segment: int
    first_seq: int
    last_seq: int
    bytes_on_disk: int


@dataclass(frozen=True)
class HeldReader:
    """A named reader whose committed position is in a segment the purge would delete."""

    name: str
    segment: int
    next_seq: int
    #: True if its lock is held, None if this user may not probe it.
    live: bool | None


@dataclass
class PurgePlan:
    """What :func:`purge` would delete, and who it would pull the ground from under."""

    path: str
    head_segment: int
    segments: list[PurgedSegment] = field(default_factory=list)
    readers: list[HeldReader] = field(default_factory=list)
    #: Why the plan stopped before a segment that is not being written (None: it reached the head).
    stopped: str | None = None

    @property
    def bytes_on_disk(self) -> int:
        return sum(s.bytes_on_disk for s in self.segments)


def _head_segment(queue_dir: str) -> tuple[int, int, int]:
    """``(head segment, segment size, queue id)`` from the control file (read-only)."""
    m, info = F.open_control(queue_dir, writable=False)
    try:
        q = m.q
        head = int(q[L.CTL_WRITE_SEGMENT_OFFSET // 8])
        del q
    finally:
        m.close()
    return head, info.segment_size, info.queue_id


def _segment_before(queue_dir: str, sid: int, segment_size: int, queue_id: int, mode: int,
                    limit: int) -> tuple[bool, int, int] | None:
    """``(all before limit, first seq, last seq)`` of segment ``sid``; None if it is gone."""
    from ..hot import read as R
    from ..hot import status as S

    try:
        m = F.open_segment(queue_dir, sid, segment_size, queue_id, writable=False)
    except FileNotFoundError:
        return None
    try:
        first, _ts = R.first_record(m.arr)
        code, off, last, _lo, _n = R.scan(m.arr, L.SEGMENT_DATA_OFFSET, mode, limit)
        if code == S.CORRUPT:
            raise CorruptSegmentError(
                f"segment {m.path} has a malformed record at offset {off}; purge stops before it. Check the queue "
                "with `chronicle inspect`, or delete that segment file by hand"
            )
        return code != 0, int(first), int(last)
    finally:
        m.close()


def plan_purge(queue_dir: str, *, before_seq: int | None = None, before_ns: int | None = None) -> PurgePlan:
    """The segments to delete so that messages before ``before_seq`` (or timestamped before
    ``before_ns``) are gone, and the named readers positioned in them. Deletes nothing."""
    from ..hot import read as R

    if (before_seq is None) == (before_ns is None):
        raise InvalidArgumentError("plan_purge: pass exactly one of before_seq and before_ns")
    limit = before_seq if before_seq is not None else before_ns
    mode = R.SCAN_TO_SEQ if before_seq is not None else R.SCAN_TO_TIMESTAMP
    head, segment_size, queue_id = _head_segment(queue_dir)
    plan = PurgePlan(queue_dir, head)
    for sid in F.list_segments(queue_dir):
        if sid >= head:
            break
        found = _segment_before(queue_dir, sid, segment_size, queue_id, mode, limit)
        if found is None:  # deleted meanwhile (retention): nothing to do for it
            continue
        all_before, first, last = found
        if not all_before:
            what = f"seq {before_seq}" if before_seq is not None else f"timestamp {before_ns} ns"
            plan.stopped = f"segment {sid} holds messages at or after {what}"
            break
        try:
            size = os.stat(F.segment_path(queue_dir, sid)).st_blocks * 512
        except FileNotFoundError:
            continue
        plan.segments.append(PurgedSegment(sid, first, last, size))
    doomed = {s.segment for s in plan.segments}
    for name, path in reader_files(queue_dir):
        pos = read_reader_position(path)
        if pos is None or pos[0] not in doomed:
            continue
        try:
            live = is_locked(path)
        except ChronicleError:
            live = None
        plan.readers.append(HeldReader(name, pos[0], pos[2], live))
    return plan


def purge(plan: PurgePlan) -> list[int]:
    """Delete the segments of ``plan`` (never the head: it was checked when planned, and the head only
    moves forward); returns the ids deleted (a segment already gone is skipped). QueuePermissionError,
    deleting nothing, if this user may not delete files in the queue folder."""
    if not os.access(plan.path, os.W_OK | os.X_OK):
        st = os.stat(plan.path)
        raise QueuePermissionError(
            f"cannot delete segment files in {plan.path} (mode {st.st_mode & 0o777:o}, owned by uid {st.st_uid}; "
            f"this process runs as uid {os.geteuid()}); nothing was deleted: run as the queue's owner"
        )
    try:
        return delete_segments(plan.path, [s.segment for s in plan.segments if s.segment < plan.head_segment])
    except PermissionError as e:
        raise QueuePermissionError(
            f"cannot delete {e.filename}: {e.strerror}; run as the queue's owner (the segments before it may "
            "already be deleted: run purge again to finish)"
        ) from None
