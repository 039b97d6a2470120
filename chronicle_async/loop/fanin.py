"""FanInReader: merge many queues in timestamp order, zero-copy, with one wait for all of them."""
from __future__ import annotations

import time
from typing import Any, Iterator, Sequence

import numpy as np

from ..queue import args as A
from ..queue.idle import ParkCounts
from .._errors import ArgumentTypeError, InvalidArgumentError, QueueClosedError
from ..queue.reader import Message, QueueReader
from ..queue.liveness import DisconnectReason
from ..queue.ring import SpscRing
from ..hot import layout as L
from ..hot import tables as T
from ..hot import loop as K
from ..hot.idle import PARK_OUTCOMES
from ..hot.wait import PARK_SLICE_S

_monotonic = time.monotonic
_time_ns = time.time_ns


class _Source:
    __slots__ = ("sid", "reader", "cursor", "head", "before")

    def __init__(self, sid: int, reader: QueueReader):
        self.sid = sid
        self.reader = reader
        self.cursor = reader.cursor  # where the reader is: read and moved through it, never its internals
        self.head: Message | None = None  # the one buffered message
        self.before: tuple[int, int, int] | None = None  # (segment, offset, seq) of `head`'s record


class FanInReader:
    """Merge the messages of many readers: the smallest ``(timestamp_ns, source)`` goes first.

    Each source keeps one buffered message; :meth:`next` hands out the smallest
    and refills that source. Payloads stay zero-copy views of the mappings.

    **Order guarantee.** Among the messages visible when ``next()`` is called,
    the one returned has the smallest ``(timestamp_ns, source)``; each source's
    own order is kept. A message written *later* with an *older* timestamp
    (a slow writer) cannot be ordered before one already handed out. With
    ``lateness=d`` seconds the reader builds a watermark: it holds the smallest
    message until every source has a buffered message or the message is ``d``
    old, so the output is in global timestamp order whenever every message
    becomes visible within ``d`` of its timestamp (all writers stamp with the
    same clock). ``lateness=0`` (the default) never holds anything.

    :meth:`commit` covers exactly what has been handed out: a buffered message
    not yet returned is redelivered after a restart. ``wait()`` spins briefly,
    then parks on every empty source at once (``futex_waitv``), so no source
    blocks another. Use from one thread; a context manager that closes its readers.
    """

    def __init__(self, readers: Sequence[QueueReader] = (), *, lateness: float = 0.0, spin_time: float = 20e-6):
        lateness = A.check_nonnegative_seconds("lateness", lateness)
        self._lateness_ns = int(lateness * 1e9)
        self._spin_time = A.check_nonnegative_seconds("spin_time", spin_time)
        self._sources: list[_Source] = []
        self._dropped: dict[int, _Source] = {}  # sources whose queue was deleted under them (disconnected)
        self._next_id = 0
        self._closed = False
        self._bell = SpscRing(1, L.RING_SLOT_ALIGNMENT)  # only its doorbell and parked words are used
        self._scratch = np.zeros(T.SCRATCH_LENGTH, np.uint8)
        self._park_counts = np.zeros(PARK_OUTCOMES, np.int64)  # how wait()'s parks ended (park_counts)
        for r in readers:
            self.add_reader(r)

    # -- sources -------------------------------------------------------------------------------

    def add_reader(self, reader: QueueReader) -> int:
        """Add a source (allowed at any time); returns its id, as carried by :meth:`next`."""
        self._check_open()
        if not isinstance(reader, QueueReader):
            raise ArgumentTypeError(f"add_reader takes a QueueReader, not {type(reader).__name__}")
        reader.cursor.check_open()
        if any(s.reader is reader for s in self._sources):
            raise InvalidArgumentError(f"{reader!r} is already a source of this FanInReader")
        if len(self._sources) >= T.FUTEX_WAITV_MAX - 1:
            raise InvalidArgumentError(f"a FanInReader merges at most {T.FUTEX_WAITV_MAX - 1} readers")
        sid = self._next_id
        self._next_id += 1
        self._sources.append(_Source(sid, reader))
        return sid

    def remove_reader(self, source: int) -> QueueReader:
        """Take a source out; its reader is positioned at its first message not handed out."""
        self._check_open()
        for i, s in enumerate(self._sources):
            if s.sid == source:
                del self._sources[i]
                self._unbuffer(s)
                return s.reader
        if source in self._dropped:
            return self._dropped.pop(source).reader
        raise InvalidArgumentError(f"this FanInReader has no source {source!r}")

    @staticmethod
    def _unbuffer(s: _Source) -> None:
        if s.head is not None:
            seg, off, seq = s.before
            s.cursor.move_to(off, seq)
            s.head = s.before = None

    @property
    def sources(self) -> dict[int, QueueReader]:
        """``{source id: reader}`` of every source, the :attr:`disconnected` ones included."""
        out = {s.sid: s.reader for s in self._sources}
        out.update((sid, s.reader) for sid, s in self._dropped.items())
        return out

    @property
    def disconnected(self) -> dict[int, DisconnectReason]:
        """``{source id: reason}`` of the sources that dropped out (their queue was deleted under them).

        The reason is ``QUEUE_DELETED`` (deleted, or replaced by a new queue). Everything they held was handed out
        first; they no longer hold the merge back (the watermark) or take part in ``wait()``, and the
        others keep flowing. :meth:`remove_reader` gives such a reader back (then close it)."""
        return {sid: s.cursor.gone or DisconnectReason.QUEUE_DELETED for sid, s in self._dropped.items()}

    # -- reading -------------------------------------------------------------------------------

    def _fill(self) -> None:
        gone = False
        for s in self._sources:
            if s.head is None:
                m = s.reader.next()
                if m is not None:
                    c = s.cursor
                    s.head = m
                    s.before = (c.segment_id, c.offset - L.record_length(len(m.payload)), m.seq)
                elif s.cursor.gone is not None:
                    gone = True
        if gone:
            self._drop_gone()

    def _drop_gone(self) -> None:
        """Take out the sources whose queue was deleted under them (rare): the others go on."""
        for s in [s for s in self._sources if s.head is None and s.cursor.gone is not None]:
            self._sources.remove(s)
            self._dropped[s.sid] = s

    def next(self) -> tuple[int, Message] | None:
        """``(source, message)`` with the smallest ``(timestamp_ns, source)``, or None. Never blocks."""
        self._check_open()
        self._fill()
        best = None
        bts = 0
        waiting = False
        for s in self._sources:
            h = s.head
            if h is None:
                waiting = True
            elif best is None or h.timestamp_ns < bts:
                best, bts = s, h.timestamp_ns
        if best is None:
            return None
        if waiting and self._lateness_ns and _time_ns() - bts < self._lateness_ns:
            return None  # an empty source may still produce something older: hold (the watermark)
        m = best.head
        best.head = best.before = None
        return best.sid, m

    def __iter__(self) -> Iterator[tuple[int, Message]]:
        """Every message releasable now, merged, then stop (does not wait)."""
        while True:
            item = self.next()
            if item is None:
                return
            yield item

    def __aiter__(self) -> Any:
        """``async for source, msg in fanin``: the merged stream, awaited (``queue/waits.py``)."""
        from ..queue import waits as _waits

        return _waits.FanInAsyncIterator(self)

    async def __anext__(self) -> tuple[int, Message]:
        """The next ``(source, message)``, awaited (``queue/waits.py``); never ends on its own."""
        from ..queue import waits as _waits

        return await _waits.next_from_fanin(self)

    async def wait_async(self, timeout: float | None = None) -> bool:
        """:meth:`wait` for coroutines: parks in the process's shared waker thread (``queue/waits.py``)."""
        from ..queue import waits as _waits

        return await _waits.wait_fanin(self, timeout)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until :meth:`next` may return a message; True if it may, False on timeout."""
        self._check_open()
        A.check_nonnegative_seconds("timeout", timeout, allow_none=True)
        deadline = None if timeout is None else _monotonic() + timeout
        spin_end = _monotonic() + self._spin_time
        while True:
            self._fill()
            hold = self._hold_s()
            if hold == 0.0:
                return True
            now = _monotonic()
            if deadline is not None and now >= deadline:
                return False
            if now < spin_end:
                continue
            slice_ = PARK_SLICE_S if hold is None else hold
            if deadline is not None:
                slice_ = min(slice_, deadline - now)
            self._park(max(slice_, 1e-6))

    def poll(self) -> float | None:
        """Refill the sources that hold no message (never blocks) and say when :meth:`next` may hand
        one out: 0.0 now, else the seconds until a held message is released (``lateness``), or None
        if no source holds one. For waits built outside this class, such as the asyncio waits."""
        self._check_open()
        self._fill()
        return self._hold_s()

    def unbuffered_readers(self) -> list[QueueReader]:
        """The readers of the sources that hold no message: the ones a wait must watch."""
        return [s.reader for s in self._sources if s.head is None]

    @property
    def park_counts(self) -> ParkCounts:
        """How the parks of :meth:`wait` ended (:class:`ParkCounts`); ``missed`` must stay 0."""
        return ParkCounts.from_array(self._park_counts)

    def _hold_s(self) -> float | None:
        """0 if next() would return now; seconds until a held message is released; None if nothing is buffered."""
        oldest = None
        waiting = False
        for s in self._sources:
            if s.head is None:
                waiting = True
            elif oldest is None or s.head.timestamp_ns < oldest:
                oldest = s.head.timestamp_ns
        if oldest is None:
            return None
        if not waiting or not self._lateness_ns:
            return 0.0
        left = self._lateness_ns - (_time_ns() - oldest)
        return 0.0 if left <= 0 else left / 1e9

    def _park(self, seconds: float) -> None:
        empty = [s.cursor for s in self._sources if s.head is None]
        table = np.zeros((len(empty), T.SRC_FIELDS), np.int64)
        for i, c in enumerate(empty):
            c.to_row(table[i])
            table[i, T.SRC_STATE] = T.SRC_ACTIVE
        self._park_counts[K.py_park(table, self._bell.buffer, self._scratch, int(seconds * 1e9))] += 1

    # -- positions -----------------------------------------------------------------------------

    def commit(self, durable: bool = False) -> None:
        """Commit every named source at exactly what has been handed out."""
        self._check_open()
        for s in self._sources:
            c = s.cursor
            if s.head is not None:
                seg, off, seq = s.before
            else:
                seg, off, seq = c.segment_id, c.offset, c.next_seq
            c.commit(seg, off, seq, durable)

    # -- lifetime ------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise QueueClosedError("this FanInReader is closed")

    def close(self) -> None:
        """Close every source's reader (without committing)."""
        if self._closed:
            return
        self._closed = True
        for s in [*self._sources, *self._dropped.values()]:
            s.head = s.before = None
            s.reader.close()
        self._sources.clear()
        self._dropped.clear()
        self._bell.close()

    def __enter__(self) -> "FanInReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> "FanInReader":
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<FanInReader sources={len(self._sources)}{' closed' if self._closed else ''}>"
