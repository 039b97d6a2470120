"""asyncio consumption (control/aio.py, queue/waits.py): ``async for`` and ``wait_async`` through the shared waker thread.

Real queue folders under tmp_path, real futex wake-ups, and a writer in another
process (multiprocessing, spawn) where the consumer must be woken across processes.
Every wait is bounded (``asyncio.wait_for``) so a bug fails instead of hanging.
"""
from __future__ import annotations

import asyncio
import multiprocessing
import pathlib
import struct
import threading
import time
from typing import Any

import pytest

from chronicle_async import (
    ArgumentTypeError,
    FanInReader,
    InvalidArgumentError,
    Queue,
    QueueClosedError,
    QueueReader,
    QueueWriter,
    WriterConfig,
)
from chronicle_async.queue import waits as _waits
from chronicle_async.control import aio

TINY = WriterConfig(segment_size=16 * 1024)
_SEQ = struct.Struct("<q")
BOUND = 10.0  # generous limit on any single await in these tests


# -- the writer process (module level: spawn pickles it by name) ---------------------------------


def write_paced(path: str, count: int, conn: Any) -> None:
    """Child: append ``count`` messages whose payload is their index, pacing them so the reader parks."""
    w = Queue.open_publisher(path, TINY)
    conn.send("open")
    conn.recv()  # the test is listening
    for i in range(count):
        w.append(7, _SEQ.pack(i) * 4)
        if i % 25 == 24:
            time.sleep(0.002)  # let the consumer drain and park between bursts
    w.close()
    conn.send("done")


# -- fixtures --------------------------------------------------------------------------------------


@pytest.fixture
def writers():
    """Writers opened in this process, closed at teardown."""
    made: list[QueueWriter] = []

    def make(path: pathlib.Path, config: WriterConfig = TINY) -> QueueWriter:
        w = Queue.open_publisher(path, config)
        made.append(w)
        return w

    yield make
    for w in made:
        if not w.closed:
            w.close()


@pytest.fixture
def readers():
    """Readers opened in this process, closed at teardown."""
    made: list[Any] = []

    def make(path: pathlib.Path, name: str | None = None, start: str = "earliest") -> QueueReader:
        r = Queue.open_subscriber(path, name, start)
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()


def later(delay: float, fn: Any, *args: Any) -> threading.Thread:
    """Call ``fn(*args)`` from another thread after ``delay`` seconds."""

    def run() -> None:
        time.sleep(delay)
        fn(*args)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


async def wait_until(predicate: Any, timeout: float = BOUND) -> None:
    """Poll ``predicate`` on the loop until it holds, or fail."""
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(0.005)


# -- async for across processes ------------------------------------------------------------------


async def test_async_for_receives_every_message_of_a_writer_process_in_order(tmp_path: pathlib.Path) -> None:
    """A writer in another process appends 2000 messages in paced bursts; ``async for`` gets each once, in order."""
    path = str(tmp_path / "q")
    count = 2000
    ctx = multiprocessing.get_context("spawn")
    here, there = ctx.Pipe()
    proc = ctx.Process(target=write_paced, args=(path, count, there), daemon=True)
    proc.start()
    try:
        assert await asyncio.to_thread(here.poll, BOUND), "the writer process did not start"
        assert here.recv() == "open"
        with Queue.open_subscriber(path, None, "earliest") as r:
            here.send("go")
            got: list[int] = []

            async def consume() -> None:
                async for m in r:
                    assert m.type_id == 7
                    assert bytes(m.payload) == _SEQ.pack(m.seq) * 4
                    got.append(m.seq)
                    if m.seq == count - 1:
                        break

            await asyncio.wait_for(consume(), BOUND)
            assert got == list(range(count))
            assert _waits.registered_waits() == 0
    finally:
        proc.join(BOUND)
        if proc.is_alive():
            proc.kill()
    assert proc.exitcode == 0


def test_async_for_on_uvloop_is_woken_by_a_writer_thread(queue_dir, writers, readers) -> None:
    """On uvloop too, ``async for`` parks in the shared waker and gets 50 paced messages in order."""
    uvloop = pytest.importorskip("uvloop")
    w = writers(queue_dir)
    r = readers(queue_dir)

    def write() -> None:
        for i in range(50):
            w.append(1, bytes([i]))
            time.sleep(0.001)

    async def main() -> list[int]:
        got: list[int] = []

        async def consume() -> None:
            async for m in r:
                got.append(m.payload[0])
                if len(got) == 50:
                    return

        later(0.05, write)
        await asyncio.wait_for(consume(), BOUND)
        return got

    assert uvloop.run(main()) == list(range(50))
    assert _waits.registered_waits() == 0


# -- wait_async ------------------------------------------------------------------------------------


async def test_wait_async_returns_true_at_once_when_a_message_is_already_there(queue_dir, writers, readers) -> None:
    """With data at the reader's position, ``wait_async`` answers without registering with the waker."""
    w = writers(queue_dir)
    w.append(1, b"ready")
    r = readers(queue_dir)
    t0 = time.monotonic()
    assert await asyncio.wait_for(aio.wait_async(r, 5.0), BOUND) is True
    assert time.monotonic() - t0 < 0.5
    assert bytes(r.next().payload) == b"ready"


async def test_wait_async_returns_false_when_its_timeout_passes_without_a_write(queue_dir, writers, readers) -> None:
    """Nothing written: ``wait_async(timeout=0.2)`` gives False after about 0.2 s, and leaves no registration."""
    writers(queue_dir)
    r = readers(queue_dir)
    t0 = time.monotonic()
    assert await asyncio.wait_for(r.wait_async(0.2), BOUND) is False
    elapsed = time.monotonic() - t0
    assert 0.19 <= elapsed < 1.0
    assert _waits.registered_waits() == 0
    assert await aio.wait_async(r, 0) is False  # a zero timeout only looks


async def test_wait_async_wakes_within_a_second_of_a_write_from_another_thread(queue_dir, writers, readers) -> None:
    """A parked ``wait_async`` returns True soon after another thread appends (generous bound: 1 s)."""
    w = writers(queue_dir)
    r = readers(queue_dir)
    written: list[float] = []

    def write() -> None:
        written.append(time.monotonic())
        w.append(1, b"wake")

    later(0.2, write)
    assert await asyncio.wait_for(r.wait_async(5.0), BOUND) is True
    assert time.monotonic() - written[0] < 1.0
    assert r.next().payload.tobytes() == b"wake"


async def test_wait_async_returns_false_early_when_the_writer_closes_during_the_wait(queue_dir, writers, readers) -> None:
    """Like ``QueueReader.wait``: the writer closing the queue ends the wait with False before the timeout."""
    w = writers(queue_dir)
    r = readers(queue_dir)
    later(0.2, w.close)
    t0 = time.monotonic()
    assert await asyncio.wait_for(r.wait_async(5.0), BOUND) is False
    assert time.monotonic() - t0 < 2.0


async def test_async_for_keeps_waiting_across_a_writer_close_and_restart(queue_dir, writers, readers) -> None:
    """``async for`` does not end when the writer closes; it delivers the next writer's messages."""
    w = writers(queue_dir)
    w.append(1, b"first")
    r = readers(queue_dir)
    seen: list[bytes] = []

    async def consume() -> None:
        async for m in r:
            seen.append(bytes(m.payload))
            if len(seen) == 2:
                return

    task = asyncio.create_task(consume())
    await wait_until(lambda: seen == [b"first"])
    w.close()
    await asyncio.sleep(0.1)
    assert not task.done(), "the iteration ended when the writer closed"
    w2 = await asyncio.to_thread(writers, queue_dir)
    w2.append(1, b"second")
    await asyncio.wait_for(task, BOUND)
    assert seen == [b"first", b"second"]


async def test_cancelling_a_waiting_task_leaves_no_registration_behind(queue_dir, writers, readers) -> None:
    """A task cancelled while awaiting removes its registration at once; the waker keeps serving others."""
    w = writers(queue_dir)
    r1 = readers(queue_dir)
    r2 = readers(queue_dir)
    tasks = [asyncio.create_task(aio.wait_async(r1)), asyncio.create_task(anext(aiter(r2)))]
    await wait_until(lambda: _waits.registered_waits() == 2)
    for t in tasks:
        t.cancel()
    for t in tasks:
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(t, BOUND)
    assert _waits.registered_waits() == 0
    waker = _waits.waker_thread()
    assert waker is not None and waker.is_alive()
    # the waker is still healthy: a new wait is woken by a write
    later(0.05, w.append, 1, b"after")
    assert await asyncio.wait_for(r1.wait_async(5.0), BOUND) is True
    assert _waits.registered_waits() == 0


async def test_many_readers_awaited_by_many_tasks_share_one_waker_thread(tmp_path: pathlib.Path, writers, readers) -> None:
    """Ten queues, three readers each, thirty awaiting tasks: one waker thread, and each task woken by its own queue."""
    dirs = [tmp_path / f"q{i}" for i in range(10)]
    ws = [writers(d) for d in dirs]
    rs = [[readers(d) for _ in range(3)] for d in dirs]
    before = {t.ident for t in threading.enumerate()}
    tasks = [asyncio.create_task(aio.wait_async(r, BOUND)) for group in rs for r in group]
    await wait_until(lambda: _waits.registered_waits() == 30)
    wakers = [t for t in threading.enumerate() if t.name == _waits.WAKER_THREAD_NAME]
    assert len(wakers) == 1
    assert len({t.ident for t in threading.enumerate()} - before - {wakers[0].ident}) == 0  # no thread per reader
    for i in range(0, 10, 2):  # wake the even queues only
        ws[i].append(1, b"x")
    even = [tasks[3 * i + k] for i in range(0, 10, 2) for k in range(3)]
    assert await asyncio.wait_for(asyncio.gather(*even), BOUND) == [True] * 15
    await asyncio.sleep(0.05)
    assert not any(tasks[3 * i + k].done() for i in range(1, 10, 2) for k in range(3))
    assert _waits.registered_waits() == 15
    for i in range(1, 10, 2):
        ws[i].append(1, b"y")
    assert await asyncio.wait_for(asyncio.gather(*tasks), BOUND) == [True] * 30
    assert _waits.registered_waits() == 0


async def test_a_reader_closed_while_awaited_fails_its_wait_with_queue_closed_error(queue_dir, writers) -> None:
    """Closing a reader under an awaiting task raises QueueClosedError in that task (within a park slice)."""
    writers(queue_dir)
    r = Queue.open_subscriber(queue_dir, None, "earliest")
    task = asyncio.create_task(aio.wait_async(r))
    await wait_until(lambda: _waits.registered_waits() == 1)
    r.close()
    with pytest.raises(QueueClosedError):
        await asyncio.wait_for(task, 3.0)
    assert _waits.registered_waits() == 0


async def test_wait_async_rejects_bad_arguments_with_typed_errors(queue_dir, writers, readers) -> None:
    """A wrong source type, or a negative / NaN / non-numeric timeout or spin, raises a typed error."""
    writers(queue_dir)
    r = readers(queue_dir)
    with pytest.raises(ArgumentTypeError):
        await aio.wait_async(object())  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):
        await aio.wait_async(r, -1)
    with pytest.raises(InvalidArgumentError):
        await aio.wait_async(r, float("nan"))
    with pytest.raises(ArgumentTypeError):
        await aio.wait_async(r, "1")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):
        await aio.wait_async(r, 1, spin=1.0)
    with pytest.raises(ArgumentTypeError):
        await aio.next_async([])  # type: ignore[arg-type]
    r.close()
    with pytest.raises(QueueClosedError):
        await aio.wait_async(r, 0.1)


# -- fan-in ----------------------------------------------------------------------------------------


async def test_fanin_async_iteration_merges_every_source_in_timestamp_order(tmp_path: pathlib.Path, writers) -> None:
    """``async for source, msg in fanin`` merges three queues by timestamp, including messages written while it waits."""
    dirs = [tmp_path / f"q{i}" for i in range(3)]
    ws = [writers(d) for d in dirs]
    base = time.time_ns()
    for i, w in enumerate(ws):  # already there: interleaved timestamps
        for k in range(3):
            w.append(1, bytes([i, k]), base + (3 * k + i) * 1000)
    fan = FanInReader([Queue.open_subscriber(d, None, "earliest") for d in dirs])
    try:
        got: list[tuple[int, int, bytes]] = []

        async def consume() -> None:
            async for source, m in fan:
                got.append((source, m.timestamp_ns, bytes(m.payload)))
                if len(got) == 12:
                    return

        task = asyncio.create_task(consume())
        await wait_until(lambda: len(got) == 9)
        assert [ts for _s, ts, _p in got] == sorted(ts for _s, ts, _p in got)
        assert [(s, p[0]) for s, _ts, p in got] == [(k % 3, k % 3) for k in range(9)]
        await wait_until(lambda: _waits.registered_waits() == 1)  # parked on all three empty sources at once
        for i in (2, 0, 1):  # each source wakes it
            ws[i].append(1, bytes([i, 9]))
            await asyncio.sleep(0.02)
        await asyncio.wait_for(task, BOUND)
        assert [p for _s, _ts, p in got[9:]] == [bytes([2, 9]), bytes([0, 9]), bytes([1, 9])]
    finally:
        fan.close()


async def test_fanin_wait_async_holds_a_message_for_its_lateness_unless_the_empty_source_is_written(
    tmp_path: pathlib.Path, writers
) -> None:
    """With ``lateness``, the wait returns when the held message is due, or earlier when the empty source writes."""
    a, b = tmp_path / "a", tmp_path / "b"
    wa, wb = writers(a), writers(b)
    fan = FanInReader([Queue.open_subscriber(a, None, "earliest"), Queue.open_subscriber(b, None, "earliest")], lateness=0.3)
    try:
        wa.append(1, b"a0")
        t0 = time.monotonic()
        assert await asyncio.wait_for(fan.wait_async(5.0), BOUND) is True  # the hold ran out
        assert 0.2 <= time.monotonic() - t0 < 1.5
        assert bytes(fan.next()[1].payload) == b"a0"
        wa.append(1, b"a1")
        later(0.05, wb.append, 1, b"b1")
        t0 = time.monotonic()
        assert await asyncio.wait_for(fan.wait_async(5.0), BOUND) is True  # source b was written first
        assert time.monotonic() - t0 < 0.25
        assert bytes(fan.next()[1].payload) == b"a1"  # the older one; b1 is now held (a is empty again)
        assert await asyncio.wait_for(fan.wait_async(0.05), BOUND) is False  # a timeout shorter than the hold
        assert await asyncio.wait_for(fan.wait_async(5.0), BOUND) is True
        assert bytes(fan.next()[1].payload) == b"b1"
    finally:
        fan.close()
    assert _waits.registered_waits() == 0
