"""A strategy's life under passive discovery: the library reports, the strategy decides.

States: Initializing -> WaitingForFeed -> Trading -> SafetyShutdown -> WaitingForFeed -> Trading ...

- ``PassiveDiscovery`` reports Waiting / Connected / Disconnected(reason) for the market-data queue
  ``md``, written by a feed PROCESS; the strategy reads it with ``async for`` on uvloop.
- Disconnected (WRITER_DIED, WRITER_CLOSED, HEARTBEAT_STALE, ...) -> SafetyShutdown, with the
  application's safety actions ``cancel_all()`` and ``flatten()``.
- EPOCH_CHANGED (a new feed session): the book is stale -> WaitingForFeed until the feed's snapshot
  (type SNAPSHOT_T, published first after every start, stamped with the writer epoch) rebuilds it.
  Ticks carry deltas, so a book that skipped the snapshot would go wrong (checked).
- Gaps: seqs are dense and continue across writer restarts, so ``msg.seq != last + 1`` means lost
  data. The strategy checks every message (no gap across the kill -9); a monitor that comes back
  at ``Start.LATEST`` shows the check firing, then repairs the hole with ``seek()``.

Scenario (scripted in main): feed up, trade, ``kill -9`` the feed, restart it, trade, feed closes.

Run:  python examples/strategy_fsm.py [bus-folder]
"""
from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import shutil
import signal
import time

import numpy as np
from _market import INSTRUMENTS, SNAPSHOT, SNAPSHOT_T, TICK, TICK_T, contiguous, run_in_folder, seq_gap, until

from chronicle_async import Connected, Disconnected, DisconnectReason, PassiveDiscovery, Queue, Waiting, WriterConfig
from chronicle_async.control import run

T0 = time.monotonic()
ENDED = (DisconnectReason.WRITER_DIED, DisconnectReason.WRITER_CLOSED, DisconnectReason.QUEUE_DELETED)


def feed(path: str, seed: int, ticks: int) -> None:
    """The feed process: a snapshot of its book first, then delta ticks every ~1 ms; closes after ``ticks``."""
    rng = np.random.default_rng(seed)
    with Queue.open_publisher(path, WriterConfig(segment_size=1 << 20)) as w:
        prices = 100 + 10 * rng.standard_normal(INSTRUMENTS)   # a restarted feed has its own view
        snap, tick = np.zeros(1, SNAPSHOT), np.zeros(1, TICK)
        snap["epoch"], snap["prices"] = w.epoch, prices
        w.append(SNAPSHOT_T, snap)
        for _ in range(ticks):
            i, d = int(rng.integers(INSTRUMENTS)), float(rng.normal(0, 0.05))
            prices[i] += d
            tick[0] = (i, prices[i], d)
            w.append(TICK_T, tick)
            time.sleep(0.001)


class Strategy:
    """The FSM. The book is rebuilt by every snapshot and updated by every tick, whatever the state;
    orders go out only in Trading, and only on a book of the writer epoch the reader acknowledged."""

    def __init__(self) -> None:
        self.state, self.transitions, self.safety = "Initializing", [], []
        self.reader, self.epoch = None, None   # the reader, and the writer epoch it acknowledged
        self.ended_epoch = None                # the epoch of a writer session that died or closed
        self.book, self.book_epoch = np.zeros(INSTRUMENTS), None
        self.expected = None                   # the next seq we expect (None: nothing seen yet)
        self.gaps = self.book_errors = self.ticks = self.traded = self.orders = 0
        self.snapshots, self.epoch_changes = [], []   # (seq, epoch) per rebuild; (old, new) epochs
        self.open_orders, self.position = [], np.zeros(INSTRUMENTS, np.int64)

    def to(self, state: str, why: str) -> None:
        if state != self.state:
            print(f"[{time.monotonic() - T0:5.2f}s] {self.state} -> {state}  ({why})", flush=True)
            self.transitions.append(state)
            self.state = state

    def book_ready(self) -> bool:
        return self.book_epoch is not None and self.book_epoch == self.reader.writer_epoch

    # -- the application's safety actions (here they only record and print) ------------------------
    def cancel_all(self, why: str) -> None:
        print(f"        SAFETY cancel_all(): {len(self.open_orders)} open orders cancelled ({why})")
        self.safety.append(("cancel_all", why))
        self.open_orders.clear()

    def flatten(self, why: str) -> None:
        print(f"        SAFETY flatten(): positions {self.position.tolist()} closed ({why})")
        self.safety.append(("flatten", why))
        self.position[:] = 0

    # -- events from PassiveDiscovery -------------------------------------------------------------
    def on_event(self, ev) -> None:
        if isinstance(ev, Waiting):
            self.ended_epoch = None             # a (re-)created queue comes with a new reader
            self.to("WaitingForFeed", f"Waiting: {ev.why[:50]}...")
        elif isinstance(ev, Connected):
            # Connected also means "a disconnect reason cleared". A session that died or closed never
            # comes back, only a new epoch can; yet a restarting feed that holds the lock but has not
            # bumped the epoch yet looks healthy for a moment (Connected at the OLD epoch, then maybe
            # HEARTBEAT_STALE, then EPOCH_CHANGED). Policy: ignore it, stay in SafetyShutdown.
            if ev.reader.writer_epoch == self.ended_epoch:
                print(f"        Connected at the ended epoch {self.ended_epoch}: ignored, waiting for a new one")
                return
            self.reader, self.epoch = ev.reader, ev.reader.writer_epoch
            if self.book_ready():
                self.to("Trading", f"Connected, the book of epoch {self.book_epoch} is current")
            else:
                self.to("WaitingForFeed", f"Connected at acknowledged epoch {self.epoch}; need a snapshot")
        elif ev.reason is DisconnectReason.EPOCH_CHANGED:  # already acknowledged; Connected follows
            self.epoch_changes.append((self.epoch, ev.reader.writer_epoch))
            print(f"        EPOCH_CHANGED: the feed restarted, epoch {self.epoch} -> {ev.reader.writer_epoch}")
            self.epoch = ev.reader.writer_epoch
            if self.state == "Trading":     # it restarted before we saw it die: same safety actions
                self.cancel_all("EPOCH_CHANGED")
                self.flatten("EPOCH_CHANGED")
            self.to("WaitingForFeed", f"EPOCH_CHANGED to {self.epoch}: the book is stale until a snapshot")
        else:
            if self.state != "SafetyShutdown":
                self.cancel_all(ev.reason.name)
                self.flatten(ev.reason.name)
            else:
                print(f"        Disconnected: {ev.reason.name} (already shut down)")
            if ev.reason in ENDED:
                self.ended_epoch = ev.reader.writer_epoch
                if self.book_epoch == self.ended_epoch:
                    self.book_epoch = None  # that session is over: only a new snapshot makes a book
            if ev.reason is DisconnectReason.QUEUE_DELETED:
                self.expected = None        # a re-created queue starts again at seq 0 (and epoch 1)
            self.to("SafetyShutdown", f"Disconnected: {ev.reason.name}")

    # -- messages ---------------------------------------------------------------------------------
    def on_message(self, msg) -> None:
        missed, expected = seq_gap(self.expected, msg.seq), self.expected
        if missed:
            self.gaps += 1
            print(f"        GAP: expected seq {expected}, got {msg.seq} ({missed} missed)")
        self.expected = msg.seq + 1
        if msg.type_id == SNAPSHOT_T:
            snap = msg.as_array(SNAPSHOT)[0]
            self.book[:], self.book_epoch = snap["prices"], int(snap["epoch"])
            self.snapshots.append((msg.seq, self.book_epoch))
            print(f"        snapshot seq {msg.seq} (expected {expected}: {'GAP' if missed else 'no gap'}): "
                  f"book rebuilt for epoch {self.book_epoch}")
            if self.state == "WaitingForFeed" and self.book_ready():
                self.to("Trading", f"book rebuilt from snapshot seq {msg.seq}")
            return
        t = msg.as_array(TICK)[0]
        self.ticks += 1
        if self.book_epoch is None:
            return                          # a delta with no base: useless until the next snapshot
        i = t["instrument"]
        self.book[i] += t["delta"]
        self.book_errors += abs(self.book[i] - t["price"]) > 1e-9
        if self.state == "Trading":         # a toy signal: lean against big moves
            self.traded += 1
            if abs(t["delta"]) > 0.05:
                self.open_orders.append((i, -1 if t["delta"] > 0 else 1))
                self.orders += 1
            if len(self.open_orders) > 3:   # the oldest resting order fills
                j, side = self.open_orders.pop(0)
                self.position[j] += side


async def follow(events: PassiveDiscovery, s: Strategy) -> None:
    """Every event to the FSM; one consumer task reads the (single, long-lived) reader."""
    async def consume(reader) -> None:
        async for msg in reader:            # never ends by itself: waits through deaths and restarts
            s.on_message(msg)

    consumer = None
    try:
        async for ev in events:
            s.on_event(ev)
            if isinstance(ev, Connected) and consumer is None:
                consumer = asyncio.create_task(consume(ev.reader))
            if isinstance(ev, Disconnected) and ev.reason is DisconnectReason.QUEUE_DELETED and consumer:
                consumer.cancel()           # its reader is closed next; a re-created queue gets a new one
                consumer = None
    finally:                                # stop reading before PassiveDiscovery closes the reader
        if consumer:
            consumer.cancel()
            await asyncio.gather(consumer, return_exceptions=True)


async def late_monitor(path: str) -> tuple[int, int]:
    """A monitor reads, goes away, comes back at LATEST: its gap check fires; seek() repairs it."""
    with Queue.open_subscriber(path, None, "earliest") as r:
        last = max(m.seq for m in r)        # everything so far
    await asyncio.sleep(0.2)                # down for a while; the feed keeps publishing
    with Queue.open_subscriber(path, None, "latest") as r:
        if not await r.wait_async(5):
            raise SystemExit("FAILED: the feed stopped publishing")
        msg = r.next()
        missed = seq_gap(last + 1, msg.seq)
        print(f"        monitor GAP: last seen {last}, back at LATEST with seq {msg.seq}: {missed} missed")
        r.seek(last + 1)                    # the data is still on disk: replay the hole
        replayed = [m.seq for m in r if m.seq < msg.seq]
        ok = contiguous(replayed, last + 1) and len(replayed) == missed
        print(f"        monitor repaired it with seek({last + 1}): {len(replayed)} replayed, contiguous={ok}")
    return missed, len(replayed) if ok else -1


async def main(folder: str) -> None:
    path = os.path.join(folder, "md")
    shutil.rmtree(path, ignore_errors=True)  # the example's own queue: every run starts fresh
    spawn, s, feeds = mp.get_context("spawn"), Strategy(), []
    async with PassiveDiscovery(path, "strategy", start="earliest", poll_interval=0.05) as events:
        follower = asyncio.create_task(follow(events, s))
        try:
            await until(lambda: s.state == "WaitingForFeed", "the first event")
            feeds.append(spawn.Process(target=feed, args=(path, 1, 10**9)))  # runs until killed
            feeds[0].start()
            await until(lambda: s.state == "Trading" and s.traded >= 300, "trading on the first feed")
            gap = await late_monitor(path)
            os.kill(feeds[0].pid, signal.SIGKILL)
            print(f"[{time.monotonic() - T0:5.2f}s] kill -9 feed pid {feeds[0].pid}")
            await asyncio.to_thread(feeds[0].join)
            with Queue.open_subscriber(path, None, "latest") as r:
                last_before = r.next_seq - 1    # the dead feed's last committed seq
            await until(lambda: s.state == "SafetyShutdown", "WRITER_DIED")
            feeds.append(spawn.Process(target=feed, args=(path, 2, 500)))  # closes after 500 ticks
            feeds[1].start()
            await until(lambda: s.transitions.count("Trading") == 2, "trading on the restarted feed")
            await asyncio.to_thread(feeds[1].join)
            await until(lambda: s.state == "SafetyShutdown" and len(s.safety) == 4, "WRITER_CLOSED")
        finally:                                # never leave a feed running, even on a failure
            for p in feeds:
                if p.is_alive():
                    p.kill()
            follower.cancel()
            await asyncio.gather(follower, return_exceptions=True)

    print("\nsummary\ntransitions:", " > ".join(["Initializing", *s.transitions]))
    print(f"safety actions: {[f'{a}:{w}' for a, w in s.safety]}")
    print(f"epoch changes: {s.epoch_changes}; snapshots rebuilt (seq, epoch): {s.snapshots}")
    print(f"seqs across the restart: last of epoch 1 = {last_before}, snapshot of epoch 2 = {s.snapshots[-1][0]}")
    print(f"ticks {s.ticks}, traded {s.traded}, orders {s.orders}, book errors {s.book_errors}, "
          f"strategy gaps {s.gaps}; monitor gap: {gap[0]} missed, {gap[1]} replayed")
    checks = {
        "fsm order": s.transitions == ["WaitingForFeed", "Trading", "SafetyShutdown"] * 2,
        "safety on each disconnect": s.safety == [(a, r) for r in ("WRITER_DIED", "WRITER_CLOSED")
                                                  for a in ("cancel_all", "flatten")],
        "epoch change": s.epoch_changes == [(1, 2)],
        "snapshot per epoch": [e for _, e in s.snapshots] == [1, 2],
        "seqs continue": s.snapshots[-1][0] == last_before + 1,
        "no strategy gap": s.gaps == 0,
        "book consistent": s.book_errors == 0,
        "monitor gap repaired": gap[0] > 0 and gap[1] == gap[0],
    }
    print("checks:", ", ".join(f"{k}={'ok' if v else 'FAILED'}" for k, v in checks.items()))
    if not all(checks.values()):
        raise SystemExit("FAILED: " + ", ".join(k for k, v in checks.items() if not v))
    print("ALL CHECKS PASSED")


if __name__ == "__main__":
    run_in_folder(lambda d: run(main(d)), "strategy-fsm-")
