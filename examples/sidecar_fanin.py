"""The Sidecar pattern built from the primitives, part by part: FanInReader + SpscRing.

``sidecar.py`` does this with a ``HotLoop`` (a jitted hot thread). This version
builds it from the primitives, for readers who want to see the parts:

- the **hot thread** owns a ``FanInReader`` and a ``QueueWriter``; each turn it
  (1) drains the command ring without blocking, (2) waits on the fan-in (spin,
  then one ``futex_waitv`` over every stream: it parks only when idle), and
  (3) processes what is there, in timestamp order, writing to its own queue;
- the **sidecar** is an asyncio coroutine (uvloop) that discovers streams through
  inotify (``watchfiles``), opens and validates each reader off the loop, and
  hands it over: the reader object goes into a hand-off table and its slot
  number through the lock-free ``SpscRing`` (the sidecar is its single producer).

Run:  python examples/sidecar_fanin.py [bus-folder]
"""
from __future__ import annotations

import asyncio
import os
import struct
import sys
import tempfile
import threading
import time

import numpy as np
import watchfiles

from chronicle_async import FanInReader, Queue, SpscRing, WriterConfig
from chronicle_async.control import run

STREAMS, PER_STREAM = 3, 20_000
ADD_READER, STOP = 1, 2
CMD = struct.Struct("<qq")  # op, slot


def hot_thread(ring: SpscRing, handoff: dict[int, object], out_path: str, done: list[int]) -> None:
    fanin = FanInReader()
    with Queue.open_publisher(out_path, WriterConfig(segment_size=4 << 20)) as out:
        while True:
            # 1. the control plane's commands: fast, non-blocking
            while (raw := ring.try_pop()) is not None:
                op, slot = CMD.unpack_from(raw)
                if op == STOP:
                    fanin.commit()
                    fanin.close()
                    return
                if op == ADD_READER:
                    fanin.add_reader(handoff.pop(slot))  # ownership moves to this thread
            # 2. wait for data on every stream at once (parks only when idle)
            if not fanin.wait(timeout=0.05):
                continue
            # 3. the critical path: merged by timestamp, zero-copy payloads
            for source, msg in fanin:
                out.append(msg.type_id, msg.payload, msg.timestamp_ns)
                done[0] += 1
            fanin.commit()


def feed(path: str, k: int) -> None:
    with Queue.open_publisher(path, WriterConfig(segment_size=1 << 20)) as w:
        payload = np.full((1000, 8), k, np.uint8)
        for _ in range(PER_STREAM // 1000):
            w.append_batch(1, payload)


async def sidecar(bus: str, ring: SpscRing, handoff: dict[int, object], stop: asyncio.Event) -> None:
    seen: set[str] = set()
    next_slot = 0

    async def hand_over(name: str) -> None:
        nonlocal next_slot
        path = os.path.join(bus, name)
        if name in seen or not os.path.exists(os.path.join(path, "control.cq")):
            return
        seen.add(name)
        reader = await asyncio.to_thread(Queue.open_subscriber, path, "router", "earliest")  # heavy I/O off the loop
        slot, next_slot = next_slot, next_slot + 1
        handoff[slot] = reader
        while not ring.try_push(CMD.pack(ADD_READER, slot)):  # full ring = back-pressure: retry soon
            await asyncio.sleep(0.001)

    async for changes in watchfiles.awatch(bus, stop_event=stop, debounce=5, step=1):
        for _change, path in changes:
            rel = os.path.relpath(path, bus).split(os.sep)
            if rel[0].startswith("feed-"):
                await hand_over(rel[0])


async def main(bus: str) -> None:
    ring = SpscRing(16, 64)  # a bounded command channel of 16 slots
    handoff: dict[int, object] = {}
    done = [0]
    hot = threading.Thread(target=hot_thread, args=(ring, handoff, os.path.join(bus, "_merged"), done))
    hot.start()
    stop = asyncio.Event()
    discovery = asyncio.create_task(sidecar(bus, ring, handoff, stop))
    await asyncio.sleep(0.1)  # the watch is armed; now the streams appear
    t0 = time.perf_counter()
    await asyncio.gather(*(asyncio.to_thread(feed, os.path.join(bus, f"feed-{k}"), k) for k in range(STREAMS)))
    while done[0] < STREAMS * PER_STREAM and time.perf_counter() - t0 < 60:
        await asyncio.sleep(0.01)
    stop.set()
    await discovery
    while not ring.try_push(CMD.pack(STOP, 0)):
        await asyncio.sleep(0.001)
    await asyncio.to_thread(hot.join)
    print(f"hot thread merged {done[0]} messages from {STREAMS} streams found by the sidecar "
          f"in {time.perf_counter() - t0:.2f} s")
    if done[0] != STREAMS * PER_STREAM:
        raise SystemExit(f"expected {STREAMS * PER_STREAM} messages, merged {done[0]}")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        os.makedirs(sys.argv[1], exist_ok=True)
        run(main(sys.argv[1]))
    else:
        with tempfile.TemporaryDirectory(prefix="sidecar-fanin-") as d:
            run(main(d))
