"""Dedicated workers: prealloc, retention and discovery each in their own lane, with priorities.

A single sidecar doing everything would let a slow retention pass delay the next
segment the writer needs. The control plane gives prealloc its own executor
thread (highest priority: nothing else ever queues in front of it), runs
retention and discovery on a shared I/O executor, and supervises every worker:
one that fails is reported and restarted with back-off, never taking the hot
path down.

Here a jitted writer rolls a 64 KiB segment every ~0.5 ms while retention keeps
deleting old segments (a cap of 16, two files per batch) and a
deliberately flaky worker of our own fails twice before it settles. The roll
latencies show that prealloc never waits for the others.

Run:  python examples/dedicated_workers.py [queue-folder]
"""
from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time

import numba
import numpy as np

from chronicle_async import ControlPlane, Queue, WriterConfig
from chronicle_async.control import run
from chronicle_async.hot.append import append
from chronicle_async.hot.clock import rdtsc, tsc_per_ns
from chronicle_async.hot.status import SEGMENT_FULL

ROLLS = 1000
CAP = 16  # segments of data kept on disk: the retention policy below


def segments(folder: str, w) -> tuple[int, str]:
    """The data segments on disk, and a line splitting the files into data and prepared-ahead ones."""
    files = len([f for f in os.listdir(folder) if f.endswith(".seg")])
    ahead = len(w.prepared_segments)
    return files - ahead, f"{files} segment files ({files - ahead} of data + {ahead} prepared ahead, empty)"


@numba.njit(nogil=True)
def fill_segment(seg, ctl, payload, gap_ticks):
    """Append paced messages until the segment is full (no GIL: the control plane runs meanwhile)."""
    n = 0
    t = rdtsc()
    while True:
        while rdtsc() - t < gap_ticks:
            pass
        t = rdtsc()
        if append(seg, ctl, 1, payload, 0) == SEGMENT_FULL:
            return n
        n += 1


def writer_thread(w, gap_ticks: int, cpu: int | None) -> list[int]:
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})  # the spinning writer gets a core of its own
    payload = np.zeros(64, np.uint8)
    rolls = []
    for _ in range(ROLLS):
        h = w.hot_handle()
        fill_segment(h.seg, h.ctl, payload, gap_ticks)
        t0 = time.perf_counter_ns()
        w.roll()  # takes a segment prepared by the prealloc worker
        rolls.append(time.perf_counter_ns() - t0)
    return rolls


async def main(folder: str) -> None:
    attempts = 0

    async def flaky() -> None:  # a worker of our own: fails twice, then runs quietly
        nonlocal attempts
        attempts += 1
        if attempts <= 2:
            raise RuntimeError(f"flaky worker, attempt {attempts}")
        await asyncio.Event().wait()

    cpus = sorted(os.sched_getaffinity(0))
    hot_cpu = cpus[-1] if len(cpus) > 1 else None
    if hot_cpu is not None:  # the event loop and the workers' threads keep off the writer's core
        os.sched_setaffinity(0, set(cpus) - {hot_cpu})
    with Queue.open_publisher(folder, WriterConfig(segment_size=64 * 1024)) as w:  # no limits in the writer
        async with ControlPlane(retention_interval=0.05, retention_batch=2) as plane:
            plane.manage_writer(w, max_segments=CAP)  # retention policy lives in the control plane
            print(f"retention cap: {CAP} segments of data, deleted 2 per pass; prealloc keeps up to "
                  f"{w.prepare_ahead} empty segments ready ahead of the writer")
            plane.start_worker("flaky", flaky)
            await asyncio.sleep(0.05)  # let prealloc stock the first segments
            lat = np.array(await asyncio.to_thread(writer_thread, w, int(1000 * tsc_per_ns()), hot_cpu)) / 1000
            _, burst = segments(folder, w)
            print(f"{ROLLS} rolls: p50 {np.percentile(lat, 50):.1f} µs, p99 {np.percentile(lat, 99):.1f} µs; "
                  f"prepared {plane.prealloc.prepared}, deleted by retention {plane.retention.deleted}")
            print(f"right after the burst: {burst} (retention, in small batches, trails a fast writer)")
            for _ in range(100):  # give retention its next passes (5 s at most)
                if segments(folder, w)[0] <= CAP + 1:  # + 1: a retired segment kept for recycling
                    break
                plane.retention.poke()
                await asyncio.sleep(0.05)
            print(f"once retention caught up: {segments(folder, w)[1]}")
            print(f"worker failures, each reported and restarted with back-off: "
                  f"{[(f.worker, str(f.error)) for f in plane.failures]}")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        run(main(sys.argv[1]))
    else:
        with tempfile.TemporaryDirectory(prefix="workers-") as d:
            run(main(os.path.join(d, "q")))
