"""The reader's conveniences: next(timeout=), next_async, until_closed(), async with; append_batch's order."""
from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
import warnings

import numpy as np
import pytest

import chronicle_async as ca
from chronicle_async import Queue, WriterConfig

TINY = WriterConfig(segment_size=16 * 1024)

#: A writer in its own process: appends argv[2] messages with a short pause between, then closes.
WRITER = """
import sys, time
from chronicle_async import Queue, WriterConfig
with Queue.open_publisher(sys.argv[1], WriterConfig(segment_size=16 * 1024)) as w:
    print("open", flush=True)
    sys.stdin.readline()
    for i in range(int(sys.argv[2])):
        w.append(1, b"x%d" % i)
        if i % 50 == 0:
            time.sleep(0.01)
"""


def start_writer(path, n):
    p = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(n)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "open"
    return p


def go(p):
    p.stdin.write("go\n")
    p.stdin.flush()


def test_next_with_a_timeout_returns_none_after_about_that_long_and_parks_meanwhile(queue_dir):
    with Queue.open_publisher(queue_dir), Queue.open_subscriber(queue_dir, wait_strategy="park") as r:
        t = time.monotonic()
        assert r.next(timeout=0.2) is None
        took = time.monotonic() - t
        assert 0.19 <= took < 5
        assert r.park_counts.slice + r.park_counts.woken + r.park_counts.polled >= 1, "it parked, not spun"


def test_next_with_a_timeout_returns_a_message_appended_by_another_thread_during_the_wait(queue_dir):
    with Queue.open_publisher(queue_dir) as w, Queue.open_subscriber(queue_dir, wait_strategy="park") as r:
        threading.Timer(0.05, lambda: w.append(3, b"late")).start()
        m = r.next(timeout=10.0)
        assert (m.seq, m.type_id, bytes(m.payload)) == (0, 3, b"late")


def test_next_without_a_timeout_waits_until_a_message_comes(queue_dir):
    with Queue.open_publisher(queue_dir) as w, Queue.open_subscriber(queue_dir) as r:
        threading.Timer(0.05, lambda: w.append(1, b"x")).start()
        assert r.next(timeout=None).seq == 0


def test_next_rejects_a_negative_timeout(queue_dir):
    with Queue.open_publisher(queue_dir), Queue.open_subscriber(queue_dir) as r:
        with pytest.raises(ca.InvalidArgumentError):
            r.next(timeout=-1)


async def test_next_async_with_a_timeout_returns_none_or_the_message(queue_dir):
    with Queue.open_publisher(queue_dir) as w:
        async with Queue.open_subscriber(queue_dir) as r:
            assert await r.next_async(timeout=0.05) is None
            asyncio.get_running_loop().call_later(0.05, w.append, 2, b"y")
            m = await r.next_async(timeout=10.0)
            assert (m.seq, bytes(m.payload)) == (0, b"y")
        assert r.closed


def test_until_closed_yields_everything_a_writer_process_wrote_then_stops(queue_dir):
    p = start_writer(queue_dir, 2000)
    with Queue.open_subscriber(queue_dir) as r:
        go(p)
        got = [m.seq for m in r.until_closed()]
    assert p.wait(30) == 0
    assert got == list(range(2000))


async def test_async_for_until_closed_yields_everything_then_stops(queue_dir):
    p = start_writer(queue_dir, 2000)
    async with Queue.open_subscriber(queue_dir) as r:
        go(p)
        got = [m.seq async for m in r.until_closed()]
    assert await asyncio.to_thread(p.wait, 30) == 0
    assert got == list(range(2000))


def test_until_closed_on_a_queue_already_closed_drains_and_stops(queue_dir):
    with Queue.open_publisher(queue_dir, TINY) as w:
        w.append_batch(0, [b"a"] * 500)  # several segments
    with Queue.open_subscriber(queue_dir) as r:
        assert [m.seq for m in r.until_closed()] == list(range(500))


async def test_async_with_closes_writers_fanins_and_hot_loops(queue_dir, tmp_path):
    async with Queue.open_publisher(queue_dir) as w:
        w.append(1, b"a")
    assert w.closed
    async with ca.FanInReader([Queue.open_subscriber(queue_dir)]) as f:
        assert f.next()[1].seq == 0
    with pytest.raises(ca.QueueClosedError):
        f.next()
    async with ca.SpscRing.create(tmp_path / "ring", capacity=64) as ring:
        assert ring.try_push(b"x")
    with pytest.raises(ca.QueueClosedError):
        ring.try_push(b"y")


def test_append_batch_takes_type_ids_first_like_append(queue_dir):
    with Queue.open_publisher(queue_dir) as w:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert w.append_batch(7, [b"a", b"b"]) == 0
            assert w.append_batch([1, 2], np.zeros((2, 4), np.uint8), [10, 20]) == 2
            assert w.append_batch(type_ids=3, payloads=[b"c"]) == 4
    with Queue.open_subscriber(queue_dir) as r:
        assert [(m.type_id, len(m.payload)) for m in r] == [(7, 1), (7, 1), (1, 4), (2, 4), (3, 1)]


@pytest.mark.parametrize(
    "call",
    [
        lambda w: w.append_batch([b"a", b"b"], 7),
        lambda w: w.append_batch([b"a", b"b"], type_ids=7),
        lambda w: w.append_batch(np.array([[97], [98]], np.uint8), 7),
    ],
    ids=["positional", "keyword", "array"],
)
def test_the_old_append_batch_order_still_works_with_a_deprecation_warning(queue_dir, call):
    with Queue.open_publisher(queue_dir) as w:
        with pytest.warns(DeprecationWarning, match=r"append_batch\(type_ids, payloads"):
            assert call(w) == 0
    with Queue.open_subscriber(queue_dir) as r:
        assert [(m.type_id, bytes(m.payload)) for m in r] == [(7, b"a"), (7, b"b")]


def test_append_batch_without_payloads_says_what_is_missing(queue_dir):
    with Queue.open_publisher(queue_dir) as w:
        with pytest.raises(ca.ArgumentTypeError, match="payloads are missing"):
            w.append_batch(3)
        assert w.next_seq == 0
