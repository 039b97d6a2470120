"""Append from your own numba code: a jitted loop writes messages with no Python in between.

The kernel ``chronicle_async.hot.append.append`` returns the new seq, or a
negative status code. ``SEGMENT_FULL`` means "roll and retry": the loop returns
to Python, which calls ``writer.roll()`` and takes a fresh handle.

Run:  python examples/jitted_append.py [queue-folder]
"""
from __future__ import annotations

import os
import sys
import tempfile
import time

import numba
import numpy as np

from chronicle_async import Queue, WriterConfig
from chronicle_async.hot.append import append
from chronicle_async.hot.atomics import store_plain_i64
from chronicle_async.hot.status import SEGMENT_FULL, STALE_HANDLE


@numba.njit(nogil=True, cache=True)
def produce(seg, ctl, first, count, payload, t0_ns):
    """Append messages first..count-1; returns how many were appended before the segment filled."""
    for i in range(first, count):
        store_plain_i64(payload, 0, i)  # the payload carries its own index in bytes 0..7
        seq = append(seg, ctl, 7, payload, t0_ns + i)
        if seq == SEGMENT_FULL or seq == STALE_HANDLE:
            return i - first  # back to Python: roll (if full) and take a fresh handle
        if seq < 0:  # any other status is a bug in the caller (bad type id, payload too large)
            return seq
    return count - first


def main(folder: str) -> None:
    n = 2_000_000
    payload = np.zeros(64, np.uint8)
    with Queue.open_publisher(folder, WriterConfig(segment_size=32 * 1024 * 1024)) as writer:
        h = writer.hot_handle()
        produce(h.seg, h.ctl, 0, 1, payload, 0)  # compile (or load from cache) outside the timing
        done, t_append, t_roll = 1, 0.0, 0.0
        while done < n:
            h = writer.hot_handle()
            t0 = time.perf_counter()
            k = produce(h.seg, h.ctl, done, n, payload, time.time_ns())
            t_append += time.perf_counter() - t0
            if k < 0:
                raise RuntimeError(f"append failed with status {k}")
            done += k
            if done < n:
                t0 = time.perf_counter()
                writer.roll()  # onto the segment the writer's supplier thread prepared, if it kept up
                t_roll += time.perf_counter() - t0
        rolls = writer.roll_counts
        print(f"jitted append: {n - 1:,} messages, {t_append / (n - 1) * 1e9:.1f} ns each inside segments; "
              f"{sum(rolls)} rolls ({rolls.prepared} prepared, {rolls.inline} inline) took "
              f"{t_roll / max(sum(rolls), 1) * 1e3:.2f} ms each; next seq {writer.next_seq:,}")
    with Queue.open_subscriber(folder, None, "earliest") as reader:
        count = sum(1 for m in reader if int(np.frombuffer(m.payload, np.int64, 1)[0]) == m.seq)
        print(f"read back {count:,} messages, each carrying its own seq")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(sys.argv[1])
    else:  # a scratch queue, removed on exit (pass a folder to keep it)
        with tempfile.TemporaryDirectory(prefix="chronicle-jit-") as d:
            main(os.path.join(d, "q"))
