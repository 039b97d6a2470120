"""Every wait ends at a wake, never at the park slice while data waits, and no wait compiles.

A writer process appends to two queues every 150-450 µs (jittered) while a second process burns
a CPU beside it, and one consumer of each kind reads every message: ``QueueReader.wait``,
``FanInReader.wait``, ``async for`` and ``wait_async`` on asyncio and on uvloop, and a HotLoop
with ``Park`` and with ``Backoff``. Each counts how its parks ended (:class:`ParkCounts`).

While the writer is active a park slice (0.1-1 s) can only run out if a wake was lost, so the
tests assert ``slice == 0`` and ``missed == 0`` over thousands of parks, not a latency bound:
a lost wake that costs a whole slice is a count of 1 here however noisy the machine is.

They also count compiled kernel signatures: numba compiling (or loading from its cache) a wake
or park kernel on first use held up the first wait of a process by 0.3-0.8 s with a cold
cache (issue 9). Opening a queue now loads them, so a wait or a wake never compiles.
"""
from __future__ import annotations

import asyncio
import time

import numba
import numpy as np
import pytest
import uvloop

from chronicle_async import Backoff, FanInReader, HotLoop, Park, ParkCounts, Queue
from chronicle_async.queue import warm as _warm
from chronicle_async.queue import waits as _waits

COUNT = 3000  # messages per queue
GAP_US = 300  # mean gap between the writer's rounds (150-450 µs)
SEGMENT = 1 << 20  # ~16k records: the readers cross segments too

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def _compiled(kernels) -> list[int]:
    return [len(k.overloads) for k in kernels]


@pytest.fixture
def queues(tmp_path, spawn):
    """Two queues fed by a paced writer process, with a CPU hog beside; yields (paths, go)."""
    paths = [str(tmp_path / "a"), str(tmp_path / "b")]
    writer = spawn("paced_writer", paths=paths, count=COUNT, gap_us=GAP_US, segment_size=SEGMENT)
    opened = writer.expect("opened", timeout=120)
    assert all(n >= 1 for n in opened["compiled"]), f"open_publisher must load the wake kernels: {opened}"
    hog = spawn("hog", seconds=60)
    hog.expect("started", timeout=60)

    def go() -> dict:
        writer.send(go=1)
        return writer

    yield paths, go
    hog.kill9()


def _assert_woken_not_sliced(counts: ParkCounts, what: str) -> None:
    assert counts.missed == 0, f"{what}: {counts.missed} parks ran out their slice while data was there: {counts}"
    assert counts.slice == 0, f"{what}: a park ran out a whole slice while the writer wrote every 0.45 ms: {counts}"
    assert counts.woken + counts.moved >= COUNT // 20, f"{what}: too few parks were woken to test anything: {counts}"


def _finish(writer) -> None:
    res = writer.result(timeout=120)
    assert res["compiled_at_end"] == res["compiled_at_open"], f"a wake compiled a kernel in the writer: {res}"


def _seq_of(m) -> int:
    return int.from_bytes(bytes(m.payload), "little")


def test_queue_reader_wait_ends_every_park_at_a_wake(queues):
    paths, go = queues
    r = Queue.open_subscriber(paths[0], None, "latest")
    before = _compiled(_warm.WAITER_KERNELS)
    assert all(n >= 1 for n in before), "opening a reader must load the park kernels"
    writer = go()
    got = 0
    while got < COUNT:
        m = r.next()
        if m is None:
            assert r.wait(timeout=30), f"no message for 30 s after {got}"
            continue
        assert _seq_of(m) == got
        got += 1
    _finish(writer)
    _assert_woken_not_sliced(r.park_counts, "QueueReader.wait")
    assert _compiled(_warm.WAITER_KERNELS) == before, "a wait compiled a kernel"
    r.close()


def test_fanin_wait_ends_every_park_at_a_wake(queues):
    paths, go = queues
    f = FanInReader([Queue.open_subscriber(p, None, "latest") for p in paths])
    before = _compiled(_warm.WAITER_KERNELS)
    writer = go()
    got = [0, 0]
    while sum(got) < 2 * COUNT:
        item = f.next()
        if item is None:
            assert f.wait(timeout=30), f"no message for 30 s after {got}"
            continue
        src, m = item
        assert _seq_of(m) == got[src]
        got[src] += 1
    _finish(writer)
    _assert_woken_not_sliced(f.park_counts, "FanInReader.wait")
    assert _compiled(_warm.WAITER_KERNELS) == before, "a wait compiled a kernel"
    f.close()


@pytest.mark.parametrize("loop_kind", ["asyncio", "uvloop"])
@pytest.mark.parametrize("how", ["async for", "wait_async"])
def test_asyncio_waits_end_every_park_of_the_waker_at_a_wake(queues, loop_kind, how):
    paths, go = queues

    async def consume() -> None:
        r = Queue.open_subscriber(paths[0], None, "latest")
        compiled = _compiled(_warm.WAITER_KERNELS)
        writer = go()
        got = 0
        if how == "async for":
            async for m in r:
                assert _seq_of(m) == got
                got += 1
                if got == COUNT:
                    break
        else:
            while got < COUNT:
                m = r.next()
                if m is None:
                    assert await r.wait_async(timeout=30), f"no message for 30 s after {got}"
                    continue
                assert _seq_of(m) == got
                got += 1
        _finish(writer)
        assert _compiled(_warm.WAITER_KERNELS) == compiled, "a wait compiled a kernel"
        r.close()

    before = np.array(_waits.park_counts())
    if loop_kind == "uvloop":
        uvloop.run(consume())
    else:
        asyncio.run(consume())
    counts = ParkCounts(*(int(x) for x in np.array(_waits.park_counts()) - before))
    _assert_woken_not_sliced(counts, f"{how} on {loop_kind} (the waker thread)")


@numba.njit(cache=False)
def _count(state, ctx, source, type_id, seq, timestamp_ns, payload):
    v = np.int64(0)
    for j in range(8):
        v |= np.int64(payload[j]) << (8 * j)
    if v != state[source, 0]:
        state[source, 1] += 1  # out of order or lost
    state[source, 0] = v + 1
    return 0


@pytest.mark.parametrize("idle", [Park(), Backoff(spins=10, yields=0)], ids=["Park", "Backoff"])
def test_hot_loop_parks_end_at_a_wake(queues, idle):
    paths, go = queues
    state = np.zeros((2, 2), np.int64)
    loop = HotLoop(_count, state, idle=idle)
    for i, p in enumerate(paths):
        loop.add_reader(Queue.open_subscriber(p, None, "latest"), source=i)
    loop.start()
    try:
        writer = go()
        end = time.monotonic() + 60
        while loop.messages < 2 * COUNT and time.monotonic() < end:
            time.sleep(0.005)
        counts = loop.park_counts  # now: once idle, the loop parks for whole slices, rightly
        assert loop.messages == 2 * COUNT, f"the loop handled {loop.messages} of {2 * COUNT}"
        assert state[:, 1].tolist() == [0, 0] and state[:, 0].tolist() == [COUNT, COUNT]
        _assert_woken_not_sliced(counts, f"HotLoop with {idle}")
        _finish(writer)
    finally:
        loop.close()
