"""Recycled segments under SIGKILL: no stale or torn record is ever delivered, and seqs stay contiguous.

A bounded writer (``max_segments``) recycles the segment its cap retires into its next prepared one
(``queue/files.py``, ``recycle_segment``). These tests kill writers with a real ``SIGKILL``:

- at random moments while they append and recycle, with a live named reader following;
- at each step of one recycling (renamed and locked, half zeroed, linked in), then reopen the
  queue and read everything left from the oldest segment.

Every message read is checked field by field and byte by byte against the one its seq must be,
so a stale record of a recycled segment (an older seq, or a torn mix) fails the reader.
"""
from __future__ import annotations

import os
import random
import signal
import time

import pytest

from chronicle_async.hot import layout as L
from chronicle_async.queue import files as F

SEGMENT_SIZE = 64 * 1024
MAX_SIZE = 300


def segment_headers_match_names(path: str) -> None:
    """Every segment file's header names the segment its file name says (open_segment checks it)."""
    ctl, info = F.open_control(path, writable=False)
    try:
        for sid in F.list_segments(path):
            F.open_segment(path, sid, info.segment_size, info.queue_id, writable=False).close()
    finally:
        ctl.close()


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_live_reader_sees_every_message_once_while_a_recycling_writer_is_killed_at_random(spawn, queue_dir, tmp_path):
    seed = random.randrange(1 << 30)
    print(f"random seed {seed}")
    rng = random.Random(seed)
    path = str(queue_dir / "q")
    target = tmp_path / "target"
    spawn("writer", path=path, count=None, segment_size=SEGMENT_SIZE, max_size=MAX_SIZE).result(timeout=60)
    reader = spawn("reader", path=path, name="live", max_size=MAX_SIZE, target_file=str(target),
                   start="committed", wait_timeout=0.05, deadline=180.0, commit_every=101)
    reader.expect("opened", timeout=60)  # registered (its position file locked) before any segment retires
    recycled = 0
    for i in range(8):
        w = spawn("appender", path=path, segment_size=SEGMENT_SIZE, max_size=MAX_SIZE, max_segments=3,
                  announce_recycled=2)
        w.expect("opened", timeout=60)
        ev = w.expect("recycled", timeout=60)  # this writer's rolls took recycled segments
        recycled += ev["counts"][2]
        time.sleep(rng.uniform(0.0, 0.2))
        assert w.kill9() == -signal.SIGKILL, f"round {i}: the writer exited by itself: {w.describe()}"
    final = spawn("writer", path=path, count=None, segment_size=SEGMENT_SIZE, max_size=MAX_SIZE)
    total = final.expect("opened", timeout=60)["next_seq"]
    final.result(timeout=60)
    tmp = tmp_path / "target.tmp"
    tmp.write_text(str(total))
    os.rename(tmp, target)
    res = reader.result(timeout=150)
    assert res["count"] == total and res["first"] == 0, f"seed {seed}: {res}"
    assert recycled >= 16
    segment_headers_match_names(path)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("stage", ["locked", "zeroing", "linked"])
def test_a_writer_killed_inside_a_recycling_leaves_no_stale_record_behind(spawn, queue_dir, stage):
    path = str(queue_dir / "q")
    w = spawn("recycle_crash", path=path, segment_size=SEGMENT_SIZE, max_size=MAX_SIZE, stage=stage)
    ev = w.expect("dying", timeout=60)
    assert w.proc.wait(timeout=30) == -signal.SIGKILL
    victim, target, written = ev["victim"], ev["target"], ev["next_seq"]
    names = os.listdir(path)
    assert L.segment_file_name(victim) not in names  # renamed out of the queue before anything else
    if stage == "linked":
        assert L.segment_file_name(target) in names
    else:
        assert L.segment_file_name(target) not in names
        assert any(L.SEGMENT_TEMP_SUFFIX in n for n in names)  # the half-made file, under its temp name
    # The next writer recovers (removing the dead process's temp file) and appends 2000 more.
    more = written + 2000
    spawn("writer", path=path, count=more, segment_size=SEGMENT_SIZE, max_size=MAX_SIZE).result(timeout=60)
    assert not any(L.SEGMENT_TEMP_SUFFIX in n for n in os.listdir(path))
    segment_headers_match_names(path)
    # Everything left, from the oldest segment on: contiguous, every byte right, nothing stale.
    r = spawn("reader", path=path, name=None, max_size=MAX_SIZE, count=more, start="earliest", from_first=True,
              deadline=60.0)
    res = r.result(timeout=90)
    assert res["count"] == more and res["first"] > 0, res  # the victim's messages are gone, the rest all there
