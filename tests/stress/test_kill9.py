"""A writer SIGKILLed at random moments, restarted each time, continuing its sequence.

Segments are 64 KiB, so the writer rolls every few hundred messages and kills land between
appends, inside rolls (about one kill in five, seen from the temp files they leave) and inside
appends (about one in twenty: a half-written record that the next writer's recovery must
cover). Each round's delay is random (10..300 ms after the writer reports it is open); the
seed is printed, so a failing run can be replayed.
"""
from __future__ import annotations

import os
import random
import signal
import time

import pytest

from chronicle_async.hot import layout as L

from ._workers import read_control_i64

SEGMENT_SIZE = 64 * 1024
MAX_SIZE = 300


def kill_rounds(spawn, path: str, rounds: int, rng: random.Random, batch: int = 0) -> list[dict]:
    """Start, let run 10..300 ms, SIGKILL: ``rounds`` times. Returns each writer's ``opened`` event."""
    opened = []
    for i in range(rounds):
        w = spawn("appender", path=path, segment_size=SEGMENT_SIZE, max_size=MAX_SIZE, batch=batch)
        # the kernel freed the killed writer's OFD lock: this open must get it (no WriterLockedError)
        ev = w.expect("opened", timeout=60)
        opened.append(ev)
        time.sleep(rng.uniform(0.010, 0.300))
        rc = w.kill9()
        assert rc == -signal.SIGKILL, f"round {i}: the writer exited by itself before the kill: {w.describe()}"
    return opened


def final_writer(spawn, path: str) -> dict:
    """A writer that recovers after the last kill and closes cleanly: the authoritative next_seq."""
    w = spawn("writer", path=path, count=None, segment_size=SEGMENT_SIZE, max_size=MAX_SIZE)
    ev = w.expect("opened", timeout=60)
    w.result(timeout=60)
    return ev


def check_rounds(opened: list[dict], final: dict, path: str) -> None:
    epochs = [ev["epoch"] for ev in opened] + [final["epoch"]]
    assert epochs == list(range(1, len(epochs) + 1)), f"epochs {epochs}: not +1 per writer open"
    assert read_control_i64(path, L.CTL_WRITER_EPOCH_OFFSET) == len(epochs)
    starts = [ev["next_seq"] for ev in opened] + [final["next_seq"]]
    assert starts[0] == 0
    assert starts == sorted(starts), f"a restarted writer went back in seq: {starts}"
    # sanity: the writers really appended, across rolls
    assert final["next_seq"] > 1000, f"writers appended only {final['next_seq']} messages in total"
    segs = [n for n in os.listdir(path) if L.parse_segment_file_name(n) is not None]
    assert len(segs) >= 3, f"only {len(segs)} segment files: the writers did not roll"


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.parametrize("batch", [0, 32], ids=["append", "append_batch"])
def test_writer_killed_at_random_moments_loses_nothing_and_duplicates_nothing(spawn, queue_dir, batch):
    seed = random.randrange(1 << 30)
    print(f"random seed {seed}")  # shown with the failure: rerun with random.Random(seed)
    rng = random.Random(seed)
    path = str(queue_dir / "q")
    opened = kill_rounds(spawn, path, rounds=12, rng=rng, batch=batch)
    final = final_writer(spawn, path)
    check_rounds(opened, final, path)
    total = final["next_seq"]
    # every committed message exactly once, contiguous from 0, every byte right, nothing after
    r = spawn("reader", path=path, name=None, max_size=MAX_SIZE, count=total, start="earliest", deadline=120.0)
    res = r.result(timeout=150)
    assert res["count"] == total, f"seed {seed}: {res}"


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_reader_reading_live_through_writer_kills_sees_every_message_once(spawn, queue_dir, tmp_path):
    seed = random.randrange(1 << 30)
    print(f"random seed {seed}")
    rng = random.Random(seed)
    path = str(queue_dir / "q")
    target = tmp_path / "target"
    # The reader starts first (polls for the queue) and reads while writers die and restart;
    # it learns the final count from ``target`` once all writers are done.
    reader = spawn("reader", path=path, name="live", max_size=MAX_SIZE, target_file=str(target),
                   start="committed", wait_timeout=0.05, deadline=180.0, commit_every=997)
    opened = kill_rounds(spawn, path, rounds=10, rng=rng)
    final = final_writer(spawn, path)
    check_rounds(opened, final, path)
    tmp = tmp_path / "target.tmp"
    tmp.write_text(str(final["next_seq"]))
    os.rename(tmp, target)
    res = reader.result(timeout=150)
    assert res["count"] == final["next_seq"], f"seed {seed}: {res}"
