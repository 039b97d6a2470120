"""The end-to-end demo: a feed process writes market ticks, a strategy process reads them.

Both are real processes (spawned) sharing nothing but the queue folder. The
reader starts first and waits for the queue to appear; the writer publishes
ticks with a numba batch append; the reader checks every seq and price, commits
its position, and both print what they did.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import shutil
import struct
import time

import numpy as np

#: One tick: 64 bytes, decoded zero-copy with ``Message.as_array(TICK)``.
TICK = np.dtype([("symbol", "S8"), ("price", "<f8"), ("qty", "<i8"), ("sent_ns", "<i8"), ("pad", "S32")])
TICK_TYPE = 1
_PRICE_OFFSET = TICK.fields["price"][1]
_unpack_price = struct.Struct("<d").unpack_from
BATCH = 4096


def _price(seq: np.ndarray | int) -> np.ndarray | float:
    return 100.0 + (np.asarray(seq) % 1000) * 0.01


def _writer(path: str, n: int, segment_size: int, out: "mp.Queue") -> None:
    from chronicle_async import Queue, WriterConfig

    with Queue.open_publisher(path, WriterConfig(segment_size=segment_size)) as w:
        w.append_batch(np.zeros(1, TICK), TICK_TYPE)  # compile/warm the batch kernel (seq 0)
        ticks = np.zeros(BATCH, TICK)
        ticks["symbol"] = b"ACME"
        t0 = time.perf_counter()
        sent = 0
        while sent < n - 1:
            k = min(BATCH, n - 1 - sent)
            seqs = np.arange(sent + 1, sent + 1 + k)
            ticks["price"][:k] = _price(seqs)
            ticks["qty"][:k] = seqs % 100 + 1
            ticks["sent_ns"][:k] = time.time_ns()
            w.append_batch(ticks[:k], TICK_TYPE)
            sent += k
        dt = time.perf_counter() - t0
        single = 20_000
        t1 = time.perf_counter()
        for i in range(single):
            w.append(2, b"heartbeat %d" % i)
        dts = time.perf_counter() - t1
        out.put(("writer", n, dt, single, dts, w.segment_id, w.epoch))


def _reader(path: str, n: int, out: "mp.Queue") -> None:
    from chronicle_async import Queue, QueueNotFoundError

    deadline = time.monotonic() + 60
    while True:
        try:
            r = Queue.open_subscriber(path, "demo-strategy", "earliest")
            break
        except QueueNotFoundError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)
    with r:
        expected = 0
        got = 0
        bad = 0
        first_t = None
        sample = []
        while got < n:
            m = r.next()
            if m is None:
                r.wait(timeout=1.0)
                continue
            if first_t is None:
                first_t = time.perf_counter()
            if m.seq != expected:
                bad += 1
            expected = m.seq + 1
            if m.type_id == TICK_TYPE and m.seq > 0:
                if _unpack_price(m.payload, _PRICE_OFFSET)[0] != 100.0 + (m.seq % 1000) * 0.01:
                    bad += 1
                if len(sample) < 3:  # decode a few ticks whole, zero-copy, as a structured array
                    tick = m.as_array(TICK)[0]
                    sample.append((m.seq, tick["symbol"].decode(), round(float(tick["price"]), 2), int(tick["qty"])))
            got += 1
        dt = time.perf_counter() - first_t
        r.commit()
        out.put(("reader", got, dt, bad, sample, r.next_seq))


def run_demo(path: str = ".demo-bus/ticks", messages: int = 1_000_000, segment_size: int = 16 * 1024 * 1024) -> int:
    """Run the demo and print the exchange; returns a process exit code."""
    path = os.path.abspath(path)
    shutil.rmtree(path, ignore_errors=True)
    print(f"chronicle_async demo: queue {path}")
    print("  (the first run compiles numba kernels into the cache; later runs start in about a second)")
    ctx = mp.get_context("spawn")
    out: mp.Queue = ctx.Queue()
    reader = ctx.Process(target=_reader, args=(path, messages + 20_000, out), name="demo-reader")
    writer = ctx.Process(target=_writer, args=(path, messages, segment_size, out), name="demo-writer")
    t0 = time.perf_counter()
    reader.start()
    writer.start()
    results = {}
    try:
        for _ in range(2):
            item = out.get(timeout=300)
            results[item[0]] = item
    finally:
        for p in (writer, reader):
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    _, n, dt, single, dts, last_seg, epoch = results["writer"]
    _, got, rdt, bad, sample, next_seq = results["reader"]
    segs = sorted(f for f in os.listdir(path) if f.endswith(".seg"))
    print(f"writer (pid {writer.pid}, epoch {epoch}): {n:,} ticks by batch append in {dt:.3f} s "
          f"= {n / dt / 1e6:.1f} M msg/s; {single:,} single append() calls = {single / dts / 1e6:.2f} M msg/s "
          f"({dts / single * 1e9:.0f} ns each)")
    print(f"reader (pid {reader.pid}): {got:,} messages in {rdt:.3f} s = {got / rdt / 1e6:.2f} M msg/s, "
          f"{'all seqs contiguous and prices correct' if bad == 0 else f'{bad} MISMATCHES'}; committed next_seq={next_seq:,}")
    for seq, sym, price, qty in sample:
        print(f"  seq {seq}: {sym} {qty} @ {price}")
    print(f"on disk: {len(segs)} segment files ({segs[0]} .. {segs[-1]}), control.cq, readers/demo-strategy.pos")
    print(f"total {time.perf_counter() - t0:.1f} s")
    return 0 if bad == 0 and got == n + single else 1
