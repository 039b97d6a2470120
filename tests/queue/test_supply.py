"""The writer's own segment supplier: rolls of a default writer create no file once it is warm.

The mechanism is counted, not timed: ``QueueWriter.roll_counts`` says how each roll found its
segment (prepared by a supplier, or created inline on the writer's thread).
"""
from __future__ import annotations

import os
import threading

import pytest

from tests.fs import wait_for

import chronicle_async as ca
from chronicle_async import Queue, WriterConfig
from chronicle_async.queue.files import list_segments
from chronicle_async.queue.supply import auto_prepare_ahead

SEG = 1 << 20  # 1 MiB segments: auto depth 4


def fill_segment(w) -> None:
    """Append until the writer rolls once."""
    start = w.segment_id
    payload = b"x" * 4000
    while w.segment_id == start:
        w.append(1, payload)


def supplier_threads(path: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == f"chronicle-supplier:{path}" and t.is_alive()]


def test_a_default_writer_rolls_onto_segments_its_own_thread_prepared(tmp_path):
    path = str(tmp_path / "q")
    with Queue.open_publisher(path, WriterConfig(segment_size=SEG)) as w:
        assert w.prepare_ahead == auto_prepare_ahead(SEG) == 4
        for _ in range(12):
            wait_for(lambda: w.segment_id + 1 in w.prepared_segments, "the next segment to be prepared")
            fill_segment(w)
        assert w.roll_counts == (12, 0, 0)
        assert len(supplier_threads(path)) == 1
    assert supplier_threads(path) == []


def test_every_message_survives_rolls_onto_prepared_segments(tmp_path):
    path = str(tmp_path / "q")
    n = 0
    with Queue.open_publisher(path, WriterConfig(segment_size=64 * 1024)) as w:
        for i in range(20_000):
            w.append(i % 7, i.to_bytes(8, "little") * (1 + i % 9))
            n += 1
        rolls, head = w.roll_counts, w.segment_id
    assert head > 10 and rolls.prepared + rolls.inline == head  # every roll counted once
    with Queue.open_subscriber(path, start="earliest") as r:
        for i in range(n):
            m = r.next()
            assert m is not None and m.seq == i and m.type_id == i % 7
            assert bytes(m.payload) == i.to_bytes(8, "little") * (1 + i % 9)
        assert r.next() is None


def test_prepare_ahead_zero_starts_no_supplier_and_every_roll_is_inline(tmp_path):
    path = str(tmp_path / "q")
    with Queue.open_publisher(path, WriterConfig(segment_size=SEG, prepare_ahead=0)) as w:
        assert supplier_threads(path) == [] and w.prepare_ahead == 0
        for _ in range(3):
            fill_segment(w)
        assert w.roll_counts == (0, 3, 0)
        assert w.prepared_segments == []


def test_prepared_segments_past_the_head_are_only_ever_ahead_of_it(tmp_path):
    path = str(tmp_path / "q")
    with Queue.open_publisher(path, WriterConfig(segment_size=SEG, prepare_ahead=2)) as w:
        wait_for(lambda: sorted(w.prepared_segments) == [1, 2], "two segments prepared")
        assert sorted(list_segments(path)) == [0, 1, 2]  # the head and two prepared files, no more
        fill_segment(w)
        wait_for(lambda: sorted(w.prepared_segments) == [2, 3], "the stock refilled")
        assert w.roll_counts == (1, 0, 0)


@pytest.mark.parametrize("bad", [-1, 65, 1.5, "2", True])
def test_a_bad_prepare_ahead_is_an_invalid_argument(bad):
    with pytest.raises(ca.InvalidArgumentError, match="prepare_ahead"):
        WriterConfig(prepare_ahead=bad)


def test_a_control_plane_takes_the_supply_over_and_hands_it_back(tmp_path):
    from chronicle_async.control import ControlPlane, run

    path = str(tmp_path / "q")

    async def main() -> None:
        with Queue.open_publisher(path, WriterConfig(segment_size=SEG)) as w:
            own = w.prepare_ahead
            async with ControlPlane() as plane:
                plane.manage_writer(w, prepare_ahead=3)
                assert w.prepare_ahead == 3
                plane.unmanage_writer(w)
                assert w.prepare_ahead == own  # the writer's own thread supplies it again
                wait_for(lambda: w.segment_id + 1 in w.prepared_segments, "the own supplier to refill")
                fill_segment(w)
                assert w.roll_counts.inline == 0

    run(main())


def test_the_supplier_thread_does_not_keep_a_dropped_writer_alive(tmp_path):
    import gc
    import weakref

    path = str(tmp_path / "q")
    w = Queue.open_publisher(path, WriterConfig(segment_size=SEG))
    wait_for(lambda: w.segment_id + 1 in w.prepared_segments, "a prepared segment")
    ref = weakref.ref(w)
    del w
    gc.collect()
    wait_for(lambda: ref() is None and supplier_threads(path) == [], "the writer to be collected and its thread to end")
    assert os.path.exists(os.path.join(path, "control.cq"))


def test_the_supplier_unmaps_the_segments_the_writer_left_and_retention_deleted(tmp_path):
    path = str(tmp_path / "q")
    with Queue.open_publisher(path, WriterConfig(segment_size=64 * 1024, max_segments=3, retention_check_interval=0.005)) as w:
        for _ in range(40):
            fill_segment(w)
        wait_for(lambda: len(list_segments(path)) <= 3 + w.prepare_ahead, "retention to apply the cap")
        wait_for(lambda: w.segment_id + 1 in w.prepared_segments, "the supplier's pass after the last roll")
        with open("/proc/self/maps") as f:
            maps = [line for line in f if path in line and ".seg" in line]
        deleted = [line for line in maps if "(deleted)" in line]
        # the head, the prepared one, and at most max_segments + 1 rolled-away segments still mapped
        # (kept for recycling: WriterConfig.recycle)
        assert len(maps) <= 2 + 4 and len(deleted) <= 4, maps
        assert w.roll_counts.prepared + w.roll_counts.inline == 40


def test_the_sustained_benchmark_counts_every_roll_of_each_configuration():
    from benchmarks import sustained

    r = sustained.run_one(dict(segment_size=256 * 1024), 100_000)
    assert r["rolls"] > 10 and r["prepared"] + r["inline"] == r["rolls"] and r["msgs_per_s"] > 0
    r0 = sustained.run_one(dict(segment_size=256 * 1024, prepare_ahead=0), 100_000)
    assert r0["inline"] == r0["rolls"] > 10 and r0["prepared"] == 0
