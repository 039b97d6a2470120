"""Soak: every moving part at once for a while, and nothing may grow.

Modelled, all in this test process unless said: a writer thread appending to queue ``main``
(256 KiB segments, so it rolls every few tens of ms) under a ``ControlPlane`` that preallocates
its segments and applies its retention (``WriterConfig(max_segments=4)``); the plane's
discovery (``plane.discover(root, ...)``) handing queues to a jitted ``HotLoop`` (Park idle)
that checks every message (seq contiguity per queue, type id, every payload byte); a Python
reader in another process (``_workers.reader``, named, committing) checking every byte of
``main``; and new queues ``extra-N`` appearing every ~2 s (created, written, read by the hot
loop, deleted: discovery takes their readers back), so readers come and go.

Asserted: both readers saw exactly the writer's count, contiguous; each extra queue's count
in the hot loop; retention kept the segment count bounded; and RSS (total and anonymous), open
fds (``/proc/self/fd``) and mappings (``/proc/self/maps`` lines) of this process, and of the reader
process, are flat: the second half's maximum is not above the first half's maximum by more
than a small margin. Not modelled: several writer processes, crashes (test_kill9.py), disks
filling (test_disk_full.py).

Duration: ``CHRONICLE_SOAK_SECONDS`` (default 60; ``make test`` gives the first interpreter 180); ``make soak`` runs 30 minutes.
"""
from __future__ import annotations

import asyncio
import os
import shutil
import threading
import time

import numba
import numpy as np
import pytest

from chronicle_async import ControlPlane, HotLoop, Park, Queue, WriterConfig

from ._jit_payload import mix64 as _mix64
from ._workers import expected

SECONDS = float(os.environ.get("CHRONICLE_SOAK_SECONDS", "60"))
MAX_SIZE = 300
SEGMENT_SIZE = 256 * 1024
MAX_SEGMENTS = 4
EXTRA = 300  # messages per extra queue
MAIN_PACE = (100, 0.005)  # burst, sleep: at most ~20k messages/s (2 cores shared by everything)

# state[source] = (messages, next expected seq, errors, first bad seq)
_M = np.uint64(0xFFFFFFFFFFFFFFFF)


@numba.njit(cache=False)
def check(state, ctx, source, type_id, seq, timestamp_ns, payload):
    row = state[source]
    useq = np.uint64(seq)
    ok = seq == row[1]
    if ok and type_id != np.int64(_mix64(useq ^ np.uint64(0x5A5A5A5A)) & np.uint64(0xFFFF)):
        ok = False
    if ok and payload.shape[0] != np.int64(_mix64(useq) % np.uint64(MAX_SIZE + 1)):
        ok = False
    if ok:
        h = _mix64(~useq)
        for i in range(payload.shape[0]):
            j = i % 16
            word = useq if j < 8 else h
            if payload[i] != np.uint8((word >> np.uint64(8 * (j % 8))) & np.uint64(0xFF)):
                ok = False
                break
    if not ok:
        if row[2] == 0:
            row[3] = seq
        row[2] += 1
    row[0] += 1
    row[1] = seq + 1
    return 0


def sample(pid: int | str = "self") -> tuple[int, int, int, int]:
    """(VmRSS KiB, RssAnon KiB, open fds, mapping lines) of a process."""
    rss = anon = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("RssAnon:"):
                anon = int(line.split()[1])
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    with open(f"/proc/{pid}/maps") as f:
        maps = sum(1 for _ in f)
    return rss, anon, fds, maps


def check_flat(name: str, samples: list[tuple[int, int, int, int]], margins: tuple[int, int, int, int]) -> list[str]:
    half = len(samples) // 2
    out = []
    for k, label in enumerate(("RSS KiB", "RssAnon KiB", "fds", "maps")):
        first = max(s[k] for s in samples[:half])
        second = max(s[k] for s in samples[half:])
        print(f"{name} {label}: start {samples[0][k]}, end {samples[-1][k]}, max 1st half {first}, 2nd half {second}")
        if second > first + margins[k]:
            out.append(f"{name} {label} grew: 1st-half max {first}, 2nd-half max {second} (margin {margins[k]})")
    return out


@pytest.mark.slow
@pytest.mark.timeout(int(SECONDS) + 300)
async def test_soak_with_prealloc_retention_discovery_and_readers_counts_match_and_nothing_grows(spawn, tmp_path):
    root = tmp_path / "bus"
    root.mkdir()
    main_path = root / "main"
    target = tmp_path / "target"
    w = Queue.open_publisher(main_path, WriterConfig(segment_size=SEGMENT_SIZE, max_segments=MAX_SEGMENTS))
    state = np.zeros((64, 4), np.int64)
    hot = HotLoop(check, state, idle=Park(), max_readers=64)
    hot.start()
    reader = spawn("reader", path=str(main_path), name="soak-py", max_size=MAX_SIZE, target_file=str(target),
                   start="earliest", wait_timeout=0.05, deadline=SECONDS + 240, commit_every=997)
    reader.expect("opened", timeout=60)
    stop = threading.Event()
    errors: list[BaseException] = []
    max_seen_segments = 0

    def write() -> None:
        burst, pause = MAIN_PACE
        try:
            while not stop.is_set():
                for _ in range(burst):
                    seq = w.next_seq
                    w.append(*expected(seq, MAX_SIZE))
                time.sleep(pause)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    mine: list[tuple[int, int, int, int]] = []
    theirs: list[tuple[int, int, int, int]] = []
    extras = 0
    loop = asyncio.get_running_loop()
    t0 = time.monotonic()
    try:
        async with ControlPlane(hot) as plane:
            plane.manage_writer(w)
            d = plane.discover(root, "soak-hot", patterns=("main", "extra-*"))
            main_src = await asyncio.wait_for(d.wait_for_queue("main"), 30)
            thread = threading.Thread(target=write, name="soak-writer")
            thread.start()
            next_sample = time.monotonic()
            try:
                while time.monotonic() - t0 < SECONDS and not errors and thread.is_alive():
                    # a new queue appears, is handed over, read, deleted, and taken back
                    name = f"extra-{extras}"
                    path = root / name
                    xw = await loop.run_in_executor(None, Queue.open_publisher, path, WriterConfig(segment_size=64 * 1024))
                    src = await asyncio.wait_for(d.wait_for_queue(name), 30)
                    state[src] = 0  # nothing to handle yet: the hot thread leaves this row alone

                    def fill(xw=xw) -> None:
                        for seq in range(EXTRA):
                            xw.append(*expected(seq, MAX_SIZE))
                        xw.close()

                    await loop.run_in_executor(None, fill)
                    end = time.monotonic() + 30
                    while state[src, 0] < EXTRA and time.monotonic() < end:
                        await asyncio.sleep(0.01)
                    assert state[src, 0] == EXTRA and state[src, 2] == 0, f"{name}: hot loop state {state[src]}"
                    await loop.run_in_executor(None, shutil.rmtree, path)
                    await asyncio.wait_for(d.wait_for_removal(name), 30)
                    extras += 1
                    segs = sum(1 for n in os.listdir(main_path) if n.endswith(".seg"))
                    max_seen_segments = max(max_seen_segments, segs)
                    while time.monotonic() >= next_sample:
                        mine.append(sample())
                        theirs.append(sample(reader.pid))
                        next_sample += 1.0
                    await asyncio.sleep(1.0)
            finally:
                stop.set()
                await loop.run_in_executor(None, thread.join)
            assert not errors, f"the writer thread failed: {errors!r}"
            total = w.next_seq
            tmp = tmp_path / "target.tmp"
            tmp.write_text(str(total))
            os.rename(tmp, target)
            end = time.monotonic() + 120
            while state[main_src, 0] < total and time.monotonic() < end and hot.running:
                await asyncio.sleep(0.01)
            plane.unmanage_writer(w)
            failures = list(plane.failures)
        res = reader.result(timeout=240)
    finally:
        hot.close()
        w.close()
    elapsed = time.monotonic() - t0
    print(f"\nsoak {elapsed:.0f} s: {total} messages on main ({total / elapsed:.0f}/s), {extras} extra queues "
          f"of {EXTRA}, hot loop {hot.messages} messages, segment files on disk at most {max_seen_segments}")
    assert not failures, f"control plane workers failed: {failures}"
    assert hot.error is None, hot.error
    assert state[main_src, 2] == 0, f"hot loop: {state[main_src, 2]} bad messages on main, first at seq {state[main_src, 3]}"
    assert state[main_src, 0] == total and state[main_src, 1] == total, f"hot loop main {state[main_src]}, writer {total}"
    assert res["count"] == total, f"reader process read {res['count']}, writer wrote {total}"
    assert extras >= 3, "too few extra queues came and went"
    # prepared segments (ahead of the head) count too; the named readers may hold a couple back
    assert max_seen_segments <= MAX_SEGMENTS + 10, f"retention did not bound the segment files: {max_seen_segments}"
    assert len(mine) >= 6, "too few samples"
    grown = check_flat("test process", mine, (24 * 1024, 16 * 1024, 4, 16))
    grown += check_flat("reader process", theirs, (16 * 1024, 8 * 1024, 4, 8))
    assert not grown, "\n".join(grown)
