"""A HotLoop fed by writer processes: a million messages, readers added while running, stop while
busy, a writer SIGKILLed mid-stream, and the asyncio event loop beside a busy-spinning loop.

Writers are ``tests/stress/_workers.py`` processes (fork + exec): payloads are a pure function
of the seq, so the jitted handler below re-derives every message (size, type id, every byte)
and checks each source's seq continuity, counting problems into its state instead of stopping.
All tests share that one handler and state type: the cycle is compiled once (~4 s).
"""
from __future__ import annotations

import asyncio
import os
import signal
import statistics
import time

import numba
import numpy as np
import pytest

from chronicle_async import BusySpin, HotLoop, Queue, WriterConfig
from chronicle_async.hot import layout as L
from chronicle_async.queue.position import read_reader_position

from ._jit_payload import mix64 as _mix64
from ._workers import expected

SEGMENT_SIZE = 1 << 20
MAX_SIZE = 48
N_SOURCES = 4

# state: int64[N_SOURCES, 8], one row per source id
S_NEXT, S_COUNT, S_ERRORS, S_FIRST_BAD, S_BAD_KIND = 0, 1, 2, 3, 4


@numba.njit(cache=False)
def check(state, ctx, source, type_id, seq, timestamp_ns, payload):
    """Verify message ``seq`` against ``_workers.expected(seq, MAX_SIZE)`` and seq continuity."""
    row = state[source]
    s = np.uint64(seq)
    kind = 0
    if seq != row[S_NEXT]:
        kind = 1  # a gap, a duplicate or a step back
    elif np.int64(_mix64(s) % np.uint64(MAX_SIZE + 1)) != payload.shape[0]:
        kind = 2
    elif np.int64(_mix64(s ^ np.uint64(0x5A5A5A5A)) & np.uint64(0xFFFF)) != type_id:
        kind = 3
    else:
        h = _mix64(~s)
        for j in range(payload.shape[0]):
            word = s if (j & 15) < 8 else h
            if np.uint8((word >> np.uint64(8 * (j & 7))) & np.uint64(0xFF)) != payload[j]:
                kind = 4
                break
    if kind != 0:
        if row[S_ERRORS] == 0:
            row[S_FIRST_BAD] = seq
            row[S_BAD_KIND] = kind
        row[S_ERRORS] += 1
    row[S_NEXT] = seq + 1
    row[S_COUNT] += 1
    return 0


def new_state() -> np.ndarray:
    st = np.zeros((N_SOURCES, 8), np.int64)
    st[:, S_FIRST_BAD] = -1
    return st


def pinned_cpu() -> int | None:
    return 1 if len(os.sched_getaffinity(0)) >= 2 and 1 in os.sched_getaffinity(0) else None


def wait_until(pred, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.005)


def committed_next_seq(path: str, name: str) -> int | None:
    pos = read_reader_position(os.path.join(path, L.READERS_DIR_NAME, name + L.READER_FILE_SUFFIX))
    return None if pos is None else pos[2]


def count_in_queue(path: str) -> int:
    """Messages readable from the queue now (a fresh anonymous reader from the start); checks contiguity."""
    n = 0
    with Queue.open_subscriber(path, None, "earliest") as r:
        for m in r:
            assert m.seq == n, f"{path}: seq {m.seq} where {n} was expected"
            n += 1
    return n


def assert_clean(state: np.ndarray, sources) -> None:
    for s in sources:
        row = state[s]
        assert row[S_ERRORS] == 0, (
            f"source {s}: {row[S_ERRORS]} bad messages, the first at seq {row[S_FIRST_BAD]} (kind {row[S_BAD_KIND]}: "
            "1 = seq not contiguous, 2 = size, 3 = type id, 4 = payload byte)"
        )


@pytest.fixture
def loops():
    made: list[HotLoop] = []

    def make(state, **kw) -> HotLoop:
        lp = HotLoop(check, state, **kw)
        made.append(lp)
        return lp

    yield make
    for lp in made:
        lp.close()


def test_the_checking_handler_flags_a_gap_a_wrong_size_a_wrong_type_and_a_wrong_byte():
    """The stress tests' "zero errors" means something only if the checker can see each kind of damage."""

    def feed(seq: int, tamper: str = "") -> None:
        t, p = expected(seq, MAX_SIZE)
        data = bytearray(p)
        if tamper == "byte":
            data[len(data) // 2] ^= 0x01
        elif tamper == "size":
            data += b"\0"
        elif tamper == "type":
            t ^= 1
        arr = np.frombuffer(bytes(data), np.uint8)  # read-only, as the loop passes it
        assert check(state, None, 0, t, seq, 0, arr) == 0

    state = new_state()
    for seq in range(200):
        feed(seq)
    assert_clean(state, [0])
    assert state[0, S_COUNT] == 200
    big = next(s for s in range(200, 400) if len(expected(s, MAX_SIZE)[1]) >= 20)
    for kind, tamper, seq in ((1, "", big + 1), (2, "size", big + 2), (3, "type", big + 3), (4, "byte", big + 4)):
        state = new_state()
        state[0, S_NEXT] = big if kind == 1 else seq
        feed(seq, tamper)
        assert (state[0, S_ERRORS], state[0, S_BAD_KIND], state[0, S_FIRST_BAD]) == (1, kind, seq)


# -- (a) a million messages from three processes ------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_a_pinned_loop_handles_a_million_messages_from_three_writer_processes_exactly_once_in_order(
    spawn, tmp_path, loops
):
    per_writer = 333_334
    paths = [str(tmp_path / f"q{i}") for i in range(3)]
    state = new_state()
    cpu = pinned_cpu()
    loop = loops(state, cpu=cpu)
    t0 = time.monotonic()
    workers = [spawn("writer", path=p, count=per_writer, segment_size=SEGMENT_SIZE, max_size=MAX_SIZE) for p in paths]
    workers[0].expect("opened", timeout=60)
    loop.add_reader(Queue.open_subscriber(paths[0], "hot", "earliest"), source=0)
    loop.start()
    for i in (1, 2):  # added while the loop runs and the writers write
        workers[i].expect("opened", timeout=60)
        assert loop.running
        assert loop.add_reader(Queue.open_subscriber(paths[i], "hot", "earliest"), source=i) == i
    results = [w.result(timeout=120) for w in workers]
    assert [r["next_seq"] for r in results] == [per_writer] * 3
    assert all(r["segment_id"] >= 10 for r in results), f"the writers must roll many times: {results}"
    wait_until(lambda: loop.messages == 3 * per_writer, timeout=60,
               what=f"{3 * per_writer} messages (handled: {[loop.delivered(s) for s in range(3)]})")
    elapsed = time.monotonic() - t0
    assert loop.running and loop.error is None
    loop.stop()
    assert_clean(state, range(3))
    assert state[:3, S_COUNT].tolist() == [per_writer] * 3  # each message exactly once...
    assert state[:3, S_NEXT].tolist() == [per_writer] * 3  # ...in order, from seq 0
    assert [loop.delivered(s) for s in range(3)] == [per_writer] * 3
    assert loop.messages == 3 * per_writer
    if cpu is not None:
        assert loop.pin_error is None, loop.pin_error
    loop.close()
    for p in paths:
        with Queue.open_subscriber(p, "hot") as r:
            assert r.next_seq == per_writer and r.next() is None
    print(f"\n{3 * per_writer} messages through a HotLoop (cpu={cpu}) in {elapsed:.2f} s, "
          f"{loop.cycles} passes, {loop.parks} parks")


# -- (b) stop while busy -----------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_stop_while_writers_are_producing_returns_promptly_with_every_position_committed(spawn, tmp_path, loops):
    paths = [str(tmp_path / f"q{i}") for i in range(2)]
    state = new_state()
    loop = loops(state, idle=BusySpin())
    workers = [spawn("appender", path=p, segment_size=SEGMENT_SIZE, max_size=MAX_SIZE) for p in paths]
    for w in workers:
        w.expect("opened", timeout=60)
    for i, p in enumerate(paths):
        loop.add_reader(Queue.open_subscriber(p, "busy", "earliest"), source=i)
    loop.start()
    wait_until(lambda: min(loop.delivered(0), loop.delivered(1)) > 50_000, timeout=60, what="50,000 messages per source")
    assert all(w.proc.poll() is None for w in workers), "the appenders must still be producing"
    t0 = time.monotonic()
    loop.stop(timeout=5.0)
    took = time.monotonic() - t0
    assert not loop.running
    assert took < 2.0, f"stop() took {took:.3f} s while busy"
    delivered = [loop.delivered(s) for s in range(2)]
    time.sleep(0.2)  # the writers go on after the stop: what they write now must stay unconsumed
    for w in workers:
        assert w.kill9() == -signal.SIGKILL
    assert_clean(state, range(2))
    assert state[:2, S_NEXT].tolist() == delivered
    for i, p in enumerate(paths):
        # committed by the stop itself (read from the file while the loop still owns the reader)
        assert committed_next_seq(p, "busy") == delivered[i]
        assert count_in_queue(p) > delivered[i], "the writers wrote on after the stop"
    r = loop.remove_reader(0)
    assert r.next_seq == delivered[0] and r.next().seq == delivered[0]
    r.close()
    loop.close()
    with Queue.open_subscriber(paths[1], "busy") as r:
        assert r.next_seq == delivered[1]
    print(f"\nstop() while busy took {took * 1e3:.2f} ms after {sum(delivered)} messages")


# -- (c) a writer killed mid-stream --------------------------------------------------------------


@pytest.mark.timeout(120)
def test_a_writer_killed_mid_stream_does_not_disturb_the_loop_and_a_restarted_writer_continues(spawn, tmp_path, loops):
    killed, steady = str(tmp_path / "killed"), str(tmp_path / "steady")
    steady_count = 150_000
    state = new_state()
    loop = loops(state)
    victim = spawn("appender", path=killed, segment_size=SEGMENT_SIZE, max_size=MAX_SIZE)
    victim.expect("opened", timeout=60)
    other = spawn("writer", path=steady, count=steady_count, segment_size=SEGMENT_SIZE, max_size=MAX_SIZE)
    other.expect("opened", timeout=60)
    loop.add_reader(Queue.open_subscriber(killed, "hot", "earliest"), source=0)
    loop.add_reader(Queue.open_subscriber(steady, "hot", "earliest"), source=1)
    loop.start()
    wait_until(lambda: loop.delivered(0) > 30_000, timeout=60, what="30,000 messages of the doomed writer")
    assert victim.kill9() == -signal.SIGKILL
    written = count_in_queue(killed)  # everything the killed writer committed
    assert written > 30_000
    wait_until(lambda: loop.delivered(0) == written, timeout=10,
               what=f"all {written} messages of the killed writer (handled {loop.delivered(0)})")
    other.result(timeout=60)
    wait_until(lambda: loop.delivered(1) == steady_count, timeout=30, what="every message of the other writer")
    assert loop.running and loop.error is None
    assert loop.delivered(0) == written  # nothing phantom after the kill
    # a new writer recovers the queue and continues the sequence: the loop follows without a hitch
    more = 20_000
    again = spawn("writer", path=killed, count=written + more, segment_size=SEGMENT_SIZE, max_size=MAX_SIZE)
    assert again.expect("opened", timeout=60)["next_seq"] == written
    again.result(timeout=60)
    wait_until(lambda: loop.delivered(0) == written + more, timeout=30,
               what=f"the restarted writer's messages (handled {loop.delivered(0)} of {written + more})")
    loop.stop()
    assert_clean(state, range(2))
    assert state[:2, S_NEXT].tolist() == [written + more, steady_count]
    assert state[:2, S_COUNT].tolist() == [written + more, steady_count]


# -- (d) asyncio stays responsive beside a spinning loop -----------------------------------------


async def sleep_lags(n: int = 500) -> list[float]:
    """Overshoot of ``asyncio.sleep(0.001)``, in seconds, ``n`` times."""
    lags = []
    for _ in range(n):
        t = time.perf_counter()
        await asyncio.sleep(0.001)
        lags.append(time.perf_counter() - t - 0.001)
    return lags


def p99(xs: list[float]) -> float:
    return statistics.quantiles(xs, n=100)[98]


async def test_the_asyncio_event_loop_stays_responsive_while_a_busy_spin_hot_loop_spins(tmp_path, loops):
    path = str(tmp_path / "idle")
    w = Queue.open_publisher(path, WriterConfig(segment_size=SEGMENT_SIZE))
    state = new_state()
    cpu = pinned_cpu()
    loop = loops(state, idle=BusySpin(), cpu=cpu)
    try:
        loop.add_reader(Queue.open_subscriber(path, None, "earliest"), source=0)
        idle = await sleep_lags()
        loop.start()
        cycles0 = loop.cycles
        spinning = await sleep_lags()
        assert loop.running
        assert loop.cycles - cycles0 > 10_000, "the hot loop was not spinning during the measurement"
        for seq in range(3):  # and it still handles messages
            w.append(*expected(seq, MAX_SIZE))
        wait_until(lambda: loop.messages == 3, timeout=2, what="messages written while spinning")
        assert_clean(state, [0])
    finally:
        loop.close()
        w.close()
    print(f"\nasyncio.sleep(1 ms) overshoot, p50/p99: idle {statistics.median(idle) * 1e3:.3f}/{p99(idle) * 1e3:.3f} ms, "
          f"beside a BusySpin HotLoop (cpu={cpu}) {statistics.median(spinning) * 1e3:.3f}/{p99(spinning) * 1e3:.3f} ms")
    assert p99(spinning) < 0.050, f"p99 asyncio lag {p99(spinning) * 1e3:.1f} ms while the hot loop spins"
