"""Recycling: a bounded writer's supplier turns the segment its cap retires into the next one.

Counted, not timed: ``roll_counts.recycled`` says how many rolls took a recycled segment, and the
supplier's ``counts`` how each prepared segment was made.
"""
from __future__ import annotations


import pytest

from tests.fs import wait_for

import chronicle_async as ca
from chronicle_async import Queue, Start, WriterConfig
from chronicle_async.queue.files import list_segments

SEG = 256 * 1024


def fill_segments(w, n: int, seq: list[int]) -> None:
    """Append seq-numbered messages until the writer rolled ``n`` times, each roll onto a prepared segment."""
    for _ in range(n):
        wait_for(lambda: w.segment_id + 1 in w.prepared_segments, "the next segment to be prepared")
        start = w.segment_id
        while w.segment_id == start:
            w.append(1, seq[0].to_bytes(8, "little") * 100)
            seq[0] += 1


def test_a_bounded_writer_rolls_onto_recycled_segments_once_its_cap_is_reached(tmp_path):
    path = str(tmp_path / "q")
    with Queue.open_publisher(path, WriterConfig(segment_size=SEG, max_segments=3)) as w:
        fill_segments(w, 12, [0])
        counts = w.roll_counts
        assert counts.inline == 0 and counts.prepared == 12
        # the first rolls find nothing retired yet; from the fourth on, each takes the retired segment
        assert counts.recycled >= 12 - 4, counts
        assert w.recycles
        wait_for(lambda: len([s for s in list_segments(path) if s <= w.segment_id]) <= 3, "the cap")


def test_every_message_reads_back_in_order_across_recycled_segments(tmp_path):
    path = str(tmp_path / "q")
    seq = [0]
    with Queue.open_publisher(path, WriterConfig(segment_size=SEG, max_segments=2)) as w:
        with Queue.open_subscriber(path, "r", Start.EARLIEST) as r:
            expect = 0
            for _ in range(10):
                fill_segments(w, 1, seq)
                while (m := r.next()) is not None:
                    assert m.seq == expect and bytes(m.payload) == expect.to_bytes(8, "little") * 100
                    expect += 1
                r.commit()
            assert expect == seq[0]
        assert w.roll_counts.recycled >= 3, w.roll_counts  # not those the reader still mapped


def test_a_segment_an_anonymous_reader_maps_is_deleted_and_never_recycled(tmp_path):
    path = str(tmp_path / "q")
    seq = [0]
    with Queue.open_publisher(path, WriterConfig(segment_size=SEG, max_segments=2)) as w:
        fill_segments(w, 1, seq)
        r = Queue.open_subscriber(path, None, Start.EARLIEST)  # anonymous: retention does not wait for it
        first = r.next()
        assert first is not None and first.seq == 0 and r.position[0] == 0  # it maps segment 0
        fill_segments(w, 6, seq)
        assert 0 not in list_segments(path)  # retired by the cap...
        assert w.roll_counts.recycled >= 1  # ...while others were recycled
        # ...but segment 0 was deleted, not zeroed under the reader: it reads its messages intact
        expect = 1
        while (m := r.next()) is not None and r.position[0] == 0:
            assert m.seq == expect and bytes(m.payload) == expect.to_bytes(8, "little") * 100
            expect += 1
        assert expect > 100  # all of segment 0 (past it, the reader skips what retention deleted)
        r.close()


def test_retention_never_recycles_a_segment_a_live_named_reader_needs(tmp_path):
    path = str(tmp_path / "q")
    seq = [0]
    with Queue.open_publisher(path, WriterConfig(segment_size=SEG, max_segments=2)) as w:
        fill_segments(w, 1, seq)
        with Queue.open_subscriber(path, "slow", Start.EARLIEST) as r:
            assert r.next().seq == 0
            r.commit()  # committed in segment 0
            fill_segments(w, 6, seq)
            assert list_segments(path)[0] == 0  # held back past the cap
            n = 1
            while (m := r.next()) is not None:
                assert m.seq == n and bytes(m.payload) == n.to_bytes(8, "little") * 100
                n += 1
            assert n == seq[0]


def test_with_recycle_off_a_bounded_writer_creates_every_segment(tmp_path):
    path = str(tmp_path / "q")
    with Queue.open_publisher(path, WriterConfig(segment_size=SEG, max_segments=2, recycle=False)) as w:
        fill_segments(w, 6, [0])
        assert w.roll_counts.recycled == 0 and not w.recycles


def test_an_unbounded_writer_never_recycles(tmp_path):
    path = str(tmp_path / "q")
    with Queue.open_publisher(path, WriterConfig(segment_size=SEG)) as w:
        fill_segments(w, 6, [0])
        assert w.roll_counts.recycled == 0 and not w.recycles
        assert list_segments(path)[:6] == [0, 1, 2, 3, 4, 5]


@pytest.mark.parametrize("bad", ["yes", 1, None])
def test_recycle_must_be_a_bool(bad):
    with pytest.raises(ca.ArgumentTypeError, match="recycle"):
        WriterConfig(recycle=bad)
