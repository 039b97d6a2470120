"""Read-only inspection of queues: ``inspect_queue`` and ``list_queues`` (what ``chronicle inspect`` shows).

Nothing here takes a lock, opens a file for writing or creates a file: the control
file and segments are mapped read-only, lock files are probed with ``F_OFD_GETLK``,
reader position files are ``read()``. Finding the first and last message maps the
first and the last non-empty segments only, so a huge queue inspects fast.
The answers are frozen dataclasses; ``as_dict()`` gives plain JSON-able values.
"""
from __future__ import annotations

import dataclasses
import os
import struct
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from . import args as A
from . import files as F
from .._errors import ChronicleError, CorruptQueueError, NotAQueueError
from .lock import is_locked, read_owner, writer_lock_held
from .liveness import WRITER_STATE_NAMES
from ..hot import layout as L

__all__ = [
    "MessageRange", "QueueInfo", "QueueSummary", "ReaderInfo", "SegmentsInfo", "WriterInfo",
    "inspect_queue", "is_bus_root", "list_queues", "iso_ns", "writer_condition",
]

_STATE_WORDS = {v: k for k, v in WRITER_STATE_NAMES.items()}
_I64 = struct.Struct("<q")

#: The one-word writer state for each liveness condition (``None``: alive).
_WRITER_WORDS = {None: "open", "no_writer_yet": "none", "writer_closed": "closed",
                 "writer_died": "dead", "heartbeat_stale": "stale"}


def iso_ns(ns: int | None) -> str | None:
    """``2024-05-01T12:00:00.123456789Z`` (UTC, nanoseconds) for ns since the epoch; None for 0/None."""
    if not ns or ns < 0:
        return None
    s, frac = divmod(int(ns), 1_000_000_000)
    return datetime.fromtimestamp(s, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{frac:09d}Z"


def _age(ns: int, now_ns: int) -> float | None:
    return (now_ns - ns) / 1e9 if ns > 0 else None


def writer_condition(state: str, lock_held: bool, heartbeat_age: float | None, ttl: float) -> str | None:
    """Why the writer looks gone (the names of ``DisconnectReason``), or None if it is alive.

    The same order as ``QueueReader.detect_disconnect``, from the status fields alone;
    ``"no_writer_yet"`` when no writer ever opened the queue.
    """
    if state == "none":
        return "no_writer_yet"
    if state == "closed":
        return "writer_closed"
    if not lock_held:
        return "writer_died"
    if heartbeat_age is None or heartbeat_age > ttl:
        return "heartbeat_stale"
    return None


# -- the answers -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SegmentsInfo:
    """The segment files present: ids, the head, those prepared ahead, disk use."""

    count: int
    first_id: int | None
    last_id: int | None
    head_id: int
    prepared_ahead: int
    bytes_on_disk: int
    apparent_bytes: int


@dataclass(frozen=True)
class WriterInfo:
    """The writer's status words in ``control.cq`` and the writer lock probe.

    ``state`` is the raw word written by the writer (``none``/``open``/``closed``);
    ``liveness`` is the one verdict: ``"alive"`` or why it is gone (``writer_closed``,
    ``writer_died``, ``heartbeat_stale``, ``no_writer_yet``); ``status`` is the same
    verdict as one word (``open``, ``closed``, ``dead``, ``stale``, ``none``).
    """

    pid: int
    epoch: int
    state: str
    lock_held: bool
    lock_owner_pid: int | None
    heartbeat_ns: int
    heartbeat_age: float | None
    ttl: float
    parked_readers: int
    condition: str | None

    @property
    def alive(self) -> bool:
        """True while the writer holds its lock and its heartbeat is younger than ``ttl``."""
        return self.condition is None

    @property
    def liveness(self) -> str:
        """``"alive"``, or why the writer is gone (the names of ``DisconnectReason``, lower case)."""
        return "alive" if self.condition is None else self.condition

    @property
    def status(self) -> str:
        """The verdict in one word: ``open`` (alive), ``closed``, ``dead``, ``stale`` or ``none``."""
        return _WRITER_WORDS.get(self.condition, self.condition or "open")


@dataclass(frozen=True)
class MessageRange:
    """First and last message on disk (seq -1 fields are None when there is none)."""

    first_seq: int | None = None
    first_timestamp_ns: int | None = None
    last_seq: int | None = None
    last_timestamp_ns: int | None = None

    @property
    def count_estimate(self) -> int:
        """Messages from the first to the last on disk (seq arithmetic; 0 when there is none)."""
        if self.first_seq is None or self.last_seq is None:
            return 0
        return max(0, self.last_seq - self.first_seq + 1)


@dataclass(frozen=True)
class ReaderInfo:
    """A named reader (``readers/NAME.pos``): committed position, lag, live/dead, retention.

    ``live`` is None when this user may not probe the position file's lock. Lag is
    measured from the committed position to the writer's head (None if never committed).
    """

    name: str
    live: bool | None
    owner_pid: int | None
    committed: bool
    segment: int | None
    offset: int | None
    next_seq: int | None
    commit_ns: int | None
    commit_age: float | None
    writer_epoch: int | None
    lag_messages: int | None
    lag_bytes: int | None
    holds_retention: bool
    segments_held: int


@dataclass(frozen=True)
class QueueInfo:
    """Everything ``chronicle inspect`` shows about one queue, read at one moment."""

    path: str
    format_version: int
    segment_size: int
    queue_id: int
    created_ns: int
    segments: SegmentsInfo
    writer: WriterInfo
    head_segment: int
    head_offset: int
    next_seq: int
    messages: MessageRange | None
    readers: tuple[ReaderInfo, ...] | None
    problems: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-able values (the shape of ``chronicle inspect --json``)."""
        w = self.writer
        out: dict[str, Any] = {
            "path": self.path,
            "format_version": self.format_version,
            "segment_size": self.segment_size,
            "queue_id": self.queue_id,
            "queue_id_hex": f"{self.queue_id:#x}",
            "created_ns": self.created_ns,
            "created": iso_ns(self.created_ns),
            "segments": dataclasses.asdict(self.segments),
            "writer": {
                "pid": w.pid, "epoch": w.epoch, "state": w.state, "status": w.status,
                "lock_held": w.lock_held, "lock_owner_pid": w.lock_owner_pid,
                "heartbeat_ns": w.heartbeat_ns, "heartbeat": iso_ns(w.heartbeat_ns),
                "heartbeat_age": w.heartbeat_age, "alive": w.alive, "liveness": w.liveness,
                "ttl": w.ttl, "parked_readers": w.parked_readers,
            },
            "head": {"segment": self.head_segment, "offset": self.head_offset, "next_seq": self.next_seq},
            "problems": list(self.problems),
        }
        if self.messages is not None:
            m = self.messages
            out["messages"] = {
                "first_seq": m.first_seq, "first_timestamp_ns": m.first_timestamp_ns,
                "first_time": iso_ns(m.first_timestamp_ns),
                "last_seq": m.last_seq, "last_timestamp_ns": m.last_timestamp_ns,
                "last_time": iso_ns(m.last_timestamp_ns),
                "count_estimate": m.count_estimate,
            }
        if self.readers is not None:
            entries = [{**dataclasses.asdict(r), "commit_time": iso_ns(r.commit_ns)} for r in self.readers]
            out["readers"] = {"count": len(entries), "live": sum(1 for r in self.readers if r.live),
                              "entries": entries}
        return out


@dataclass(frozen=True)
class QueueSummary:
    """One queue under a bus root, for listings (``chronicle ls``); ``error`` when it cannot be read."""

    name: str
    path: str
    writer: str | None
    next_seq: int | None
    segments: int | None
    bytes_on_disk: int | None
    readers: int | None
    live_readers: int | None
    error: str | None = None


# -- reading -----------------------------------------------------------------------------------


def _segments(path: str, head: int) -> tuple[list[int], SegmentsInfo]:
    ids = F.list_segments(path)
    alloc = apparent = 0
    for sid in ids:
        try:
            st = os.stat(F.segment_path(path, sid))
        except FileNotFoundError:
            continue
        alloc += st.st_blocks * 512
        apparent += st.st_size
    return ids, SegmentsInfo(
        count=len(ids), first_id=ids[0] if ids else None, last_id=ids[-1] if ids else None, head_id=head,
        prepared_ahead=sum(1 for i in ids if i > head), bytes_on_disk=alloc, apparent_bytes=apparent,
    )


def _control(path: str) -> dict[str, Any]:
    m, info = F.open_control(path, writable=False)
    try:
        q, i32 = m.q, m.i32
        fields = {
            "format_version": int(i32[L.CTL_VERSION_OFFSET // 4]),
            "segment_size": info.segment_size,
            "queue_id": info.queue_id,
            "created_ns": info.created_ns,
            "epoch": int(q[L.CTL_WRITER_EPOCH_OFFSET // 8]),
            "pid": int(q[L.CTL_WRITER_PID_OFFSET // 8]),
            "state": WRITER_STATE_NAMES.get(int(i32[L.CTL_WRITER_STATE_OFFSET // 4]), "unknown"),
            "head_segment": int(q[L.CTL_WRITE_SEGMENT_OFFSET // 8]),
            "head_offset": int(q[L.CTL_WRITE_OFFSET_OFFSET // 8]),
            "next_seq": int(q[L.CTL_NEXT_SEQ_OFFSET // 8]),
            "heartbeat_ns": int(q[L.CTL_HEARTBEAT_NS_OFFSET // 8]),
            "waiters": int(i32[L.CTL_WAITERS_OFFSET // 4]),
        }
        del q, i32  # our views of the mapping, so close() can unmap at once
    finally:
        m.close()
    return fields


def _writer(path: str, ctl: dict[str, Any], ttl: float) -> WriterInfo:
    held = writer_lock_held(path, ctl["pid"], _STATE_WORDS.get(ctl["state"], -1))
    owner = read_owner(os.path.join(path, L.WRITER_LOCK_NAME)) if held else None
    age = _age(ctl["heartbeat_ns"], time.time_ns())
    return WriterInfo(
        pid=ctl["pid"], epoch=ctl["epoch"], state=ctl["state"], lock_held=held,
        lock_owner_pid=owner[0] if owner else None, heartbeat_ns=ctl["heartbeat_ns"], heartbeat_age=age,
        ttl=float(ttl), parked_readers=ctl["waiters"],
        condition=writer_condition(ctl["state"], held, age, ttl),
    )


def _scan_segment(path: str, sid: int, segment_size: int, queue_id: int, want_last: bool) -> tuple[int, int, str | None]:
    """``(seq, timestamp_ns, problem)`` of the first (or last) message in segment ``sid``; seq -1 if none."""
    from ..hot import read as R
    from ..hot import status as S

    try:
        m = F.open_segment(path, sid, segment_size, queue_id, writable=False)
    except FileNotFoundError:
        return -1, -1, None
    except ChronicleError as e:
        return -1, -1, f"{type(e).__name__}: {e}"
    try:
        if not want_last:
            seq, ts = R.first_record(m.arr)
            return int(seq), int(ts), None
        st, off, last_seq, last_off, _n = R.scan(m.arr, L.SEGMENT_DATA_OFFSET, R.SCAN_TO_TAIL, 0)
        problem = None
        if st == S.CORRUPT:
            problem = f"segment {m.path} has a malformed record at offset {off}"
        if last_seq < 0:
            return -1, -1, problem
        return int(last_seq), _I64.unpack_from(m.mv, last_off + L.REC_TIMESTAMP_OFFSET)[0], problem
    finally:
        m.close()


def _messages(path: str, ids: list[int], segment_size: int, queue_id: int, problems: list[str]) -> MessageRange:
    first = last = (-1, -1)
    for sid in ids:
        seq, ts, why = _scan_segment(path, sid, segment_size, queue_id, want_last=False)
        if why:
            problems.append(why)
        if seq >= 0:
            first = (seq, ts)
            break
    if first[0] >= 0:
        for sid in reversed(ids):  # segments prepared ahead of the head are empty: skipped quickly
            seq, ts, why = _scan_segment(path, sid, segment_size, queue_id, want_last=True)
            if why:
                problems.append(why)
            if seq >= 0:
                last = (seq, ts)
                break
    if first[0] < 0 or last[0] < 0:
        return MessageRange()
    return MessageRange(first_seq=first[0], first_timestamp_ns=first[1], last_seq=last[0], last_timestamp_ns=last[1])


def _readers(path: str, ctl: dict[str, Any], ids: list[int]) -> tuple[ReaderInfo, ...]:
    from .position import owner_pid, read_reader_position
    from .retention import reader_files

    rdir = os.path.join(path, L.READERS_DIR_NAME)
    try:
        found = reader_files(path)  # regular files only: links, FIFOs, ... are skipped with a warning
    except PermissionError as e:
        raise F.read_permission_error(rdir, e) from None
    except CorruptQueueError:  # readers/ is not a folder: no named readers to show
        return ()
    now = time.time_ns()
    head_seg, head_off, head_seq = ctl["head_segment"], ctl["head_offset"], ctl["next_seq"]
    data_per_segment = ctl["segment_size"] - L.SEGMENT_DATA_OFFSET
    raw: list[dict[str, Any]] = []
    for name, fpath in found:
        pos = read_reader_position(fpath)
        try:
            live = is_locked(fpath)  # None: this user may not open it (private to its owner)
        except ChronicleError:  # replaced by a non-regular file since the scan
            continue
        e: dict[str, Any] = {
            "name": name, "live": live, "owner_pid": owner_pid(fpath), "committed": pos is not None,
            "segment": None, "offset": None, "next_seq": None, "commit_ns": None, "commit_age": None,
            "writer_epoch": None, "lag_messages": None, "lag_bytes": None,
        }
        if pos is not None:
            seg, off, nseq, hb, ep = pos
            e.update(
                segment=seg, offset=off, next_seq=nseq, commit_ns=hb, commit_age=_age(hb, now), writer_epoch=ep,
                lag_messages=max(0, head_seq - nseq),
                lag_bytes=max(0, (head_seg - seg) * data_per_segment + (head_off - off)),
            )
        raw.append(e)
    # Retention keeps every segment from the oldest live reader's committed one (a live reader
    # that never committed pins the oldest segment); that reader holds retention back when it
    # is older than the head segment.
    oldest = ids[0] if ids else 0
    pins = [e["segment"] if e["segment"] is not None else oldest for e in raw if e["live"] is not False]
    floor = min(pins) if pins else None
    out = []
    for e in raw:
        seg = e["segment"] if e["segment"] is not None else oldest
        holds = bool(e["live"] is not False and floor is not None and seg == floor and seg < head_seg)
        held = sum(1 for i in ids if seg <= i < head_seg) if holds else 0
        out.append(ReaderInfo(**e, holds_retention=holds, segments_held=held))
    return tuple(out)


def inspect_queue(path: str | os.PathLike[str], ttl: float = 1.0, *, messages: bool = True,
                  readers: bool = True) -> QueueInfo:
    """A read-only snapshot of the queue at ``path``: segments, writer, first/last message, named readers.

    ``ttl`` (seconds) is how old the writer's heartbeat may be before it counts as stale.
    ``messages=False`` skips the segment scans, ``readers=False`` the position files.
    Raises ``NotAQueueError`` (or ``QueueNotFoundError``) when ``path`` holds no ``control.cq``.
    """
    p = A.check_path(path)
    ctl = _control(p)
    ids, segs = _segments(p, ctl["head_segment"])
    problems: list[str] = []
    rng = _messages(p, ids, ctl["segment_size"], ctl["queue_id"], problems) if messages else None
    return QueueInfo(
        path=p, format_version=ctl["format_version"], segment_size=ctl["segment_size"], queue_id=ctl["queue_id"],
        created_ns=ctl["created_ns"], segments=segs, writer=_writer(p, ctl, ttl),
        head_segment=ctl["head_segment"], head_offset=ctl["head_offset"], next_seq=ctl["next_seq"],
        messages=rng, readers=_readers(p, ctl, ids) if readers else None, problems=tuple(problems),
    )


def _queue_dirs(root: str) -> list[tuple[str, str]]:
    try:
        it = os.scandir(root)
    except PermissionError as e:
        raise F.read_permission_error(root, e) from None
    with it:
        names = sorted(e.name for e in it if e.is_dir() and not e.name.startswith("."))
    return [(n, os.path.join(root, n)) for n in names
            if os.path.isfile(os.path.join(root, n, L.CONTROL_FILE_NAME))]


def is_bus_root(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is a folder without a ``control.cq`` whose sub-folders include a queue."""
    p = os.fspath(path)
    if not os.path.isdir(p) or os.path.exists(os.path.join(p, L.CONTROL_FILE_NAME)):
        return False
    try:
        return bool(_queue_dirs(p))
    except ChronicleError:
        return False


def list_queues(root: str | os.PathLike[str], ttl: float = 1.0) -> list[QueueSummary]:
    """One ``QueueSummary`` per queue folder (a sub-folder holding ``control.cq``) under ``root``, by name.

    A queue that cannot be read (no permission, damaged) is listed with ``error`` set.
    Raises ``NotAQueueError`` when ``root`` is not a folder.
    """
    r = A.check_path(root)
    if not os.path.isdir(r):
        raise NotAQueueError(f"{r} is not a folder: pass the bus root folder that holds the queue folders")
    out = []
    for name, path in _queue_dirs(r):
        try:
            q = inspect_queue(path, ttl, messages=False)
        except (ChronicleError, OSError) as e:
            out.append(QueueSummary(name, path, None, None, None, None, None, None, f"{type(e).__name__}: {e}"))
            continue
        rs = q.readers or ()
        out.append(QueueSummary(
            name=name, path=path, writer=q.writer.status, next_seq=q.next_seq, segments=q.segments.count,
            bytes_on_disk=q.segments.bytes_on_disk, readers=len(rs), live_readers=sum(1 for x in rs if x.live),
        ))
    return out
