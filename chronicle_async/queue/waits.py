"""asyncio consumption of queues without a thread per reader: the waits behind ``control.aio``.

``async for msg in reader`` and ``async for source, msg in fanin`` read a
:class:`~chronicle_async.QueueReader` or :class:`~chronicle_async.FanInReader`
from coroutines; ``wait_async`` (:func:`chronicle_async.control.wait_async`,
``reader.wait_async``, ``fanin.wait_async``) is the awaitable form of ``wait()``.

This module imports neither the reader nor the fan-in: it works on a reader through its
cursor (``reader.cursor``: see ``queue/cursor.py``) and its public ``next()``, ``name``,
``path``, and on a fan-in through ``next()``, ``poll()`` and ``unbuffered_readers()``.
The reader and the fan-in import it (on first use: it imports asyncio), and
``control/aio.py`` is its public face.

**One waker thread for the whole process.** A coroutine that finds no data does
not block the event loop and does not get a thread of its own. It puts a small
registration (the mapped commit word at its reader's position, its future, its
event loop) in a lock-protected table and rings the doorbell of an
:class:`~chronicle_async.SpscRing`. A single daemon thread, the *waker*
(``chronicle-aio-waker``), parks with ``park_many`` (one ``futex_waitv`` over the
futex word of every queue being awaited plus the ring's doorbell; see
docs/format.md, "One thread parked on many queues"). When a writer commits to
one of those queues, or a registration comes or goes, the waker wakes, looks at
which awaited readers now have data, and completes their futures on their own
loops with ``loop.call_soon_threadsafe``. Any number of readers, tasks and event
loops share that one thread; readers of one queue waiting at the same position
share one futex entry. To each writer the waker is an ordinary parked reader
(waiter count, expiring park deadline, membarrier when asked), so a writer pays
for a wake-up only while something awaits its queue.

Timeouts and a fan-in's lateness hold run on the event loop (``call_later``);
cancelling an awaiting task removes its registration at once.

**Semantics** (mirroring :meth:`QueueReader.wait`):

- ``await wait_async(reader, timeout)`` returns True as soon as the commit word at
  the reader's position is non-zero (``reader.available()``), False when
  ``timeout`` passes, and False early if the writer *closes* the queue during the
  wait (it was open when the wait began, and is closed now). A writer that is
  merely absent (dead, not yet started) does not end the wait.
- ``await wait_async(fanin, timeout)`` returns True when ``fanin.next()`` may return a
  message: a source without a buffered message was written, or a message held back
  by ``lateness`` is due. It does not return early on a writer close (like
  :meth:`FanInReader.wait`).
- ``async for`` never ends on its own: it keeps waiting while the writer is absent,
  closed, dead or restarting, and resumes when messages come. Stop it with
  ``break``, by cancelling its task, or by ``asyncio.timeout``. It raises
  :class:`~chronicle_async.QueueClosedError` if the reader is closed under it
  (noticed within about a second, the park slice). So that a fast writer cannot
  starve other tasks, the iteration yields to the event loop once every
  :data:`FAIRNESS_BATCH` messages it returns without waiting.
- A reader is used by one task at a time, as in the synchronous API.

Before registering, a wait makes a few non-blocking checks for up to ``spin``
seconds (default 20 µs), yielding to the event loop between them (``await
asyncio.sleep(0)``), which catches a message that is about to arrive without a
trip through the waker thread. Reader wait strategies do not apply here.

Fork: a child process starts its own waker on first use.
"""
from __future__ import annotations

import asyncio
import atexit
import logging
import math
import os
import threading
import time
from typing import Any

import numpy as np

from .cursor import GONE_WAIT_S
from .._errors import ArgumentTypeError, InvalidArgumentError, QueueClosedError
from .idle import ParkCounts
from .ring import SpscRing
from ..hot import layout as L
from ..hot import tables as T
from ..hot import loop as K
from ..hot import ring as RG
from ..hot.idle import PARK_OUTCOMES
from ..hot.wait import PARK_SLICE_S

__all__ = [
    "FAIRNESS_BATCH",
    "FanInAsyncIterator",
    "ReaderAsyncIterator",
    "check_spin",
    "check_timeout",
    "next_from_fanin",
    "next_from_reader",
    "park_counts",
    "poke",
    "registered_waits",
    "wait_fanin",
    "wait_reader",
    "waker_thread",
]

#: ``async for`` yields to the event loop after this many messages returned without waiting.
FAIRNESS_BATCH = 64
#: Default length of the non-blocking check phase before a wait registers with the waker.
DEFAULT_SPIN_S = 20e-6
#: Name of the waker thread.
WAKER_THREAD_NAME = "chronicle-aio-waker"

_PARK_NS = int(PARK_SLICE_S * 1e9)  # one park slice while waits exist: re-registers, notices closed readers
_IDLE_PARK_NS = 60 * 1_000_000_000  # nothing awaited: sleep on the doorbell alone
_STATE_IDX = L.CTL_WRITER_STATE_OFFSET // 4
_monotonic = time.monotonic
log = logging.getLogger("chronicle_async")


class _Watch:
    """One awaited reader, as captured on its event loop's thread when the wait registers.

    Holds the reader's mapped arrays, so the memory stays mapped even if the reader is
    closed (or moves to another segment) while the waker thread still parks on it.
    """

    __slots__ = ("ctl_i32", "cursor", "idx", "keep", "key", "reader", "row", "seg_i32")

    def __init__(self, reader: Any):
        c = reader.cursor
        c.check_open()
        self.reader = reader
        self.cursor = c
        seg_arr, ctl_arr, self.seg_i32 = c.mappings()
        self.keep = (seg_arr, ctl_arr)  # mapped for as long as the waker may park on them
        self.ctl_i32 = c.control_words[0]
        self.idx = c.offset >> 2
        self.key = c.wait_key()  # readers of one queue waiting at the same record share one futex entry
        self.row = np.zeros(T.SRC_FIELDS, np.int64)
        c.to_row(self.row)
        self.row[T.SRC_STATE] = T.SRC_ACTIVE


class _Wait:
    """A registration: one future waiting for data on any of ``watches``."""

    __slots__ = ("close_aware", "future", "loop", "was_open", "watches")

    def __init__(self, watches: list[_Watch], loop: asyncio.AbstractEventLoop, future: asyncio.Future, close_aware: bool):
        self.watches = watches
        self.loop = loop
        self.future = future
        self.close_aware = close_aware
        self.was_open = close_aware and bool(watches) and watches[0].ctl_i32[_STATE_IDX] == L.WRITER_STATE_OPEN

    def poll(self) -> Any:
        """True (data), False (the writer closed), a QueueClosedError, or None (keep waiting). Waker thread."""
        for w in self.watches:
            if w.cursor.closed:
                return QueueClosedError(f"reader {w.reader.name!r} of {w.reader.path} was closed while awaited")
            if w.seg_i32[w.idx]:
                return True
        if self.was_open and self.watches[0].ctl_i32[_STATE_IDX] == L.WRITER_STATE_CLOSED:
            return False
        return None


def _deliver(future: asyncio.Future, value: Any) -> None:
    """Complete ``future`` on its loop (a no-op if it is already done, e.g. cancelled)."""
    if future.done():
        return
    if isinstance(value, BaseException):
        future.set_exception(value)
    else:
        future.set_result(value)


class _Waker:
    """The process's waker: a registration table, a doorbell ring, and the thread parked on both."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # the table, and the ring's single producer side
        self._waits: dict[int, _Wait] = {}
        self._next_key = 0
        self._generation = 0  # bumped on every table change: the thread rebuilds its futex set
        self._stopping = False
        self._ring = SpscRing(16, L.RING_SLOT_ALIGNMENT)  # only the doorbell carries meaning
        self._bell = self._ring.buffer
        self._empty = np.zeros(8, np.uint8)  # the doorbell push carries no meaning
        self.parks = 0  # times the thread went to sleep (tests, diagnostics)
        self.outcomes = np.zeros(PARK_OUTCOMES, np.int64)  # how those parks ended (park_counts())
        self.thread = threading.Thread(target=self._run, name=WAKER_THREAD_NAME, daemon=True)
        self.thread.start()

    # -- event-loop side -----------------------------------------------------------------------

    def add(self, wait: _Wait) -> int:
        with self._lock:
            if self._stopping:
                raise QueueClosedError("the asyncio waker is shut down (the interpreter is exiting)")
            key = self._next_key
            self._next_key += 1
            self._waits[key] = wait
            self._generation += 1
            self._ring_locked()
        return key

    def remove(self, key: int) -> None:
        """Drop a registration the waker has not completed (timeout, hold, cancellation)."""
        with self._lock:
            if self._waits.pop(key, None) is None:
                return  # already completed by the waker: nothing to re-park for
            self._generation += 1
            self._ring_locked()

    def poke(self) -> None:
        """Make the thread look at every registration now (e.g. after a reader was closed)."""
        with self._lock:
            self._ring_locked()

    def _ring_locked(self) -> None:
        # A full ring means the thread has not drained it yet, so it will look again anyway.
        RG.py_push(self._bell, self._empty, True)

    def size(self) -> int:
        with self._lock:
            return len(self._waits)

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            self._ring_locked()
        self.thread.join(timeout=2.0)

    # -- the waker thread ----------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            try:
                self._serve()
                return
            except Exception:
                log.exception("the asyncio waker thread failed; restarting it")
                time.sleep(0.01)

    def _serve(self) -> None:
        bell = self._bell
        scratch = np.zeros(T.SCRATCH_LENGTH, np.uint8)
        sink = np.zeros(self._ring.slot_size, np.uint8)
        table = np.zeros((0, T.SRC_FIELDS), np.int64)
        _keepalive: list[_Watch] = []  # keeps the arrays whose addresses `table` holds alive
        items: list[tuple[int, _Wait]] = []
        seen_generation = -1
        while True:
            while RG.py_pop(bell, sink):  # drain the doorbell: every push means "look again"
                pass
            with self._lock:
                if self._stopping:
                    return
                if self._generation != seen_generation:
                    seen_generation = self._generation
                    items = list(self._waits.items())
                    table, _keepalive = self._build_table(items)
            fired = False
            for key, wait in items:
                try:
                    result = wait.poll()
                except Exception as e:  # noqa: BLE001 - never let the thread die
                    result = e
                if result is not None:
                    fired = True
                    self._complete(key, wait, result)
            if fired:
                continue  # rebuild the futex set without the completed waits
            park_ns = _PARK_NS if items else _IDLE_PARK_NS
            self.outcomes[K.py_park(table, bell, scratch, park_ns)] += 1
            self.parks += 1

    @staticmethod
    def _build_table(items: list[tuple[int, _Wait]]) -> tuple[np.ndarray, list[_Watch]]:
        rows: dict[tuple, _Watch] = {}
        for _key, wait in items:
            for w in wait.watches:
                if not w.cursor.closed:
                    rows.setdefault(w.key, w)
        holders = list(rows.values())
        table = np.zeros((len(holders), T.SRC_FIELDS), np.int64)
        for i, w in enumerate(holders):
            table[i] = w.row
        return table, holders

    def _complete(self, key: int, wait: _Wait, result: Any) -> None:
        with self._lock:
            if self._waits.pop(key, None) is None:
                return  # the coroutine already gave up (timeout, cancellation)
            self._generation += 1
        try:
            wait.loop.call_soon_threadsafe(_deliver, wait.future, result)
        except RuntimeError:  # its event loop is closed: nobody is waiting any more
            pass


_waker: _Waker | None = None
_waker_lock = threading.Lock()


def _get_waker() -> _Waker:
    global _waker
    w = _waker
    if w is None:
        with _waker_lock:
            w = _waker
            if w is None:
                w = _waker = _Waker()
    return w


def _reset_after_fork() -> None:
    global _waker, _waker_lock
    _waker = None  # its thread does not exist in the child; the child starts its own on first use
    _waker_lock = threading.Lock()


def _stop_at_exit() -> None:
    w = _waker
    if w is not None:
        w.stop()


os.register_at_fork(after_in_child=_reset_after_fork)
atexit.register(_stop_at_exit)


def poke() -> None:
    """Ask the waker (if running) to re-check every registration now. Used after closing a reader."""
    w = _waker
    if w is not None:
        w.poke()


def registered_waits() -> int:
    """How many waits are registered with the waker right now (0 if it never started)."""
    w = _waker
    return 0 if w is None else w.size()


def park_counts() -> ParkCounts:
    """How the waker thread's parks ended (:class:`~chronicle_async.ParkCounts`); ``missed`` must stay 0."""
    w = _waker
    return ParkCounts() if w is None else ParkCounts.from_array(w.outcomes)


def waker_thread() -> threading.Thread | None:
    """The waker thread of this process, or None if no wait has needed it yet."""
    w = _waker
    return None if w is None else w.thread


# -- waiting -------------------------------------------------------------------------------------


def check_timeout(timeout: Any) -> None:
    if timeout is None:
        return
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise ArgumentTypeError(f"timeout must be None or a number of seconds, not {type(timeout).__name__}")
    if math.isnan(timeout) or timeout < 0:
        raise InvalidArgumentError(f"timeout must be None or a non-negative number of seconds, got {timeout!r}")


def check_spin(spin: Any) -> float:
    if isinstance(spin, bool) or not isinstance(spin, (int, float)):
        raise ArgumentTypeError(f"spin must be a number of seconds, not {type(spin).__name__}")
    if math.isnan(spin) or spin < 0 or spin > 0.01:
        raise InvalidArgumentError(f"spin must be between 0 and 0.01 seconds (it runs on the event loop), got {spin!r}")
    return float(spin)


async def wait_reader(reader: Any, timeout: float | None = None, spin: float = DEFAULT_SPIN_S) -> bool:
    """``wait_async`` on a :class:`QueueReader` (see ``chronicle_async.control.wait_async``)."""
    check_timeout(timeout)
    return await _wait_reader(reader, timeout, check_spin(spin))


async def wait_fanin(fanin: Any, timeout: float | None = None, spin: float = DEFAULT_SPIN_S) -> bool:
    """``wait_async`` on a :class:`FanInReader` (see ``chronicle_async.control.wait_async``)."""
    check_timeout(timeout)
    return await _wait_fanin(fanin, timeout, check_spin(spin))


async def _wait_reader(reader: Any, timeout: float | None, spin: float) -> bool:
    c = reader.cursor
    c.check_open()
    if c.has_data():
        return True
    if c.gone is not None:  # the queue was deleted under it: nothing will come; never a hot loop
        await asyncio.sleep(GONE_WAIT_S if timeout is None else min(timeout, GONE_WAIT_S))
        return False
    if spin and timeout != 0:
        end = _monotonic() + (spin if timeout is None else min(spin, timeout))
        while _monotonic() < end:
            await asyncio.sleep(0)
            c.check_open()
            if c.has_data():
                return True
    if timeout == 0:
        return False
    return await _register([_Watch(reader)], timeout, None, close_aware=True)


async def _wait_fanin(fanin: Any, timeout: float | None, spin: float) -> bool:
    hold = fanin.poll()
    if hold == 0.0:
        return True
    if spin and timeout != 0:
        end = _monotonic() + (spin if timeout is None else min(spin, timeout))
        while _monotonic() < end:
            await asyncio.sleep(0)
            hold = fanin.poll()
            if hold == 0.0:
                return True
    if timeout == 0:
        return False
    watches = [_Watch(r) for r in fanin.unbuffered_readers()]
    return await _register(watches, timeout, hold, close_aware=False)


async def _register(watches: list[_Watch], timeout: float | None, ready_after: float | None, *, close_aware: bool) -> bool:
    """Register a wait with the waker and await it; the registration never outlives this call."""
    loop = asyncio.get_running_loop()
    future = loop.create_future()
    wait = _Wait(watches, loop, future, close_aware)
    timers = []
    if timeout is not None:
        timers.append(loop.call_later(timeout, _deliver, future, False))
    if ready_after is not None:
        timers.append(loop.call_later(ready_after, _deliver, future, True))
    waker = _get_waker()
    key = waker.add(wait)
    try:
        return await future
    finally:
        for t in timers:
            t.cancel()
        waker.remove(key)


# -- async iteration -----------------------------------------------------------------------------


async def yield_to_loop() -> None:
    """Let the event loop run other tasks once (between bursts of messages)."""
    await asyncio.sleep(0)


async def next_from_reader(reader: Any) -> Any:
    """The next message of a :class:`QueueReader`, waiting for it without blocking the event loop."""
    stalls = 0
    while True:
        m = reader.next()
        if m is not None:
            return m
        if await _wait_reader(reader, None, DEFAULT_SPIN_S):
            # Data at the position, yet next() found none: a segment end whose next segment
            # is not there yet (a gap left by deletion). Do not spin the loop on it.
            stalls += 1
            if stalls > 2:
                await asyncio.sleep(0.001)
        # False: the writer closed during the wait. Keep waiting for a new writer.


async def next_from_reader_within(reader: Any, timeout: float | None) -> Any:
    """:func:`next_from_reader` with a deadline: the next message, or None once ``timeout`` seconds pass."""
    if timeout is None:
        return await next_from_reader(reader)
    check_timeout(timeout)
    m = reader.next()
    if m is not None:
        return m
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        remaining = deadline - loop.time()
        if remaining <= 0:
            return None
        if await _wait_reader(reader, remaining, DEFAULT_SPIN_S):
            m = reader.next()
            if m is not None:
                return m
            await asyncio.sleep(0.001)  # a segment end whose next segment is not there yet
        else:
            m = reader.next()
            if m is not None:
                return m


async def next_from_fanin(fanin: Any) -> tuple[int, Any]:
    """The next ``(source, message)`` of a :class:`FanInReader`, waiting without blocking the event loop."""
    stalls = 0
    while True:
        item = fanin.next()
        if item is not None:
            return item
        if await _wait_fanin(fanin, None, DEFAULT_SPIN_S):
            stalls += 1
            if stalls > 2:
                await asyncio.sleep(0.001)


class ReaderAsyncIterator:
    """``async for msg in reader``: every message, waiting between them; never ends on its own.

    Made by ``QueueReader.__aiter__`` (for a QueueReader only)."""

    __slots__ = ("_reader", "_streak")

    def __init__(self, reader: Any):
        self._reader = reader
        self._streak = 0

    def __aiter__(self) -> ReaderAsyncIterator:
        return self

    async def __anext__(self) -> Any:
        r = self._reader
        m = r.next()
        if m is not None:
            self._streak += 1
            if self._streak < FAIRNESS_BATCH:
                return m
            self._streak = 0
            await asyncio.sleep(0)  # let other tasks run between bursts
            return m
        self._streak = 0
        return await next_from_reader(r)


class FanInAsyncIterator:
    """``async for source, msg in fanin``: the merged stream, waiting between messages; never ends on its own.

    Made by ``FanInReader.__aiter__`` (for a FanInReader only)."""

    __slots__ = ("_fanin", "_streak")

    def __init__(self, fanin: Any):
        self._fanin = fanin
        self._streak = 0

    def __aiter__(self) -> FanInAsyncIterator:
        return self

    async def __anext__(self) -> tuple[int, Any]:
        f = self._fanin
        item = f.next()
        if item is not None:
            self._streak += 1
            if self._streak < FAIRNESS_BATCH:
                return item
            self._streak = 0
            await asyncio.sleep(0)
            return item
        self._streak = 0
        return await next_from_fanin(f)

