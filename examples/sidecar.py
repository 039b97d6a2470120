"""The Sidecar pattern: a pinned hot thread fed by a control plane that discovers streams.

Feed processes create queues under a bus root at different times. The control
plane (an asyncio event loop on uvloop) finds each new queue through inotify,
opens and validates its reader off the loop, and hands it to the hot thread
through the lock-free command ring. The hot thread (a ``HotLoop`` pinned to a
core) merges every stream with no Python per message and routes each message to
one writer it owns, ``routed``. The control plane also drains the hot thread's
log ring and prepares the writer's next segments.

Run:  python examples/sidecar.py [bus-folder]
"""
from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import sys
import tempfile
import time

import numba
import numpy as np

from chronicle_async import Backoff, ControlPlane, HotLoop, Queue, WriterConfig
from chronicle_async.control import run
from chronicle_async.hot.loop import LOG_INFO, emit, log

FEEDS = 4
PER_FEED = 50_000


def feed(bus: str, k: int) -> None:
    """A feed process: creates its stream, then publishes messages in small batches."""
    time.sleep(0.2 * k)  # streams appear one by one, after the router started
    with Queue.open_publisher(os.path.join(bus, f"feed-{k}"), WriterConfig(segment_size=4 << 20)) as w:
        payload = np.zeros((500, 16), np.uint8)
        for start in range(0, PER_FEED, len(payload)):
            payload[:, 0] = k
            w.append_batch(1, payload)
            time.sleep(0.001)


@numba.njit
def route(state, ctx, source, type_id, seq, timestamp_ns, payload):
    """The hot path: count per source, forward everything to output 0, log each stream's first message."""
    if state[source] == 0:
        log(ctx, LOG_INFO, source, seq, 0, 0, 0)
    state[source] += 1
    r = emit(ctx, 0, 100 + payload[0], payload, timestamp_ns)
    return 0 if r >= 0 else r  # a failed emit stops the loop: the application decides


async def main(bus: str) -> None:
    counts = np.zeros(64, np.int64)
    cpus = sorted(os.sched_getaffinity(0))
    with Queue.open_publisher(os.path.join(bus, "_routed"), WriterConfig(segment_size=4 << 20)) as routed:
        hot = HotLoop(route, counts, outputs=[routed], idle=Backoff(), cpu=cpus[-1] if len(cpus) > 1 else None)
        with hot:  # starts the hot thread
            async with ControlPlane(hot) as plane:  # log drain to logging "chronicle_async.hot"
                plane.manage_writer(routed)  # rolls of `routed` take prepared segments
                plane.discover(bus, "router", patterns=["feed-*"])  # event-driven, not sleep polling
                ctx = mp.get_context("spawn")
                procs = [ctx.Process(target=feed, args=(bus, k)) for k in range(FEEDS)]
                for p in procs:
                    p.start()
                t0 = time.perf_counter()
                while hot.messages < FEEDS * PER_FEED and time.perf_counter() - t0 < 60:
                    await asyncio.sleep(0.05)  # the event loop stays free while the hot thread works
                for p in procs:
                    await asyncio.to_thread(p.join)
                print(f"routed {hot.messages} messages from {len(hot.sources)} discovered streams "
                      f"in {time.perf_counter() - t0:.2f} s; output seqs 0..{routed.next_seq - 1}; "
                      f"hot-thread log records drained: {plane.log_drain.records}")
    if hot.messages != FEEDS * PER_FEED:
        raise SystemExit(f"expected {FEEDS * PER_FEED} messages, routed {hot.messages}")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        os.makedirs(sys.argv[1], exist_ok=True)
        run(main(sys.argv[1]))
    else:
        with tempfile.TemporaryDirectory(prefix="sidecar-") as d:
            run(main(d))
