"""ControlPlane (control/_plane.py, _supervise.py): workers started and stopped, supervision, errors.

Real queue folders under tmp_path, real executor threads, a real HotLoop thread (the
jitted handler ``note`` is shared with test_logdrain.py, so it compiles once per
process). Faults are real too: the retention worker is made to fail by replacing a
queue's ``readers`` folder with a regular file, so ``os.listdir`` raises inside
``plan_cleanup``. Every await is bounded (``asyncio.wait_for``) so a bug fails instead
of hanging.
"""
from __future__ import annotations

import asyncio
import itertools
import logging
import os
import pathlib
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from chronicle_async import (
    ArgumentTypeError,
    ControlPlane,
    CorruptQueueError,
    HotLoop,
    InvalidArgumentError,
    Queue,
    QueueClosedError,
    QueueWriter,
    WorkerFailure,
    WriterConfig,
)
from chronicle_async.queue import files as F
from chronicle_async.control import run

from .test_logdrain import new_state, note

SEG = 16 * 1024
BOUND = 10.0  # generous limit on any single wait in these tests
THREAD_PREFIXES = ("chronicle-prealloc", "chronicle-io")
# prepare_ahead=0: these tests watch what the plane does to a writer, without the writer's own supplier
DEFAULT = WriterConfig(segment_size=SEG, prepare_ahead=0)


# -- helpers --------------------------------------------------------------------------------------


async def wait_until(pred: Callable[[], bool], what: str, timeout: float = BOUND) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for: {what}")
        await asyncio.sleep(0.005)


def plane_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith(THREAD_PREFIXES) and t.is_alive()}


def control_tasks() -> list[asyncio.Task]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith("chronicle-control:") and not t.done()]


def data_segments(w: QueueWriter) -> list[int]:
    """Segment files up to the head (the ones the caps count)."""
    return [i for i in F.list_segments(w.path) if i <= w.segment_id]


def fill_segments(w: QueueWriter, n: int) -> None:
    """Append one message and roll, ``n`` times."""
    for _ in range(n):
        w.append(1, w.next_seq.to_bytes(8, "little"))
        w.roll()


@pytest.fixture
def writers() -> Iterator[Callable[..., QueueWriter]]:
    made: list[QueueWriter] = []

    def make(path: pathlib.Path, config: WriterConfig = DEFAULT) -> QueueWriter:
        w = Queue.open_publisher(path, config)
        made.append(w)
        return w

    yield make
    for w in made:
        w.close()


@pytest.fixture
def hot_loop(tmp_path: pathlib.Path) -> Iterator[tuple[HotLoop, object, QueueWriter]]:
    """A started HotLoop (``note``) reading a queue; the loop closed first at teardown, then the writer."""
    w = Queue.open_publisher(tmp_path / "hotq", WriterConfig(segment_size=SEG))
    state = new_state()
    hot = HotLoop(note, state, name="chronicle-hot-plane-test")
    hot.add_reader(Queue.open_subscriber(tmp_path / "hotq", None, "earliest"), source=0)
    hot.start()
    yield hot, state, w
    hot.close()
    w.close()


# -- lifetime: workers and threads ----------------------------------------------------------------


async def test_entering_starts_prealloc_and_retention_workers_and_exiting_stops_them_and_their_threads(tmp_path, writers) -> None:
    before = plane_threads()
    w = writers(tmp_path / "q", WriterConfig(segment_size=SEG, max_segments=3))

    async def scenario() -> ControlPlane:
        async with ControlPlane(retention_interval=0.02) as plane:
            assert set(plane.workers) == {"prealloc", "retention"}
            assert plane.log_drain is None and plane.prealloc is not None and plane.retention is not None
            assert all(not t.done() for t in plane.workers.values())
            assert len(control_tasks()) == 2
            assert "running" in repr(plane)
            plane.manage_writer(w)
            # a capped writer recycles: one segment from fresh pages, the rest from retired ones
            await wait_until(lambda: len(w.prepared_segments) >= 1, "a segment prepared")
            fill_segments(w, 6)
            await wait_until(lambda: len(data_segments(w)) <= 3, "the cap applied")
            assert await asyncio.wait_for(plane.run_blocking(os.getpid), BOUND) == os.getpid()
            names = {t.name for t in plane_threads() - before}
            assert any(n.startswith("chronicle-prealloc") for n in names), names
            assert any(n.startswith("chronicle-io") for n in names), names
            workers = plane.workers
        assert all(t.done() for t in workers.values())
        return plane

    plane = await asyncio.wait_for(scenario(), BOUND * 2)
    assert control_tasks() == []
    assert plane_threads() - before == set()
    assert plane.workers == {} and "stopped" in repr(plane)
    assert plane.failures == []
    await asyncio.wait_for(plane.aclose(), BOUND)  # closing again is a no-op


async def test_a_plane_with_a_hot_loop_also_runs_the_log_drain_and_stops_it(hot_loop) -> None:
    hot, _state, w = hot_loop
    before = plane_threads()

    async def scenario() -> None:
        async with ControlPlane(hot) as plane:
            assert set(plane.workers) == {"prealloc", "retention", "log-drain", "map-ahead"}
            assert plane.hot_loop is hot
            w.append(1, b"x")
            await wait_until(lambda: plane.log_drain.records == 1, "the record drained")
            drain = plane.workers["log-drain"]
        assert drain.done()

    await asyncio.wait_for(scenario(), BOUND * 2)
    assert control_tasks() == []
    assert plane_threads() - before == set()
    assert hot.running  # the plane never stops the hot thread


async def test_a_plane_with_a_hot_loop_maps_its_sources_next_segments_ahead_so_ends_are_crossed_in_the_cycle(hot_loop) -> None:
    hot, _state, w = hot_loop
    sent = 0

    def roll_once() -> bool:
        """One more segment end for the reader; True once one was crossed inside the cycle."""
        nonlocal sent
        w.roll()
        w.append(1, b"y")
        sent += 1
        return hot.segment_crossings.in_cycle >= 1

    async def scenario() -> None:
        async with ControlPlane(hot, log_interval=0.005):
            # The map-ahead worker maps segment N + 1 while the reader waits in segment N (the
            # writer's own supplier prepared it); each roll gives it one more chance.
            await wait_until(lambda: hot.messages == sent and roll_once(), "an end crossed inside the cycle")
            await wait_until(lambda: hot.messages == sent, "every message")
        crossed = hot.segment_crossings
        assert crossed.in_cycle + crossed.by_exit == w.segment_id

    await asyncio.wait_for(scenario(), BOUND * 2)


async def test_exiting_on_an_exception_still_stops_every_worker_and_thread(tmp_path, writers) -> None:
    before = plane_threads()
    w = writers(tmp_path / "q")

    async def scenario() -> None:
        async with ControlPlane() as plane:
            plane.manage_writer(w)
            await wait_until(lambda: w.prepared_segments != [], "a segment prepared")
            raise KeyError("the application failed")

    with pytest.raises(KeyError):
        await asyncio.wait_for(scenario(), BOUND * 2)
    assert control_tasks() == []
    assert plane_threads() - before == set()
    w.append(1, b"the writer carries on by itself")
    fill_segments(w, 12)  # past the prepared ones: it creates its own again


@pytest.mark.parametrize("with_loop", ["asyncio", "uvloop"])
def test_exiting_right_after_a_roll_pokes_retention_does_not_hang(tmp_path, writers, with_loop) -> None:
    """Every roll of a managed writer pokes the retention worker; one may land just as the plane exits.

    On Python 3.11, ``asyncio.wait_for`` returns the inner result and drops a cancellation
    that arrives in the same loop iteration as that result; a worker waiting on
    ``wait_for(event.wait(), interval)`` then never ends and ``__aexit__`` hangs for ever.
    """
    w = writers(tmp_path / "q")

    async def main() -> str:
        async with ControlPlane(retention_interval=30.0) as plane:
            plane.manage_writer(w, prealloc=False)
            await asyncio.sleep(0.05)  # the worker is idle, waiting for a poke
            plane.retention.poke()  # a roll's poke ends the same way: the worker's event set
        return "exited"

    if with_loop == "uvloop":
        assert run(asyncio.wait_for(main(), BOUND)) == "exited"
    else:
        assert asyncio.run(asyncio.wait_for(main(), BOUND)) == "exited"
    fill_segments(w, 3)


def test_loop_kind_is_uvloop_under_control_run() -> None:
    async def main() -> tuple[str | None, str]:
        async with ControlPlane() as plane:
            return plane.loop_kind, type(asyncio.get_running_loop()).__module__

    kind, module = run(asyncio.wait_for(main(), BOUND))
    assert module.startswith("uvloop")
    assert kind == "uvloop"


async def test_loop_kind_is_asyncio_under_plain_asyncio() -> None:
    async def main() -> str | None:
        async with ControlPlane() as plane:
            assert "loop=asyncio" in repr(plane)
            return plane.loop_kind

    assert ControlPlane().loop_kind is None
    assert await asyncio.wait_for(main(), BOUND) == "asyncio"


# -- supervision --------------------------------------------------------------------------------


async def test_a_failing_retention_pass_is_reported_retried_and_works_once_the_fault_is_gone(
        tmp_path, writers, caplog) -> None:
    caplog.set_level(logging.ERROR, logger="chronicle_async")
    w = writers(tmp_path / "q", WriterConfig(segment_size=SEG, max_segments=2))
    readers = pathlib.Path(w.path) / "readers"
    # the fault comes first, so the writer's own housekeeping (caps set) cannot delete anything either
    readers.write_text("a regular file where the readers folder belongs\n")
    fill_segments(w, 10)  # 11 segment files, the cap is 2

    async def scenario() -> None:
        async with ControlPlane(retention_interval=0.02) as plane:
            plane.manage_writer(w, prealloc=False)
            await wait_until(lambda: len(plane.failures) >= 4, "four failed retention passes")
            for f in plane.failures:
                assert isinstance(f, WorkerFailure)
                assert f.worker == f"retention:{w.path}"  # names the queue whose pass failed
                assert isinstance(f.error, CorruptQueueError) and "readers is not a folder" in str(f.error)
                assert f.restart_in == pytest.approx(0.02)  # tried again at the next pass
                assert abs(f.time - time.time()) < 60
            first = plane.failures[:4]
            assert all(b.time - a.time >= 0.02 * 0.5 for a, b in itertools.pairwise(first))  # one per pass, not a spin
            assert len(data_segments(w)) == 11  # nothing could be planned, so nothing was deleted
            assert not plane.workers["retention"].done()  # the worker itself keeps running
            assert any(f"retention of {w.path} failed" in r.getMessage() for r in caplog.records)

            readers.unlink()
            readers.mkdir()
            # the files go in the executor and the count after the batch: wait for both
            await wait_until(lambda: len(data_segments(w)) <= 2 and plane.retention.deleted >= 9,
                             "retention deleting down to the cap again")
            assert data_segments(w) == [w.segment_id - 1, w.segment_id]
            assert plane.retention.deleted == 9
            settled = len(plane.failures)
            await asyncio.sleep(0.3)  # several passes: no new failure
            assert len(plane.failures) == settled

    await asyncio.wait_for(scenario(), BOUND * 2)


async def test_a_user_worker_that_raises_twice_is_restarted_with_doubling_back_off_until_it_succeeds() -> None:
    calls: list[float] = []

    async def flaky() -> None:
        calls.append(time.monotonic())
        if len(calls) <= 2:
            raise RuntimeError(f"failure {len(calls)}")

    async def scenario() -> None:
        async with ControlPlane(restart_backoff=0.03, max_restart_backoff=1.0) as plane:
            task = plane.start_worker("flaky", flaky)
            assert plane.workers["flaky"] is task
            await asyncio.wait_for(asyncio.shield(task), BOUND)
            assert task.done() and task.exception() is None
            assert len(calls) == 3
            mine = [f for f in plane.failures if f.worker == "flaky"]
            assert [str(f.error) for f in mine] == ["failure 1", "failure 2"]
            assert [f.restart_in for f in mine] == [pytest.approx(0.03), pytest.approx(0.06)]
            assert calls[1] - calls[0] >= 0.03 * 0.9 and calls[2] - calls[1] >= 0.06 * 0.9
            await asyncio.sleep(0.1)
            assert len(calls) == 3  # a worker that returned is not restarted
            again = plane.start_worker("flaky", flaky)  # the name is free again once it finished
            await asyncio.wait_for(asyncio.shield(again), BOUND)
            assert len(calls) == 4

    await asyncio.wait_for(scenario(), BOUND * 2)


async def test_the_hot_thread_keeps_handling_messages_while_a_worker_keeps_failing(hot_loop) -> None:
    hot, state, w = hot_loop

    async def broken() -> None:
        await asyncio.sleep(0.001)
        raise ValueError("this worker always fails")

    async def scenario() -> None:
        async with ControlPlane(hot, restart_backoff=0.01, max_restart_backoff=0.02) as plane:
            plane.manage_writer(w)  # rolls go through prealloc meanwhile
            plane.start_worker("broken", broken)
            await wait_until(lambda: len(plane.failures) >= 3, "the worker failing")
            n = 0
            for _ in range(20):
                for _ in range(150):
                    w.append(2, n.to_bytes(8, "little") * 8)
                    n += 1
                await asyncio.sleep(0.002)
            await wait_until(lambda: state[0] == n, f"{n} messages handled by the hot thread")
            assert state[1] == n - 1
            assert w.segment_id > 5  # it rolled several times meanwhile
            assert hot.running and hot.error is None
            assert {f.worker for f in plane.failures} == {"broken"}
            assert len(plane.failures) >= 5
            await wait_until(lambda: plane.log_drain.records + hot.log_dropped == n,
                             "every log record drained or counted as dropped")  # the drain kept working too

    await asyncio.wait_for(scenario(), BOUND * 2)
    assert hot.running and hot.error is None


# -- errors -----------------------------------------------------------------------------------------


async def test_bad_arguments_raise_typed_errors(tmp_path, writers) -> None:
    with pytest.raises(ArgumentTypeError):
        ControlPlane("not a hot loop")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):
        ControlPlane(retention_batch=0)
    with pytest.raises(InvalidArgumentError):
        ControlPlane(retention_batch=True)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):
        ControlPlane(io_threads=0)
    with pytest.raises(ArgumentTypeError):
        ControlPlane(log_interval="0.1")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):
        ControlPlane(log_interval=0)
    with pytest.raises(InvalidArgumentError):
        ControlPlane(retention_interval=-1.0)
    with pytest.raises(InvalidArgumentError):
        ControlPlane(restart_backoff=float("inf"))
    with pytest.raises(InvalidArgumentError):
        ControlPlane(max_restart_backoff=float("nan"))
    with pytest.raises(ArgumentTypeError):
        ControlPlane(restart_backoff=True)  # type: ignore[arg-type]

    w = writers(tmp_path / "q")
    closed = writers(tmp_path / "closed")
    closed.close()

    async def scenario() -> None:
        async with ControlPlane() as plane:
            with pytest.raises(ArgumentTypeError):
                plane.manage_writer("not a writer")  # type: ignore[arg-type]
            with pytest.raises(QueueClosedError):
                plane.manage_writer(closed)
            for bad in (0, 65, True, 2.0):
                with pytest.raises(InvalidArgumentError):
                    plane.manage_writer(w, prepare_ahead=bad)  # type: ignore[arg-type]
            for cap in ("max_segments", "max_bytes"):
                for bad in (0, -1, True, 2.5):
                    with pytest.raises(InvalidArgumentError):
                        plane.manage_writer(w, **{cap: bad})
            assert w.prepared_segments == [] and w._on_roll is None  # a rejected call changed nothing
            with pytest.raises(InvalidArgumentError, match="hot_loop"):
                plane.discover(tmp_path, "r")  # no hot loop to hand readers to
            plane.start_worker("sleeper", lambda: asyncio.sleep(60))
            with pytest.raises(InvalidArgumentError, match="already running"):
                plane.start_worker("sleeper", lambda: asyncio.sleep(60))
            plane.manage_writer(w, prepare_ahead=1)
            plane.manage_writer(w)  # twice: a no-op
            assert plane.failures == []

    await asyncio.wait_for(scenario(), BOUND * 2)


async def test_start_worker_with_a_non_callable_body_raises_a_typed_error() -> None:
    async def work() -> None:
        await asyncio.sleep(0)

    async def scenario() -> None:
        async with ControlPlane(restart_backoff=0.01) as plane:
            coro = work()  # a common slip: the coroutine object instead of the function
            try:
                with pytest.raises(ArgumentTypeError):
                    plane.start_worker("slip", coro)  # type: ignore[arg-type]
            finally:
                coro.close()

    await asyncio.wait_for(scenario(), BOUND)


async def test_using_the_plane_outside_async_with_raises_queue_closed_error(tmp_path, writers, hot_loop) -> None:
    hot, _state, _w = hot_loop
    w = writers(tmp_path / "q")

    async def body() -> None:
        await asyncio.sleep(0)

    def all_refused(plane: ControlPlane) -> None:
        with pytest.raises(QueueClosedError):
            plane.manage_writer(w)
        with pytest.raises(QueueClosedError):
            plane.start_worker("w", body)
        with pytest.raises(QueueClosedError):
            plane.run_blocking(os.getpid)
        with pytest.raises(QueueClosedError):
            plane.discover(tmp_path, "r")

    plane = ControlPlane(hot)
    all_refused(plane)  # not entered yet

    async def scenario() -> None:
        async with plane:
            pass

    await asyncio.wait_for(scenario(), BOUND)
    all_refused(plane)  # exited
