"""ControlPlane: the cold path as supervised coroutines on uvloop, beside a HotLoop."""
from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Coroutine, TypeVar

from .._errors import ArgumentTypeError, InvalidArgumentError, QueueClosedError
from ..loop.hotloop import HotLoop
from ..queue.writer import QueueWriter
from ._supervise import WorkerFailure, supervise
from .logdrain import LogDrain
from .prealloc import Prealloc
from .retention import Retention

if TYPE_CHECKING:
    from .discovery import Discovery

log = logging.getLogger("chronicle_async")
T = TypeVar("T")


def _seconds(name: str, v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ArgumentTypeError(f"{name} must be a number of seconds, not {type(v).__name__}")
    if not 0 < v < float("inf"):
        raise InvalidArgumentError(f"{name} must be a positive number of seconds, got {v!r}")
    return float(v)


class ControlPlane:
    """The control plane of one process: an async context manager running its workers.

    ``async with ControlPlane(hot_loop) as plane:`` starts, each as its own
    supervised coroutine with a bounded request queue:

    - **prealloc** (highest priority, its own executor thread): prepares segment
      N+1 of every writer given to :meth:`manage_writer`, so a roll costs
      microseconds instead of file work;
    - **retention** (a shared I/O executor): applies those writers'
      ``max_bytes`` / ``max_segments`` caps in small batches, and removes
      orphaned temp files;
    - **log drain** (when ``hot_loop`` is given): the hot loop's log ring to
      ``log_target`` (a ``logging.Logger``, default ``chronicle_async.hot``, or a file path);
    - **map ahead** (when ``hot_loop`` is given): every ``log_interval``, on the I/O
      executor, maps each source's next segment once it exists
      (:meth:`HotLoop.map_ahead`), so the hot thread crosses segment ends inside its cycle;
    - **discovery** (:meth:`discover`): new queues under a bus root, found through
      inotify and handed to ``hot_loop``.

    Blocking file work never runs on the event loop. A worker that fails is
    logged, kept in :attr:`failures` and restarted with back-off; it never takes
    the hot thread down. The plane talks to the hot thread only through its
    rings, as their single producer (commands) and consumer (log), and through the one
    source-table word that offers a segment mapped ahead.

    Use it from the event loop's thread. It runs on any asyncio loop; :func:`run`
    runs on uvloop (a dependency; plain asyncio with a warning only if it is missing).
    """

    def __init__(
        self,
        hot_loop: HotLoop | None = None,
        *,
        log_target: logging.Logger | str | os.PathLike | None = None,
        log_interval: float = 0.01,
        retention_interval: float = 0.1,
        retention_batch: int = 4,
        restart_backoff: float = 0.05,
        max_restart_backoff: float = 5.0,
        io_threads: int = 2,
    ):
        if hot_loop is not None and not isinstance(hot_loop, HotLoop):
            raise ArgumentTypeError(f"hot_loop must be a HotLoop or None, not {type(hot_loop).__name__}")
        if isinstance(retention_batch, bool) or not isinstance(retention_batch, int) or retention_batch < 1:
            raise InvalidArgumentError(f"retention_batch must be a positive int, got {retention_batch!r}")
        if isinstance(io_threads, bool) or not isinstance(io_threads, int) or io_threads < 1:
            raise InvalidArgumentError(f"io_threads must be a positive int, got {io_threads!r}")
        self.hot_loop = hot_loop
        self._log_target = log_target
        self._log_interval = _seconds("log_interval", log_interval)
        self._retention_interval = _seconds("retention_interval", retention_interval)
        self._retention_batch = retention_batch
        self._backoff = _seconds("restart_backoff", restart_backoff)
        self._max_backoff = _seconds("max_restart_backoff", max_restart_backoff)
        self._io_threads = io_threads
        #: The last failures of any worker (each was restarted).
        self.failures: list[WorkerFailure] = []
        self._tasks: dict[str, asyncio.Task] = {}
        self._writers: list[QueueWriter] = []
        self._running = False
        self.loop_kind: str | None = None
        self.prealloc: Prealloc | None = None
        self.retention: Retention | None = None
        self.log_drain: LogDrain | None = None
        self._metrics: list[Any] = []  # MetricsServer endpoints, closed with the plane

    # -- lifetime ------------------------------------------------------------------------------

    async def __aenter__(self) -> "ControlPlane":
        loop = asyncio.get_running_loop()
        self._loop = loop
        self.loop_kind = "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"
        self._prealloc_executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="chronicle-prealloc")
        self._io_executor = concurrent.futures.ThreadPoolExecutor(self._io_threads, thread_name_prefix="chronicle-io")
        self.prealloc = Prealloc(self._prealloc_executor, loop)
        self.retention = Retention(self._io_executor, loop, interval=self._retention_interval, batch=self._retention_batch,
                                   failures=self.failures)
        self._running = True
        self.start_worker("prealloc", self.prealloc.run)
        self.start_worker("retention", self.retention.run)
        if self.hot_loop is not None:
            self.log_drain = LogDrain(self.hot_loop, self._log_target, interval=self._log_interval)
            self.start_worker("log-drain", self.log_drain.run)
            self.start_worker("map-ahead", self._map_ahead)
        return self

    async def _map_ahead(self) -> None:
        """The map-ahead worker: file work (open, lock, mmap) off the event loop, never on the hot thread."""
        hot = self.hot_loop
        while True:
            await self._loop.run_in_executor(self._io_executor, hot.map_ahead)
            await asyncio.sleep(self._log_interval)

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop every worker, unhook the managed writers, and shut the executors down."""
        if not self._running:
            return
        self._running = False
        tasks = list(self._tasks.values())
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        for w in self._writers:
            self._release(w)
        self._writers.clear()
        for server in self._metrics:
            server.close()
        self._metrics.clear()
        for ex in (self._prealloc_executor, self._io_executor):
            await asyncio.get_running_loop().run_in_executor(None, ex.shutdown, True)

    def start_worker(self, name: str, body: Callable[[], Awaitable[None]]) -> asyncio.Task:
        """Run ``body()`` as a supervised worker (restarted with back-off when it fails)."""
        self._check_running()
        if not callable(body) or asyncio.iscoroutine(body):
            raise ArgumentTypeError(
                f"start_worker takes a coroutine function (called again at each restart), not {type(body).__name__}"
            )
        if name in self._tasks and not self._tasks[name].done():
            raise InvalidArgumentError(f"a worker named {name!r} is already running")
        task = asyncio.get_running_loop().create_task(
            supervise(name, body, self.failures, backoff=self._backoff, max_backoff=self._max_backoff),
            name=f"chronicle-control:{name}",
        )
        self._tasks[name] = task
        return task

    @property
    def workers(self) -> dict[str, asyncio.Task]:
        return dict(self._tasks)

    def _check_running(self) -> None:
        if not self._running:
            raise QueueClosedError("the control plane is not running: use it inside `async with ControlPlane(...)`")

    # -- writers -------------------------------------------------------------------------------

    def manage_writer(self, writer: QueueWriter, *, prealloc: bool = True, retention: bool = True,
                      prepare_ahead: int | None = None, max_bytes: int | None = None,
                      max_segments: int | None = None) -> None:
        """Prepare ``writer``'s next segments and apply its retention caps from this plane.

        From now on the writer's rolls take a prepared segment (validated by the
        writer) and hand the old mapping back for unmapping here; its housekeeping
        thread stops applying the caps itself. ``prepare_ahead`` segments are kept
        ready (default: 2, up to 8 for segments under 1 MiB, which roll often);
        the writer wakes the plane when half of them are used. ``max_bytes`` /
        ``max_segments`` set the retention caps here (a writer opened with no
        limits); by default the writer's ``WriterConfig`` caps apply.
        """
        self._check_running()
        if not isinstance(writer, QueueWriter):
            raise ArgumentTypeError(f"manage_writer takes a QueueWriter, not {type(writer).__name__}")
        writer.check_open()
        if any(w is writer for w in self._writers):
            return
        from ..queue.writer import MAX_PREPARE_AHEAD

        for cap_name, cap in (("max_bytes", max_bytes), ("max_segments", max_segments)):
            if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 1):
                raise InvalidArgumentError(f"{cap_name} must be a positive int or None, got {cap!r}")
        if prepare_ahead is None:
            prepare_ahead = max(2, min(8, (4 << 20) // writer.segment_size))
        if isinstance(prepare_ahead, bool) or not isinstance(prepare_ahead, int) or not 1 <= prepare_ahead <= MAX_PREPARE_AHEAD:
            raise InvalidArgumentError(f"prepare_ahead must be an int between 1 and {MAX_PREPARE_AHEAD}, got {prepare_ahead!r}")
        self._writers.append(writer)
        pre, ret = self.prealloc, self.retention

        def rolled(_new_id: int, w: QueueWriter = writer) -> None:  # on the writer's thread
            if prealloc and pre is not None:
                pre.request(w)  # straight to the prealloc thread
            if retention and ret is not None:
                ret.poke_from_any_thread()

        writer.attach_supplier(rolled, prepare_ahead=prepare_ahead if prealloc else 0,
                               retention=retention and ret is not None)
        if retention and ret is not None:
            ret.add(writer, max_bytes, max_segments)
        if prealloc and pre is not None:
            pre.request(writer)

    def unmanage_writer(self, writer: QueueWriter) -> None:
        """Stop managing ``writer`` (it then rolls and unmaps by itself again)."""
        self._writers = [w for w in self._writers if w is not writer]
        self._release(writer)
        if self.retention is not None:
            self.retention.remove(writer)

    @staticmethod
    def _release(writer: QueueWriter) -> None:
        """Hand the writer back to itself: inline rolls and unmaps, its own retention caps."""
        writer.detach_supplier()

    @property
    def managed_writers(self) -> tuple[QueueWriter, ...]:
        """The writers given to :meth:`manage_writer` (and not unmanaged since)."""
        return tuple(self._writers)

    # -- metrics -------------------------------------------------------------------------------

    def serve_metrics(self, port: int, addr: str = "127.0.0.1", *, roots: tuple[str | os.PathLike, ...] = (),
                      ttl: float = 1.0) -> Any:
        """Serve Prometheus metrics on ``http://addr:port/metrics`` until the plane closes.

        Each scrape reads, at that moment, the queues of the managed writers and those under
        ``roots`` (bus roots or queue folders): messages, writer alive, segments, bytes, named
        readers' lag; and this plane's counts (segments prepared, stale offers, dropped requests,
        each managed writer's prepared / inline / recycled rolls). ``port`` 0 lets the system
        choose. Returns the ``MetricsServer`` (``.port``, ``.url``, ``close()``). Needs
        ``pip install 'chronicle_async[metrics]'`` (``ModuleNotFoundError`` without it).
        """
        self._check_running()
        from .metrics import MetricsServer, QueueCollector

        collector = QueueCollector(roots, writers=lambda: self.managed_writers, prealloc=lambda: self.prealloc, ttl=ttl)
        server = MetricsServer(collector, port, addr)
        self._metrics.append(server)
        return server

    # -- discovery -----------------------------------------------------------------------------

    def discover(self, root: str | os.PathLike, reader_name: str | None, **options: Any) -> "Discovery":
        """Watch ``root`` for queues and hand each one's reader to the hot loop (see ``Discovery``)."""
        self._check_running()
        if self.hot_loop is None:
            raise InvalidArgumentError("discover() hands readers to a hot loop: create the ControlPlane with hot_loop=")
        from .discovery import Discovery

        options.setdefault("executor", self._io_executor)
        d = Discovery(root, self.hot_loop, reader_name, **options)
        self.start_worker(f"discovery:{os.fspath(root)}", d.run)
        return d

    def run_blocking(self, fn: Callable[..., T], *args: Any) -> "asyncio.Future[T]":
        """Run blocking file work on the plane's I/O executor (never on the loop)."""
        self._check_running()
        return self._loop.run_in_executor(self._io_executor, fn, *args)

    def __repr__(self) -> str:
        state = "running" if self._running else "stopped"
        return f"<ControlPlane {state} loop={self.loop_kind} workers={sorted(self._tasks)} writers={len(self._writers)}>"


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` on uvloop (a dependency); on the default asyncio loop, with a warning, only if uvloop is missing."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency; this is the documented fallback
        log.warning("uvloop is not installed: the control plane runs on the default asyncio loop")
        return asyncio.run(main)
    return uvloop.run(main)


