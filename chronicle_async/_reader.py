"""QueueReader and Message: zero-copy reading, waiting, positions, liveness."""
from __future__ import annotations

import logging
import math
import os
import struct
import time
import zlib
from typing import Any, Iterator, NamedTuple

import numpy as np

from . import _args as A
from . import _files as F
from . import _fork
from ._config import Start, WaitStrategy
from ._errors import (
    ArgumentTypeError,
    CorruptSegmentError,
    DamagedRecordError,
    ForkError,
    InvalidArgumentError,
    QueueClosedError,
    QueueDeletedError,
)
from ._idle import ParkCounts
from ._lock import writer_lock_held
from ._status import WRITER_STATE_NAMES, DisconnectReason, WriterStatus
from ._sys import asymmetric_fence
from ._warm import warm_waiters
from .hot.syscalls import HAVE_RAW_SYSCALL
from .hot import layout as L
from .hot import read as R
from .hot import status as S
from .hot import wait as W
from .hot.idle import PARK_INTERRUPTED, PARK_MISSED, PARK_MOVED, PARK_OUTCOMES, PARK_POLLED, PARK_READY, PARK_SLICE, PARK_WOKEN
from ._position import PositionFile

log = logging.getLogger("chronicle_async")

_BODY = struct.Struct(L.RECORD_BODY_FORMAT)
_HDR = L.RECORD_HEADER_LENGTH
_CHECKED_END = L.REC_CHECKED_OFFSET + L.REC_CHECKED_LENGTH
_HEADER_CK = L.HEADER_CHECKSUM_VERSION
_IDX_WRITE_SEGMENT = L.CTL_WRITE_SEGMENT_OFFSET // 8
_adler32 = zlib.adler32
#: verify: the seq rule for the next record. NONE: exactly the expected seq; FORWARD: or later (after
#: padding, a segment change, a damaged record); ANY: at a new position, whose expected seq came from
#: a record header not yet checked.
_JUMP_NONE, _JUMP_FORWARD, _JUMP_ANY = 0, 1, 2
_BODY_OFFSET = L.REC_TYPE_ID_OFFSET
_ALIGN_M1 = L.RECORD_ALIGNMENT - 1
_ALIGN_MASK = ~_ALIGN_M1
_tuple_new = tuple.__new__
_monotonic = time.monotonic
#: How long ``wait()`` sleeps (at most) before returning False on a queue deleted under the reader.
GONE_WAIT_S = 0.1


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
        self._closed = True
        self._forked: ForkError | None = None  # set in a forked child (_fork.py)
        self._path = A.check_path(path)
        self._name = A.check_name(name)
        self._start = A.coerce_enum(Start, start, "start")
        self._strategy = A.coerce_enum(WaitStrategy, wait_strategy, "wait_strategy")
        if isinstance(spin_time, bool) or not isinstance(spin_time, (int, float)) or spin_time < 0:
            raise InvalidArgumentError(f"spin_time must be a non-negative number of seconds, got {spin_time!r}")
        self._spin_time = float(spin_time)
        if not isinstance(verify, bool):
            raise ArgumentTypeError(f"verify must be True or False, got {verify!r}")
        self._verify = verify
        self._may_jump = _JUMP_ANY  # verify: how the next seq may differ from the expected one (_JUMP_*)
        self._damaged = 0
        self._ctl = self._seg = self._pos = None
        self._gone: DisconnectReason | None = None  # QUEUE_DELETED once a segment change found the queue gone
        self._owner: object | None = None  # the HotLoop that owns this reader while it reads it
        self._cursor = ReaderCursor(self)
        self._timespec = np.zeros(2, np.int64)
        self._park_counts = np.zeros(PARK_OUTCOMES, np.int64)  # how this reader's parks ended (park_counts)
        try:
            self._open()
        except BaseException:
            self._teardown()
            raise
        self._closed = False
        _fork.track(self)

    def _open(self) -> None:
        try:
            self._ctl, info = F.open_control(self._path, writable=True)
            self._can_park = HAVE_RAW_SYSCALL
        except F.QueuePermissionError:
            self._ctl, info = F.open_control(self._path, writable=False)
            self._can_park = False  # no write access to the futex word: poll instead
        self._ctl_q, self._ctl_i32, self._ctl_arr = self._ctl.q, self._ctl.i32, self._ctl.arr
        self._segment_size = info.segment_size
        self._queue_id = info.queue_id
        self._epoch = self._ctl_q[L.CTL_WRITER_EPOCH_OFFSET // 8]
        warm_waiters()  # the first park must not wait for a compile (_warm.py)
        if self._name:
            self._pos = PositionFile.open(self._path, self._name, self._segment_size, self._queue_id)
            saved = self._pos.saved
        else:
            saved = None
        start = self._start
        if start is Start.COMMITTED and saved is not None:
            seg, off, nseq = saved
            if self._try_map(seg):
                self._set_position(off, nseq)
                self._revalidate_position()
                return
            log.warning(
                "reader %r of %s: its committed segment %d was deleted; starting at the earliest data (seqs will show the gap)",
                self._name, self._path, seg,
            )
            start = Start.EARLIEST
        if start is Start.LATEST:
            self._seek_tail()
        else:
            self._seek_earliest()

    # -- positions ---------------------------------------------------------------------------

    def _try_map(self, seg_id: int) -> bool:
        if self._seg is not None and self._seg_id == seg_id:
            return True
        try:
            m = F.open_segment(self._path, seg_id, self._segment_size, self._queue_id, writable=False)
        except FileNotFoundError:
            return False
        old, self._seg = self._seg, m
        self._seg_id = seg_id
        self._seg_i32 = F.load_view(m)
        self._seg_mv = m.mv
        self._seg_checks_header = F.segment_version(m) >= _HEADER_CK  # verify: the checksum covers the header
        if old is not None:
            old.close()
        return True

    def _set_position(self, off: int, next_seq: int) -> None:
        """Position in the segment already mapped by ``_try_map``."""
        self._off = off
        self._next_seq = next_seq
        self._may_jump = _JUMP_ANY  # a new position: its first intact record sets the seq order

    def _revalidate_position(self) -> None:
        """Make sure a saved position is still on a record boundary at or before the tail.

        Recovery after a torn write may have covered records this reader had already
        read with an end marker; a position inside that padding would never see data.
        """
        st, stop, _ls, _lo, _n = R.scan(self._seg.arr, L.SEGMENT_DATA_OFFSET, R.SCAN_TO_SEQ, self._next_seq)
        if st == 0 or stop >= self._off:
            return  # the saved offset lies on or before the first record still to read: fine
        if st == S.END_OF_SEGMENT:
            log.warning("reader %r of %s: its position was covered by recovery; continuing after the end marker",
                        self._name, self._path)
            self._off = stop  # next() follows the end marker to the next segment
        else:
            log.warning("reader %r of %s: its position is past the recovered tail; moving back to the tail",
                        self._name, self._path)
            self._off = stop

    def _seek_earliest(self) -> None:
        for sid in F.list_segments(self._path):
            if self._try_map(sid):
                self._set_position(L.SEGMENT_DATA_OFFSET, self._first_seq_or_hint(sid))
                return
        raise CorruptSegmentError(f"queue {self._path} has no segment files; its data was deleted")

    def _first_seq_or_hint(self, from_segment: int) -> int:
        """Seq of the first message at or after ``from_segment`` (the writer's next seq if none)."""
        seq, _ts = R.first_record(self._seg.arr)
        if seq >= 0:
            return seq
        for sid in F.list_segments(self._path):
            if sid <= from_segment:
                continue
            try:
                m = F.open_segment(self._path, sid, self._segment_size, self._queue_id, writable=False)
            except FileNotFoundError:
                continue
            try:
                seq, _ts = R.first_record(m.arr)
            finally:
                m.close()
            if seq >= 0:
                return seq
        return self._ctl_q[L.CTL_NEXT_SEQ_OFFSET // 8]

    def _seek_tail(self) -> None:
        sid = self._ctl_q[L.CTL_WRITE_SEGMENT_OFFSET // 8]
        while True:
            if not self._try_map(sid):
                self._seek_earliest()
                return
            st, off, lseq, _lo, _n = R.scan(self._seg.arr, L.SEGMENT_DATA_OFFSET, R.SCAN_TO_TAIL, 0)
            if st == S.END_OF_SEGMENT:
                sid += 1
                continue
            nseq = lseq + 1 if lseq >= 0 else self._ctl_q[L.CTL_NEXT_SEQ_OFFSET // 8]
            self._set_position(off, nseq)
            return

    # -- reading ----------------------------------------------------------------------------

    def next(self) -> Message | None:
        """The next message, or None if none is committed yet. Never blocks."""
        if self._verify:
            return self._next_verified()
        off = self._off
        c = self._seg_i32[off >> 2]
        if not c:
            return None if self._ctl_q[_IDX_WRITE_SEGMENT] <= self._seg_id else self._hole(off)
        t, seq, ts, n, _ck = _BODY.unpack_from(self._seg_mv, off + _BODY_OFFSET)
        end = off + ((_HDR + _ALIGN_M1 + n) & _ALIGN_MASK)
        if t < 0 or n != c - 1 or end > self._segment_size:
            return self._next_slow(off, c, t, n)
        start = off + _HDR
        self._off = end
        self._next_seq = seq + 1
        return _tuple_new(Message, (seq, ts, t, self._seg_mv[start : start + n]))

    def _next_verified(self) -> Message | None:
        """``next()`` with ``verify`` on: the same reads, then the checksum and the seq rule."""
        off = self._off
        c = self._seg_i32[off >> 2]
        if not c:
            return None if self._ctl_q[_IDX_WRITE_SEGMENT] <= self._seg_id else self._hole(off)
        mv = self._seg_mv
        t, seq, ts, n, ck = _BODY.unpack_from(mv, off + _BODY_OFFSET)
        end = off + ((_HDR + _ALIGN_M1 + n) & _ALIGN_MASK)
        if t < 0 or n != c - 1 or end > self._segment_size:
            return self._next_slow(off, c, t, n)
        start = off + _HDR
        payload = mv[start : start + n]
        seed = _adler32(mv[off + _BODY_OFFSET : off + _CHECKED_END]) if self._seg_checks_header else 1
        expected = self._next_seq
        if _adler32(payload, seed) != ck and not self._checksum_ok_now(off, payload, ck):
            reason = "checksum"
        elif seq != expected and not (self._may_jump == _JUMP_ANY or (self._may_jump and seq > expected)):
            reason = "seq went back" if seq < expected else "seq jumped forward"
        else:
            self._off = end
            self._next_seq = seq + 1
            self._may_jump = _JUMP_NONE
            return _tuple_new(Message, (seq, ts, t, payload))
        self._off = end
        self._may_jump = max(self._may_jump, _JUMP_FORWARD)
        self._damaged += 1
        raise DamagedRecordError(
            f"segment {self._seg.path}: the record at offset {off} is damaged ({reason}: header seq {seq}, "
            f"expected {expected}) and was not delivered; the reader moved past it. Restore the segment "
            "from a copy to get it back, or go on reading (next() continues after it)",
            self._seg_id, off, seq, expected, reason,
        )

    def _hole(self, off: int) -> Message | None:
        """No record at ``off``, and the writer has moved on to a later segment.

        The writer stores a segment's end marker before it moves to the next segment, so a zero
        commit word that is still zero *after* that move is never going to be written: the bytes
        from here on were lost (a power cut, a zeroed page, a stray write). A verifying reader
        skips to the next intact record; any other reader raises, instead of waiting forever.
        """
        if self._gone is not None or self._seg_i32[off >> 2]:
            return None if self._gone is not None else self.next()  # committed meanwhile: read it
        if self._verify:
            self._skip_damaged(off, "hole", "a zero commit word")
        raise CorruptSegmentError(
            f"segment {self._seg.path} has no record at offset {off} (a zero commit word), yet the writer has "
            f"moved on to segment {int(self._ctl_q[_IDX_WRITE_SEGMENT])}: the data from here on in this segment "
            f"was lost (seq {self._next_seq} expected). Open the reader with verify=True to skip such damage, "
            "or seek() past it"
        )

    def _skip_damaged(self, off: int, reason: str, what: str) -> None:
        """Verify mode: move past damage that stops reading (a malformed record, a hole) to the next
        intact record of this segment (or the next segment), count it, and raise DamagedRecordError."""
        expected = self._next_seq
        limit = expected + self._segment_size // L.RECORD_ALIGNMENT
        nxt, _seq = R.find_intact(self._seg.arr, off + L.RECORD_ALIGNMENT, max(expected, 0), limit)
        seg_id = self._seg_id
        if nxt >= 0:
            self._off = nxt
            where = f"reading goes on at offset {nxt}"
        else:
            self._off = self._segment_size - L.RECORD_ALIGNMENT  # nothing intact follows in this segment
            self._advance_segment()
            where = f"nothing intact follows in this segment; reading goes on in segment {self._seg_id}"
        self._may_jump = max(self._may_jump, _JUMP_FORWARD)
        self._damaged += 1
        raise DamagedRecordError(
            f"segment {F.segment_path(self._path, seg_id)}: {what} at offset {off} ({reason}; seq {expected} "
            f"expected there); the damaged bytes were skipped, {where}. Restore the segment from a copy to "
            "get what was lost",
            seg_id, off, -1, expected, reason,
        )

    def _checksum_ok_now(self, off: int, payload: memoryview, ck: int) -> bool:
        """A failed checksum, checked again under the segment's version read now: an empty segment
        made by an older version is upgraded in place by the writer before its first record."""
        self._seg_checks_header = F.segment_version(self._seg) >= _HEADER_CK
        seed = _adler32(self._seg_mv[off + _BODY_OFFSET : off + _CHECKED_END]) if self._seg_checks_header else 1
        return _adler32(payload, seed) == ck

    @property
    def cursor(self) -> "ReaderCursor":
        """This reader's position and mapped files, for the library's consumers of readers
        (``HotLoop``, ``FanInReader``, the asyncio waits, ``frames``); see :class:`ReaderCursor`."""
        return self._cursor

    @property
    def damaged(self) -> int:
        """Records this reader refused as damaged (``verify=True``), since it opened."""
        return self._damaged

    @property
    def verify(self) -> bool:
        """True if records are checked before delivery (see the class docstring)."""
        return self._verify

    def _next_slow(self, off: int, c: int, t: int, n: int) -> Message | None:
        self._may_jump = max(self._may_jump, _JUMP_FORWARD)  # padding or a segment end: seqs may skip after it
        rec = (_HDR + _ALIGN_M1 + n) & _ALIGN_MASK
        if n != c - 1 or t != L.PADDING_TYPE_ID or n < 0 or off + rec > self._segment_size:
            if self._verify:
                self._skip_damaged(off, "malformed", f"commit={c}, length={n}, type={t}")
            raise CorruptSegmentError(
                f"segment {self._seg.path} has a malformed record at offset {off} (commit={c}, length={n}, type={t}); "
                "the file is damaged: restore it from a backup, open the reader with verify=True to skip damage, "
                "or seek() past it"
            )
        if off + rec < self._segment_size:
            self._off = off + rec
            return self.next()
        if not self._advance_segment():
            return None
        return self.next()

    def _advance_segment(self) -> bool:
        if self._gone is not None:
            return False
        nxt = self._seg_id + 1
        try:
            if self._try_map(nxt):
                self._off = L.SEGMENT_DATA_OFFSET
                return True
            later = [i for i in F.list_segments(self._path) if i > nxt]
            if later and self._try_map(later[0]):
                log.warning("%s: segment %d is missing; skipping to segment %d", self._path, nxt, later[0])
                self._off = L.SEGMENT_DATA_OFFSET
                return True
        except (FileNotFoundError, NotADirectoryError):
            pass  # the folder itself is gone: judged below
        except CorruptSegmentError:  # a segment of another queue, created at this path since
            if not F.queue_gone(self._path, self._queue_id):
                raise
        if F.queue_gone(self._path, self._queue_id):
            self._queue_deleted()
        return False

    def _queue_deleted(self) -> None:
        """The queue was deleted (or replaced by a new one) under this reader, which sits at a segment end.

        Nothing more can come. The position stays after the last message delivered; from now on the
        reader reads a private zero mapping, so ``next()``, ``available()``, waiters (and a HotLoop or
        FanInReader that owns it) see "no message" without touching the queue's files again.
        ``detect_disconnect`` reports ``QUEUE_DELETED``.
        """
        log.warning(
            "reader %r of %s: the queue was deleted (or replaced by a new queue) under it; no more messages "
            "will come: close this reader and open it again once the queue exists", self._name, self._path,
        )
        self._gone = DisconnectReason.QUEUE_DELETED
        old = self._seg
        zero = F.Mapping(old.path, -1, self._segment_size, False)  # anonymous: zero pages, no file
        self._seg, self._seg_i32, self._seg_mv = zero, F.load_view(zero), zero.mv
        old.close()

    def __iter__(self) -> Iterator[Message]:
        """Every message available now, then stop (does not wait)."""
        while True:
            m = self.next()
            if m is None:
                return
            yield m

    def __aiter__(self) -> Any:
        """``async for msg in reader``: every message, waiting without blocking the loop (``control/aio.py``)."""
        from .control import aio

        return aio.ReaderAsyncIterator(self)

    async def __anext__(self) -> Message:
        """The next message, awaited (``control/aio.py``); never ends on its own."""
        from .control import aio

        return await aio.next_async(self)

    async def wait_async(self, timeout: float | None = None) -> bool:
        """:meth:`wait` for coroutines: parks in the process's shared waker thread (``control/aio.py``)."""
        from .control import aio

        return await aio.wait_async(self, timeout)

    @property
    def park_counts(self) -> ParkCounts:
        """How this reader's parks in :meth:`wait` ended (:class:`ParkCounts`); ``missed`` must stay 0."""
        return ParkCounts.from_array(self._park_counts)

    def available(self) -> bool:
        """True if ``next()`` would find something (a message or a segment end) right now."""
        return self._seg_i32[self._off >> 2] != 0

    # -- waiting ----------------------------------------------------------------------------

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until a message may be available; True if one is, False on timeout.

        Also returns False early when the writer closes the queue during the wait, and,
        once the queue was found deleted under this reader (``detect_disconnect`` says
        ``QUEUE_DELETED``), after a short sleep (at most ``GONE_WAIT_S``, 0.1 s).

        Uses this reader's :class:`WaitStrategy`. Parking (the futex) happens only
        while idle; the writer pays for a wake only when someone is parked.
        """
        if timeout is not None:
            if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or math.isnan(timeout) or timeout < 0:
                raise InvalidArgumentError(f"timeout must be None or a non-negative number of seconds, got {timeout!r}")
        if self._seg_i32[self._off >> 2]:
            return True
        if self._gone is not None:  # deleted under us: nothing will come; a bounded sleep, never a hot spin
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
            i32 = self._seg_i32
            idx = self._off >> 2
            while not i32[idx]:
                if spin_end is not None and _monotonic() >= spin_end:
                    break
            else:
                return True
            if strategy is WaitStrategy.BUSY_SPIN:
                return False
        return self._park(deadline)

    def _park(self, deadline: float | None) -> bool:
        ctl = self._ctl_arr
        state_idx = L.CTL_WRITER_STATE_OFFSET // 4
        was_open = self._ctl_i32[state_idx] == L.WRITER_STATE_OPEN
        while True:
            exact = bool(self._ctl_i32[L.CTL_WRITER_FLAGS_OFFSET // 4] & L.WRITER_FLAG_ASYMMETRIC_FENCE)
            now = _monotonic()
            remaining = None if deadline is None else max(0.0, deadline - now)
            cap = W.PARK_SLICE_S if exact else 0.001  # slices re-register; a dead parker expires
            slice_ = cap if remaining is None else min(remaining, cap)
            counts = self._park_counts
            if not self._can_park:
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
                    if self._seg_i32[self._off >> 2]:
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
                    counts[PARK_MISSED if self._seg_i32[self._off >> 2] else PARK_SLICE] += 1
            if self._seg_i32[self._off >> 2]:
                return True
            if was_open and self._ctl_i32[state_idx] == L.WRITER_STATE_CLOSED:
                return False  # the writer closed while we waited: nothing more is coming from it
            if deadline is not None and _monotonic() >= deadline:
                return False

    # -- positions, seeking -----------------------------------------------------------------

    def commit(self, durable: bool = False) -> None:
        """Persist the position after the last message returned, for this reader name.

        No fsync by default (the position survives a process crash); with
        ``durable=True`` it is flushed to disk before returning.
        """
        if self._pos is None:
            self._check_open()
            raise InvalidArgumentError("an anonymous reader (name=None) cannot commit; open it with a name")
        self._pos.commit(self._seg_id, self._off, self._next_seq, self._epoch, durable)

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
        return found and self._seq_at(self._off) == seq

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
        self._check_open()
        try:
            if self._gone is not None:
                raise FileNotFoundError
            ids = F.list_segments(self._path)
        except (FileNotFoundError, NotADirectoryError):
            raise QueueDeletedError(
                f"cannot seek reader {self._name!r}: queue {self._path} was deleted (or replaced) under it; "
                "close the reader and open it again once the queue exists"
            ) from None
        lo, hi, start = 0, len(ids) - 1, 0
        while lo <= hi:  # last segment whose first record is <= target
            mid = (lo + hi) // 2
            if not self._try_map(ids[mid]):
                ids.pop(mid)
                hi -= 1
                continue
            first = R.first_record(self._seg.arr)[key]
            # seqs are unique; timestamps may repeat across a segment boundary, so for them
            # start in the last segment that begins strictly before the target.
            if 0 <= first and (first <= target if mode == R.SCAN_TO_SEQ else first < target):
                start, lo = mid, mid + 1
            else:
                hi = mid - 1
        for sid in ids[start:]:
            if not self._try_map(sid):
                continue
            st, off, _ls, _lo, _n = R.scan(self._seg.arr, L.SEGMENT_DATA_OFFSET, mode, target)
            if st == 0:
                self._set_position(off, self._seq_at(off))
                return True
            if st == S.END_OF_SEGMENT:
                continue
            if st == S.CORRUPT:
                raise CorruptSegmentError(f"segment {self._seg.path} has a malformed record at offset {off}")
            self._set_position(off, self._ctl_q[L.CTL_NEXT_SEQ_OFFSET // 8])
            return False
        return False

    def _seq_at(self, off: int) -> int:
        return struct.unpack_from("<q", self._seg_mv, off + L.REC_SEQ_OFFSET)[0]

    # -- liveness ---------------------------------------------------------------------------

    def writer_status(self, ttl: float = 1.0) -> WriterStatus:
        """Liveness of the writer: lock held, and heartbeat younger than ``ttl`` seconds.

        On a queue deleted (or replaced by a new one) since this reader opened it, ``state`` is
        ``"deleted"`` and ``alive``/``lock_held`` are False; the other fields are its last values.
        """
        self._check_open()
        A.check_ttl(ttl)
        q = self._ctl_q
        hb = q[L.CTL_HEARTBEAT_NS_OFFSET // 8]
        age = (time.time_ns() - hb) / 1e9 if hb else math.inf
        gone = self._gone is not None or F.queue_gone(self._path, self._queue_id)
        held = not gone and writer_lock_held(self._path, q[L.CTL_WRITER_PID_OFFSET // 8],
                                             self._ctl_i32[L.CTL_WRITER_STATE_OFFSET // 4])
        return WriterStatus(
            alive=held and age <= ttl,
            lock_held=held,
            pid=q[L.CTL_WRITER_PID_OFFSET // 8],
            epoch=q[L.CTL_WRITER_EPOCH_OFFSET // 8],
            state="deleted" if gone else WRITER_STATE_NAMES.get(self._ctl_i32[L.CTL_WRITER_STATE_OFFSET // 4], "unknown"),
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
        self._check_open()
        A.check_ttl(ttl)
        if self._gone is not None or F.queue_gone(self._path, self._queue_id):
            return DisconnectReason.QUEUE_DELETED
        if not os.path.exists(F.segment_path(self._path, self._seg_id)):
            return DisconnectReason.SEGMENT_MISSING
        st = self.writer_status(ttl)
        if st.state == "closed":  # authoritative even while the closing writer still holds its lock
            return DisconnectReason.WRITER_CLOSED
        if not st.lock_held:
            return DisconnectReason.WRITER_DIED
        if st.heartbeat_age > ttl:
            return DisconnectReason.HEARTBEAT_STALE
        if st.epoch != self._epoch:
            return DisconnectReason.EPOCH_CHANGED
        return None

    def acknowledge_epoch(self) -> int:
        """Accept the current writer epoch (after handling EPOCH_CHANGED); returns it."""
        self._check_open()
        self._epoch = self._ctl_q[L.CTL_WRITER_EPOCH_OFFSET // 8]
        return self._epoch

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
        return self._next_seq

    @property
    def position(self) -> tuple[int, int]:
        """``(segment_id, byte_offset)`` of the next record to read."""
        return self._seg_id, self._off

    @property
    def writer_epoch(self) -> int:
        """The writer epoch this reader has acknowledged (set at open)."""
        return self._epoch

    @property
    def closed(self) -> bool:
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise self._forked or QueueClosedError(f"reader {self._name!r} of {self._path} is closed")

    def _forget_in_child(self) -> None:
        """In a forked child: switch this inherited reader off without touching its files (``_fork.py``).

        Its position file stays the parent's: a commit here would move the parent's position.
        """
        if self._closed:
            return
        self._forked = _fork.error(f"reader {self._name!r}", self._path)
        self._closed = True
        self._seg_i32 = self._ctl_i32 = self._ctl_q = _fork.ForkedView(self._forked)
        self._seg_mv = self._ctl_arr = None
        self._pos = None
        self._owner = None

    def close(self) -> None:
        """Release the reader name and unmap. Does not commit."""
        if self._closed:
            return
        if self._owner is not None:
            raise InvalidArgumentError(
                f"reader {self._name!r} of {self._path} is owned by a HotLoop, which reads its mapping: "
                "take it back with loop.remove_reader(source), or close the loop (which closes it)"
            )
        self._closed = True
        self._teardown()

    def _teardown(self) -> None:
        # Drop our own views first: an mmap cannot close while views of it exist.
        self._seg_i32 = self._ctl_i32 = self._ctl_q = _ClosedView()
        self._seg_mv = self._ctl_arr = None
        for m in (self._seg, self._ctl, self._pos):
            if m is not None:
                m.close()
        self._seg = self._ctl = self._pos = None  # the position file's close releases the reader name

    def __enter__(self) -> "QueueReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        where = "closed" if self._closed else f"segment={self._seg_id} offset={self._off} next_seq={self._next_seq}"
        return f"<QueueReader {self._path} name={self._name!r} {where}>"


class _ClosedView:
    def __getitem__(self, _key: object) -> int:
        raise QueueClosedError("the queue reader is closed")


class ReaderCursor:
    """Where one :class:`QueueReader` is, and the mapped files it reads: the one object through
    which the library's consumers of a reader (``HotLoop``, ``FanInReader``, the asyncio waits,
    ``frames``) see and move its position. It is also the only place that knows how a position
    maps to a row of a jitted source table (``to_row`` / ``from_row``).

    Not for applications: use the reader's own methods. Same thread rules as its reader.
    """

    __slots__ = ("_r",)

    def __init__(self, reader: QueueReader):
        self._r = reader

    # -- state ---------------------------------------------------------------------------------

    def check_open(self) -> None:
        self._r._check_open()

    @property
    def closed(self) -> bool:
        return self._r._closed

    @property
    def gone(self) -> DisconnectReason | None:
        """``QUEUE_DELETED`` once the reader found its queue deleted (or replaced) under it."""
        return self._r._gone

    @property
    def verify(self) -> bool:
        return self._r._verify

    @property
    def segment_id(self) -> int:
        return self._r._seg_id

    @property
    def offset(self) -> int:
        return self._r._off

    @property
    def next_seq(self) -> int:
        return self._r._next_seq

    def move_to(self, offset: int, next_seq: int) -> None:
        """Set the position inside the mapped segment (a consumer took messages the reader did not)."""
        self._r._off = offset
        self._r._next_seq = next_seq

    @property
    def segment(self) -> "F.Mapping":
        """The mapped segment being read (``.arr``, ``.mv``, ``.path``)."""
        return self._r._seg

    @property
    def segment_address(self) -> int:
        return self._r._seg.arr.ctypes.data

    @property
    def segment_size(self) -> int:
        return self._r._segment_size

    @property
    def control_words(self) -> tuple[Any, Any]:
        """The control file's ``int32`` and ``int64`` views (futex word, waiters, the writer's head)."""
        return self._r._ctl_i32, self._r._ctl_q

    def writer_head(self) -> tuple[int, int, int]:
        """The writer's ``(write_segment, write_offset, next_seq)`` as the control file says now."""
        q = self._r._ctl_q
        return (int(q[L.CTL_WRITE_SEGMENT_OFFSET // 8]), int(q[L.CTL_WRITE_OFFSET_OFFSET // 8]),
                int(q[L.CTL_NEXT_SEQ_OFFSET // 8]))

    def has_data(self) -> bool:
        """True if a record is committed at the position (no other check)."""
        r = self._r
        return bool(r._seg_i32[r._off >> 2])

    # -- moves ---------------------------------------------------------------------------------

    def advance_segment(self) -> bool:
        """At a segment's end: map the next segment (or the next one present). False if none yet."""
        return self._r._advance_segment()

    def skip_damaged(self, reason: str) -> None:
        """Verify mode: move past damage that stops reading at the position (see ``QueueReader``);
        raises :class:`DamagedRecordError` after moving, as ``next()`` does."""
        self._r._skip_damaged(self._r._off, reason, "damage that stops reading")

    def commit(self, segment: int, offset: int, next_seq: int, durable: bool = False) -> bool:
        """Commit a position for a named reader (False for an anonymous one, which keeps none)."""
        r = self._r
        if r._pos is None:
            return False
        r._pos.commit(segment, offset, next_seq, r._epoch, durable)
        return True

    # -- ownership by a hot loop ----------------------------------------------------------------

    @property
    def owner(self) -> object | None:
        """The HotLoop reading this reader's mapping, if any (the reader then refuses to close)."""
        return self._r._owner

    @owner.setter
    def owner(self, loop: object | None) -> None:
        self._r._owner = loop

    # -- jitted source tables -------------------------------------------------------------------

    def wait_key(self) -> tuple:
        """Readers of one queue waiting at the same record share one futex entry: their key."""
        r = self._r
        return (r._path, r._queue_id, r._seg_id, r._off)

    def mappings(self) -> tuple[Any, Any, Any]:
        """The arrays a parked waiter must keep alive: segment, control (``uint8``), segment ``int32``."""
        r = self._r
        return r._seg.arr, r._ctl_arr, r._seg_i32

    def to_row(self, row: np.ndarray, *, generation: bool = False) -> None:
        """Write this position into a source-table row (``layout.SRC_*``), all but its state and,
        unless ``generation``, the position file's slot generation (a row that has committed
        positions itself is ahead of the reader there).

        A HotLoop reads and advances the row; ``park_many`` parks on it; ``from_row`` takes it back.
        """
        r = self._r
        row[L.SRC_SEG_ADDR] = r._seg.arr.ctypes.data
        row[L.SRC_SEG_SIZE] = r._segment_size
        row[L.SRC_SEG_ID] = r._seg_id
        row[L.SRC_OFFSET] = r._off
        row[L.SRC_NEXT_SEQ] = r._next_seq
        row[L.SRC_CTL_ADDR] = r._ctl_arr.ctypes.data
        row[L.SRC_POS_ADDR] = r._pos.address if r._pos is not None else 0
        if generation:
            row[L.SRC_POS_GEN] = r._pos.generation if r._pos is not None else 0
        row[L.SRC_EPOCH] = r._epoch
        row[L.SRC_CAN_PARK] = 1 if r._can_park else 0
        row[L.SRC_VERIFY] = L.SRC_VERIFY_ON | L.SRC_VERIFY_MAY_JUMP if r._verify else 0  # a segment start

    def from_row(self, row: np.ndarray) -> None:
        """Take the position back from a source-table row that jitted code advanced."""
        r = self._r
        r._off = int(row[L.SRC_OFFSET])
        r._next_seq = int(row[L.SRC_NEXT_SEQ])
        if r._pos is not None:
            r._pos.generation = int(row[L.SRC_POS_GEN])

