"""Bridge throughput and added latency, queue -> NATS JetStream -> queue, over loopback.

Beside them, in the same run: a plain nats-py ``publish_async`` loop into the same kind of stream
(the client's ceiling). ``nats-server`` ships no benchmark tool of its own (``nats bench`` is in the
separate ``nats`` CLI, not a pip dependency): the report says so; run ``nats bench`` beside it.

Run:  python -m benchmarks.bridge [--messages N] [--size BYTES] [--rate MSGS_PER_S]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import tempfile
import time

import numpy as np

from chronicle_async import Queue
from chronicle_async.bridge import BridgeIn, BridgeOut, LocalNatsServer
from chronicle_async.control import run


async def add_stream(url: str, name: str, subject: str) -> None:
    import nats

    nc = await nats.connect(url)
    await nc.jetstream().add_stream(name=name, subjects=[subject])
    await nc.close()


async def plain_publish_async(url: str, n: int, size: int) -> float:
    """msgs/s of a bare nats-py publish_async loop, 2000 acks in flight, with a Nats-Msg-Id each."""
    import nats

    await add_stream(url, "PLAIN", "plain.x")
    nc = await nats.connect(url)
    js = nc.jetstream(publish_async_max_pending=4000)
    body = b"x" * size
    t0 = time.perf_counter()
    futs = []
    for i in range(n):
        futs.append(await js.publish_async("plain.x", body, headers={"Nats-Msg-Id": f"p-{i}"}))
        if len(futs) >= 2000:
            await asyncio.gather(*futs)
            futs = []
    await asyncio.gather(*futs)
    dt = time.perf_counter() - t0
    await nc.close()
    return n / dt


async def bridged(url: str, folder: str, n: int, size: int, rate: float, tag: str) -> tuple[float, np.ndarray]:
    """Queue -> stream -> queue. With ``rate`` 0 the source is full before the bridges start (throughput);
    else a writer thread appends at ``rate`` msgs/s (latency: destination read time - source timestamp)."""
    stream, subject = f"B{tag}", f"bench.{tag}"
    await add_stream(url, stream, subject)
    src, dst = os.path.join(folder, f"src{tag}"), os.path.join(folder, f"dst{tag}")
    body = b"x" * size
    w = Queue.open_publisher(src)
    if not rate:
        for _ in range(n):
            w.append(1, body)
    out = BridgeOut(src, server=url, stream=stream, subject=subject)
    inb = BridgeIn(dst, server=url, stream=stream, subject=subject, durable=f"bench{tag}")
    tasks = [asyncio.ensure_future(out.run()), asyncio.ensure_future(inb.run())]
    while not Queue.exists(dst):
        await asyncio.sleep(0.001)
    lat = np.empty(n, dtype=np.int64)
    got = 0

    def feed() -> None:
        t0 = time.perf_counter()
        for i in range(n):
            w.append(1, body)
            ahead = (i + 1) / rate - (time.perf_counter() - t0)
            if ahead > 0:
                time.sleep(ahead)

    writer = asyncio.get_running_loop().run_in_executor(None, feed) if rate else None
    t0 = time.perf_counter()
    with Queue.open_subscriber(dst, None, "earliest") as r:
        while got < n:
            m = await r.next_async(timeout=1.0)
            if m is None:
                continue
            lat[got] = time.time_ns() - m.timestamp_ns
            got += 1
    dt = time.perf_counter() - t0
    if writer is not None:
        await writer
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    w.close()
    return n / dt, lat


async def main(args: argparse.Namespace) -> None:
    folder = tempfile.mkdtemp(prefix="bridge-bench-")
    server = LocalNatsServer(os.path.join(folder, "js"))
    server.start()
    url = server.url
    try:
        plain = await plain_publish_async(url, args.messages, args.size)
        thr, _ = await bridged(url, folder, args.messages, args.size, 0.0, "T")
        _, lat = await bridged(url, folder, min(args.messages, int(args.rate * 5)), args.size, args.rate, "L")
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)
    p50, p99 = np.percentile(lat, [50, 99]) / 1e3
    print(f"| what ({args.messages} msgs of {args.size} B, loopback) | msgs/s | p50 us | p99 us |")
    print("|---|---|---|---|")
    print(f"| nats-py publish_async loop (2000 in flight, ack'd) | {plain:,.0f} | | |")
    print(f"| bridge out + bridge in, queue -> stream -> queue (backlog) | {thr:,.0f} | | |")
    print(f"| same, writer at {args.rate:,.0f} msgs/s: end-to-end latency | | {p50:,.0f} | {p99:,.0f} |")
    if shutil.which("nats") is None:
        print("\n(nats-server has no benchmark of its own; `nats bench`, in the separate `nats` CLI, is not installed here)")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=100_000)
    ap.add_argument("--size", type=int, default=100)
    ap.add_argument("--rate", type=float, default=5_000.0)
    run(main(ap.parse_args()))
