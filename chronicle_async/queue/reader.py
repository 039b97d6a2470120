"""QueueReader and Message: zero-copy reading, waiting, positions, liveness.

The reader's position and mapped files live in its :class:`~chronicle_async.queue.cursor.ReaderCursor`
(``reader.cursor``), which owns them; the reader reads and moves them through it.
"""
from __future__ import annotations

import math
import os
import struct
import time
import zlib
from typing import Any, Iterator, NamedTuple

import numpy as np

from . import args as A
from . import files as F
from . import fork as _fork
from .config import Start, WaitStrategy
from .cursor import GONE_WAIT_S, JUMP_ANY, JUMP_FORWARD, JUMP_NONE, ReaderCursor
from .._errors import (
    ArgumentTypeError,
    CorruptSegmentError,
    DamagedRecordError,
    InvalidArgumentError,
)
from .idle import ParkCounts
from .lock import writer_lock_held
from .until_closed import UntilClosed
from .liveness import WRITER_STATE_NAMES, DisconnectReason, WriterStatus
from .fences import asymmetric_fence
from ..hot import layout as L
from ..hot import read as R
from ..hot import wait as W
from ..hot.idle import PARK_INTERRUPTED, PARK_MISSED, PARK_MOVED, PARK_OUTCOMES, PARK_POLLED, PARK_READY, PARK_SLICE, PARK_WOKEN

_BODY = struct.Struct(L.RECORD_BODY_FORMAT)
_HDR = L.RECORD_HEADER_LENGTH
_CHECKED_END = L.REC_CHECKED_OFFSET + L.REC_CHECKED_LENGTH
_HEADER_CK = L.HEADER_CHECKSUM_VERSION
_IDX_WRITE_SEGMENT = L.CTL_WRITE_SEGMENT_OFFSET // 8
_adler32 = zlib.adler32
_BODY_OFFSET = L.REC_TYPE_ID_OFFSET
_ALIGN_M1 = L.RECORD_ALIGNMENT - 1
_ALIGN_MASK = ~_ALIGN_M1
_tuple_new = tuple.__new__
_monotonic = time.monotonic


class Message(NamedTuple):
    """One message. ``payload`` is a read-only, zero-copy view into the mapped segment.

    The view is guaranteed valid until the reader's next call; in practice it
    stays valid while you hold it (the mapping lives as long as any view of it).
    """

    seq: int
    timestamp_ns: int
    type_id: int
    payload: memoryview

    def as_array(self, dtype: Any) -> np.ndarray:
        """The payload as a read-only numpy array of ``dtype`` (a structured dtype works), no copy."""
        return as_array(self.payload, dtype)


def as_array(payload: Any, dtype: Any) -> np.ndarray:
    """Decode a payload into a numpy array of ``dtype`` without copying.

    For a structured dtype with one record per message, index ``[0]`` for the record.
    """
    dt = np.dtype(dtype)
    n = len(payload) if not isinstance(payload, np.ndarray) else payload.nbytes
    if dt.itemsize == 0 or n % dt.itemsize:
        raise InvalidArgumentError(f"payload of {n} bytes is not a whole number of {dt} items ({dt.itemsize} bytes each)")
    return np.frombuffer(payload, dtype=dt)


class QueueReader:
    """A reader of one queue. Create it with :meth:`Queue.open_subscriber`.

    A context manager. Use it from one thread at a time. A named reader owns
    ``readers/<name>.pos`` (one process per name); an anonymous reader
    (``name=None``) keeps no position and cannot commit.

    ``verify`` (default off): check each record before delivering it, for damage that the
    structural checks every reader makes (commit word = length + 1, a known type) cannot see:

    - its Adler-32 checksum, over the header fields and the payload (segment format version 2;
      over the payload alone in a version 1 segment);
    - its seq: the one expected next, or later only right after padding, a segment change or a
      damaged record; never earlier.

    A record that fails raises :class:`DamagedRecordError` (with segment, offset and seqs) and is
    not delivered; the reader moves past it, so the next ``next()`` continues after it.
    ``damaged`` counts them. It costs about one checksum pass over the payload per message.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        name: str | None = None,
        start: Start | str = Start.COMMITTED,
        *,
        wait_strategy: WaitStrategy | str = WaitStrategy.SPIN_THEN_PARK,
        spin_time: float = 20e-6,
        verify: bool = False,
    ):
        self._path = A.check_path(path)
        self._name = A.check_name(name)
        start = A.coerce_enum(Start, start, "start")
        self._strategy = A.coerce_enum(WaitStrategy, wait_strategy, "wait_strategy")
        self._spin_time = A.check_nonnegative_seconds("spin_time", spin_time)
        if not isinstance(verify, bool):
            raise ArgumentTypeError(f"verify must be True or False, got {verify!r}")
        self._timespec = np.zeros(2, np.int64)
        self._park_counts = np.zeros(PARK_OUTCOMES, np.int64)  # how this reader's parks ended (park_counts)
        #: The position and the mapped files: owned by the cursor (``queue/cursor.py``), read through it.
        self._cursor = ReaderCursor(self._path, self._name, start, verify)
        _fork.track(self._forget_in_child)

    # -- reading ----------------------------------------------------------------------------

    def next(self, timeout: float | None = 0.0) -> Message | None:
        """The next message, or None if none came.

        ``timeout`` is in seconds: 0 (the default) never blocks; a positive number waits up to that
        long for a message, with this reader's :class:`WaitStrategy` (spin, then park on the
        futex); None waits until one comes. None is returned when the time runs out.
        """
        c = self._cursor
        if c.verify:
            m = self._next_verified()
            return m if m is not None or timeout == 0 else self._next_waiting(timeout)
        off = c.offset
        w = c.seg_i32[off >> 2]
        if not w:
            if timeout != 0:
                return self._next_waiting(timeout)
            return None if c.ctl_q[_IDX_WRITE_SEGMENT] <= c.segment_id else self._hole(off)
        mv = c.seg_mv
        t, seq, ts, n, _ck = _BODY.unpack_from(mv, off + _BODY_OFFSET)
        end = off + ((_HDR + _ALIGN_M1 + n) & _ALIGN_MASK)
        if t < 0 or n != w - 1 or end > c.segment_size:
            m = self._next_slow(off, w, t, n)
            return m if m is not None or timeout == 0 else self._next_waiting(timeout)
        start = off + _HDR
        c.offset = end
        c.next_seq = seq + 1
        return _tuple_new(Message, (seq, ts, t, mv[start : start + n]))

    def _next_waiting(self, timeout: float | None) -> Message | None:
        """``next(timeout)`` once nothing is there: wait (spin, then park) and read, until the deadline."""
        A.check_nonnegative_seconds("timeout", timeout, allow_none=True)
        deadline = None if timeout is None else _monotonic() + timeout
        while True:
            m = self.next()
            if m is not None:
                return m
            remaining = None if deadline is None else deadline - _monotonic()
            if remaining is not None and remaining <= 0:
                return None
            self.wait(remaining)  # False early if the writer closes: then wait again, for a new one

    def _next_verified(self) -> Message | None:
        """``next()`` with ``verify`` on: the same reads, then the checksum and the seq rule."""
        c = self._cursor
        off = c.offset
        w = c.seg_i32[off >> 2]
        if not w:
            return None if c.ctl_q[_IDX_WRITE_SEGMENT] <= c.segment_id else self._hole(off)
        mv = c.seg_mv
        t, seq, ts, n, ck = _BODY.unpack_from(mv, off + _BODY_OFFSET)
        end = off + ((_HDR + _ALIGN_M1 + n) & _ALIGN_MASK)
        if t < 0 or n != w - 1 or end > c.segment_size:
            return self._next_slow(off, w, t, n)
        start = off + _HDR
        payload = mv[start : start + n]
        seed = _adler32(mv[off + _BODY_OFFSET : off + _CHECKED_END]) if c.seg_checks_header else 1
        expected = c.next_seq
        if _adler32(payload, seed) != ck and not self._checksum_ok_now(off, payload, ck):
            reason = "checksum"
        elif seq != expected and not (c.may_jump == JUMP_ANY or (c.may_jump and seq > expected)):
            reason = "seq went back" if seq < expected else "seq jumped forward"
        else:
            c.offset = end
            c.next_seq = seq + 1
            c.may_jump = JUMP_NONE
            return _tuple_new(Message, (seq, ts, t, payload))
        c.offset = end
        c.may_jump = max(c.may_jump, JUMP_FORWARD)
        c.damaged += 1
        raise DamagedRecordError(
            f"segment {c.segment.path}: the record at offset {off} is damaged ({reason}: header seq {seq}, "
            f"expected {expected}) and was not delivered; the reader moved past it. Restore the segment "
            "from a copy to get it back, or go on reading (next() continues after it)",
            c.segment_id, off, seq, expected, reason,
        )

    def _hole(self, off: int) -> Message | None:
        """No record at ``off``, and the writer has moved on to a later segment.

        The writer stores a segment's end marker before it moves to the next segment, so a zero
        commit word that is still zero *after* that move is never going to be written: the bytes
        from here on were lost (a power cut, a zeroed page, a stray write). A verifying reader
        skips to the next intact record; any other reader raises, instead of waiting forever.
        """
        c = self._cursor
        if c.gone is not None or c.seg_i32[off >> 2]:
            return None if c.gone is not None else self.next()  # committed meanwhile: read it
        if c.verify:
            c.skip_damaged("hole", "a zero commit word")
        raise CorruptSegmentError(
            f"segment {c.segment.path} has no record at offset {off} (a zero commit word), yet the writer has "
            f"moved on to segment {int(c.ctl_q[_IDX_WRITE_SEGMENT])}: the data from here on in this segment "
            f"was lost (seq {c.next_seq} expected). Open the reader with verify=True to skip such damage, "
            "or seek() past it"
        )

    def _checksum_ok_now(self, off: int, payload: memoryview, ck: int) -> bool:
        """A failed checksum, checked again under the segment's version read now: an empty segment
        made by an older version is upgraded in place by the writer before its first record."""
        c = self._cursor
        c.seg_checks_header = F.segment_version(c.segment) >= _HEADER_CK
        seed = _adler32(c.seg_mv[off + _BODY_OFFSET : off + _CHECKED_END]) if c.seg_checks_header else 1
        return _adler32(payload, seed) == ck

    @property
    def cursor(self) -> ReaderCursor:
        """This reader's position and mapped files, for the library's consumers of readers
        (``HotLoop``, ``FanInReader``, the asyncio waits, ``frames``); see :class:`ReaderCursor`."""
        return self._cursor

    @property
    def damaged(self) -> int:
        """Records this reader refused as damaged (``verify=True``), since it opened."""
        return self._cursor.damaged

    @property
    def verify(self) -> bool:
        """True if records are checked before delivery (see the class docstring)."""
        return self._cursor.verify

    def _next_slow(self, off: int, w: int, t: int, n: int) -> Message | None:
        c = self._cursor
        c.may_jump = max(c.may_jump, JUMP_FORWARD)  # padding or a segment end: seqs may skip after it
        rec = (_HDR + _ALIGN_M1 + n) & _ALIGN_MASK
        if n != w - 1 or t != L.PADDING_TYPE_ID or n < 0 or off + rec > c.segment_size:
            if c.verify:
                c.skip_damaged("malformed", f"commit={w}, length={n}, type={t}")
            raise CorruptSegmentError(
                f"segment {c.segment.path} has a malformed record at offset {off} (commit={w}, length={n}, type={t}); "
                "the file is damaged: restore it from a backup, open the reader with verify=True to skip damage, "
                "or seek() past it"
            )
        if off + rec < c.segment_size:
            c.offset = off + rec
            return self.next()
        if not c.advance_segment():
            return None
        return self.next()

    def __iter__(self) -> Iterator[Message]:
        """Every message available now, then stop (does not wait)."""
        while True:
            m = self.next()
            if m is None:
                return
            yield m

    def __aiter__(self) -> Any:
        """``async for msg in reader``: every message, waiting without blocking the loop (``queue/waits.py``)."""
        from . import waits as _waits

        return _waits.ReaderAsyncIterator(self)

    async def __anext__(self) -> Message:
        """The next message, awaited (``queue/waits.py``); never ends on its own."""
        from . import waits as _waits

        return await _waits.next_from_reader(self)

    async def next_async(self, timeout: float | None = None) -> Message | None:
        """The next message, awaited without blocking the event loop; None if ``timeout`` seconds
        pass first (None, the default: wait until one comes)."""
        from . import waits as _waits

        return await _waits.next_from_reader_within(self, timeout)

    def until_closed(self) -> "UntilClosed":
        """Every message, waiting for more, until the writer closes the queue and all it wrote was read.

        ``for m in reader.until_closed()`` blocks between messages; ``async for m in
        reader.until_closed()`` awaits them. The API twin of ``chronicle tail --until-closed``.
        Only a clean close ends it: a writer that crashed (or never opened) is waited for, since a
        restarted writer continues the queue; watch :meth:`detect_disconnect` to act on a crash.
        """
        return UntilClosed(self)

    async def wait_async(self, timeout: float | None = None) -> bool:
        """:meth:`wait` for coroutines: parks in the process's shared waker thread (``queue/waits.py``)."""
        from . import waits as _waits

        return await _waits.wait_reader(self, timeout)

    @property
    def park_counts(self) -> ParkCounts:
        """How this reader's parks in :meth:`wait` ended (:class:`ParkCounts`); ``missed`` must stay 0."""
        return ParkCounts.from_array(self._park_counts)

    def available(self) -> bool:
        """True if ``next()`` would find something (a message or a segment end) right now."""
        c = self._cursor
        return c.seg_i32[c.offset >> 2] != 0

    # -- waiting ----------------------------------------------------------------------------

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until a message may be available; True if one is, False on timeout.

        Also returns False early when the writer closes the queue during the wait, and,
        once the queue was found deleted under this reader (``detect_disconnect`` says
        ``QUEUE_DELETED``), after a short sleep (at most ``GONE_WAIT_S``, 0.1 s).

        Uses this reader's :class:`WaitStrategy`. Parking (the futex) happens only
        while idle; the writer pays for a wake only when someone is parked.
        """
        A.check_nonnegative_seconds("timeout", timeout, allow_none=True)
        c = self._cursor
        if c.seg_i32[c.offset >> 2]:
            return True
        if c.gone is not None:  # deleted under us: nothing will come; a bounded sleep, never a hot spin
            time.sleep(GONE_WAIT_S if timeout is None else min(timeout, GONE_WAIT_S))
            return False
        now = _monotonic()
        deadline = None if timeout is None else now + timeout
        strategy = self._strategy
        if strategy is not WaitStrategy.PARK:
            if strategy is WaitStrategy.BUSY_SPIN:
                spin_end = deadline
            else:
                spin_end = now + self._spin_time
                if deadline is not None:
                    spin_end = min(spin_end, deadline)
            i32 = c.seg_i32
            idx = c.offset >> 2
            while not i32[idx]:
                if spin_end is not None and _monotonic() >= spin_end:
                    break
            else:
                return True
            if strategy is WaitStrategy.BUSY_SPIN:
                return False
        return self._park(deadline)

    def _park(self, deadline: float | None) -> bool:
        c = self._cursor
        ctl = c.ctl_arr
        state_idx = L.CTL_WRITER_STATE_OFFSET // 4
        was_open = c.ctl_i32[state_idx] == L.WRITER_STATE_OPEN
        while True:
            exact = bool(c.ctl_i32[L.CTL_WRITER_FLAGS_OFFSET // 4] & L.WRITER_FLAG_ASYMMETRIC_FENCE)
            now = _monotonic()
            remaining = None if deadline is None else max(0.0, deadline - now)
            cap = W.PARK_SLICE_S if exact else 0.001  # slices re-register; a dead parker expires
            slice_ = cap if remaining is None else min(remaining, cap)
            counts = self._park_counts
            if not c.can_park:
                time.sleep(min(slice_, 0.001))
                counts[PARK_POLLED] += 1
            else:
                W.register_waiter(ctl, 1)
                W.extend_park_deadline(ctl, time.time_ns() + int(slice_ * 1e9) + 1)
                try:
                    polling = not exact
                    if exact and not asymmetric_fence():
                        slice_ = min(slice_, 0.001)
                        polling = True
                    seen = W.notify_word(ctl)
                    if c.seg_i32[c.offset >> 2]:
                        counts[PARK_READY] += 1
                        return True
                    ts = self._timespec
                    ts[0] = int(slice_)
                    ts[1] = int((slice_ - int(slice_)) * 1e9)
                    r = W.futex_wait(ctl, seen, ts)
                finally:
                    W.register_waiter(ctl, -1)
                if r == 0:
                    counts[PARK_WOKEN] += 1
                elif r == -W.EAGAIN:
                    counts[PARK_MOVED] += 1
                elif r != -W.ETIMEDOUT:
                    counts[PARK_INTERRUPTED] += 1
                elif polling:
                    counts[PARK_POLLED] += 1  # a short sleep by design: the timeout is the mechanism
                else:  # the slice ran out with no wake: if data is there, the wake was lost
                    counts[PARK_MISSED if c.seg_i32[c.offset >> 2] else PARK_SLICE] += 1
            if c.seg_i32[c.offset >> 2]:
                return True
            if was_open and c.ctl_i32[state_idx] == L.WRITER_STATE_CLOSED:
                return False  # the writer closed while we waited: nothing more is coming from it
            if deadline is not None and _monotonic() >= deadline:
                return False

    # -- positions, seeking -----------------------------------------------------------------

    def commit(self, durable: bool = False) -> None:
        """Persist the position after the last message returned, for this reader name.

        No fsync by default (the position survives a process crash); with
        ``durable=True`` it is flushed to disk before returning.
        """
        c = self._cursor
        if not c.commit(c.segment_id, c.offset, c.next_seq, durable):
            c.check_open()
            raise InvalidArgumentError("an anonymous reader (name=None) cannot commit; open it with a name")

    def seek(self, seq: int) -> bool:
        """Position at the message with ``seq`` (or the first after it). True if ``seq`` itself is there.

        A negative ``seq`` is an InvalidArgumentError (seqs start at 0); the position is kept.
        """
        if isinstance(seq, bool) or not isinstance(seq, (int, np.integer)):
            raise ArgumentTypeError(f"seek(seq) takes an int, not {type(seq).__name__}")
        if seq < 0:
            raise InvalidArgumentError(
                f"seek(seq): seq {int(seq)} is negative; seqs start at 0: pass 0 (or a later seq) to seek "
                "to the earliest message still on disk"
            )
        if seq >= 1 << 63:
            raise InvalidArgumentError(
                f"seek(seq): seq {int(seq)} does not fit in 64 bits (seqs are below 2**63); pass a seq the "
                "queue could hold, e.g. the writer's next_seq to go to the tail"
            )
        found = self._seek(R.SCAN_TO_SEQ, int(seq), 0)
        c = self._cursor
        return found and c.seq_at(c.offset) == seq

    def seek_timestamp(self, timestamp_ns: int) -> bool:
        """Position at the first message with ``timestamp_ns >=`` the target. True if one exists.

        Assumes timestamps that do not go backwards (true of the default clock unless it is stepped).
        """
        if isinstance(timestamp_ns, bool) or not isinstance(timestamp_ns, (int, np.integer)):
            raise ArgumentTypeError(f"seek_timestamp(timestamp_ns) takes an int of ns, not {type(timestamp_ns).__name__}")
        if not -(1 << 63) <= timestamp_ns < 1 << 63:
            raise InvalidArgumentError(
                f"seek_timestamp: timestamp_ns {int(timestamp_ns)} does not fit in 64 bits (timestamps are signed "
                "64-bit ns since the epoch); pass a time in that range"
            )
        return self._seek(R.SCAN_TO_TIMESTAMP, int(timestamp_ns), 1)

    def _seek(self, mode: int, target: int, key: int) -> bool:
        c = self._cursor
        c.check_open()
        return c.seek(mode, target, key)

    # -- liveness ---------------------------------------------------------------------------

    def writer_status(self, ttl: float = 1.0) -> WriterStatus:
        """Liveness of the writer: lock held, and heartbeat younger than ``ttl`` seconds.

        On a queue deleted (or replaced by a new one) since this reader opened it, ``state`` is
        ``"deleted"`` and ``alive``/``lock_held`` are False; the other fields are its last values.
        """
        c = self._cursor
        c.check_open()
        A.check_ttl(ttl)
        q, i32 = c.ctl_q, c.ctl_i32
        hb = q[L.CTL_HEARTBEAT_NS_OFFSET // 8]
        age = (time.time_ns() - hb) / 1e9 if hb else math.inf
        gone = c.gone is not None or F.queue_gone(c.path, c.queue_id)
        held = not gone and writer_lock_held(c.path, q[L.CTL_WRITER_PID_OFFSET // 8],
                                             i32[L.CTL_WRITER_STATE_OFFSET // 4])
        return WriterStatus(
            alive=held and age <= ttl,
            lock_held=held,
            pid=q[L.CTL_WRITER_PID_OFFSET // 8],
            epoch=q[L.CTL_WRITER_EPOCH_OFFSET // 8],
            state="deleted" if gone else WRITER_STATE_NAMES.get(i32[L.CTL_WRITER_STATE_OFFSET // 4], "unknown"),
            heartbeat_ns=hb,
            heartbeat_age=age,
            ttl=float(ttl),
        )

    def detect_disconnect(self, ttl: float = 1.0) -> DisconnectReason | None:
        """Why this reader should consider its writer gone, or None if it looks healthy.

        Checks, in order: the queue deleted (or replaced by a new queue at the same path:
        ``QUEUE_DELETED``, as after ``shutil.rmtree``), this reader's segment deleted, the
        writer closed (its state says so) or dead (lock free), its heartbeat older than ``ttl``
        seconds, and a new writer epoch since open (or :meth:`acknowledge_epoch`).
        Reports only; taking safety action is the application's job.
        """
        c = self._cursor
        c.check_open()
        A.check_ttl(ttl)
        if c.gone is not None or F.queue_gone(c.path, c.queue_id):
            return DisconnectReason.QUEUE_DELETED
        if not os.path.exists(F.segment_path(c.path, c.segment_id)):
            return DisconnectReason.SEGMENT_MISSING
        st = self.writer_status(ttl)
        if st.state == "closed":  # authoritative even while the closing writer still holds its lock
            return DisconnectReason.WRITER_CLOSED
        if not st.lock_held:
            return DisconnectReason.WRITER_DIED
        if st.heartbeat_age > ttl:
            return DisconnectReason.HEARTBEAT_STALE
        if st.epoch != c.epoch:
            return DisconnectReason.EPOCH_CHANGED
        return None

    def acknowledge_epoch(self) -> int:
        """Accept the current writer epoch (after handling EPOCH_CHANGED); returns it."""
        c = self._cursor
        c.check_open()
        c.epoch = c.ctl_q[L.CTL_WRITER_EPOCH_OFFSET // 8]
        return c.epoch

    # -- properties -------------------------------------------------------------------------

    @property
    def path(self) -> str:
        return self._path

    @property
    def name(self) -> str | None:
        return self._name

    @property
    def next_seq(self) -> int:
        """The seq this reader expects next: last delivered + 1 (compare with ``Message.seq`` to spot gaps)."""
        return self._cursor.next_seq

    @property
    def position(self) -> tuple[int, int]:
        """``(segment_id, byte_offset)`` of the next record to read."""
        c = self._cursor
        return c.segment_id, c.offset

    @property
    def writer_epoch(self) -> int:
        """The writer epoch this reader has acknowledged (set at open)."""
        return self._cursor.epoch

    @property
    def closed(self) -> bool:
        return self._cursor.closed

    def _forget_in_child(self) -> None:
        """In a forked child: switch this inherited reader off without touching its files (``queue/fork.py``);
        its cursor does it (:meth:`ReaderCursor.forget_in_child`)."""
        self._cursor.forget_in_child()

    def close(self) -> None:
        """Release the reader name and unmap. Does not commit."""
        c = self._cursor
        if c.closed:
            return
        if c.owner is not None:
            raise InvalidArgumentError(
                f"reader {self._name!r} of {self._path} is owned by a HotLoop, which reads its mapping: "
                "take it back with loop.remove_reader(source), or close the loop (which closes it)"
            )
        c.close()

    def __enter__(self) -> "QueueReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> "QueueReader":
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()  # unmapping and releasing the name take microseconds: no need to leave the loop

    def __repr__(self) -> str:
        c = self._cursor
        where = "closed" if c.closed else f"segment={c.segment_id} offset={c.offset} next_seq={c.next_seq}"
        return f"<QueueReader {self._path} name={self._name!r} {where}>"
