"""Sustained append rate across rolls, beside the no-roll rate of the same run.

A jitted writer (as in ``examples/jitted_append.py``) appends ``n`` messages of 64 bytes and rolls
on ``SEGMENT_FULL``. Each configuration is measured over the whole stream, rolls included, in its
own fresh queue on /dev/shm (tmpfs: new pages are allocated as segments are made):

- ``no roll``: one segment big enough for the whole stream, pre-faulted at open: the ceiling (the
  headline figure's setup);
- ``default``: ``Queue.open_publisher(path)`` exactly as a new user opens it (64 MiB segments, the
  writer's own supplier thread preparing the next segment from fresh pages);
- ``inline rolls``: 64 MiB, ``prepare_ahead=0``: every roll creates and pre-faults its segment;
- ``bounded``: the default plus ``max_segments=4``: the supplier recycles the segment the cap retires;
- ``bounded, recycle=False``: the same cap, each segment deleted and created anew;
- ``bounded, ControlPlane``: ``max_segments=4`` with ``ControlPlane.manage_writer(w)`` supplying it.

Each row gives msgs/s, the ratio to ``no roll``, the rolls' p50/p99/max and how the rolls found
their segment (``QueueWriter.roll_counts``: prepared by a supplier, or created inline).

    python -m benchmarks.sustained [--rounds 3] [--quick]
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numba
import numpy as np

from chronicle_async import Queue, WriterConfig
from chronicle_async.hot.append import append
from chronicle_async.hot.atomics import store_plain_i64
from chronicle_async.hot.clock import rdtsc, read_tsc, tsc_per_ns
from chronicle_async.hot.status import SEGMENT_FULL, STALE_HANDLE

from ._harness import machine_info

PAYLOAD = 64


@numba.njit(nogil=True, cache=True)
def _produce_paced(seg, ctl, first, count, payload, t0_ns, start_tsc, tsc_per_msg):
    """Append messages ``first .. count-1`` until the segment is full; returns how many (or a
    negative status). With ``tsc_per_msg > 0``, message ``i`` is not appended before
    ``start_tsc + i * tsc_per_msg`` (a writer paced in jitted code, GIL released, as a feed handler is)."""
    for i in range(first, count):
        if tsc_per_msg > 0:
            due = start_tsc + np.int64(i * tsc_per_msg)
            while rdtsc() < due:
                pass
        store_plain_i64(payload, 0, i)
        seq = append(seg, ctl, 7, payload, t0_ns + i)
        if seq == SEGMENT_FULL or seq == STALE_HANDLE:
            return i - first
        if seq < 0:
            return seq
    return count - first


@numba.njit(nogil=True, cache=True)
def _produce(seg, ctl, first, count, payload, t0_ns):
    """``_produce_paced`` at full speed (no pacing)."""
    return _produce_paced(seg, ctl, first, count, payload, t0_ns, 0, 0.0)


NO_ROLL = "no roll (one segment for the stream)"
PLANE = "bounded, ControlPlane (max_segments=4)"
PACED = "default, paced at 15 M msgs/s"
#: The paced configurations' writer rate (the issue's target for unbounded queues).
PACED_RATE = 15e6

CONFIGS = {
    NO_ROLL: dict(prepare_ahead=0),  # segment_size: set by run_one to hold the whole stream
    "default (open_publisher(path))": None,
    "inline rolls (prepare_ahead=0)": dict(prepare_ahead=0),
    "bounded (max_segments=4, recycled)": dict(max_segments=4),
    "bounded, recycle=False": dict(max_segments=4, recycle=False),
    PLANE: dict(max_segments=4),
    PACED: None,
}
#: Bytes a 64-byte message takes in a segment: its 32-byte header and payload, padded to 64.
RECORD_BYTES = 128


def stream_segment_size(n: int) -> int:
    """A segment size that holds ``n`` messages with no roll (a multiple of 4096)."""
    return (n * RECORD_BYTES // 4096 + 64) * 4096


def run_one(config: dict | None, n: int, plane: bool = False, rate: float | None = None) -> dict:
    """One stream of ``n`` messages; ``plane``: a ControlPlane (on its own thread) supplies the writer;
    ``rate``: the writer is paced to this many msgs/s, in its jitted loop (``_produce_paced``)."""
    root = tempfile.mkdtemp(prefix="chronicle-sustained-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    path = os.path.join(root, "q")
    payload = np.zeros(PAYLOAD, np.uint8)
    stop_plane = None
    try:
        w = Queue.open_publisher(path) if config is None else Queue.open_publisher(path, WriterConfig(**config))
        if plane:
            stop_plane = _plane_for(w)
        with w:
            h = w.hot_handle()
            _produce(h.seg, h.ctl, 0, 1, payload, 0)  # compiled (or loaded) outside the timing
            # Let the supplier finish preparing what it is asked for at open, as a writer that
            # opens at start-up and streams later would find it.
            deadline = time.monotonic() + 5
            while w.prepare_ahead and len(w.prepared_segments) < w.prepare_ahead and time.monotonic() < deadline:
                time.sleep(0.001)
            rolls: list[float] = []
            done = 1
            if rate is not None:
                per_msg = tsc_per_ns(0.05) * 1e9 / rate
                _produce_paced(h.seg, h.ctl, 1, 1, payload, 0, read_tsc(), per_msg)  # compiled outside the timing
            t0 = time.perf_counter()
            start_tsc = read_tsc()
            while done < n:
                h = w.hot_handle()
                if rate is None:
                    k = _produce(h.seg, h.ctl, done, n, payload, time.time_ns())
                else:
                    k = _produce_paced(h.seg, h.ctl, done, n, payload, time.time_ns(), int(start_tsc - per_msg), per_msg)
                if k < 0:
                    raise RuntimeError(f"append failed with status {k}")
                done += k
                if done < n:
                    r0 = time.perf_counter()
                    w.roll()
                    rolls.append(time.perf_counter() - r0)
            elapsed = time.perf_counter() - t0
            counts = w.roll_counts
            if stop_plane is not None:
                stop_plane()
                stop_plane = None
    finally:
        if stop_plane is not None:
            stop_plane()
        shutil.rmtree(root, ignore_errors=True)
    rolls_us = sorted(x * 1e6 for x in rolls)

    def pct(p: float) -> float | None:
        return rolls_us[min(len(rolls_us) - 1, int(p * len(rolls_us)))] if rolls_us else None

    return {"msgs_per_s": (n - 1) / elapsed, "roll_p999_us": pct(0.999), "rolls": len(rolls), "prepared": counts.prepared, "inline": counts.inline,
            "recycled": counts.recycled,
            "roll_p50_us": pct(0.5), "roll_p99_us": pct(0.99), "roll_max_us": rolls_us[-1] if rolls_us else None}


def _med(values: list) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def _plane_for(w: Any) -> Callable[[], None]:
    """Start a ControlPlane on its own thread managing ``w``; returns the function that stops it."""
    import asyncio
    import threading

    from chronicle_async.control import ControlPlane

    ready = threading.Event()
    box: dict = {}

    async def main() -> None:
        async with ControlPlane() as plane:
            plane.manage_writer(w)
            box["stop"] = asyncio.Event()
            box["loop"] = asyncio.get_running_loop()
            ready.set()
            await box["stop"].wait()
            plane.unmanage_writer(w)

    t = threading.Thread(target=lambda: asyncio.run(main()), name="sustained-plane", daemon=True)
    t.start()
    if not ready.wait(30):
        raise RuntimeError("the control plane did not start")

    def stop() -> None:
        box["loop"].call_soon_threadsafe(box["stop"].set)
        t.join(30)

    return stop


def run_all(rounds: int, quick: bool) -> list[tuple[str, dict]]:
    n = 4_000_000 if quick else 20_000_000
    out = []
    for name, cfg in CONFIGS.items():
        if name == NO_ROLL:
            cfg = dict(cfg, segment_size=stream_segment_size(n))
        runs = []
        for i in range(rounds):
            print(f"sustained: {name}, round {i + 1}/{rounds} ...", file=sys.stderr, flush=True)
            runs.append(run_one(cfg, n, plane=name == PLANE, rate=PACED_RATE if name == PACED else None))
        out.append((name, {k: _med([r[k] for r in runs]) for k in runs[0]} | {"n": n}))
    return out


def format_table(rows: list[tuple[str, dict]]) -> str:
    base = rows[0][1]["msgs_per_s"]

    def us(v: float | None) -> str:
        return "-" if v is None else (f"{v / 1000:.1f} ms" if v >= 1000 else f"{v:.1f} µs")

    lines = ["| configuration | msgs/s | × no roll | rolls (prepared / inline; recycled) | roll p50 | roll p99 | roll p99.9 | roll max |",
             "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: |"]
    for name, r in rows:
        lines.append(f"| {name} | {r['msgs_per_s'] / 1e6:.1f} M | {r['msgs_per_s'] / base:.2f} | "
                     f"{r['rolls']:.0f} ({r['prepared']:.0f} / {r['inline']:.0f}; {r['recycled']:.0f}) | {us(r['roll_p50_us'])} | "
                     f"{us(r['roll_p99_us'])} | {us(r['roll_p999_us'])} | {us(r['roll_max_us'])} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.sustained", description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="4 M messages instead of 20 M")
    args = ap.parse_args(argv)
    rows = run_all(args.rounds, args.quick)
    print(f"Machine: {machine_info()}")
    print(f"Command: python -m benchmarks.sustained --rounds {args.rounds}{' --quick' if args.quick else ''}")
    print(f"{rows[0][1]['n']:,.0f} messages of {PAYLOAD} B from a jitted writer; medians of {args.rounds} rounds.\n")
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
