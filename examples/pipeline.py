"""feed -> strategy -> router: three processes, one component each, joined only by persisted queues.

- feed (process 1) writes ticks (a numpy structured record) to ``md``, in paced batches, then END.
- strategy (process 2) runs a ``HotLoop``: its jitted handler reads each tick zero-copy, keeps the
  last price per instrument and emits an ORDER to ``orders`` when the price jumps by more than
  param 0. No Python runs per tick. It forwards END.
- router (process 3) is plain Python: ``QueueReader.wait()``, drain, append a FILL per order to
  ``fills``, commit. It forwards END and exits.

END is the application's end-of-stream marker: a queue never ends by itself. The main process
only orchestrates; at the end it reads the three queues back (``read_array``) and checks, end to
end: every tick handled, the orders exactly those the rule gives (recomputed with numpy), one fill
per order in order, every queue's seqs contiguous. Latency is tick stamp -> fill stamp (both
CLOCK_REALTIME ns, as time.time_ns(): one clock for every process on the host).

Run:  python examples/pipeline.py [bus-folder]
"""
from __future__ import annotations

import multiprocessing as mp
import os
import queue
import shutil
import time

import numba
import numpy as np
from _market import END_T, FILL, FILL_T, INSTRUMENTS, ORDER, ORDER_T, TICK, TICK_T, contiguous, run_in_folder

from chronicle_async import Backoff, HotLoop, Queue, WriterConfig, read_array
from chronicle_async.hot.loop import clock, emit, param

TICKS, BATCH, PACE_S = 200_000, 100, 0.0005   # ~150-200k ticks/s in bursts of 100
THRESHOLD = 0.1                               # a jump that fires an order (~15% of ticks)
CFG = WriterConfig(segment_size=4 << 20)
TIMEOUT_S = 120


def feed(bus: str, go) -> None:
    rng = np.random.default_rng(7)
    base = 100 + rng.standard_normal(INSTRUMENTS)
    with Queue.open_publisher(os.path.join(bus, "md"), CFG) as w:
        go.wait(TIMEOUT_S)                  # the strategy and the router are up
        ticks = np.zeros(BATCH, TICK)
        for _ in range(TICKS // BATCH):
            ticks["instrument"] = rng.integers(0, INSTRUMENTS, BATCH)
            ticks["price"] = base[ticks["instrument"]] + rng.normal(0, 0.05, BATCH)
            w.append_batch(TICK_T, ticks)   # one message per record, all stamped time.time_ns() now
            time.sleep(PACE_S)
        w.append(END_T, np.int64(TICKS))


@numba.njit
def strategy(state, ctx, source, type_id, seq, timestamp_ns, payload):
    last, order = state                     # float64[INSTRUMENTS] last prices, a scratch ORDER record
    if type_id == END_T:
        return 0 if emit(ctx, 0, END_T, payload, timestamp_ns) >= 0 else -1
    tick = payload.view(TICK)[0]            # zero-copy decode of the mapped record
    i = tick["instrument"]
    prev = last[i]
    last[i] = tick["price"]
    if abs(tick["price"] - prev) > param(ctx, 0):   # False for the first tick (prev is NaN)
        o = order.view(ORDER)
        o[0]["tick_seq"] = seq
        o[0]["tick_ts_ns"] = timestamp_ns
        # clock(): CLOCK_REALTIME extrapolated from the cycle counter (no system call). Fine within the
        # process; against time.time_ns() in other processes it was off by 0.1-1 ms here, so the
        # latency below uses only time.time_ns() stamps (the tick's header and the router's).
        now = clock(ctx)
        o[0]["order_ts_ns"] = now
        o[0]["instrument"] = i
        o[0]["side"] = 1 if tick["price"] < prev else -1
        o[0]["price"] = tick["price"]
        r = emit(ctx, 0, ORDER_T, order, now)
        if r < 0:
            return r                        # stops the loop: the message stays unconsumed
    return 0


def strategy_process(bus: str, ready, results) -> None:
    with Queue.open_publisher(os.path.join(bus, "orders"), CFG) as orders:
        state = (np.full(INSTRUMENTS, np.nan), np.zeros(ORDER.itemsize, np.uint8))
        loop = HotLoop(strategy, state, outputs=[orders], params=[THRESHOLD], idle=Backoff())  # compiles
        loop.add_reader(Queue.open_subscriber(os.path.join(bus, "md"), "strategy", "earliest"))
        with loop:                          # the hot thread runs; this thread only watches
            ready.set()
            end = time.monotonic() + TIMEOUT_S
            while loop.messages < TICKS + 1 and time.monotonic() < end:
                time.sleep(0.01)
            handled = loop.messages
        results.put(("strategy", handled))


def router_process(bus: str, ready, results) -> None:
    fill, routed = np.zeros(1, FILL), 0
    with Queue.open_subscriber(os.path.join(bus, "orders"), "router", "earliest") as r, \
            Queue.open_publisher(os.path.join(bus, "fills"), CFG) as w:
        ready.set()
        end = time.monotonic() + TIMEOUT_S
        while time.monotonic() < end:
            if not r.wait(0.1):             # spin 20 µs, then park on the futex
                continue
            for msg in r:                   # drain what is there
                if msg.type_id == END_T:
                    w.append(END_T, msg.payload)
                    r.commit()
                    results.put(("router", routed))
                    return
                o = msg.as_array(ORDER)[0]
                fill[0] = (msg.seq, o["tick_seq"], o["tick_ts_ns"], o["order_ts_ns"], time.time_ns(),
                           o["instrument"], o["side"], o["price"])
                w.append(FILL_T, fill)
                routed += 1
            r.commit()                      # a restarted router resumes after the last routed order
    results.put(("router", -1))


def main(bus: str) -> None:
    for name in ("md", "orders", "fills"):  # fresh queues, created up front so readers open at once
        shutil.rmtree(os.path.join(bus, name), ignore_errors=True)
        Queue.open_publisher(os.path.join(bus, name), CFG).close()
    ctx = mp.get_context("spawn")
    go, ready_s, ready_r, results = ctx.Event(), ctx.Event(), ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=feed, args=(bus, go), name="feed"),
             ctx.Process(target=strategy_process, args=(bus, ready_s, results), name="strategy"),
             ctx.Process(target=router_process, args=(bus, ready_r, results), name="router")]

    def crashed() -> bool:                  # a component that died never reports: stop waiting for it
        return any(p.exitcode not in (None, 0) for p in procs)

    reported, t0 = {}, time.perf_counter()
    try:
        for p in procs:
            p.start()
        while not (ready_s.is_set() and ready_r.is_set()) and not crashed():
            if time.perf_counter() - t0 > TIMEOUT_S:
                raise SystemExit("FAILED: the strategy or the router did not start")
            time.sleep(0.05)
        t_go = time.perf_counter()
        go.set()
        while len(reported) < 2 and not crashed() and time.perf_counter() - t_go < TIMEOUT_S:
            try:
                reported.update([results.get(timeout=0.5)])
            except queue.Empty:
                pass
        for p in procs:
            p.join(10)
    finally:                                # never leave a component running, even on a failure
        for p in procs:
            if p.is_alive():
                p.kill()
    print(f"processes up in {t_go - t0:.2f} s (spawn, imports, HotLoop compile); "
          f"run {time.perf_counter() - t_go:.2f} s; exit codes {[p.exitcode for p in procs]}")

    ticks = read_array(os.path.join(bus, "md"), dtype=TICK, type_ids=TICK_T)
    orders = read_array(os.path.join(bus, "orders"), dtype=ORDER, type_ids=ORDER_T)
    fills = read_array(os.path.join(bus, "fills"), dtype=FILL, type_ids=FILL_T)
    ends = [read_array(os.path.join(bus, q), dtype=np.int64, type_ids=END_T)["value"].tolist()
            for q in ("md", "orders", "fills")]
    expected = np.sort(np.concatenate([   # the strategy's rule, recomputed from the persisted ticks
        sel["seq"][1:][np.abs(np.diff(sel["price"])) > THRESHOLD]
        for sel in (ticks[ticks["instrument"] == i] for i in range(INSTRUMENTS))]))
    e2e = (fills["fill_ts_ns"] - fills["tick_ts_ns"]) / 1e3 if len(fills) else np.full(1, np.nan)
    span = (fills["fill_ts_ns"].max() - ticks["timestamp_ns"].min()) / 1e9 if len(fills) else np.nan
    print(f"ticks {len(ticks)}, handled by the strategy {reported.get('strategy')}, orders {len(orders)} "
          f"(rule says {len(expected)}), routed {reported.get('router')}, fills {len(fills)}")
    print(f"throughput: {len(ticks) / span:,.0f} ticks/s and {len(fills) / span:,.0f} orders/s "
          f"end to end (first tick to last fill, {span:.2f} s; the feed is paced)")
    print(f"latency tick -> fill (3 processes, 2 hops): p50 {np.percentile(e2e, 50):.1f} µs, "
          f"p90 {np.percentile(e2e, 90):.1f} µs, p99 {np.percentile(e2e, 99):.1f} µs, max {e2e.max():.1f} µs")
    checks = {
        "exit codes": all(p.exitcode == 0 for p in procs),
        "ticks contiguous": len(ticks) == TICKS and contiguous(ticks["seq"]),
        "every tick handled": reported.get("strategy") == TICKS + 1,          # + END
        "orders as the rule says": np.array_equal(orders["tick_seq"], expected),
        "orders contiguous": contiguous(orders["seq"]),
        "every order routed": reported.get("router") == len(orders) == len(fills),
        "fills match orders": np.array_equal(fills["order_seq"], orders["seq"])
        and np.array_equal(fills["tick_seq"], orders["tick_seq"]),
        "fills contiguous": contiguous(fills["seq"]),
        "END everywhere": ends == [[TICKS]] * 3,
    }
    print("checks:", ", ".join(f"{k}={'ok' if v else 'FAILED'}" for k, v in checks.items()))
    if not all(checks.values()):
        raise SystemExit("FAILED: " + ", ".join(k for k, v in checks.items() if not v))
    print("ALL CHECKS PASSED")


if __name__ == "__main__":
    run_in_folder(main, "pipeline-")
