"""Scaling across cores: fan-out to k reader processes and fan-in from w writer processes.

    python -m benchmarks.scaling [--rounds 3] [--quick] [--max-k K] [--n N] [--budget-s S] [--out FILE]
    python -m benchmarks.run --scaling [--rounds 3] [--quick] [--out FILE]

Fan-out, k = 1..K: one writer process appends ``n`` 64-byte messages to one queue from a
jitted loop (``sustained._produce``, as in ``examples/jitted_append.py``); k reader processes
each run a ``HotLoop`` pinned to its own core with one anonymous reader and a jitted handler
that counts the messages and checks that the seqs are contiguous (and that each payload
carries its seq). Per k: the aggregate delivered rate (the readers' counts summed, over the
time from the writer's first append to the last message handled by any reader), the
slowest reader's rate (its count over the time to its own last message) and the writer's
own rate. Beside it, in the same round: pyzmq PUB/SUB over ``ipc://`` (``_scaling_zmq``),
one publisher to k Python subscriber processes, the same ``n`` and payload size.

Fan-in, w = 1..K: w writer processes, each appending ``n`` messages to its own queue, read
by one ``HotLoop`` (in this process) with hotcore's jitted sum handler; the aggregate rate
is ``w * n`` over the time from the first writer's first append to the last message
handled, and every payload is summed and checked.

Placement: the writer of the fan-out and the HotLoop of the fan-in get CPU 0 alone; the
k (or w) other processes get CPUs 1..nproc-1, one each. When k > nproc - 1 they share
those CPUs round-robin and the row is marked *oversubscribed*; its HotLoops then idle with
``Backoff()`` rather than ``BusySpin()`` so that threads sharing a CPU yield to each other.
By default K = nproc - 1, and at least 2, so a 2-core machine measures k = 1 and an
oversubscribed k = 2.

No roll happens in the timed stream: every queue's one segment holds all ``n`` records
(pre-faulted at open, ``prepare_ahead=0``), and the writer fails the round if its jitted
loop stops early. Queues live on /dev/shm. Every process is spawned (never forked),
pinned with ``_harness.pin`` and reaped (terminated, then killed) with ``peers``' helpers;
every wait has a timeout. Each k runs ``--rounds`` rounds (chronicle fan-out, pyzmq
fan-out, fan-in, in that order); the tables give the medians.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time
from multiprocessing.synchronize import Event
from typing import Any

import numba
import numpy as np

from chronicle_async.hot.atomics import load_plain_i64
from chronicle_async.hot.clock import rdtsc, read_tsc, tsc_per_ns
from chronicle_async.hot.layout import PAGE_SIZE, record_length

from . import iox2
from ._harness import _fmt_rate, _markdown, machine_info, pin, spawn_ctx
from ._scaling_zmq import await_events, zmq_fanout_once
from .chronicle import SHM, _open_reader_when_ready, _queue_dir
from .hotcore import _medians, _sum_handler, _wait_for
from .peers import _collect, _Peer, _reap, _start_peer
from .sustained import PAYLOAD, _produce

NCPU = os.cpu_count() or 1
N_DEFAULT = 1_000_000
N_QUICK = 100_000
#: iceoryx2's fan-out rows send at most this many messages (its Python publisher runs at ~0.5 M/s).
IOX2_N = 200_000

# fan-out handler state: [count, next expected seq, bad, tsc at the first message, tsc at count == target, target]
_COUNT, _NEXT, _BAD, _FIRST, _LAST, _TARGET = range(6)


@numba.njit(nogil=True, cache=True)
def _count_handler(state, ctx, source, type_id, seq, timestamp_ns, payload):
    """Count messages; a seq that is not the previous one + 1, or a payload not carrying its seq, is bad."""
    if seq != state[1] or load_plain_i64(payload, 0) != seq:
        state[2] += 1
    state[1] = seq + 1
    c = state[0] + 1
    state[0] = c
    if c == 1:
        state[3] = rdtsc()
    if c == state[5]:
        state[4] = rdtsc()
    return 0


def segment_for(n: int) -> int:
    """A segment size that holds ``n`` records of PAYLOAD bytes with room to spare (no roll)."""
    need = n * record_length(PAYLOAD) + (1 << 20)
    return max(1 << 20, (need + PAGE_SIZE - 1) // PAGE_SIZE * PAGE_SIZE)


def placement(count: int, ncpu: int = NCPU) -> tuple[int | None, list[int | None], bool]:
    """(CPU of the lone side, CPUs of the ``count`` others, oversubscribed?).

    The lone side (fan-out writer, fan-in HotLoop) gets CPU 0; the others take CPUs
    1..ncpu-1 in turn, sharing them when ``count`` exceeds ncpu - 1.
    """
    if ncpu < 2:
        return None, [None] * count, True
    others = list(range(1, ncpu))
    return 0, [others[i % len(others)] for i in range(count)], count > len(others)


def child_timeout(n: int) -> float:
    """Seconds any child (or wait) may take: start-up slack plus a slow 20 k msgs/s."""
    return 60.0 + n / 20_000


# ---------------------------------------------------------------------------------------------
# child bodies (run in spawned processes through peers._child_main)


def _jit_writer(d: str, n: int, cpu: int | None, ready: Event, go: Event, done: Event,
                timeout_s: float) -> dict[str, Any]:
    """Create the queue (one segment for all ``n``), compile, wait for ``go``, append ``n`` from numba."""
    from chronicle_async import Queue, WriterConfig

    with Queue.open_publisher(d, WriterConfig(segment_size=segment_for(n), prepare_ahead=0)) as w:
        pin(cpu)  # after open: the writer's own helper threads keep the whole mask
        h = w.hot_handle()
        payload = np.zeros(PAYLOAD, np.uint8)
        _produce(h.seg, h.ctl, 0, 0, payload, 0)  # compile (or load) without appending
        ready.set()
        if not go.wait(timeout_s):
            raise TimeoutError("no go from the parent")
        t0 = read_tsc()
        k = _produce(h.seg, h.ctl, 0, n, payload, time.time_ns())
        t1 = read_tsc()
        if k != n:
            raise RuntimeError(f"the jitted writer appended {k} of {n} messages in one segment (status or roll)")
        rolls = sum(w.roll_counts)
        done.wait(timeout_s)  # keep the queue open while it is read
    return {"t0": t0, "t1": t1, "rolls": rolls}


def _hot_reader(d: str, n: int, cpu: int | None, spin: bool, ready: Event, timeout_s: float) -> dict[str, Any]:
    """One anonymous reader in a HotLoop pinned to ``cpu``; waits until it has handled ``n``."""
    from chronicle_async import Backoff, BusySpin, HotLoop

    rd = _open_reader_when_ready(d)
    state = np.zeros(6, np.int64)
    state[_TARGET] = n
    loop = HotLoop(_count_handler, state, idle=BusySpin() if spin else Backoff(), cpu=cpu)
    try:
        loop.add_reader(rd)
        loop.start()
        ready.set()
        _wait_for(lambda: state[_LAST] != 0 or loop.error is not None, timeout_s, f"{n} messages", poll=0.002)
        if loop.error is not None:
            raise loop.error
    finally:
        loop.close()
    return {"count": int(state[_COUNT]), "bad": int(state[_BAD]), "t_last": int(state[_LAST]),
            "pin_error": loop.pin_error}


# ---------------------------------------------------------------------------------------------
# one round of each figure


def fanout_once(k: int, n: int, per_ns: float, ncpu: int = NCPU) -> dict[str, Any]:
    """Chronicle fan-out: 1 jitted writer process -> ``k`` HotLoop reader processes."""
    ctx = spawn_ctx()
    timeout = child_timeout(n)
    wcpu, rcpus, over = placement(k, ncpu)
    d = _queue_dir("scale-out")
    wready, go, done = ctx.Event(), ctx.Event(), ctx.Event()
    rready = [ctx.Event() for _ in range(k)]
    writer: list[_Peer] = []
    readers: list[_Peer] = []
    try:
        writer.append(_start_peer("writer", _jit_writer, (d, n, wcpu, wready, go, done, timeout)))
        for i in range(k):
            readers.append(_start_peer(f"reader {i}", _hot_reader, (d, n, rcpus[i], not over, rready[i], timeout)))
        await_events([wready, *rready], writer + readers, timeout, "the writer and readers to be ready")
        go.set()
        _collect(readers, f"fan-out k={k}", timeout)
        done.set()
        _collect(writer, f"fan-out k={k}", timeout)
    finally:
        done.set()
        _reap(writer + readers)
        shutil.rmtree(d, ignore_errors=True)
    w = writer[0].report
    rs = [r.report for r in readers]
    assert w is not None and all(r is not None for r in rs)
    counts = [int(r["count"]) for r in rs]  # type: ignore[index]
    lasts = [int(r["t_last"]) for r in rs]  # type: ignore[index]
    bad = sum(int(r["bad"]) for r in rs)  # type: ignore[index]
    if bad or any(c != n for c in counts):
        raise RuntimeError(f"fan-out k={k}: readers counted {counts} of {n}, {bad} out of order or wrong payload")
    t0 = int(w["t0"])

    def secs(t: int) -> float:
        return (t - t0) / per_ns * 1e-9

    return {
        "aggregate": sum(counts) / secs(max(lasts)),
        "slowest": min(c / secs(t) for c, t in zip(counts, lasts)),
        "writer": n / secs(int(w["t1"])),
        "bad": bad,
        "rolls": int(w["rolls"]),
        "counts": counts,
        "pin_errors": [r["pin_error"] for r in rs if r["pin_error"]],  # type: ignore[index]
    }


def fanin_once(w: int, n: int, per_ns: float, ncpu: int = NCPU) -> dict[str, Any]:
    """Chronicle fan-in: ``w`` jitted writer processes, one queue each -> one HotLoop in this process."""
    from chronicle_async import Backoff, BusySpin, HotLoop

    ctx = spawn_ctx()
    timeout = child_timeout(n)
    lcpu, wcpus, over = placement(w, ncpu)
    dirs = [_queue_dir(f"scale-in{i}") for i in range(w)]
    ready = [ctx.Event() for _ in range(w)]
    go, done = ctx.Event(), ctx.Event()
    writers: list[_Peer] = []
    total = w * n
    state = np.zeros(4, np.int64)  # hotcore._sum_handler: [sum, count, tsc at count == target, target]
    state[3] = total
    try:
        for i in range(w):
            writers.append(_start_peer(f"writer {i}", _jit_writer, (dirs[i], n, wcpus[i], ready[i], go, done, timeout)))
        await_events(ready, writers, timeout, "the writers to be ready")
        loop = HotLoop(_sum_handler, state, idle=Backoff() if over else BusySpin(), cpu=lcpu, max_readers=max(64, w))
        try:
            for d in dirs:
                loop.add_reader(_open_reader_when_ready(d))
            loop.start()
            go.set()
            _wait_for(lambda: state[2] != 0 or loop.error is not None, timeout, f"fan-in of {total}", poll=0.002)
            if loop.error is not None:
                raise loop.error
            pin_error = loop.pin_error
        finally:
            loop.close()
        done.set()
        _collect(writers, f"fan-in w={w}", timeout)
    finally:
        done.set()
        _reap(writers)
        for d in dirs:
            shutil.rmtree(d, ignore_errors=True)
    expect = w * (n * (n - 1) // 2)
    if state[1] != total or state[0] != expect:
        raise RuntimeError(f"fan-in w={w}: handled {state[1]} of {total}, sum {state[0]} != {expect}")
    reps = [p.report for p in writers]
    t0 = min(int(r["t0"]) for r in reps)  # type: ignore[index]
    per_writer = [n / ((int(r["t1"]) - int(r["t0"])) / per_ns * 1e-9) for r in reps]  # type: ignore[index]
    return {
        "aggregate": total / ((int(state[2]) - t0) / per_ns * 1e-9),
        "slowest_writer": min(per_writer),
        "count": int(state[1]),
        "rolls": sum(int(r["rolls"]) for r in reps),  # type: ignore[index]
        "pin_errors": [pin_error] if pin_error else [],
    }


# ---------------------------------------------------------------------------------------------
# the sweep and its tables


def sweep(ks: list[int], n: int, rounds: int, budget_s: float | None = None, zmq: bool = True,
          progress: bool = True) -> dict[str, Any]:
    """Every k of ``ks``: ``rounds`` rounds of chronicle fan-out, pyzmq fan-out, fan-in; medians per k."""
    per_ns = tsc_per_ns(0.1)
    t_start = time.monotonic()
    out: dict[str, Any] = {"n": n, "rounds": rounds, "rows": [], "skipped": [], "pin_errors": set()}
    if progress:
        print("scaling: warm-up (compiles or loads the jitted code once, not measured)", file=sys.stderr, flush=True)
    fanout_once(1, 1000, per_ns)
    fanin_once(1, 1000, per_ns)
    for k in coverage_order(ks):
        if budget_s is not None and out["rows"] and time.monotonic() - t_start > budget_s:
            out["skipped"].append(k)
            continue
        fo, zo, io, fi = [], [], [], []
        for r in range(rounds):
            if progress:
                print(f"scaling: k={k} round {r + 1}/{rounds} ({time.monotonic() - t_start:.0f} s)", file=sys.stderr, flush=True)
            fo.append(fanout_once(k, n, per_ns))
            if zmq:
                pub_cpu, sub_cpus, _ = placement(k)
                zo.append(zmq_fanout_once(k, n, PAYLOAD, pub_cpu, sub_cpus, child_timeout(n)))
            if iox2.available():
                io.append(iox2.fanout_throughput(k, n=min(n, IOX2_N)).msgs_per_s)
            fi.append(fanin_once(k, n, per_ns))
        for x in fo + fi:
            out["pin_errors"].update(x["pin_errors"])
        out["rows"].append({"k": k, "oversubscribed": placement(k)[2], "fanout": _medians(fo),
                            "zmq": _medians(zo) if zo else None, "fanin": _medians(fi),
                            "iox2": statistics.median(io) if io else None})
    out["rows"].sort(key=lambda row: row["k"])
    out["skipped"].sort()
    out["seconds"] = time.monotonic() - t_start
    return out


def coverage_order(ks: list[int]) -> list[int]:
    """``ks`` reordered smallest, largest, then midpoints, so a time budget cut still spans the range."""
    ks = sorted(set(ks))
    if len(ks) <= 2:
        return ks
    order = [ks[0], ks[-1]]
    spans = [(0, len(ks) - 1)]
    while spans:
        nxt = []
        for lo, hi in spans:
            if hi - lo > 1:
                mid = (lo + hi) // 2
                order.append(ks[mid])
                nxt += [(lo, mid), (mid, hi)]
        spans = nxt
    return order


def check_shm_space(max_k: int, n: int) -> None:
    """Fail early, with the fix, if /dev/shm cannot hold the fan-in's ``max_k`` queues at once."""
    need = max_k * segment_for(n)
    free = shutil.disk_usage(SHM).free
    if free < need * 1.2:
        raise SystemExit(f"{SHM} has {free >> 20} MiB free; w={max_k} queues of {segment_for(n) >> 20} MiB need "
                         f"{need >> 20} MiB: lower --n or --max-k")


def _placement_text(k: int, over: bool) -> str:
    return f"{k} on {min(k, max(NCPU - 1, 1))} CPU(s), **oversubscribed**" if over else f"{k} on {k} CPU(s)"


def format_report(res: dict[str, Any]) -> str:
    """Two markdown tables (fan-out beside pyzmq, fan-in) and the notes that go with them."""
    r = _fmt_rate
    head = ["k readers", "placement", "chronicle aggregate", "chronicle slowest reader", "chronicle writer",
            "pyzmq aggregate", "pyzmq slowest sub", "pyzmq publisher", "pyzmq drops", "aggregate vs pyzmq",
            "iceoryx2 aggregate"]
    rows = []
    for row in res["rows"]:
        f, z = row["fanout"], row["zmq"]
        zc = [r(z["aggregate"]), r(z["slowest"]), r(z["writer"]), f"{z['drops']:.0f}",
              f"×{f['aggregate'] / z['aggregate']:.1f}" if z["aggregate"] else "—"] if z else ["—"] * 5
        rows.append([str(row["k"]), _placement_text(row["k"], row["oversubscribed"]),
                     r(f["aggregate"]), r(f["slowest"]), r(f["writer"]), *zc,
                     r(row["iox2"]) if row.get("iox2") else "—"])
    head_in = ["w writers", "placement", "fan-in aggregate", "slowest writer"]
    rows_in = [[str(row["k"]), _placement_text(row["k"], row["oversubscribed"]), r(row["fanin"]["aggregate"]),
                r(row["fanin"]["slowest_writer"])] for row in res["rows"]]
    n = res["n"]
    lines = [
        f"Fan-out: one jitted writer process -> k reader processes ({n:,} messages of {PAYLOAD} B; "
        f"medians of {res['rounds']} round(s); msgs/s)", "", _markdown(head, rows), "",
        f"Fan-in: w jitted writer processes, one queue each -> one HotLoop ({n:,} messages per writer; msgs/s)",
        "", _markdown(head_in, rows_in), "",
        "- chronicle readers: one process each, a HotLoop with one anonymous reader and a jitted handler that "
        "counts and checks seq contiguity (BusySpin; Backoff when oversubscribed). Every reader saw all "
        "messages in order in every round (a round fails otherwise).",
        "- aggregate = messages delivered to all readers / (writer's first append -> last message handled by "
        "any reader); slowest reader = its count / (first append -> its own last message); writer = n / the "
        "writer's append time. Chronicle timed with the TSC, pyzmq with CLOCK_MONOTONIC.",
        "- pyzmq: PUB/SUB over ipc://, SNDHWM = RCVHWM = 0 (unbounded, so drops mean a lost message, "
        "counted honestly), Python recv() loop per subscriber checking the seq in bytes 0..7.",
        f"- iceoryx2 ({'installed' if iox2.available() else 'not installed'}): one publisher to k Python "
        f"subscribers, {IOX2_N:,} messages at most (benchmarks/iox2.py, no message lost: the publisher "
        "waits on a full subscriber buffer); shared memory, not persisted.",
        "- No roll in any timed stream: each queue is one pre-faulted segment sized for all messages "
        f"({segment_for(n) >> 20} MiB, prepare_ahead=0); fan-out rolls seen: "
        f"{sum(row['fanout']['rolls'] for row in res['rows']):.0f}, fan-in: "
        f"{sum(row['fanin']['rolls'] for row in res['rows']):.0f}.",
        "- CPU 0: the fan-out writer / the pyzmq publisher / the fan-in HotLoop; CPUs 1..nproc-1: the others, "
        "one each, shared round-robin when oversubscribed. This process (the parent) sleeps while it waits.",
    ]
    if res["skipped"]:
        lines.append(f"- skipped for the time budget: k = {', '.join(map(str, res['skipped']))}")
    if res["pin_errors"]:
        lines.append(f"- pinning failed: {sorted(res['pin_errors'])}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.scaling", description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help=f"{N_QUICK:,} messages instead of {N_DEFAULT:,}")
    ap.add_argument("--max-k", type=int, default=max(2, NCPU - 1),
                    help="largest k (readers) and w (writers); default nproc - 1, at least 2")
    ap.add_argument("--n", type=int, default=None, help="messages per writer (overrides --quick)")
    ap.add_argument("--budget-s", type=float, default=None,
                    help="start no new k after this many seconds (the finished ones are reported)")
    ap.add_argument("--no-zmq", action="store_true", help="skip the pyzmq rows")
    ap.add_argument("--out", help="write the report here too")
    args = ap.parse_args(argv)
    n = args.n or (N_QUICK if args.quick else N_DEFAULT)
    ks = list(range(1, max(1, args.max_k) + 1))
    check_shm_space(ks[-1], n)
    res = sweep(ks, n, max(1, args.rounds), args.budget_s, zmq=not args.no_zmq)
    cmd = "python -m benchmarks.scaling " + " ".join(argv if argv is not None else sys.argv[1:])
    report = "\n".join([
        f"Machine: {machine_info()}",
        f"Command: {cmd.strip()}",
        f"Scaling: {res['seconds']:.0f} s in all; queues on {SHM}.",
        "",
        format_report(res),
    ])
    print(report)
    if args.out:
        with open(args.out, "w") as f:
            f.write(report + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
