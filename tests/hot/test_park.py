"""``park_many`` reports how each park ended, and parks whatever value its futex words hold."""
from __future__ import annotations

import threading
import time

import numpy as np

from chronicle_async import Queue
from chronicle_async.queue.ring import SpscRing
from chronicle_async.hot import append as AP
from chronicle_async.hot import idle as I
from chronicle_async.hot import layout as L
from chronicle_async.hot import tables as T
from chronicle_async.hot import loop as K


def _table(reader) -> np.ndarray:
    """One source row for ``reader``'s position, as the waker and FanInReader build it."""
    t = np.zeros((1, T.SRC_FIELDS), np.int64)
    t[0, T.SRC_STATE] = T.SRC_ACTIVE
    t[0, T.SRC_SEG_ADDR] = reader.cursor.segment.arr.ctypes.data
    t[0, T.SRC_OFFSET] = reader.cursor.offset
    t[0, T.SRC_CTL_ADDR] = reader.cursor.ctl_arr.ctypes.data
    t[0, T.SRC_CAN_PARK] = 1
    return t


def _park(table, ns: int) -> int:
    ring = SpscRing(16, L.RING_SLOT_ALIGNMENT)
    try:
        return K.py_park(table, ring.buffer, np.zeros(T.SCRATCH_LENGTH, np.uint8), ns)
    finally:
        ring.close()


def test_a_park_on_a_quiet_queue_ends_at_the_slice(queue_dir):
    with Queue.open_publisher(queue_dir), Queue.open_subscriber(queue_dir, None, "latest") as r:
        t0 = time.monotonic()
        assert _park(_table(r), 50_000_000) == I.PARK_SLICE
        assert time.monotonic() - t0 >= 0.045


def test_a_park_with_data_already_committed_does_not_sleep(queue_dir):
    with Queue.open_publisher(queue_dir) as w, Queue.open_subscriber(queue_dir, None, "latest") as r:
        w.append(1, b"x")
        assert _park(_table(r), 5_000_000_000) == I.PARK_READY


def test_a_commit_during_a_park_ends_it_with_a_wake(queue_dir):
    with Queue.open_publisher(queue_dir) as w, Queue.open_subscriber(queue_dir, None, "latest") as r:
        table = _table(r)
        t = threading.Timer(0.05, lambda: w.append(1, b"x"))
        t.start()
        t0 = time.monotonic()
        assert _park(table, 5_000_000_000) in (I.PARK_WOKEN, I.PARK_MOVED)
        assert time.monotonic() - t0 < 4  # generous: the count above is what matters
        t.join()


def test_a_futex_word_past_2_to_the_31_still_parks(queue_dir):
    """futex_waitv takes a u64 ``val`` and rejects one above 2**32 - 1 (EINVAL): a word read as a
    negative int32 must not be sign-extended, or every park returns at once and the loop spins."""
    with Queue.open_publisher(queue_dir) as w, Queue.open_subscriber(queue_dir, None, "latest") as r:
        ctl = w._ctl.i32
        ctl[L.CTL_NOTIFY_SEQ_OFFSET // 4] = -2**31  # 0x80000000, as after 2**31 wakes
        assert _park(_table(r), 50_000_000) == I.PARK_SLICE
        t = threading.Timer(0.05, lambda: w.append(1, b"x"))
        t.start()
        assert _park(_table(r), 5_000_000_000) in (I.PARK_WOKEN, I.PARK_MOVED)
        t.join()
        assert ctl[L.CTL_NOTIFY_SEQ_OFFSET // 4] == -2**31 + 1


def test_a_park_that_runs_out_while_data_waits_counts_as_missed(queue_dir):
    """The counter tests rely on: data committed without a wake (a lost wake) is ``PARK_MISSED``."""
    with Queue.open_publisher(queue_dir) as w, Queue.open_subscriber(queue_dir, None, "latest") as r:
        table = _table(r)
        ctl = w._ctl.i32
        waiters = L.CTL_WAITERS_OFFSET // 4

        def commit_without_wake() -> None:
            ctl[waiters] -= 1  # hide the parked reader from the writer: its wake is "lost"
            w.append(1, b"x")
            ctl[waiters] += 1

        t = threading.Timer(0.05, commit_without_wake)
        t.start()
        assert _park(table, 300_000_000) == I.PARK_MISSED
        t.join()
        AP.wake_if_waiting(w._ctl.arr)
