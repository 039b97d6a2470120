"""PassiveDiscovery: follow one queue's writer through its life, as a stream of events.

A service that reads one queue written by another process needs to know when the
queue appears, when its writer dies or closes, when a new writer session starts,
and when the queue is deleted. ``PassiveDiscovery`` reports exactly that, as an
async iterator of events, and never does anything about it (no safety actions):

.. code-block:: python

    async with PassiveDiscovery("/dev/shm/bus/prices", "risk") as events:
        async for ev in events:
            match ev:
                case Waiting(path, why): log.info("waiting for %s: %s", path, why)
                case Connected(reader): start_consuming(reader)   # e.g. `async for m in reader`
                case Disconnected(reason, reader): log.warning("writer gone: %s", reason)

Events (frozen dataclasses):

- :class:`Waiting` ``(path, why)``: no readable queue at ``path`` (the folder or its
  ``control.cq`` does not exist yet, or the reader name is held by another process,
  or the queue is unreadable for ``why``). Reported once per waiting period.
- :class:`Connected` ``(reader)``: a reader is open on the queue and its writer epoch is
  acknowledged. Reported when the reader opens, and again after each
  ``EPOCH_CHANGED`` (the same reader object: its seqs simply continue) or when a
  disconnect reason clears by itself (a stale heartbeat that came back).
- :class:`Disconnected` ``(reason, reader)``: :meth:`QueueReader.detect_disconnect`
  (checked every ``poll_interval`` seconds, off the event loop) found ``reason``.

Transitions:

- ``WRITER_DIED`` / ``WRITER_CLOSED`` / ``HEARTBEAT_STALE`` / ``SEGMENT_MISSING``: the
  reader stays open (you may keep reading what was written); the reason is reported
  when it first appears or changes. A dead or closed session never comes back: after
  ``WRITER_DIED`` / ``WRITER_CLOSED`` only ``EPOCH_CHANGED`` (a new writer) or
  ``QUEUE_DELETED`` is reported (a new writer holds the lock, and looks healthy or
  has no heartbeat yet, for a moment before it bumps the epoch). ``SEGMENT_MISSING`` is reported only if two checks in a row see it (a
  reader moving to its next segment, or a folder being deleted file by file, would
  otherwise flash it).
- ``EPOCH_CHANGED`` (a new writer session): ``Disconnected(EPOCH_CHANGED, reader)``, then
  :meth:`QueueReader.acknowledge_epoch`, then ``Connected(reader)`` with the same reader.
- ``QUEUE_DELETED`` (``control.cq`` gone, or replaced by another queue's):
  ``Disconnected(QUEUE_DELETED, reader)``; when you ask for the next event the reader
  is closed, and ``Waiting`` follows. A re-created queue gets a new reader object.

**Reading.** The reader in ``Connected`` is the one you read from (``ev.reader.next()``,
``async for msg in ev.reader``, ``await ev.reader.wait_async()``); PassiveDiscovery never
calls ``next()`` or ``commit()``. It owns the reader's lifetime: it closes it when the
queue is deleted and when the ``async with`` block ends (a task awaiting it then gets
:class:`~chronicle_async.QueueClosedError`); do not close it yourself (the iteration would
raise QueueClosedError). Use the reader from one task at a time; PassiveDiscovery only
reads its liveness words, from an executor thread.

**First connection.** If the writer is in the middle of starting (it holds the lock but
has not marked the queue open yet), the reader waits up to ``ttl`` for it before
``Connected``. A queue whose writer is already dead or closed gives ``Connected`` and
then, at once, the matching ``Disconnected``.

**Not blocking the event loop.** Opening and validating the reader, the liveness checks
and the folder scans run in executor threads. Waiting for the queue to appear is
event-driven: an inotify watch (``watchfiles.awatch``, non-recursive) on the nearest
existing folder on the way to ``path``, moved deeper as folders appear, with a slow
safety re-check. If inotify is unavailable (no watches left, an unsupported file
system), it logs a warning and polls every ``poll_interval`` seconds instead.
"""
from __future__ import annotations

import asyncio
import collections
import logging
import os
import time
from dataclasses import dataclass
from typing import Any, Self

from ..queue import args as A
from ..queue import files as F
from ..queue.config import Start, WaitStrategy
from .._errors import (
    ArgumentTypeError,
    ChronicleError,
    InvalidArgumentError,
    QueueClosedError,
    QueueNotFoundError,
)
from ..queue.reader import QueueReader
from ..queue.liveness import DisconnectReason

try:
    from watchfiles import awatch
except ImportError:  # pragma: no cover - watchfiles is a dependency; polling still works without it
    awatch = None  # type: ignore[assignment]

__all__ = ["Connected", "Disconnected", "Event", "PassiveDiscovery", "Waiting"]

log = logging.getLogger("chronicle_async")

#: While inotify watches the way to the queue, still look this often (covers a missed event).
SAFETY_RECHECK_S = 2.0
#: inotify events are gathered for this long (ms) before the watcher reports them.
_WATCH_STEP_MS = 10
#: How often the first connection looks whether a starting writer has marked the queue open.
_SETTLE_STEP_S = 0.005


@dataclass(frozen=True)
class Waiting:
    """No readable queue at ``path`` yet; ``why`` says what is missing."""

    path: str
    why: str


@dataclass(frozen=True)
class Connected:
    """``reader`` is open on the queue, at the current writer epoch. Read from it."""

    reader: QueueReader


@dataclass(frozen=True)
class Disconnected:
    """``reader``'s writer is gone for ``reason`` (a report only: nothing was done about it)."""

    reason: DisconnectReason
    reader: QueueReader


#: Any event PassiveDiscovery yields.
Event = Waiting | Connected | Disconnected

_AWAY = (DisconnectReason.WRITER_DIED, DisconnectReason.WRITER_CLOSED)


def _control_identity(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(F.control_path(path))
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


class _DirWatch:
    """An inotify watch (watchfiles.awatch, non-recursive) of one folder; ``changed`` is set per batch."""

    def __init__(self, folder: str):
        self.folder = folder
        self.changed = asyncio.Event()
        self.error: BaseException | None = None
        self._stop = asyncio.Event()
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        """Start watching; raises if the watch cannot be set up (then poll instead)."""
        if awatch is None:
            raise OSError("watchfiles is not installed")
        self._task = asyncio.get_running_loop().create_task(self._run())
        # The task's first step builds the watcher (registering the inotify watch) synchronously,
        # before its first await: after one turn of the loop, no later change can be missed.
        await asyncio.sleep(0)
        if self.error is not None:
            await self.stop()
            raise self.error

    async def _run(self) -> None:
        try:
            async for _changes in awatch(
                self.folder, watch_filter=None, stop_event=self._stop, step=_WATCH_STEP_MS, recursive=False,
                yield_on_timeout=False,
            ):
                self.changed.set()
        except asyncio.CancelledError:
            raise
        except BaseException as e:  # noqa: BLE001 - reported through .error, then polling takes over
            self.error = e
        self.changed.set()  # the watch ended (its folder was deleted, or it failed): look again

    @property
    def alive(self) -> bool:
        return self._task is not None and not self._task.done()

    async def stop(self) -> None:
        self._stop.set()
        t = self._task
        if t is not None and not t.done():
            t.cancel()
            # the watch thread notices the stop event within a step; do not wait for ever
            await asyncio.wait({t}, timeout=1.0)


class PassiveDiscovery:
    """Events for one queue: :class:`Waiting`, :class:`Connected`, :class:`Disconnected`.

    ``PassiveDiscovery(path, reader_name, *, start="committed", ttl=1.0,
    poll_interval=0.1, wait_strategy=..., spin_time=20e-6)``: ``reader_name`` (None for
    an anonymous reader), ``start``, ``wait_strategy`` and ``spin_time`` are passed to the
    :class:`QueueReader` it opens; ``ttl`` (seconds) to ``detect_disconnect``;
    ``poll_interval`` (seconds) is how often it checks a connected reader, and how often
    it polls for the queue when inotify cannot tell it.

    An async iterator, and an async context manager that closes the reader it opened.
    The iteration never ends on its own; leave it with ``break`` or cancel its task.
    Iterate it from one task. See the module notes for every transition.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        reader_name: str | None,
        *,
        start: Start | str = Start.COMMITTED,
        ttl: float = 1.0,
        poll_interval: float = 0.1,
        wait_strategy: WaitStrategy | str = WaitStrategy.SPIN_THEN_PARK,
        spin_time: float = 20e-6,
    ):
        self._path = A.check_path(path)
        self._name = A.check_name(reader_name)
        self._start = A.coerce_enum(Start, start, "start")
        if isinstance(ttl, bool) or not isinstance(ttl, (int, float)):
            raise ArgumentTypeError(f"ttl must be a number of seconds, not {type(ttl).__name__}")
        A.check_ttl(ttl)
        self._ttl = float(ttl)
        self._poll = A.check_seconds("poll_interval", poll_interval)
        self._strategy = A.coerce_enum(WaitStrategy, wait_strategy, "wait_strategy")
        self._spin_time = A.check_nonnegative_seconds("spin_time", spin_time)

        self._reader: QueueReader | None = None
        self._identity: tuple[int, int] | None = None  # (st_dev, st_ino) of the control file we opened
        self._pending: collections.deque[Event] = collections.deque()
        self._closed = False
        # waiting state
        self._announced = False
        self._watch: _DirWatch | None = None
        self._inotify = True
        self._warned = False
        # connected state
        self._reason: DisconnectReason | None = None
        self._suspect_missing = False
        self._close_reader_next = False
        self._next_check = 0.0
        self._inflight: asyncio.Future | None = None

    # -- public face -------------------------------------------------------------------------

    @property
    def path(self) -> str:
        return self._path

    @property
    def reader(self) -> QueueReader | None:
        """The reader currently open (None while waiting)."""
        return self._reader

    @property
    def closed(self) -> bool:
        return self._closed

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Event:
        while not self._pending:
            if self._closed:
                raise StopAsyncIteration
            if self._reader is None:
                await self._step_waiting()
            else:
                await self._step_connected()
        return self._pending.popleft()

    async def __aenter__(self) -> Self:
        if self._closed:
            raise QueueClosedError(f"this PassiveDiscovery of {self._path} is closed")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop: close the reader this object opened and the folder watch. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._pending.clear()
        if self._inflight is not None and not self._inflight.done():
            await asyncio.wait({self._inflight}, timeout=5.0)  # a check still reading the reader's words
        await self._stop_watch()
        self._drop_reader()

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("connected" if self._reader is not None else "waiting")
        return f"<PassiveDiscovery {self._path} reader={self._name!r} {state}>"

    # -- helpers -----------------------------------------------------------------------------

    async def _in_thread(self, fn: Any, *args: Any) -> Any:
        """Run blocking file work in the default executor; a cancelled caller leaves it to finish."""
        fut = asyncio.get_running_loop().run_in_executor(None, fn, *args)
        self._inflight = fut
        try:
            return await asyncio.shield(fut)
        finally:
            if fut.done() and self._inflight is fut:  # a cancelled caller leaves it for aclose() to await
                self._inflight = None

    def _drop_reader(self) -> None:
        r, self._reader = self._reader, None
        self._reason = None
        self._suspect_missing = False
        self._close_reader_next = False
        if r is not None and not r.closed:
            try:
                r.close()
            except InvalidArgumentError as e:  # the application handed it to a HotLoop, which owns it now
                log.warning("PassiveDiscovery of %s: not closing its reader: %s", self._path, e)
                return
            from ..queue import waits as _waits

            _waits.poke()  # a task awaiting this reader learns it was closed now, not a park slice later

    # -- waiting -----------------------------------------------------------------------------

    def _try_open(self) -> tuple[QueueReader | None, str, bool, str]:
        """Executor thread: ``(reader or None, why, is_not_found, nearest existing folder)``."""
        try:
            r = QueueReader(self._path, self._name, self._start, wait_strategy=self._strategy, spin_time=self._spin_time)
        except FileNotFoundError as e:  # QueueNotFoundError, or files vanishing under a deletion
            why = str(e) if isinstance(e, QueueNotFoundError) else f"the queue is being deleted ({e})"
            return None, why, True, F.nearest_existing_dir(self._path)
        except (ArgumentTypeError, InvalidArgumentError):
            raise
        except (ChronicleError, OSError) as e:  # a name in use, a queue half deleted, a damaged file
            return None, f"{type(e).__name__}: {e}", False, F.nearest_existing_dir(self._path)
        try:
            self._settle(r)
            identity = _control_identity(self._path)
        except BaseException:
            r.close()
            raise
        self._identity = identity
        return r, "", False, ""

    def _settle(self, r: QueueReader) -> None:
        """Executor thread: let a writer that is starting finish, then accept its epoch."""
        give_up = time.monotonic() + self._ttl
        while time.monotonic() < give_up:
            st = r.writer_status(self._ttl)
            if not st.lock_held or st.state == "open":
                break
            time.sleep(_SETTLE_STEP_S)  # the lock is held but the queue not yet marked open
        r.acknowledge_epoch()

    async def _open_reader(self) -> tuple[QueueReader | None, str, bool, str]:
        fut = asyncio.get_running_loop().run_in_executor(None, self._try_open)
        try:
            return await asyncio.shield(fut)
        except asyncio.CancelledError:
            # the thread may still open a reader: close it when it does, or it would hold the name
            def _close(f: asyncio.Future) -> None:
                if not f.cancelled() and f.exception() is None and f.result()[0] is not None:
                    f.result()[0].close()

            fut.add_done_callback(_close)
            raise

    async def _step_waiting(self) -> None:
        if self._watch is not None:
            self._watch.changed.clear()  # events from now on mean "look again"
        reader, why, not_found, near = await self._open_reader()
        if self._closed:
            if reader is not None:
                reader.close()
            return
        if reader is not None:
            await self._stop_watch()
            self._reader = reader
            self._announced = False
            self._reason = None
            self._suspect_missing = False
            self._next_check = 0.0  # check the writer at once
            self._pending.append(Connected(reader))
            return
        if not_found and self._inotify and (self._watch is None or self._watch.folder != near or not self._watch.alive):
            await self._restart_watch(near)
            if self._watch is not None:
                return  # look again now that the watch is in place: nothing created meanwhile is missed
        if not self._announced:
            self._announced = True
            self._pending.append(Waiting(self._path, why))
            return
        if not_found and self._watch is not None:
            # A timer sets the event rather than asyncio.wait_for, whose cancellation can hang
            # on Python 3.11 when it races the timeout.
            changed = self._watch.changed
            timer = asyncio.get_running_loop().call_later(SAFETY_RECHECK_S, changed.set)
            try:
                await changed.wait()
            finally:
                timer.cancel()
        else:
            await asyncio.sleep(self._poll)

    async def _restart_watch(self, folder: str) -> None:
        await self._stop_watch()
        w = _DirWatch(folder)
        try:
            await w.start()
        except Exception as e:  # noqa: BLE001 - any failure to watch means: poll
            self._inotify = False
            if not self._warned:
                self._warned = True
                log.warning(
                    "PassiveDiscovery of %s: cannot watch %s with inotify (%s: %s); polling every %.3g s instead",
                    self._path, folder, type(e).__name__, e, self._poll,
                )
            return
        self._watch = w

    async def _stop_watch(self) -> None:
        w, self._watch = self._watch, None
        if w is not None:
            await w.stop()

    # -- connected ---------------------------------------------------------------------------

    def _check(self, r: QueueReader) -> DisconnectReason | None:
        """Executor thread: the disconnect reason, with a replaced control file counting as deleted."""
        ident = _control_identity(self._path)
        if ident is None or ident != self._identity:
            return DisconnectReason.QUEUE_DELETED
        return r.detect_disconnect(self._ttl)

    async def _step_connected(self) -> None:
        r = self._reader
        assert r is not None
        if self._close_reader_next:
            self._drop_reader()
            return
        delay = self._next_check - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        if self._closed or self._reader is not r:
            return
        self._next_check = time.monotonic() + self._poll
        position = r.position
        reason = await self._in_thread(self._check, r)
        if self._closed or self._reader is not r:
            return
        if reason is DisconnectReason.SEGMENT_MISSING:
            # Debounce: it may be the reader moving on (checked from another thread) or a folder
            # being deleted file by file; report it only if the next check agrees.
            if not self._suspect_missing or r.position != position:
                self._suspect_missing = True
                return
        else:
            self._suspect_missing = False
        self._transition(r, reason)

    def _transition(self, r: QueueReader, reason: DisconnectReason | None) -> None:
        prev = self._reason
        if prev in _AWAY and reason is not DisconnectReason.EPOCH_CHANGED and reason is not DisconnectReason.QUEUE_DELETED:
            # A session that died or closed never comes back: only a new epoch (a new writer) or
            # the queue's deletion ends this state. A new writer holds the lock (so the check says
            # "healthy", or "heartbeat stale") for a moment before it bumps the epoch; reporting
            # Connected then would resume on the dead session.
            return
        if reason is None:
            if prev is not None:
                self._reason = None
                self._pending.append(Connected(r))
            return
        if reason is prev:
            return
        if reason is DisconnectReason.EPOCH_CHANGED:
            self._pending.append(Disconnected(reason, r))
            r.acknowledge_epoch()
            self._reason = None
            self._pending.append(Connected(r))
            return
        self._reason = reason
        self._pending.append(Disconnected(reason, r))
        if reason is DisconnectReason.QUEUE_DELETED:
            self._close_reader_next = True
