"""A whole strategy in the hot loop: read ticks, decide, write orders, with no Python per message.

A feed process appends ticks (a numpy structured record: instrument, price) to
one queue per venue. The strategy process runs a ``HotLoop`` on a pinned core:
its jitted handler reads each tick zero-copy, keeps the best price per
instrument, and emits an order to the ``orders`` queue when a price crosses
the threshold held in parameter 0. The main thread stays free: it changes the
threshold while the loop runs and watches the loop's counters.

Run:  python examples/hot_loop_strategy.py [bus-folder]
"""
from __future__ import annotations

import multiprocessing as mp
import os
import sys
import tempfile
import time

import numba
import numpy as np

from chronicle_async import Backoff, HotLoop, Queue, WriterConfig
from chronicle_async.hot.loop import emit, param

TICK = np.dtype([("instrument", "<i8"), ("price", "<f8")])
ORDER = np.dtype([("instrument", "<i8"), ("price", "<f8"), ("tick_seq", "<i8")])
VENUES = 3
TICKS_PER_VENUE = 200_000
INSTRUMENTS = 16


def feed(folder: str, venue: int) -> None:
    """One venue's feed: a separate process appending ticks in batches."""
    rng = np.random.default_rng(venue)
    with Queue.open_publisher(os.path.join(folder, f"ticks-{venue}"), WriterConfig(segment_size=8 << 20)) as w:
        for start in range(0, TICKS_PER_VENUE, 10_000):
            ticks = np.zeros(10_000, TICK)
            ticks["instrument"] = rng.integers(0, INSTRUMENTS, len(ticks))
            ticks["price"] = 100 + rng.standard_normal(len(ticks)).cumsum() * 0.01
            w.append_batch(1, ticks.view(np.uint8).reshape(len(ticks), TICK.itemsize))


@numba.njit
def strategy(state, ctx, source, type_id, seq, timestamp_ns, payload):
    """state: float64[INSTRUMENTS] best prices, then a scratch order record."""
    best, order = state
    tick = payload.view(TICK)[0]  # zero-copy decode of the record
    i = tick["instrument"]
    if tick["price"] > best[i]:
        best[i] = tick["price"]
        if tick["price"] > param(ctx, 0):  # the threshold, changed from Python while running
            o = order.view(ORDER)
            o[0]["instrument"] = i
            o[0]["price"] = tick["price"]
            o[0]["tick_seq"] = seq
            r = emit(ctx, 0, 2, order, timestamp_ns)
            if r < 0:
                return r  # stops the loop: the application decides what to do
    return 0


def main(folder: str) -> None:
    ctx = mp.get_context("spawn")
    cfg = WriterConfig(segment_size=8 << 20)
    for v in range(VENUES):  # create the queues so the strategy can open its readers at once
        Queue.open_publisher(os.path.join(folder, f"ticks-{v}"), cfg).close()
    feeds = [ctx.Process(target=feed, args=(folder, v)) for v in range(VENUES)]
    cpus = sorted(os.sched_getaffinity(0))
    with Queue.open_publisher(os.path.join(folder, "orders"), cfg) as orders:
        state = (np.full(INSTRUMENTS, -np.inf), np.zeros(ORDER.itemsize, np.uint8))
        loop = HotLoop(strategy, state, outputs=[orders], params=[100.0], idle=Backoff(),
                       cpu=cpus[-1] if len(cpus) > 1 else None)
        for v in range(VENUES):
            loop.add_reader(Queue.open_subscriber(os.path.join(folder, f"ticks-{v}"), "strategy", "earliest"))
        with loop:
            for p in feeds:
                p.start()
            t0 = time.perf_counter()
            loop.set_param(0, 100.05)  # a command through the ring: applied between two messages
            while loop.messages < VENUES * TICKS_PER_VENUE and time.perf_counter() - t0 < 60:
                time.sleep(0.05)
            elapsed = time.perf_counter() - t0
            handled = loop.messages
        for p in feeds:
            p.join()
        print(f"handled {handled} ticks from {VENUES} feed processes in {elapsed:.2f} s "
              f"({handled / elapsed / 1e6:.2f} M/s including the feeds' own time); "
              f"{orders.next_seq} orders written; pinned: {loop.pin_error or 'yes' if len(cpus) > 1 else 'no'}")
    with Queue.open_subscriber(os.path.join(folder, "orders"), None, "earliest") as r:
        first = r.next()
        if first is not None:
            o = first.as_array(ORDER)[0]
            print(f"first order: instrument {o['instrument']} at {o['price']:.3f} (tick seq {o['tick_seq']})")
    if handled != VENUES * TICKS_PER_VENUE:
        raise SystemExit(f"expected {VENUES * TICKS_PER_VENUE} ticks, handled {handled}")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(sys.argv[1])
    else:
        with tempfile.TemporaryDirectory(prefix="hot-loop-strategy-") as d:
            main(d)
