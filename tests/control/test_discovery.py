"""Discovery on real folders with real inotify: queues found, handed to a running HotLoop, taken back.

Every test runs a started :class:`HotLoop` with ONE shared jitted handler
(``count``), so the duty cycle compiles once per process (~1 s). The handler
counts messages per source and stamps (with the loop's clock) when the first
one arrived, which is what the latency test measures. Queues written "by
another process" come from one spawned writer process shared by the module.
Every await is bounded by ``asyncio.wait_for``: a bug fails, it does not hang.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import multiprocessing
import os
import pathlib
import shutil
import statistics
import time
from collections.abc import AsyncIterator, Callable, Iterator
from multiprocessing.connection import Connection

import numba
import numpy as np
import pytest
import watchfiles

from chronicle_async import (
    ArgumentTypeError,
    HotLoop,
    InvalidArgumentError,
    Queue,
    QueueClosedError,
    QueueNotFoundError,
    WriterConfig,
)
from chronicle_async.control.discovery import Discovery
from chronicle_async.hot import loop as K
from chronicle_async.hot.loop import clock

SMALL = WriterConfig(segment_size=64 * 1024)
T = 5.0  # seconds: the bound on every wait for an event (inotify delivers in milliseconds)
READER = "disc"

# -- the one jitted handler ---------------------------------------------------------------------
# state[source] = (messages handled, loop-clock ns of the first one, seq of the last one)


@numba.njit(cache=False)
def count(state, ctx, source, type_id, seq, timestamp_ns, payload):
    row = state[source]
    if row[0] == 0:
        row[1] = clock(ctx)
    row[0] += 1
    row[2] = seq
    return 0


# -- the writer process -------------------------------------------------------------------------


def _writer_main(conn: Connection) -> None:
    """Spawned: for each ``(queue path, messages)`` received, create the queue, append, reply t0 (ns)."""
    import time as _time

    from chronicle_async import Queue as _Queue
    from chronicle_async import WriterConfig as _WriterConfig

    cfg = _WriterConfig(segment_size=64 * 1024)
    while True:
        req = conn.recv()
        if req is None:
            return
        path, messages = req
        t0 = _time.time_ns()
        w = _Queue.open_publisher(path, cfg)
        for i in range(messages):
            w.append(1, i.to_bytes(8, "little"))
        w.close()
        conn.send(t0)


class WriterProcess:
    """One spawned writer process; :meth:`create` has it create (and write) a queue."""

    def __init__(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_writer_main, args=(child,), daemon=True)
        self._proc.start()
        child.close()

    async def create(self, path: pathlib.Path, messages: int) -> int:
        """Ask the writer to create ``path`` with ``messages`` messages; returns its t0 (time.time_ns)."""
        self._conn.send((str(path), messages))
        loop = asyncio.get_running_loop()
        ok = await asyncio.wait_for(loop.run_in_executor(None, self._conn.poll, 30.0), 31.0)
        assert ok, "the writer process did not answer within 30 s"
        return self._conn.recv()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._conn.send(None)
        self._proc.join(10)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join(5)


@pytest.fixture(scope="module")
def writer_process() -> Iterator[WriterProcess]:
    w = WriterProcess()
    yield w
    w.close()


# -- fixtures and helpers -----------------------------------------------------------------------


@pytest.fixture
def root(tmp_path: pathlib.Path) -> pathlib.Path:
    r = tmp_path / "bus"
    r.mkdir()
    return r


@pytest.fixture
def hot() -> Iterator[tuple[HotLoop, np.ndarray]]:
    """A started HotLoop running ``count`` over a fresh state; closed (with its readers) after."""
    state = np.zeros((64, 3), np.int64)
    loop = HotLoop(count, state, max_readers=64)
    loop.start()
    yield loop, state
    loop.close()


def make_queue(root: pathlib.Path, name: str, messages: int = 0) -> pathlib.Path:
    path = root / name
    with Queue.open_publisher(path, SMALL) as w:
        for i in range(messages):
            w.append(1, i.to_bytes(8, "little"))
    return path


@contextlib.asynccontextmanager
async def running(d: Discovery) -> AsyncIterator[asyncio.Task[None]]:
    """Run ``d`` in a task until the block ends; fail if it stopped by itself with an error."""
    task = asyncio.create_task(d.run())
    try:
        await asyncio.wait_for(d.wait_ready(), T)
        yield task
    finally:
        if task.done() and not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, T)


async def until(predicate: Callable[[], bool], timeout: float = T, what: str = "condition") -> None:
    """Poll ``predicate`` every millisecond (for the hot thread's state); fail after ``timeout``."""

    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(0.001)

    try:
        await asyncio.wait_for(poll(), timeout)
    except TimeoutError:
        pytest.fail(f"timed out after {timeout} s waiting for {what}")


def discovery(root: pathlib.Path, loop: HotLoop, **options: object) -> Discovery:
    options.setdefault("rescan_interval", None)  # events only, unless a test asks for the safety net
    return Discovery(root, loop, READER, **options)  # type: ignore[arg-type]


# -- tests ----------------------------------------------------------------------------------------


async def test_queues_existing_before_start_are_handed_over_and_their_messages_handled(root, hot) -> None:
    """Ready queues already there are handed over at start; a bare folder or a plain file is not."""
    loop, state = hot
    make_queue(root, "a", 3)
    make_queue(root, "b", 5)
    (root / "not-ready").mkdir()
    (root / "a-file").write_bytes(b"x")
    d = discovery(root, loop)
    async with running(d):
        assert set(d.queues) == {"a", "b"}
        assert set(loop.sources) == set(d.queues.values())
        a, b = d.queues["a"], d.queues["b"]
        await until(lambda: state[a, 0] == 3 and state[b, 0] == 5, what="the 8 messages")
        assert d.handed_over == 2 and d.failures == 0 and d.polling is False


async def test_a_queue_created_by_another_process_after_start_is_found_and_its_messages_handled(
    root, hot, writer_process
) -> None:
    """A writer in another process creates a queue and writes: its messages reach the handler."""
    loop, state = hot
    d = discovery(root, loop)
    async with running(d):
        assert d.queues == {}
        await writer_process.create(root / "live", 5)
        source = await asyncio.wait_for(d.wait_for_queue("live"), T)
        await until(lambda: state[source, 0] == 5, what="5 messages from the other process")
        assert state[source, 2] == 4  # the last seq: all of them, in order


async def test_only_queues_whose_names_match_patterns_and_not_ignore_are_handed_over(root, hot) -> None:
    """fnmatch patterns pick queue names, ``ignore`` removes some, both at start and afterwards."""
    loop, _ = hot
    for name in ("md.eq", "md.skip1", "orders"):
        make_queue(root, name)
    d = discovery(root, loop, patterns=("md.*", "fx.*"), ignore="md.skip*")
    assert d.matches("fx.spot") and not d.matches("md.skip2") and not d.matches("orders")
    async with running(d):
        assert set(d.queues) == {"md.eq"}
        for name in ("fx.spot", "md.skip2", "trades"):
            make_queue(root, name)
        await asyncio.wait_for(d.wait_for_queue("fx.spot"), T)
        make_queue(root, "md.fi")  # a later, matching queue: by then the others' events were seen
        await asyncio.wait_for(d.wait_for_queue("md.fi"), T)
        assert set(d.queues) == {"md.eq", "fx.spot", "md.fi"}
        assert len(loop.sources) == 3


async def test_deleting_a_queue_folder_or_its_control_file_takes_its_reader_back_from_the_hot_loop(root, hot) -> None:
    """The reader of a deleted queue leaves the hot loop (closed, forgotten); the others stay."""
    loop, _ = hot
    for name in ("gone", "headless", "kept"):
        make_queue(root, name, 2)
    d = discovery(root, loop)
    async with running(d):
        gone, headless, kept = (d.queues[n] for n in ("gone", "headless", "kept"))
        readers = loop.sources
        shutil.rmtree(root / "gone")
        await asyncio.wait_for(d.wait_for_removal("gone"), T)
        os.unlink(root / "headless" / "control.cq")
        await asyncio.wait_for(d.wait_for_removal("headless"), T)
        assert d.queues == {"kept": kept}
        assert set(loop.sources) == {kept}
        assert readers[gone].closed and readers[headless].closed and not readers[kept].closed
        assert d.removed == 2


async def test_a_queue_folder_whose_control_file_appears_later_is_handed_over_when_it_appears(root, hot) -> None:
    """A folder event alone hands nothing over; the control file's own event then does (no rescan)."""
    loop, _ = hot
    d = discovery(root, loop)  # rescan_interval=None: only events can find it
    async with running(d):
        seen = d.batches
        (root / "slow").mkdir()
        await until(lambda: d.batches > seen, what="the folder's event")
        assert d.queues == {} and d.failures == 0
        make_queue(root, "slow", 1)  # segment 0, then control.cq, into the existing folder
        await asyncio.wait_for(d.wait_for_queue("slow"), T)


async def test_a_corrupt_queue_is_logged_and_skipped_and_discovery_goes_on(root, hot, caplog) -> None:
    """A garbage control file is logged on "chronicle_async" and skipped; other queues are still found,
    and the broken one is picked up once it is made a real queue (its next event)."""
    loop, state = hot
    caplog.set_level(logging.WARNING, logger="chronicle_async")
    (root / "bad").mkdir()
    (root / "bad" / "control.cq").write_bytes(os.urandom(8192))
    d = discovery(root, loop)
    async with running(d):
        assert d.queues == {} and d.failures >= 1
        assert any(r.name == "chronicle_async" and "'bad'" in r.getMessage() and "Corrupt" in r.getMessage()
                   for r in caplog.records), [r.getMessage() for r in caplog.records]
        make_queue(root, "good", 1)
        await asyncio.wait_for(d.wait_for_queue("good"), T)
        os.unlink(root / "bad" / "control.cq")
        make_queue(root, "bad", 2)
        source = await asyncio.wait_for(d.wait_for_queue("bad"), T)
        await until(lambda: state[source, 0] == 2, what="the repaired queue's messages")


async def test_force_polling_finds_new_queues_and_warns_once(root, hot) -> None:
    """With force_polling=True the watcher polls every poll_interval, says so once, and still works."""
    loop, state = hot
    d = discovery(root, loop, force_polling=True, poll_interval=0.02)
    with pytest.warns(RuntimeWarning, match="polling the folder tree every 20 ms") as caught:  # noqa: PT031
        async with running(d):
            assert d.polling is True
            make_queue(root, "p1", 1)
            make_queue(root, "p2", 1)
            p1 = await asyncio.wait_for(d.wait_for_queue("p1"), T)
            await asyncio.wait_for(d.wait_for_queue("p2"), T)
            await until(lambda: state[p1, 0] == 1, what="p1's message")
            shutil.rmtree(root / "p1")
            await asyncio.wait_for(d.wait_for_removal("p1"), T)
    assert len([w for w in caught if "polling" in str(w.message)]) == 1


async def test_unavailable_inotify_falls_back_to_polling_with_a_warning(root, hot, monkeypatch) -> None:
    """When the inotify watcher cannot be created (force_polling=None), discovery polls instead."""
    loop, _ = hot
    real = watchfiles.awatch
    calls: list[bool] = []

    async def no_inotify(*paths, **kw):  # type: ignore[no-untyped-def]
        calls.append(kw["force_polling"])
        if not kw["force_polling"]:
            raise OSError(28, "OS file watch limit reached")
        async for batch in real(*paths, **kw):
            yield batch

    monkeypatch.setattr(watchfiles, "awatch", no_inotify)
    make_queue(root, "before")
    d = discovery(root, loop, poll_interval=0.02)
    with pytest.warns(RuntimeWarning, match="inotify is unavailable"):  # noqa: PT031
        async with running(d):
            assert calls == [False, True] and d.polling is True
            assert set(d.queues) == {"before"}
            make_queue(root, "after")
            await asyncio.wait_for(d.wait_for_queue("after"), T)
    strict = discovery(root, loop, force_polling=False)
    with pytest.raises(OSError, match="watch limit"):
        await asyncio.wait_for(strict.run(), T)


async def test_a_queue_missed_by_the_watcher_is_found_by_the_quiet_period_rescan(root, hot, monkeypatch) -> None:
    """Events the watcher lost (an inotify overflow) are made up for by the rescan after a quiet spell."""
    loop, _ = hot
    d = discovery(root, loop, rescan_interval=0.1)
    monkeypatch.setattr(d, "_accept", lambda change, path: False)  # the watcher reports nothing
    async with running(d):
        make_queue(root, "missed")
        await asyncio.wait_for(d.wait_for_queue("missed"), T)
        shutil.rmtree(root / "missed")
        await asyncio.wait_for(d.wait_for_removal("missed"), T)


async def test_a_queue_replaced_under_the_same_name_gets_a_new_reader(root, hot) -> None:
    """Deleting and re-creating a queue swaps the reader: the new queue's messages are handled."""
    loop, state = hot
    make_queue(root, "q", 1)
    d = discovery(root, loop)
    async with running(d):
        old = loop.sources[d.queues["q"]]
        shutil.rmtree(root / "q")
        make_queue(root, "q", 4)
        await until(lambda: d.removed == 1 and d.handed_over == 2, what="the swap")
        source = d.queues["q"]
        assert old.closed and loop.sources[source] is not old
        await until(lambda: state[source, 2] == 3, what="the new queue's last message")


async def test_stopping_run_leaves_readers_with_the_hot_loop_and_a_second_run_catches_up(root, hot) -> None:
    """Readers stay with the hot loop after run() ends; running again reconciles what changed."""
    loop, _ = hot
    make_queue(root, "stays", 1)
    make_queue(root, "goes", 1)
    d = discovery(root, loop)
    async with running(d):
        assert set(d.queues) == {"stays", "goes"}
    assert set(d.queues) == {"stays", "goes"} and len(loop.sources) == 2 and not d.ready
    shutil.rmtree(root / "goes")
    make_queue(root, "new")
    async with running(d):
        assert set(d.queues) == {"stays", "new"}
        assert set(loop.sources) == set(d.queues.values())


async def test_a_closed_hot_loop_stops_discovery_with_queue_closed_error(root, hot) -> None:
    """Discovery cannot hand anything to a closed hot loop: run() says so instead of spinning."""
    loop, _ = hot
    d = discovery(root, loop)
    task = asyncio.create_task(d.run())
    try:
        await asyncio.wait_for(d.wait_ready(), T)
        loop.close()
        make_queue(root, "late")
        with pytest.raises(QueueClosedError, match="hot loop is closed"):
            await asyncio.wait_for(task, T)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, QueueClosedError):
            await asyncio.wait_for(task, T)


class SlowExecutor(concurrent.futures.ThreadPoolExecutor):
    """Runs each job after ``delay`` seconds and records which queues its jobs were about."""

    def __init__(self) -> None:
        super().__init__(max_workers=4)
        self.delay = 0.0
        self.queues_submitted: list[str] = []

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[no-untyped-def, override]
        if getattr(fn, "__name__", "") == "_sync_queue":
            self.queues_submitted.append(args[0])
        delay = self.delay

        def slow():  # type: ignore[no-untyped-def]
            time.sleep(delay)
            return fn(*args, **kwargs)

        return super().submit(slow)


async def test_a_hand_over_still_running_when_run_is_cancelled_is_recorded_not_lost(root, hot) -> None:
    """Cancelling run() mid-job does not wait for the job, and the job's reader is still recorded."""
    loop, _ = hot
    ex = SlowExecutor()
    try:
        d = discovery(root, loop, executor=ex)
        task = asyncio.create_task(d.run())
        await asyncio.wait_for(d.wait_ready(), T)
        ex.delay = 0.3
        make_queue(root, "inflight")
        await until(lambda: "inflight" in ex.queues_submitted, what="the queue's job")
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, T)
        assert "inflight" not in d.queues  # run() ended before its job did
        source = await asyncio.wait_for(d.wait_for_queue("inflight"), T)
        assert loop.sources[source].path == str(root / "inflight")
    finally:
        ex.shutdown(wait=True)


async def test_deleting_the_bus_root_takes_every_reader_back_and_ends_run_with_queue_not_found(root, hot) -> None:
    """With its root gone, discovery has nothing left to watch: readers are taken back, run() raises."""
    loop, _ = hot
    make_queue(root, "a", 1)
    make_queue(root, "b", 1)
    d = discovery(root, loop)
    task = asyncio.create_task(d.run())
    try:
        await asyncio.wait_for(d.wait_ready(), T)
        assert len(loop.sources) == 2
        shutil.rmtree(root)
        with pytest.raises(QueueNotFoundError, match="does not exist"):
            await asyncio.wait_for(task, T)
        assert d.queues == {} and loop.sources == {} and d.removed == 2
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, QueueNotFoundError):
            await asyncio.wait_for(task, T)


def test_bad_arguments_raise_typed_errors(root, hot, tmp_path) -> None:
    """Each bad argument raises a typed error naming it."""
    loop, _ = hot
    with pytest.raises(QueueNotFoundError, match="does not exist"):
        Discovery(tmp_path / "missing", loop, READER)
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(InvalidArgumentError, match="not a folder"):
        Discovery(tmp_path / "file", loop, READER)
    with pytest.raises(ArgumentTypeError, match="root|path"):
        Discovery(42, loop, READER)  # type: ignore[arg-type]
    with pytest.raises(ArgumentTypeError, match="hot_loop"):
        Discovery(root, object(), READER)  # type: ignore[arg-type]
    with pytest.raises(ArgumentTypeError, match="reader name"):
        Discovery(root, loop, 7)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="reader name"):
        Discovery(root, loop, "../x")
    with pytest.raises(ArgumentTypeError, match="patterns"):
        Discovery(root, loop, READER, patterns=[1])  # type: ignore[list-item]
    with pytest.raises(InvalidArgumentError, match="patterns is empty"):
        Discovery(root, loop, READER, patterns=())
    with pytest.raises(ArgumentTypeError, match="ignore"):
        Discovery(root, loop, READER, ignore=3)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="start"):
        Discovery(root, loop, READER, start="yesterday")
    with pytest.raises(InvalidArgumentError, match="debounce"):
        Discovery(root, loop, READER, debounce=-1)
    with pytest.raises(ArgumentTypeError, match="step"):
        Discovery(root, loop, READER, step="1ms")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="poll_interval"):
        Discovery(root, loop, READER, poll_interval=float("inf"))
    with pytest.raises(InvalidArgumentError, match="rescan_interval"):
        Discovery(root, loop, READER, rescan_interval=0)
    with pytest.raises(ArgumentTypeError, match="force_polling"):
        Discovery(root, loop, READER, force_polling="yes")  # type: ignore[arg-type]
    with pytest.raises(ArgumentTypeError, match="executor"):
        Discovery(root, loop, READER, executor=object())  # type: ignore[arg-type]


async def test_waiting_for_a_queue_by_a_non_string_name_is_a_type_error(root, hot) -> None:
    loop, _ = hot
    d = discovery(root, loop)
    with pytest.raises(ArgumentTypeError, match="queue name"):
        await asyncio.wait_for(d.wait_for_queue(3), T)  # type: ignore[arg-type]


async def test_discovery_latency_from_a_new_queue_to_its_first_message_in_the_handler(root, hot, writer_process) -> None:
    """Another process creates a queue and appends one message; time until the handler sees it.

    t0 (CLOCK_REALTIME) is taken in the writer process just before it creates the queue; the
    end is the hot loop's clock when the handler is called, corrected for that clock's drift. ~10 samples; p50 must be < 200 ms
    (the design target, for the benchmark, is 20 ms; sleep-polling takes 0.5-1 s).
    """
    loop, state = hot
    d = discovery(root, loop)
    samples_ms: list[float] = []
    observed_ms: list[float] = []
    async with running(d):
        await writer_process.create(root / "warm-up", 1)  # the writer's first queue pays its imports
        await asyncio.wait_for(d.wait_for_queue("warm-up"), T)
        for i in range(10):
            name = f"lat{i}"
            t0 = await writer_process.create(root / name, 1)
            source = await asyncio.wait_for(d.wait_for_queue(name), T)
            await until(lambda source=source: state[source, 0] == 1, what=f"{name}'s first message")
            now = time.time_ns()
            # The loop's clock drifts from CLOCK_REALTIME (~0.5 ms/s here: it keeps whole picoseconds
            # per TSC tick); re-read its offset now, milliseconds after the stamp, and correct for it.
            offset = int(K.now_ns(loop._loop)) - time.time_ns()
            observed_ms.append((now - t0) / 1e6)
            samples_ms.append((int(state[source, 1]) - offset - t0) / 1e6)
    samples_ms.sort()
    p50 = statistics.median(samples_ms)
    print(
        f"\ndiscovery latency (writer creates the queue -> handler sees message 1), {len(samples_ms)} samples: "
        f"p50 {p50:.2f} ms, min {samples_ms[0]:.2f} ms, max {samples_ms[-1]:.2f} ms; "
        f"seen from the test (incl. the pipe round trip): p50 {statistics.median(observed_ms):.2f} ms"
    )
    assert all(s > 0 for s in samples_ms), samples_ms
    assert p50 < 200, samples_ms


async def test_fifos_in_a_queue_never_block_discovery_in_a_control_plane_nor_leaving_it(root, hot, caplog) -> None:
    """A FIFO where a segment or the reader's position file should be: discovery logs the queue as
    broken, finds the good queues, and ``async with ControlPlane`` is left promptly (nothing blocked
    in an open() of a FIFO, in an I/O thread or anywhere)."""
    from chronicle_async import ControlPlane

    loop, state = hot
    caplog.set_level(logging.WARNING, logger="chronicle_async")
    bad_seg = make_queue(root, "fifo-segment", 3)
    (bad_seg / "000000000000.seg").unlink()
    os.mkfifo(bad_seg / "000000000000.seg")
    bad_pos = make_queue(root, "fifo-position", 3)
    (bad_pos / "readers").mkdir(exist_ok=True)
    os.mkfifo(bad_pos / "readers" / f"{READER}.pos")
    make_queue(root, "good", 5)
    t0 = time.monotonic()

    async def scenario() -> None:
        async with ControlPlane(loop) as plane:
            d = plane.discover(root, READER, rescan_interval=None)
            source = await asyncio.wait_for(d.wait_for_queue("good"), T)
            await until(lambda: state[source, 0] == 5, what="the good queue's messages")
            await until(lambda: d.failures >= 2, what="both FIFO queues logged as failures")
            assert set(d.queues) == {"good"}

    await asyncio.wait_for(scenario(), 3 * T)
    assert time.monotonic() - t0 < 3 * T
    messages = [r.getMessage() for r in caplog.records]
    assert any("fifo-segment" in m and "FIFO" in m for m in messages), messages
    assert any("fifo-position" in m and "FIFO" in m for m in messages), messages
