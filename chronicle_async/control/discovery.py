"""Discovery: find the queues under a bus root with inotify and hand their readers to a HotLoop.

A bus root is a folder whose immediate sub-folders are queues. A queue is
*ready* once ``<queue>/control.cq`` exists: ``create_queue`` writes segment 0
first and links the control file in last, so a reader that sees it finds a
complete queue. :class:`Discovery` keeps a :class:`~chronicle_async.HotLoop`
reading every ready queue whose name matches its patterns:

1. it arms a watcher (``watchfiles.awatch``, recursive, inotify) on the root;
2. then scans the root once, so a queue created while the watcher was being
   armed is not missed (the scan and the events may both report it: handing
   over is idempotent);
3. then, for each batch of events about a depth-1 folder or a depth-2
   ``control.cq``, brings each queue named in the batch in line with the disk:
   a new ready queue is opened (``Queue.open_subscriber``) and handed over
   (``HotLoop.add_reader``); a deleted queue (its folder or its control file)
   is taken back (``HotLoop.remove_reader``) and its reader closed; a queue
   replaced under the same name (a new control file) is both.

A folder created before its control file is not polled: the watcher already
watches the new folder (it adds the watch before it reports the folder), so
the control file's creation arrives as an event of its own.

All file work and every HotLoop call (they may block briefly: command ring
back-pressure, waiting for the hot thread to let go of a reader) run in an
executor thread, one job per queue, never on the event loop. A job that is
still running when :meth:`Discovery.run` is cancelled finishes in its thread
and its result is still recorded, so no reader is ever lost between the two.

One queue that cannot be opened (a corrupt or truncated control file, no
permission, its reader name held by another process) is logged on the
``chronicle_async`` logger and skipped; it is tried again on its next event
(or the next rescan). It never stops discovery.

If inotify cannot be used (``inotify_init`` fails, the per-user watch limit is
reached), or with ``force_polling=True``, the watcher polls the tree every
``poll_interval`` seconds instead, with a ``RuntimeWarning`` saying so once.

Latency: a new queue's first message reaches the hot loop's handler a few
milliseconds after the writer created it (two watcher batches of ``step``
each, a thread hop, the open, the add), against 0.5-1 s for an application
that polls ``Queue.open_subscriber`` with sleeps.

When idle for ``rescan_interval`` seconds, the root is rescanned: a safety net
for events the kernel dropped (an inotify queue overflow is not reported by
watchfiles). Readers handed over stay with the hot loop when :meth:`run`
ends; running it again reconciles what changed meanwhile.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import fnmatch
import logging
import os
import threading
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import watchfiles

from ..queue import args as A
from ..queue.config import Start
from .._errors import (
    ArgumentTypeError,
    BackPressureError,
    InvalidArgumentError,
    QueueClosedError,
    QueueNotFoundError,
    QueuePermissionError,
)
from ..loop.hotloop import HotLoop
from ..queue.queue import Queue
from ..queue.reader import QueueReader
from ..hot import layout as L

log = logging.getLogger("chronicle_async")

_CONTROL = L.CONTROL_FILE_NAME
_RESTART_DELAY = 0.1  # seconds before re-arming a watcher that failed while running
_MAX_RESTART_DELAY = 5.0  # ... doubling up to this while it fails before delivering anything

#: ``(st_dev, st_ino, st_size, st_mtime_ns)`` of a control file: the first two identify the queue
#: (a queue deleted and re-created under the same name has a new control file), all four a failure.
_Signature = tuple[int, int, int, int]


@dataclass(frozen=True)
class _Entry:
    """A queue handed over: its reader now belongs to the hot loop, under ``source``."""

    path: str
    source: int
    reader: QueueReader
    ident: tuple[int, int]  # (st_dev, st_ino) of control.cq when it was opened


@dataclass(frozen=True)
class _Outcome:
    """What one job did to one queue (computed in an executor thread, applied on the loop)."""

    entry: _Entry | None  # the queue's entry afterwards (the old one when nothing changed)
    removed: bool = False  # an old reader was taken back and closed
    added: bool = False  # ``entry`` is a new hand-over
    error: BaseException | None = None  # opening or handing over failed: skipped until the next event
    signature: _Signature | None = None  # the control file's signature at that failure
    stuck: BaseException | None = None  # the old reader could not be taken back: the entry is kept
    fatal: BaseException | None = None  # the hot loop is closed: discovery cannot go on


class _WatcherUnavailable(Exception):
    """The file watcher could not be created (inotify missing or exhausted)."""

    def __init__(self, error: BaseException):
        super().__init__(str(error))
        self.error = error


def _patterns(name: str, value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    try:
        items = tuple(value)  # type: ignore[arg-type]
    except TypeError:
        raise ArgumentTypeError(f"{name} must be a str or an iterable of str (fnmatch patterns), not {type(value).__name__}") from None
    for p in items:
        if not isinstance(p, str):
            raise ArgumentTypeError(f"{name} must hold str patterns, not {type(p).__name__}")
    return items


def _ms(name: str, seconds: object) -> int:
    """Seconds (a positive float) to whole milliseconds for watchfiles, at least 1."""
    return max(1, round(A.check_seconds(name, seconds) * 1000))


def _signature(queue_dir: str) -> _Signature | None:
    """The control file's signature, or None if the queue is not ready (or gone)."""
    try:
        st = os.stat(os.path.join(queue_dir, _CONTROL))
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError:
        return (0, 0, 0, 0)  # there, but not stat-able (permissions): let the open say why
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


class Discovery:
    """Watch a bus root folder; hand every ready queue whose name matches to a HotLoop.

    ``root`` is the bus folder: each immediate sub-folder is a queue, and its
    name must match one of ``patterns`` and none of ``ignore`` (``fnmatch``,
    case-sensitive). Each queue is opened with
    ``Queue.open_subscriber(path, reader_name, start)`` and handed to
    ``hot_loop``; :attr:`queues` maps queue names to their source ids there.

    Durations are seconds. ``debounce`` is the longest the watcher groups a
    burst of events; ``step`` how long it waits for more once it saw one (both
    rounded to whole milliseconds, at least 1). ``force_polling``: None uses
    inotify and falls back to polling if inotify is unavailable; True always
    polls, every ``poll_interval``; False never polls (an unavailable inotify
    is an error). ``rescan_interval`` (None: never) rescans the root when the
    watcher has been quiet for that long. ``executor`` runs the blocking work
    (the event loop's default executor if None).

    Call :meth:`run` (it runs until cancelled) from a task; :meth:`wait_ready`,
    :meth:`wait_for_queue` and :meth:`wait_for_removal` let other coroutines
    follow it. Use it from one event loop.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        hot_loop: HotLoop,
        reader_name: str | None,
        *,
        patterns: str | Iterable[str] = ("*",),
        ignore: str | Iterable[str] = (),
        start: Start | str = "committed",
        debounce: float = 0.005,
        step: float = 0.001,
        force_polling: bool | None = None,
        poll_interval: float = 0.05,
        rescan_interval: float | None = 5.0,
        executor: concurrent.futures.Executor | None = None,
    ):
        self._root = A.check_path(root)
        if not isinstance(hot_loop, HotLoop):
            raise ArgumentTypeError(f"hot_loop must be a HotLoop, not {type(hot_loop).__name__}")
        self._reader_name = A.check_name(reader_name)
        self._patterns = _patterns("patterns", patterns)
        if not self._patterns:
            raise InvalidArgumentError("patterns is empty: no queue could ever match; use ('*',) for every queue")
        self._ignore = _patterns("ignore", ignore)
        self._start = A.coerce_enum(Start, start, "start")
        self._debounce_ms = _ms("debounce", debounce)
        self._step_ms = _ms("step", step)
        self._poll_ms = _ms("poll_interval", poll_interval)
        if force_polling is not None and not isinstance(force_polling, bool):
            raise ArgumentTypeError(f"force_polling must be True, False or None, not {type(force_polling).__name__}")
        self._force_polling = force_polling
        self._rescan_ms = 0 if rescan_interval is None else _ms("rescan_interval", rescan_interval)
        if executor is not None and not isinstance(executor, concurrent.futures.Executor):
            raise ArgumentTypeError(f"executor must be a concurrent.futures.Executor or None, not {type(executor).__name__}")
        self._executor = executor
        if not os.path.exists(self._root):
            raise QueueNotFoundError(f"bus root {self._root} does not exist: create the folder first (queues are its sub-folders)")
        if not os.path.isdir(self._root):
            raise InvalidArgumentError(f"bus root {self._root} is a file, not a folder: pass the folder that holds the queues")
        self._hot = hot_loop
        self._prefix = os.path.join(self._root, "")
        self._entries: dict[str, _Entry] = {}
        self._failed: dict[str, _Signature | None] = {}  # name -> control file signature at its last failure
        self._inflight: dict[str, asyncio.Future[_Outcome]] = {}
        self._fatal: BaseException | None = None
        self._changed = asyncio.Event()
        self._ready = False
        self._running = False
        self._polling: bool | None = None
        self._warned = False
        #: Counters, for tests, benchmarks and monitoring.
        self.handed_over = 0  # queues handed to the hot loop
        self.removed = 0  # readers taken back (queue deleted or replaced)
        self.failures = 0  # queues that could not be opened or handed over (each attempt)
        self.batches = 0  # watcher batches handled (a rescan after a quiet period counts as one)
        self.generation = 0  # bumped on every change of ``queues`` and when ready

    # -- what callers see ----------------------------------------------------------------------

    @property
    def root(self) -> str:
        return self._root

    @property
    def queues(self) -> dict[str, int]:
        """``{queue name: source id in the hot loop}`` for the queues handed over (a copy)."""
        return {name: e.source for name, e in self._entries.items()}

    @property
    def polling(self) -> bool | None:
        """True while the watcher polls, False while it uses inotify, None when not running."""
        return self._polling

    @property
    def ready(self) -> bool:
        """True once :meth:`run` has armed its watcher and handed over the queues already there."""
        return self._ready

    def matches(self, name: str) -> bool:
        """True if a queue called ``name`` would be handed over (``patterns`` minus ``ignore``)."""
        return any(fnmatch.fnmatchcase(name, p) for p in self._patterns) and not any(
            fnmatch.fnmatchcase(name, p) for p in self._ignore
        )

    async def wait_ready(self) -> None:
        """Wait until the watcher is armed and the initial scan is handed over."""
        await self._wait_until(lambda: self._ready)

    async def wait_for_queue(self, name: str) -> int:
        """Wait until queue ``name`` is handed over; return its source id. Bound it with ``asyncio.wait_for``."""
        self._check_queue_name(name)
        await self._wait_until(lambda: name in self._entries)
        return self._entries[name].source

    async def wait_for_removal(self, name: str) -> None:
        """Wait until queue ``name`` is not (or no longer) handed over."""
        self._check_queue_name(name)
        await self._wait_until(lambda: name not in self._entries)

    @staticmethod
    def _check_queue_name(name: object) -> None:
        if not isinstance(name, str):
            raise ArgumentTypeError(f"a queue name is a str (the folder's name), not {type(name).__name__}")

    async def _wait_until(self, predicate: Callable[[], bool]) -> None:
        while not predicate():
            await self._changed.wait()

    def _notify(self) -> None:
        self.generation += 1
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    # -- running -------------------------------------------------------------------------------

    async def run(self) -> None:
        """Hand over the queues already there, then follow the root's events until cancelled.

        Raises ``QueueNotFoundError`` if the root does not exist (or is deleted),
        ``QueueClosedError`` if the hot loop is closed, and the watcher's error if
        no watcher can be created (inotify unavailable with ``force_polling=False``,
        or polling failing too).
        """
        if self._running:
            raise InvalidArgumentError("this Discovery is already running: call run() once at a time")
        self._running = True
        self._fatal = None
        polling = self._force_polling is True
        reason = "force_polling=True"
        delay = _RESTART_DELAY
        try:
            while True:
                if polling:
                    self._warn_polling(reason)
                self._polling = polling
                batches = self.batches
                try:
                    await self._watch(polling)
                except _WatcherUnavailable as e:
                    if polling or self._force_polling is False:
                        raise e.error from None
                    reason = f"inotify is unavailable ({type(e.error).__name__}: {e.error})"
                    polling = True
                    continue
                # The watcher failed while running: re-arm it, backing off while it keeps failing.
                delay = _RESTART_DELAY if self.batches > batches else min(2 * delay, _MAX_RESTART_DELAY)
                await asyncio.sleep(delay)
        finally:
            self._running = False
            self._polling = None
            if self._ready:
                self._ready = False
                self._notify()

    def _warn_polling(self, reason: str) -> None:
        if self._warned:
            return
        self._warned = True
        warnings.warn(
            f"chronicle_async Discovery of {self._root}: {reason}; polling the folder tree every "
            f"{self._poll_ms} ms instead of inotify, so new queues are found up to that much later "
            "and every poll walks the whole tree",
            RuntimeWarning,
            stacklevel=3,
        )

    async def _watch(self, polling: bool) -> None:
        """Arm one watcher, scan, then handle its batches. Returns when the watcher must be re-armed."""
        stop = threading.Event()
        batches = watchfiles.awatch(
            self._root,
            watch_filter=self._accept,
            debounce=self._debounce_ms,
            step=self._step_ms,
            stop_event=stop,
            rust_timeout=self._rescan_ms,
            yield_on_timeout=self._rescan_ms > 0,
            force_polling=polling,
            poll_delay_ms=self._poll_ms,
            recursive=True,
        )
        # The generator's first step creates the watcher (watching from then on) before it first
        # waits; run it now, then scan: a queue created in between is seen by one or the other.
        first = asyncio.ensure_future(batches.__anext__())
        try:
            await asyncio.sleep(0)
            if first.done():
                self._batch_of(first, armed=False)  # raises: the watcher could not be created
            await self._rescan()
            self._check_fatal()
            if not self._ready:
                self._ready = True
                self._notify()
            await asyncio.wait({first})
            changes = self._batch_of(first, armed=False)
            while True:
                self.batches += 1
                if changes:
                    await self._handle(changes)
                else:  # the watcher was quiet for rescan_interval: the safety-net rescan
                    await self._rescan()
                self._check_fatal()
                try:
                    changes = await batches.__anext__()
                except Exception as e:  # noqa: BLE001 - classified (or re-raised) by _watcher_error
                    self._watcher_error(e, armed=True)
        except _Restart:
            return
        finally:
            stop.set()
            if not first.done():
                first.cancel()
                await asyncio.wait({first})
            try:
                await batches.aclose()
            except (RuntimeError, OSError) as e:
                log.debug("discovery of %s: closing the watcher: %s", self._root, e)

    def _check_fatal(self) -> None:
        if self._fatal is not None:
            raise self._fatal

    def _batch_of(self, fut: asyncio.Future[set[tuple[watchfiles.Change, str]]], *, armed: bool) -> set[tuple[watchfiles.Change, str]]:
        """The batch a finished ``__anext__`` task holds, or what its error means."""
        try:
            return fut.result()
        except Exception as e:
            self._watcher_error(e, armed=armed)
            raise  # not reached: _watcher_error always raises

    def _watcher_error(self, e: Exception, *, armed: bool) -> None:
        """Raise what a watcher error means: a typed error, _Restart or _WatcherUnavailable."""
        if isinstance(e, StopAsyncIteration):
            raise _Restart() from None
        if isinstance(e, FileNotFoundError):
            if not os.path.isdir(self._root):
                raise QueueNotFoundError(f"bus root {self._root} does not exist (deleted?): {e}") from None
            log.info("discovery of %s: a folder vanished while the watcher was armed (%s); re-arming", self._root, e)
            raise _Restart() from None
        if isinstance(e, PermissionError):
            raise QueuePermissionError(f"cannot watch bus root {self._root}: {e}; it must be readable by this user") from None
        if isinstance(e, (OSError, RuntimeError)):  # RuntimeError: watchfiles' WatchfilesRustInternalError
            if not armed:
                raise _WatcherUnavailable(e) from None
            log.warning("discovery of %s: the file watcher failed (%s: %s); re-arming it and rescanning",
                        self._root, type(e).__name__, e)
            raise _Restart() from None
        raise e

    def _accept(self, change: watchfiles.Change, path: str) -> bool:
        """The watch filter: a depth-1 folder of a matching name, its control file, or the root itself."""
        if not path.startswith(self._prefix):
            return path == self._root and change == watchfiles.Change.deleted
        name, sep, rest = path[len(self._prefix):].partition(os.sep)
        if sep and rest != _CONTROL:
            return False
        return bool(name) and self.matches(name)

    async def _handle(self, changes: set[tuple[watchfiles.Change, str]]) -> None:
        names: set[str] = set()
        root_event = False
        for _change, path in changes:
            if path.startswith(self._prefix):
                names.add(path[len(self._prefix):].partition(os.sep)[0])
            else:
                root_event = True
        await self._sync_all(names, from_event=True)
        if root_event:
            await self._rescan()  # raises QueueNotFoundError if the root is gone

    async def _rescan(self) -> None:
        """Reconcile the disk with the queues handed over: one job stats them all, the differences are synced."""
        loop = asyncio.get_running_loop()
        on_disk = await loop.run_in_executor(self._executor, self._scan)
        gone = on_disk is None
        on_disk = on_disk or {}
        names = {n for n in self._entries if n not in on_disk}
        for name, sig in on_disk.items():
            entry = self._entries.get(name)
            if entry is None:
                if sig is not None:  # ready and not handed over: new, missed, or failed before
                    names.add(name)
            elif sig is None or (sig[0], sig[1]) != entry.ident:  # gone or replaced
                names.add(name)
        await self._sync_all(names, from_event=False)
        if gone:
            raise QueueNotFoundError(f"bus root {self._root} does not exist (deleted?); its queues were taken back")

    def _scan(self) -> dict[str, _Signature | None] | None:
        """Executor thread: ``{name: control file signature}`` of the matching sub-folders (None: no root)."""
        try:
            with os.scandir(self._root) as it:
                folders = [e.name for e in it if self.matches(e.name) and _is_dir(e)]
        except (FileNotFoundError, NotADirectoryError):
            return None
        return {name: _signature(os.path.join(self._root, name)) for name in folders}

    async def _sync_all(self, names: set[str], *, from_event: bool) -> None:
        if len(names) == 1:
            await self._sync(next(iter(names)), from_event=from_event)
        elif names:
            async with asyncio.TaskGroup() as tg:
                for name in names:
                    tg.create_task(self._sync(name, from_event=from_event))

    async def _sync(self, name: str, *, from_event: bool) -> None:
        """Bring one queue in line with the disk: one executor job, applied here when it ends."""
        previous = self._inflight.get(name)
        if previous is not None and not previous.done():  # a job left running by a cancelled run()
            await asyncio.wait({previous})
        loop = asyncio.get_running_loop()
        job = loop.run_in_executor(self._executor, self._sync_queue, name, self._entries.get(name))
        self._inflight[name] = job
        # Applied by a callback, not after the await: a job still running when run() is cancelled
        # is recorded all the same (its reader is in the hot loop by then).
        job.add_done_callback(lambda f: self._apply(name, f, from_event))
        await asyncio.wait({job})

    def _sync_queue(self, name: str, old: _Entry | None) -> _Outcome:
        """Executor thread: compare the disk with ``old``; take back, open and hand over as needed."""
        path = os.path.join(self._root, name)
        sig = _signature(path)
        ident = None if sig is None else (sig[0], sig[1])
        removed = False
        if old is not None:
            if ident == old.ident:
                return _Outcome(old)
            stuck = self._take_back(name, old)
            if stuck is not None:
                return _Outcome(old, stuck=stuck)
            removed = True
        if sig is None:
            return _Outcome(None, removed=removed)
        try:
            reader = Queue.open_subscriber(path, self._reader_name, self._start)
        except QueueNotFoundError:  # deleted between the stat and the open: its event follows
            return _Outcome(None, removed=removed)
        except Exception as e:  # noqa: BLE001 - corrupt, permission, name in use, or a bug: this queue only
            return _Outcome(None, removed=removed, error=e, signature=sig)
        try:
            source = self._hot.add_reader(reader)
        except Exception as e:  # noqa: BLE001 - reported per queue (a closed loop stops discovery)
            reader.close()
            if isinstance(e, QueueClosedError):
                return _Outcome(None, removed=removed, fatal=e)
            return _Outcome(None, removed=removed, error=e, signature=sig)
        except BaseException:
            reader.close()
            raise
        return _Outcome(_Entry(path, source, reader, (sig[0], sig[1])), removed=removed, added=True)

    def _take_back(self, name: str, old: _Entry) -> BaseException | None:
        """Executor thread: remove ``old``'s reader from the hot loop and close it (None when done)."""
        if self._hot.sources.get(old.source) is not old.reader:
            return None  # someone else took it back (or the loop was closed, closing it)
        try:
            reader = self._hot.remove_reader(old.source)
        except (QueueClosedError, InvalidArgumentError):
            return None
        except BackPressureError as e:
            return e
        try:
            reader.close()
        except Exception as e:  # noqa: BLE001 - the reader is out of the loop either way
            log.warning("discovery: closing the reader of deleted queue %s failed: %s", old.path, e)
        return None

    def _apply(self, name: str, job: asyncio.Future[_Outcome], from_event: bool) -> None:
        """Event loop: record what a job did (also for a job that outlived a cancelled run())."""
        if self._inflight.get(name) is job:
            del self._inflight[name]
        if job.cancelled():
            return
        err = job.exception()
        if err is not None:
            log.error("discovery of %s: handling queue %r failed unexpectedly", self._root, name, exc_info=err)
            self.failures += 1
            return
        out = job.result()
        changed = False
        if out.stuck is not None:
            log.error("discovery of %s: queue %r is gone but its reader could not be taken back from the hot loop "
                      "(%s); it stays there, and will be tried again", self._root, name, out.stuck)
            self.failures += 1
        if out.removed:
            self._entries.pop(name, None)
            self.removed += 1
            changed = True
            log.info("discovery of %s: queue %r is gone; its reader was taken back from the hot loop", self._root, name)
        if out.added and out.entry is not None:
            self._entries[name] = out.entry
            self.handed_over += 1
            changed = True
            log.info("discovery of %s: queue %r handed to the hot loop as source %d", self._root, name, out.entry.source)
        if out.error is not None:
            self.failures += 1
            if from_event or self._failed.get(name, ()) != out.signature:
                log.warning("discovery of %s: skipping queue %r until its next change: %s: %s",
                            self._root, name, type(out.error).__name__, out.error)
            self._failed[name] = out.signature
        else:
            self._failed.pop(name, None)
        if out.fatal is not None:
            self._fatal = QueueClosedError(f"the hot loop is closed: discovery of {self._root} cannot hand queues to it")
            log.error("discovery of %s: %s", self._root, self._fatal)
        if changed:
            self._notify()

    def __repr__(self) -> str:
        mode = {None: "stopped", True: "polling", False: "inotify"}[self._polling]
        return f"<Discovery {self._root} {mode} queues={len(self._entries)} patterns={list(self._patterns)}>"


class _Restart(Exception):
    """The watcher stopped or failed while running: re-arm it."""


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


__all__ = ["Discovery"]
