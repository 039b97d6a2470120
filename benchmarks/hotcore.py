"""Figures of the hot core: the SPSC ring, the HotLoop and what it costs its neighbours.

    python -m benchmarks.hotcore [--rounds 3] [--quick] [--json FILE]
    python -m benchmarks.run --hotcore            (the same figures, through the runner)

Each function runs ``rounds`` rounds and returns a dict::

    {"figure": ..., "target": ..., "met": bool | None, "measured": "<short text>",
     "median": {field: median over rounds}, "rounds": [{field: value}, ...], "note": ...}

Placement (2 vCPU): the hot thread (``HotLoop(cpu=HOT_CPU)``, BusySpin) runs on CPU 1;
the controlling thread (the one calling ``add_reader``, or running the asyncio loop)
is pinned to CPU 0 *after* the loop has started (see ``_pinned_main``); writer
processes are spawned (never forked) and pinned to CPU 0, except the stream writer
of the asyncio figure, which shares CPU 1 with the hot thread so that CPU 0 is
the event loop's alone. Queues live on /dev/shm. Latency is timed with the TSC
(``hot/clock.py``), as in ``benchmarks/chronicle.py``.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import statistics
import struct
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import numba
import numpy as np

from chronicle_async.hot.atomics import (
    address_of,
    cpu_relax,
    load_plain_i64,
    load_plain_i64_at,
    store_plain_i64,
    store_plain_i64_at,
)
from chronicle_async.hot.clock import rdtsc, read_tsc, tsc_per_ns
from chronicle_async.hot.ring import (
    claim_at,
    consume_at,
    peek_at,
    publish_at,
    try_pop,
    try_push,
)

from ._harness import machine_info, percentiles_ns, pin, spawn_ctx
from .chronicle import (
    SHM,
    _fresh_dir,
    _jit_paced_produce,
    _open_reader_when_ready,
    _queue_dir,
    _rss_anon_kib,
)

_NCPU = os.cpu_count() or 1  # not sched_getaffinity(0): a child spawned by a pinned thread inherits its mask
HOT_CPU: int | None = 1 if _NCPU >= 2 else None  # the hot thread
MAIN_CPU: int | None = 0 if _NCPU >= 2 else None  # the controlling thread / the event loop
WRITER_CPU = 0
LAT_PAYLOAD = 64
FANIN_PAYLOAD = 16


# ---------------------------------------------------------------------------------------------
# helpers


def _num(v: Any) -> Any:
    """numpy scalars -> Python numbers (for JSON)."""
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return float(v)
    return v


def _medians(rows: list[dict]) -> dict:
    """Field-wise median of the numeric fields of per-round dicts."""
    out: dict[str, Any] = {}
    for k in rows[0]:
        vals = [r[k] for r in rows if isinstance(r.get(k), (int, float)) and not isinstance(r.get(k), bool)]
        if vals:
            m = statistics.median(vals)
            out[k] = round(m) if all(isinstance(v, int) for v in vals) else float(m)
    return out


def _figure(figure: str, target: str, rounds: list[dict], measured: Callable[[dict], str],
            met: Callable[[dict], bool] | None, note: str = "") -> dict:
    rounds = [{k: _num(v) for k, v in r.items()} for r in rounds]
    med = _medians(rounds)
    return {
        "figure": figure,
        "target": target,
        "met": None if met is None else bool(met(med)),
        "measured": measured(med),
        "median": med,
        "rounds": rounds,
        "note": note,
    }


@contextlib.contextmanager
def _pinned_main(cpu: int | None):
    """Pin the calling thread to ``cpu`` for the block, then restore its previous mask.

    Call it *after* starting a HotLoop: threads inherit their creator's mask, and
    ``HotLoop._pin`` refuses a CPU outside the creating thread's mask (see the report).
    """
    old = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    ok = pin(cpu)
    try:
        yield ok
    finally:
        if ok and old is not None:
            os.sched_setaffinity(0, old)


def _wait_for(cond: Callable[[], bool], timeout: float, what: str, poll: float = 0.001) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(poll)


def _lat_fields(samples_ns: np.ndarray) -> dict:
    return {**percentiles_ns(samples_ns), "n": int(samples_ns.size)}


def _ratio(a: float, b: float) -> str:
    r = a / max(b, 1)
    return f"{r:.0f}×" if r >= 10 else f"{r:.2g}×"


def _fmt_ns(v: float | None) -> str:
    if v is None:
        return "—"
    if v >= 1e6:
        return f"{v / 1e6:.2f} ms"
    if v >= 1e3:
        return f"{v / 1e3:.1f} µs"
    return f"{v:.0f} ns"


# ---------------------------------------------------------------------------------------------
# jitted kernels (user-style code over the public hot kernels)


@numba.njit(nogil=True, cache=True)
def _ring_produce(ring, n):
    """Producer: claim a slot in place, write the value, publish. Spins while full."""
    r = address_of(ring, 0)
    t0 = rdtsc()
    full = 0
    for i in range(n):
        slot = claim_at(r)
        while slot == 0:
            full += 1
            cpu_relax()
            slot = claim_at(r)
        store_plain_i64_at(slot, i)
        publish_at(r)
    return t0, full


@numba.njit(nogil=True, cache=True)
def _ring_consume(ring, n):
    """Consumer: peek, check the value is the next expected one, consume. Spins while empty."""
    r = address_of(ring, 0)
    bad = 0
    for i in range(n):
        slot = peek_at(r)
        while slot == 0:
            cpu_relax()
            slot = peek_at(r)
        if load_plain_i64_at(slot) != i:
            bad += 1
        consume_at(r)
    return rdtsc(), bad


@numba.njit(nogil=True, cache=True)
def _ring_produce_arr(ring, n, src):
    """Producer with the array form ``try_push`` (copies ``src`` into the slot)."""
    t0 = rdtsc()
    full = 0
    for i in range(n):
        store_plain_i64(src, 0, i)
        while not try_push(ring, src):
            full += 1
            cpu_relax()
    return t0, full


@numba.njit(nogil=True, cache=True)
def _ring_consume_arr(ring, n, dst):
    """Consumer with the array form ``try_pop`` (copies the slot into ``dst``)."""
    bad = 0
    for i in range(n):
        while not try_pop(ring, dst):
            cpu_relax()
        if load_plain_i64(dst, 0) != i:
            bad += 1
    return rdtsc(), bad


@numba.njit(nogil=True, cache=True)
def _first_seen_handler(state, ctx, source, type_id, seq, timestamp_ns, payload):
    """Record the TSC at the first message of each source (state is indexed by source id)."""
    if 0 <= source < state.shape[0] and state[source] == 0:
        state[source] = rdtsc()
    return 0


@numba.njit(nogil=True, cache=True)
def _sum_handler(state, ctx, source, type_id, seq, timestamp_ns, payload):
    """Sum the payloads' first int64; stamp the TSC when the count reaches state[3].

    state: [sum, count, tsc at count == target, target].
    """
    state[0] += load_plain_i64(payload, 0)
    c = state[1] + 1
    state[1] = c
    if c == state[3]:
        state[2] = rdtsc()
    return 0


@numba.njit(nogil=True, cache=True)
def _latency_handler(state, ctx, source, type_id, seq, timestamp_ns, payload):
    """state[0] = count; state[1 + k] = TSC now - the writer's TSC stamp (payload bytes 0..7)."""
    k = state[0]
    if k < state.shape[0] - 1:
        state[k + 1] = rdtsc() - load_plain_i64(payload, 0)
    state[0] = k + 1
    return 0


# ---------------------------------------------------------------------------------------------
# 1. ring push+pop, two threads


def _ring_pair(n: int, arrays: bool) -> dict:
    from chronicle_async import SpscRing

    with SpscRing(1024, 8) as ring:
        buf = ring.buffer
        src, dst = np.zeros(8, np.uint8), np.zeros(8, np.uint8)
        # compile / warm both sides in this thread (1000 < capacity: no spinning)
        if arrays:
            _ring_produce_arr(buf, 1000, src)
            _ring_consume_arr(buf, 1000, dst)
        else:
            _ring_produce(buf, 1000)
            _ring_consume(buf, 1000)
        res: dict[str, Any] = {}

        def consumer() -> None:
            pin(1)
            res["c"] = _ring_consume_arr(buf, n, dst) if arrays else _ring_consume(buf, n)

        def producer() -> None:
            pin(0)
            res["p"] = _ring_produce_arr(buf, n, src) if arrays else _ring_produce(buf, n)

        tc = threading.Thread(target=consumer, name="ring-consumer")
        tp = threading.Thread(target=producer, name="ring-producer")
        tc.start()
        tp.start()
        tp.join(120)
        tc.join(120)
        if tp.is_alive() or tc.is_alive():
            raise RuntimeError("ring benchmark threads did not finish within 120 s")
        t0, full = res["p"]
        t1, bad = res["c"]
    per_ns = tsc_per_ns()
    dt_ns = (t1 - t0) / per_ns
    if bad:
        raise RuntimeError(f"SPSC ring delivered {bad} wrong values out of {n}")
    return {"mops": n / dt_ns * 1e3, "ns_per_op": dt_ns / n, "bad": int(bad), "full_spins": int(full), "n": n}


def _ring_python_face(n: int) -> dict:
    from chronicle_async import SpscRing

    data = b"\x01" * 8
    with SpscRing(1024, 8) as ring:
        push, pop = ring.try_push, ring.try_pop
        for _ in range(1024):  # warm
            push(data)
        for _ in range(1024):
            pop()
        reps = max(1, n // 1024)
        tw = tn = tp = 0
        now = time.perf_counter_ns
        for _ in range(reps):
            t0 = now()
            for _ in range(1024):
                push(data)
            t1 = now()
            for _ in range(1024):
                pop()
            t2 = now()
            for _ in range(1024):
                push(data, wake=False)
            t3 = now()
            for _ in range(1024):
                pop()
            t4 = now()
            tw += t1 - t0
            tp += (t2 - t1) + (t4 - t3)
            tn += t3 - t2
        ops = reps * 1024
    return {"py_push_ns": tw / ops, "py_push_nowake_ns": tn / ops, "py_pop_ns": tp / (2 * ops)}


def ring_throughput(rounds: int = 3, n: int = 20_000_000, n_python: int = 200_000) -> dict:
    """Figure 1: SPSC ring (8-byte slots, capacity 1024), jitted producer and consumer threads."""
    rows = []
    for _ in range(rounds):
        inplace = _ring_pair(n, arrays=False)
        arr = _ring_pair(n, arrays=True)
        py = _ring_python_face(n_python)
        rows.append({
            "mops": inplace["mops"], "ns_per_op": inplace["ns_per_op"], "full_spins": inplace["full_spins"],
            "mops_try_push_pop": arr["mops"], **py, "n": n, "bad": inplace["bad"] + arr["bad"],
        })
    return _figure(
        "ring push+pop, two threads (jitted, nogil)", "≥ 20 M ops/s", rows,
        lambda m: (f"{m['mops']:.1f} M ops/s claim_at/publish_at ({m['mops_try_push_pop']:.1f} M with try_push/try_pop); "
                   f"Python face push {m['py_push_ns']:.0f} ns ({m['py_push_nowake_ns']:.0f} ns wake=False), "
                   f"pop {m['py_pop_ns']:.0f} ns"),
        lambda m: m["mops"] >= 20,
        note="one op = one 8-byte value pushed by one thread and popped (and checked) by the other; "
             "producer pinned to CPU 0, consumer to CPU 1; Python face measured single-threaded",
    )


# ---------------------------------------------------------------------------------------------
# 2. handoff of a new reader


def reader_handoff(rounds: int = 3, samples: int = 200, warmup: int = 10) -> dict:
    """Figure 2: from the push of ADD_READER (just before ``add_reader``) to its first message handled."""
    from chronicle_async import BusySpin, HotLoop, Queue, WriterConfig

    per_ns = tsc_per_ns()
    rows = []
    d = _fresh_dir("handoff")
    try:
        with Queue.open_publisher(d, WriterConfig(segment_size=1 << 20)) as w:
            w.append(1, b"h" * 16)
            for _ in range(rounds):
                total = samples + warmup
                state = np.zeros(total + 1, np.int64)
                lat = np.zeros(total, np.int64)
                call = np.zeros(total, np.int64)
                loop = HotLoop(_first_seen_handler, state, idle=BusySpin(), cpu=HOT_CPU, max_readers=4)
                try:
                    loop.start()
                    with _pinned_main(MAIN_CPU):
                        for i in range(total):
                            rd = Queue.open_subscriber(d, None, "earliest")
                            t0 = read_tsc()
                            sid = loop.add_reader(rd, source=i)
                            t1 = read_tsc()
                            deadline = time.perf_counter() + 2.0
                            while state[i] == 0:
                                if time.perf_counter() > deadline:
                                    raise RuntimeError(f"reader {i} was not served within 2 s")
                            lat[i] = state[i] - t0
                            call[i] = t1 - t0
                            loop.remove_reader(sid).close()
                finally:
                    loop.close()
                lat_ns = (lat[warmup:] / per_ns).astype(np.int64)
                call_ns = (call[warmup:] / per_ns).astype(np.int64)
                rows.append({**_lat_fields(lat_ns), "add_reader_call_p50": int(np.median(call_ns))})
    finally:
        shutil.rmtree(d, ignore_errors=True)
    return _figure(
        "handoff of a new reader (ADD_READER -> first message handled)", "p50 ≤ 50 µs", rows,
        lambda m: f"p50 {_fmt_ns(m['p50'])}, p99 {_fmt_ns(m['p99'])}, max {_fmt_ns(m['max'])} "
                  f"(add_reader() call itself: {_fmt_ns(m['add_reader_call_p50'])} p50)",
        lambda m: m["p50"] <= 50_000,
        note=f"{samples} samples per round after {warmup} warm-up; BusySpin hot thread on CPU {HOT_CPU}, "
             f"caller on CPU {MAIN_CPU}; each sample opens a new reader at 'earliest' on a queue holding one message",
    )


# ---------------------------------------------------------------------------------------------
# 3. fan-in of 4 queues


def fanin_throughput(rounds: int = 3, per_queue: int = 1_000_000, queues: int = 4) -> dict:
    """Figure 3: 4 pre-filled queues (16-byte payloads) read by one HotLoop with a jitted sum handler."""
    from chronicle_async import BusySpin, HotLoop, Queue, WriterConfig

    per_ns = tsc_per_ns()
    total = per_queue * queues
    chunk = min(100_000, per_queue)
    dirs = [_fresh_dir(f"fanin{q}") for q in range(queues)]
    rows = []
    try:
        seg = max(16 << 20, ((per_queue * 64 + (8 << 20)) + 4095) // 4096 * 4096)  # 64-byte records, one segment
        for d in dirs:
            with Queue.open_publisher(d, WriterConfig(segment_size=seg)) as w:
                buf = np.zeros((chunk, FANIN_PAYLOAD), np.uint8)
                idx = buf.view(np.int64)
                done = 0
                while done < per_queue:
                    k = min(chunk, per_queue - done)
                    idx[:k, 0] = np.arange(done, done + k)
                    w.append_batch(1, buf[:k])
                    done += k
        expect = queues * (per_queue * (per_queue - 1) // 2)
        for _ in range(rounds):
            state = np.zeros(4, np.int64)
            state[3] = total
            loop = HotLoop(_sum_handler, state, idle=BusySpin(), cpu=HOT_CPU)
            try:
                for d in dirs:
                    loop.add_reader(Queue.open_subscriber(d, None, "earliest"))
                t0 = read_tsc()
                loop.start()
                _wait_for(lambda st=state, lp=loop: st[2] != 0 or lp.error is not None, 120, "the fan-in to finish")
                if loop.error is not None:
                    raise loop.error
            finally:
                loop.close()
            if state[1] != total or state[0] != expect:
                raise RuntimeError(f"fan-in: handled {state[1]} of {total}, sum {state[0]} != {expect}")
            dt_ns = (state[2] - t0) / per_ns
            rows.append({"msgs_per_s": total / dt_ns * 1e9, "ns_per_msg": dt_ns / total, "n": total})
    finally:
        for d in dirs:
            shutil.rmtree(d, ignore_errors=True)
    return _figure(
        f"fan-in of {queues} queues, jitted handler", "≥ 15 M msgs/s total", rows,
        lambda m: f"{m['msgs_per_s'] / 1e6:.1f} M msgs/s ({m['ns_per_msg']:.1f} ns/msg)",
        lambda m: m["msgs_per_s"] >= 15e6,
        note=f"{per_queue:,} messages per queue, {FANIN_PAYLOAD}-byte payloads filled with append_batch; "
             f"timed from just before HotLoop.start() to the handler seeing the last message "
             f"(thread start included); BusySpin on CPU {HOT_CPU}; every payload summed and checked",
    )


def python_callback_cost(rounds: int = 3, n: int = 1_000_000) -> dict:
    """The Python-callback mode's cost per message: a pre-filled queue, a callback that counts."""
    from chronicle_async import BusySpin, HotLoop, Queue

    d = _fresh_dir("pycb")
    rows = []
    try:
        with Queue.open_publisher(d) as w:
            buf = np.zeros((min(n, 100_000), FANIN_PAYLOAD), np.uint8)
            for s in range(0, n, len(buf)):
                w.append_batch(1, buf[: min(len(buf), n - s)])
        for _ in range(rounds):
            count = [0]

            def cb(source, msg, count=count):
                count[0] += 1

            loop = HotLoop(cb, idle=BusySpin(), cpu=HOT_CPU)
            try:
                loop.add_reader(Queue.open_subscriber(d, None, "earliest"))
                t0 = time.perf_counter()
                loop.start()
                _wait_for(lambda lp=loop: lp.messages >= n or lp.error is not None, 120, "the callbacks to finish")
                dt = time.perf_counter() - t0
            finally:
                loop.close()
            if count[0] != n:
                raise RuntimeError(f"Python-callback mode: {count[0]} callbacks for {n} messages")
            rows.append({"ns_per_msg": dt / n * 1e9, "msgs_per_s": n / dt, "n": n})
    finally:
        shutil.rmtree(d, ignore_errors=True)
    return _figure(
        "Python-callback mode, cost per message", "documented", rows,
        lambda m: f"{m['ns_per_msg']:.0f} ns/msg ({m['msgs_per_s'] / 1e6:.2f} M msgs/s)",
        lambda m: True,
        note=f"{n:,} pre-filled {FANIN_PAYLOAD}-byte messages; callback(source, msg) counts; BusySpin on CPU {HOT_CPU}; "
             "includes building each Message and the GIL-holding call",
    )


# ---------------------------------------------------------------------------------------------
# 4. hot-loop handler one-way latency


def _w_paced(d: str, n: int, interval_ns: float, go, done) -> None:
    """Writer process: jitted loop paced every ``interval_ns``, TSC stamp in payload bytes 0..7."""
    from chronicle_async import Queue, WriterConfig

    seg = max(16 << 20, (n * 128 + (8 << 20)) // 4096 * 4096)
    with Queue.open_publisher(d, WriterConfig(segment_size=seg)) as w:
        pin(WRITER_CPU)  # after open: the housekeeping thread keeps its own CPUs
        h = w.hot_handle()
        p = np.zeros(LAT_PAYLOAD, np.uint8)
        ticks = int(interval_ns * tsc_per_ns())
        _jit_paced_produce(h.seg, h.ctl, 0, p, ticks)
        go.wait()
        _jit_paced_produce(h.seg, h.ctl, n, p, ticks)
        done.wait(120)


@contextlib.contextmanager
def _paced_writer(n: int, interval_s: float):
    """Spawn a paced writer; yields (queue dir, go event)."""
    ctx = spawn_ctx()
    d = _queue_dir("hotlat")
    go, done = ctx.Event(), ctx.Event()
    p = ctx.Process(target=_w_paced, args=(d, n, interval_s * 1e9, go, done), name="paced-writer")
    p.start()
    try:
        yield d, go
    finally:
        done.set()
        p.join(10)
        if p.is_alive():
            p.kill()
        shutil.rmtree(d, ignore_errors=True)


def _hot_latency_once(n: int, interval_s: float) -> dict:
    from chronicle_async import BusySpin, HotLoop

    per_ns = tsc_per_ns()
    with _paced_writer(n, interval_s) as (d, go):
        rd = _open_reader_when_ready(d)
        state = np.zeros(n + 1, np.int64)
        loop = HotLoop(_latency_handler, state, idle=BusySpin(), cpu=HOT_CPU)
        try:
            loop.add_reader(rd)
            loop.start()
            with _pinned_main(MAIN_CPU):
                go.set()
                _wait_for(lambda: state[0] >= n or loop.error is not None, 60 + n * interval_s * 4,
                          "the jitted handler's samples", poll=0.02)
            if loop.error is not None:
                raise loop.error
        finally:
            loop.close()
    lat = (state[1 + n // 10 : n + 1] / per_ns).astype(np.int64)
    return _lat_fields(lat)


def _py_latency_once(n: int, interval_s: float) -> dict:
    from chronicle_async import Backoff, HotLoop

    per_ns = tsc_per_ns()
    unpack = struct.Struct("<q").unpack_from
    lat = np.zeros(n, np.int64)
    cnt = [0]
    rt = read_tsc

    def handler(source: int, msg) -> None:
        now = rt()
        k = cnt[0]
        if k < n:
            lat[k] = now - unpack(msg.payload)[0]
        cnt[0] = k + 1

    with _paced_writer(n, interval_s) as (d, go):
        rd = _open_reader_when_ready(d)
        loop = HotLoop(handler, idle=Backoff(), cpu=HOT_CPU)
        try:
            loop.add_reader(rd)
            loop.start()
            with _pinned_main(MAIN_CPU):
                go.set()
                _wait_for(lambda: cnt[0] >= n or loop.error is not None, 60 + n * interval_s * 4,
                          "the Python handler's samples", poll=0.02)
            if loop.error is not None:
                raise loop.error
        finally:
            loop.close()
    return _lat_fields((lat[n // 10 :] / per_ns).astype(np.int64))


def handler_latency(rounds: int = 3, n: int = 100_000, n_python: int = 50_000, n_zmq: int = 20_000,
                    interval_s: float = 10e-6, peers: bool = True) -> dict:
    """Figure 4: writer process (jitted, paced) -> HotLoop handler, one-way, TSC-timed.

    Beside it in the same round: the bare core-to-core floor (one cache line), the
    Python-callback mode (Backoff idle) and, if ``peers``, pyzmq ipc one-way.
    """
    from . import chronicle as C

    rows = []
    for _ in range(rounds):
        row: dict[str, Any] = {}
        floor = C.core_to_core_floor(n, interval_s)
        row.update({f"floor_{k}": v for k, v in (("p50", floor.p50), ("p99", floor.p99))})
        hot = _hot_latency_once(n, interval_s)
        row.update(hot)
        py = _py_latency_once(n_python, interval_s)
        row.update({f"py_{k}": v for k, v in py.items()})
        if peers:
            from . import peers as P

            z = P.zmq_ipc_latency(n=n_zmq, interval_s=interval_s)
            row.update({"zmq_p50": z.p50, "zmq_p99": z.p99})
        rows.append(row)

    def measured(m: dict) -> str:
        s = (f"jitted handler p50 {_fmt_ns(m['p50'])} p99 {_fmt_ns(m['p99'])} p99.9 {_fmt_ns(m['p999'])} "
             f"max {_fmt_ns(m['max'])} (floor p50 {_fmt_ns(m['floor_p50'])}); Python-callback p50 "
             f"{_fmt_ns(m['py_p50'])} p99 {_fmt_ns(m['py_p99'])}")
        if "zmq_p50" in m:
            s += (f"; pyzmq ipc p50 {_fmt_ns(m['zmq_p50'])} (zmq/jitted {_ratio(m['zmq_p50'], m['p50'])}, "
                  f"zmq/Python-callback {_ratio(m['zmq_p50'], m['py_p50'])})")
        return s

    return _figure(
        "hot-loop handler one-way latency, writer process -> handler", "p50 ≤ 300 ns", rows, measured,
        lambda m: m["p50"] <= 300,
        note=f"paced every {interval_s * 1e6:.0f} µs, {LAT_PAYLOAD}-byte payloads, first 10 % dropped; "
             f"writer pinned to CPU {WRITER_CPU}, HotLoop (BusySpin) to CPU {HOT_CPU}; Python mode uses Backoff() "
             "and read_tsc() through numba's dispatcher (~0.1-0.2 µs of the figure); pyzmq timed with "
             "CLOCK_MONOTONIC (benchmarks/peers.py)",
    )


# ---------------------------------------------------------------------------------------------
# 5. allocations in the steady state


def _proc_status(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return -1


def _maps_count() -> int:
    with open("/proc/self/maps") as f:
        return sum(1 for _ in f)


def _pump(loop, w, rows: np.ndarray, written: list[int], count: int, lag: int) -> None:
    """Append ``count`` messages (``rows`` per append_batch), never more than ``lag`` ahead of the loop."""
    chunk = rows.shape[0]
    end = written[0] + count
    while written[0] < end:
        while written[0] - loop.messages > lag:
            if loop.error is not None:
                raise loop.error
            time.sleep(50e-6)
        k = min(chunk, end - written[0])
        w.append_batch(1, rows[:k])
        written[0] += k
    _wait_for(lambda: loop.messages >= written[0] or loop.error is not None, 60, "the loop to catch up", poll=0.0005)
    if loop.error is not None:
        raise loop.error


def steady_memory(rounds: int = 1, n: int = 10_000_000, warm: int = 1_000_000) -> dict:
    """Figure 5: RssAnon and tracemalloc before/after ``n`` messages through a running HotLoop.

    The writer is the calling thread (append_batch in chunks of 65 536, kept at most
    4 chunks ahead of the loop), over 64 MiB segments with ``max_segments=4``, so
    the loop crosses ~10 segment ends (each a Python exit) and old segments are deleted.
    """
    from chronicle_async import BusySpin, HotLoop, Queue, WriterConfig

    chunk = 65_536
    lag = 4 * chunk
    rows = []
    for _ in range(rounds):
        d = _fresh_dir("hotmem")
        try:
            with Queue.open_publisher(d, WriterConfig(segment_size=64 << 20, max_segments=4)) as w:
                state = np.zeros(4, np.int64)
                state[3] = -1
                loop = HotLoop(_sum_handler, state, idle=BusySpin(), cpu=HOT_CPU)
                rows_buf = np.zeros((chunk, FANIN_PAYLOAD), np.uint8)
                written = [0]
                try:
                    loop.add_reader(Queue.open_subscriber(d, None, "earliest"))
                    loop.start()
                    _pump(loop, w, rows_buf, written, warm, lag)
                    rss0, vm0, maps0 = _rss_anon_kib(), _proc_status("VmSize"), _maps_count()
                    tracemalloc.start()
                    snap0 = tracemalloc.take_snapshot()
                    t0 = time.perf_counter()
                    m0 = loop.messages
                    _pump(loop, w, rows_buf, written, n, lag)
                    dt = time.perf_counter() - t0
                    handled = loop.messages - m0
                    snap1 = tracemalloc.take_snapshot()
                    tracemalloc.stop()
                    grown = sum(s.size_diff for s in snap1.compare_to(snap0, "filename"))
                    rss1, vm1, maps1 = _rss_anon_kib(), _proc_status("VmSize"), _maps_count()
                finally:
                    if tracemalloc.is_tracing():
                        tracemalloc.stop()
                    loop.close()
        finally:
            shutil.rmtree(d, ignore_errors=True)
        if handled != n:
            raise RuntimeError(f"steady_memory: the loop handled {handled} of {n}")
        rows.append({
            "rss_anon_kib_before": rss0, "rss_anon_kib_after": rss1, "rss_anon_delta_kib": rss1 - rss0,
            "tracemalloc_growth_b": grown, "vmsize_delta_kib": vm1 - vm0, "maps_delta": maps1 - maps0,
            "msgs_per_s": n / dt, "n": n,
        })
    return _figure(
        f"allocations in the steady state (HotLoop, {n / 1e6:g}M messages)", "none (RSS flat)", rows,
        lambda m: (f"RssAnon {m['rss_anon_delta_kib']:+d} KiB (of ~{m['rss_anon_kib_after'] // 1024} MiB), "
                   f"tracemalloc {m['tracemalloc_growth_b']:+d} B, VmSize "
                   f"{m['vmsize_delta_kib']:+d} KiB, mappings {m['maps_delta']:+d}"),
        lambda m: m["rss_anon_delta_kib"] <= 256 and m["tracemalloc_growth_b"] <= 64 * 1024,
        note=f"{n:,} messages after {warm:,} warm-up, {FANIN_PAYLOAD}-byte payloads, 64 MiB segments, max_segments=4; "
             "writer = the calling thread (append_batch, chunks of 65 536); 'met' = RssAnon within 256 KiB "
             "and tracemalloc within 64 KiB (allocator noise, nothing per message)",
    )


# ---------------------------------------------------------------------------------------------
# 6. asyncio loop lag while the hot loop spins on the other core


def _w_stream(d: str, batch: int, go, stop, out) -> None:
    """Writer process: ``batch`` 64-byte messages (append_batch) every ~100 µs until told to stop."""
    from chronicle_async import Queue, WriterConfig

    with Queue.open_publisher(d, WriterConfig(segment_size=256 << 20)) as w:
        pin(HOT_CPU)  # share the hot thread's CPU: CPU 0 is the event loop's alone
        rows = np.zeros((batch, LAT_PAYLOAD), np.uint8)
        go.wait()
        sent = 0
        while not stop.is_set():
            w.append_batch(1, rows)
            sent += batch
            time.sleep(100e-6)
        out.put(sent)


def _lag_run(iters: int, warmup: int = 50) -> np.ndarray:
    """Overshoot of ``await asyncio.sleep(0.001)`` on a uvloop loop in this thread (pinned)."""
    import uvloop

    async def measure() -> np.ndarray:
        now = time.perf_counter_ns
        lags = np.zeros(iters + warmup, np.int64)
        for i in range(iters + warmup):
            t = now()
            await asyncio.sleep(0.001)
            lags[i] = now() - t - 1_000_000
        return lags[warmup:]

    ev = uvloop.new_event_loop()
    try:
        with _pinned_main(MAIN_CPU):
            return ev.run_until_complete(measure())
    finally:
        ev.close()


def asyncio_lag(rounds: int = 3, iters: int = 2000, batch: int = 64) -> dict:
    """Figure 6: uvloop lag (sleep(1 ms) overshoot) idle, beside a spinning HotLoop, beside a busy one."""
    from chronicle_async import BusySpin, HotLoop, Queue, WriterConfig

    def summary(lags: np.ndarray, tag: str) -> dict:
        return {f"{tag}_p50": int(np.percentile(lags, 50)), f"{tag}_p99": int(np.percentile(lags, 99)),
                f"{tag}_max": int(lags.max())}

    rows = []
    for _ in range(rounds):
        row: dict[str, Any] = {}
        # a) no hot loop
        row.update(summary(_lag_run(iters), "idle"))
        # b) a BusySpin HotLoop on the other CPU, polling an empty queue
        d = _fresh_dir("lagidle")
        try:
            with Queue.open_publisher(d, WriterConfig(segment_size=1 << 20)) as _w:
                st = np.zeros(4, np.int64)
                st[3] = -1
                loop = HotLoop(_sum_handler, st, idle=BusySpin(), cpu=HOT_CPU)
                try:
                    loop.add_reader(Queue.open_subscriber(d, None, "earliest"))
                    loop.start()
                    row.update(summary(_lag_run(iters), "spin"))
                    row["spin_cycles"] = loop.cycles
                finally:
                    loop.close()
        finally:
            shutil.rmtree(d, ignore_errors=True)
        # c) the same loop handling a stream from a writer process
        ctx = spawn_ctx()
        d = _queue_dir("lagstream")
        go, stop, out = ctx.Event(), ctx.Event(), ctx.Queue()
        p = ctx.Process(target=_w_stream, args=(d, batch, go, stop, out), name="stream-writer")
        p.start()
        try:
            rd = _open_reader_when_ready(d)
            st = np.zeros(4, np.int64)
            st[3] = -1
            loop = HotLoop(_sum_handler, st, idle=BusySpin(), cpu=HOT_CPU)
            try:
                loop.add_reader(rd)
                loop.start()
                go.set()
                t0 = time.perf_counter()
                row.update(summary(_lag_run(iters), "busy"))
                dt = time.perf_counter() - t0
                stop.set()
                sent = out.get(timeout=30)
                _wait_for(lambda lp=loop, s=sent: lp.messages >= s or lp.error is not None, 30, "the stream to drain")
                if loop.error is not None:
                    raise loop.error
                row["busy_msgs"] = loop.messages
                row["busy_msgs_per_s"] = loop.messages / dt
            finally:
                loop.close()
        finally:
            stop.set()
            p.join(10)
            if p.is_alive():
                p.kill()
            shutil.rmtree(d, ignore_errors=True)
        row["spin_p99_ratio"] = row["spin_p99"] / max(row["idle_p99"], 1)
        row["busy_p99_ratio"] = row["busy_p99"] / max(row["idle_p99"], 1)
        rows.append(row)

    def measured(m: dict) -> str:
        return "; ".join(
            f"{label} p50 {_fmt_ns(m[f'{t}_p50'])} p99 {_fmt_ns(m[f'{t}_p99'])} max {_fmt_ns(m[f'{t}_max'])}"
            for t, label in (("idle", "no hot loop"), ("spin", "spinning"), ("busy", "handling"))
        ) + f"; p99 ratio spinning {m['spin_p99_ratio']:.2f}, handling {m['busy_p99_ratio']:.2f}"

    return _figure(
        "asyncio (uvloop) lag while the hot loop spins on the other core", "p99 within 1.5× of an idle loop's p99",
        rows, measured, lambda m: m["spin_p99_ratio"] <= 1.5 and m["busy_p99_ratio"] <= 1.5,
        note=f"{iters} x `await asyncio.sleep(0.001)` per mode (overshoot past 1 ms), event loop pinned to CPU "
             f"{MAIN_CPU}, HotLoop BusySpin on CPU {HOT_CPU}; the stream writer (append_batch of {batch} x 64 B "
             f"every ~100 µs) shares CPU {HOT_CPU}; ratios are per round, then the median",
    )


# ---------------------------------------------------------------------------------------------
# all of them


def run_all(rounds: int = 3, quick: bool = False, peers: bool = True, progress: bool = True) -> list[dict]:
    """Every hot-core figure, ``rounds`` rounds each (``quick``: a tenth of the messages)."""
    k = 10 if quick else 1
    steps: list[tuple[str, Callable[[], dict]]] = [
        ("ring", lambda: ring_throughput(rounds, 20_000_000 // k, 200_000 // k)),
        ("handoff", lambda: reader_handoff(rounds, 200)),
        ("fan-in", lambda: fanin_throughput(rounds, 1_000_000 // k)),
        ("python-callback", lambda: python_callback_cost(rounds, 1_000_000 // k)),
        ("latency", lambda: handler_latency(rounds, 100_000 // k, 50_000 // k, 20_000 // k, peers=peers)),
        ("memory", lambda: steady_memory(rounds, 10_000_000 // k, 1_000_000 // k)),
        ("asyncio lag", lambda: asyncio_lag(rounds, 2000 // (2 if quick else 1))),
    ]
    figs = []
    for name, fn in steps:
        t0 = time.time()
        if progress:
            print(f"hot core: {name} ...", file=sys.stderr, flush=True)
        fig = fn()
        fig["seconds"] = round(time.time() - t0, 1)
        figs.append(fig)
    return figs


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


def format_report(figs: list[dict]) -> str:
    """A markdown table of figure / target / measured / verdict, then per-round key values."""
    def verdict(f: dict) -> str:
        return "—" if f["met"] is None else ("met" if f["met"] else "**missed**")

    header = ["figure", "target", "measured (median of rounds)", "verdict"]
    rows = [[f["figure"], f["target"], f["measured"], verdict(f)] for f in figs]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"

    out = [line(header), "| " + " | ".join("-" * w for w in widths) + " |", *(line(r) for r in rows), ""]
    for f in figs:
        out.append(f"- {f['figure']} ({len(f['rounds'])} round(s), {f.get('seconds', '?')} s): {f['note']}")
        keys = list(f["rounds"][0])
        for key in keys:
            vals = [r.get(key) for r in f["rounds"]]
            out.append(f"    - {key}: median {_cell(f['median'].get(key, '—'))}; rounds " + ", ".join(_cell(v) for v in vals))
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.hotcore", description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="a tenth of the messages (a smoke run)")
    ap.add_argument("--no-peers", action="store_true", help="skip the pyzmq row of the latency figure")
    ap.add_argument("--json", help="write the figures (medians and raw rounds) here as JSON")
    args = ap.parse_args(argv)
    t0 = time.time()
    figs = run_all(args.rounds, args.quick, peers=not args.no_peers)
    print(f"Machine: {machine_info()}")
    print(f"Hot core: {args.rounds} round(s){' (quick)' if args.quick else ''}, {time.time() - t0:.0f} s in all; queues on {SHM}.")
    print()
    print(format_report(figs))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figs, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
