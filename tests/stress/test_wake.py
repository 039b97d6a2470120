"""Parked readers woken across processes: by a Python writer, across a roll, by jitted code, on close.

The reader process parks in ``wait()``; the test sees it parked through the waiter count in
``control.cq`` (readers add 1 before the futex wait). Wake-ups are bounded generously (1 s)
using CLOCK_MONOTONIC stamps taken in the two processes (the clock is system-wide).
"""
from __future__ import annotations

import time

import pytest

from chronicle_async.hot import layout as L

from ._workers import read_control_i32

SEGMENT_SIZE = 64 * 1024
MAX_SIZE = 300
WAKE_BOUND = 1.0


def wait_until_parked(path: str, parker, timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while read_control_i32(path, L.CTL_WAITERS_OFFSET) < 1:
        assert parker.proc.poll() is None, f"the reader exited instead of parking: {parker.describe()}"
        assert time.monotonic() < end, f"the reader never parked: {parker.describe()}"
        time.sleep(0.002)
    time.sleep(0.05)  # let it get from 'waiters += 1' into futex_wait (either way it must wake)


def start_writer(spawn, path: str):
    w = spawn("scripted_writer", path=path, segment_size=SEGMENT_SIZE, max_size=MAX_SIZE)
    w.expect("opened", timeout=60)
    return w


@pytest.mark.timeout(120)
@pytest.mark.parametrize("strategy,batch", [("park", False), ("spin_then_park", False), ("park", True)],
                         ids=["park-append", "spin_then_park-append", "park-append_batch"])
def test_parked_reader_is_woken_by_first_append_of_writer_process(spawn, queue_dir, strategy, batch):
    path = str(queue_dir / "q")
    writer = start_writer(spawn, path)
    count = 5 if batch else 1
    parker = spawn("parker", path=path, name="parked", strategy=strategy, skip=0, wait_timeout=None, want=count)
    assert parker.expect("parked", timeout=60)["position"] == [0, L.SEGMENT_DATA_OFFSET]
    wait_until_parked(path, parker)

    writer.send(op="append", count=count, batch=batch)
    appended = writer.expect("appended", timeout=30)
    woke = parker.expect("woke", timeout=30)
    assert woke["returned"] is True
    assert woke["t1"] - appended["t0"] < WAKE_BOUND, f"woken {woke['t1'] - appended['t0']:.3f} s after the append"
    assert [[s, n] for s, n, _ok in woke["messages"]] == appended["written"]
    assert all(ok for _s, _n, ok in woke["messages"]) and appended["written"][0][0] == 0
    assert woke["disconnect"] is None
    writer.send(op="exit")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("jit", [False, True], ids=["python-writer", "jitted-writer"])
def test_reader_parked_at_segment_end_is_woken_by_first_message_of_next_segment(spawn, queue_dir, jit):
    path = str(queue_dir / "q")
    writer = start_writer(spawn, path)
    if jit:
        writer.send(op="warm_jit")  # compile before the reader parks: the bound is for the wake only
        writer.expect("warmed", timeout=120)
    writer.send(op="fill_segment")
    filled = writer.expect("filled", timeout=30)
    assert filled["segment_id"] == 0 and filled["write_offset"] == L.segment_data_end(SEGMENT_SIZE)
    n = len(filled["written"])

    parker = spawn("parker", path=path, name="at-end", strategy="park", skip=n, wait_timeout=None)
    parked = parker.expect("parked", timeout=60)
    assert parked["position"] == [0, L.segment_data_end(SEGMENT_SIZE)] and parked["next_seq"] == n
    wait_until_parked(path, parker)

    writer.send(op="append", count=1, jit=jit)  # does not fit: rolls to segment 1, then appends there
    appended = writer.expect("appended", timeout=30)
    assert appended["segment_id"] == 1
    woke = parker.expect("woke", timeout=30)
    assert woke["returned"] is True
    assert woke["t1"] - appended["t0"] < WAKE_BOUND, f"woken {woke['t1'] - appended['t0']:.3f} s after the append"
    (seq, size), = appended["written"]
    assert seq == n and woke["messages"] == [[seq, size, True]]
    assert woke["position"][0] == 1
    writer.send(op="exit")


@pytest.mark.timeout(180)
def test_parked_reader_is_woken_by_jitted_append(spawn, queue_dir):
    """``chronicle_async.hot.append.append`` called from the writer's own ``numba.njit`` function."""
    path = str(queue_dir / "q")
    writer = start_writer(spawn, path)
    writer.send(op="warm_jit")
    writer.expect("warmed", timeout=120)
    parker = spawn("parker", path=path, name="jit", strategy="park", skip=0, wait_timeout=None, want=3)
    parker.expect("parked", timeout=60)
    wait_until_parked(path, parker)

    writer.send(op="append", count=3, jit=True)
    appended = writer.expect("appended", timeout=120)
    woke = parker.expect("woke", timeout=30)
    assert woke["returned"] is True
    assert woke["t1"] - appended["t0"] < WAKE_BOUND, f"woken {woke['t1'] - appended['t0']:.3f} s after the append"
    got = woke["messages"]
    assert all(ok for _s, _n, ok in got)
    assert [[s, n] for s, n, _ok in got] == appended["written"] and got[0][0] == 0
    writer.send(op="exit")


@pytest.mark.timeout(120)
def test_reader_parked_with_timeout_sees_writer_closed(spawn, queue_dir):
    """wait() returns (False: nothing came) and detect_disconnect names the clean close."""
    path = str(queue_dir / "q")
    writer = start_writer(spawn, path)
    parker = spawn("parker", path=path, name="closing", strategy="spin_then_park", skip=0, wait_timeout=2.0,
                   want=0)
    parker.expect("parked", timeout=60)
    wait_until_parked(path, parker)
    writer.send(op="close")
    writer.expect("closed", timeout=30)
    woke = parker.expect("woke", timeout=30)
    assert woke["returned"] is False and woke["messages"] == []
    assert woke["disconnect"] == "WRITER_CLOSED"


@pytest.mark.timeout(120)
def test_reader_parked_without_timeout_returns_promptly_when_writer_closes(spawn, queue_dir):
    path = str(queue_dir / "q")
    writer = start_writer(spawn, path)
    parker = spawn("parker", path=path, name="closing", strategy="spin_then_park", skip=0, wait_timeout=None,
                   want=0)
    parker.expect("parked", timeout=60)
    wait_until_parked(path, parker)
    writer.send(op="close")
    closed = writer.expect("closed", timeout=30)
    woke = parker.expect("woke", timeout=5.0)  # generous: it should take well under WAKE_BOUND
    assert woke["t1"] - closed["t0"] < WAKE_BOUND
    assert woke["messages"] == []
    assert woke["disconnect"] == "WRITER_CLOSED"


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.parametrize("strategy,jit", [("park", False), ("spin_then_park", False), ("park", True)],
                         ids=["park", "spin_then_park", "park-jitted-writers"])
def test_ping_pong_between_two_processes_never_loses_a_wake(spawn, queue_dir, strategy, jit):
    """Two processes, two queues, 20000 round trips; every wait is wait(timeout=None).

    A lost wake-up anywhere (the commit / waiter-count race, or a roll: 16 KiB segments roll
    every few dozen messages) leaves both sides parked for ever, which the timeout turns into
    a failure.
    """
    rounds = 20000
    a, b = str(queue_dir / "ping"), str(queue_dir / "pong")
    common = dict(rounds=rounds, strategy=strategy, segment_size=L.MIN_SEGMENT_SIZE, max_size=MAX_SIZE, jit=jit)
    ping = spawn("pingpong", out_path=a, in_path=b, serve_first=True, **common)
    pong = spawn("pingpong", out_path=b, in_path=a, serve_first=False, **common)
    res = [p.result(timeout=150) for p in (ping, pong)]
    assert all(x["rounds"] == rounds for x in res)
    assert all(x["segment_id"] >= 3 for x in res), f"too few rolls: {res}"
    assert sum(x["parks"] for x in res) > 0, "no side ever had to wait"


@pytest.mark.timeout(120)
def test_a_reader_killed_while_parked_stops_costing_the_writer_wakes(spawn, queue_dir):
    """kill -9 leaves the waiter count raised; its park deadline expires within one slice,
    after which appends make no futex wake (notify_seq only moves on a wake)."""
    import os
    import signal

    from chronicle_async import Queue
    from chronicle_async.hot import wait as W

    path = str(queue_dir / "q")
    with Queue.open_publisher(path) as w:
        parker = spawn("parker", path=path, name="doomed", strategy="park", skip=0, wait_timeout=None, want=1)
        parker.expect("parked", timeout=60)
        wait_until_parked(path, parker)
        os.kill(parker.proc.pid, signal.SIGKILL)
        parker.proc.wait(timeout=10)
        assert read_control_i32(path, L.CTL_WAITERS_OFFSET) == 1  # the leak this guards against
        time.sleep(W.PARK_SLICE_S + 3 * w.config.heartbeat_interval + 0.2)
        before = read_control_i32(path, L.CTL_NOTIFY_SEQ_OFFSET)
        for i in range(100):
            w.append(1, b"after the reader died %d" % i)
        assert read_control_i32(path, L.CTL_NOTIFY_SEQ_OFFSET) == before
        # and a live parker still gets woken, despite the stale count
        with Queue.open_subscriber(path, None, "latest", wait_strategy="park") as r:
            import threading

            got = []
            t = threading.Thread(target=lambda: got.append(r.wait(timeout=5.0)))
            t.start()
            time.sleep(0.2)
            t0 = time.monotonic()
            w.append(1, b"wake up")
            t.join(10)
            assert got == [True] and time.monotonic() - t0 < WAKE_BOUND
