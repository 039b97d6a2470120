"""QueueWriter and QueueReader through the public face, on real queue folders."""
from __future__ import annotations

import mmap
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import chronicle_async as ca
from chronicle_async import DisconnectReason, Queue, Start, WaitStrategy, WriterConfig
from chronicle_async.hot import layout as L

TINY = WriterConfig(segment_size=16 * 1024)
REPO = pathlib.Path(__file__).resolve().parents[2]


def seg_files(d) -> list[int]:
    return sorted(i for i in (L.parse_segment_file_name(n) for n in os.listdir(d)) if i is not None)


def drain(r) -> list[ca.Message]:
    return list(r)


def payloads(r) -> list[tuple[int, int, bytes]]:
    return [(m.seq, m.type_id, bytes(m.payload)) for m in r]


def mapped_ranges(path) -> list[tuple[int, int]]:
    real = os.path.realpath(path)
    out = []
    with open("/proc/self/maps") as f:
        for line in f:
            parts = line.split(None, 5)
            if len(parts) == 6 and parts[5].strip() == real:
                lo, hi = (int(x, 16) for x in parts[0].split("-"))
                out.append((lo, hi))
    return out


# -- round trips -------------------------------------------------------------------------------


def test_append_then_next_round_trips_every_bytes_like_payload(queue_dir):
    f64 = np.arange(7, dtype=np.float64) * 1.5
    grid = np.arange(12, dtype=np.int32).reshape(3, 4)
    cases = [
        b"bytes payload",
        bytearray(b"bytearray payload"),
        memoryview(b"memoryview payload"),
        memoryview(b"0123456789")[2:8],
        f64,
        grid,
        np.zeros(0, np.uint8),
        b"",
    ]
    with Queue.open_publisher(queue_dir, TINY) as w, Queue.open_subscriber(queue_dir) as r:
        for i, p in enumerate(cases):
            assert w.append(i, p) == i
        got = drain(r)
    assert [m.seq for m in got] == list(range(len(cases)))
    assert [m.type_id for m in got] == list(range(len(cases)))
    expect = [bytes(p) if not isinstance(p, np.ndarray) else p.tobytes() for p in cases]
    assert [bytes(m.payload) for m in got] == expect
    assert len(got[4].payload) == f64.nbytes == 56
    assert np.array_equal(got[4].as_array(np.float64), f64)
    assert np.array_equal(got[5].as_array(np.int32).reshape(3, 4), grid)


def test_seqs_start_at_zero_are_contiguous_and_returned_by_append(queue_dir):
    with Queue.open_publisher(queue_dir, TINY) as w:
        assert w.next_seq == 0
        seqs = [w.append(0, b"m%d" % i) for i in range(50)]
        assert w.next_seq == 50
        with Queue.open_subscriber(queue_dir) as r:
            got = [m.seq for m in r]
            assert r.next_seq == 50
    assert seqs == list(range(50)) == got


def test_default_timestamps_come_from_the_wall_clock_and_explicit_ones_are_kept(queue_dir):
    with Queue.open_publisher(queue_dir, TINY) as w:
        before = time.time_ns()
        w.append(0, b"now")
        after = time.time_ns()
        w.append(0, b"zero", timestamp_ns=0)
        w.append(0, b"big", timestamp_ns=2**62)
        w.append(0, b"neg", timestamp_ns=-5)
        w.append(0, b"np", timestamp_ns=np.int64(123))
        with Queue.open_subscriber(queue_dir) as r:
            got = [m.timestamp_ns for m in r]
    assert before <= got[0] <= after
    assert got[1:] == [0, 2**62, -5, 123]


def test_payload_is_a_read_only_view_into_the_reader_mapping_of_the_segment(queue_dir):
    with Queue.open_publisher(queue_dir, TINY) as w, Queue.open_subscriber(queue_dir) as r:
        w.append(1, b"zero-copy please")
        m = r.next()
        assert isinstance(m.payload, memoryview)
        assert m.payload.readonly
        assert isinstance(m.payload.obj, mmap.mmap)
        with pytest.raises(TypeError):
            m.payload[0] = 0
        addr = np.frombuffer(m.payload, np.uint8).__array_interface__["data"][0]
        ranges = mapped_ranges(queue_dir / L.segment_file_name(0))
        assert any(lo <= addr and addr + len(m.payload) <= hi for lo, hi in ranges)
        seg_start = next(lo for lo, hi in ranges if lo <= addr < hi)
        # the view sits right after the record header of the first record
        assert addr - seg_start == L.SEGMENT_DATA_OFFSET + L.RECORD_HEADER_LENGTH


def test_as_array_decodes_a_structured_record_without_copying(queue_dir):
    tick = np.dtype([("price", "<f8"), ("qty", "<i4"), ("side", "u1"), ("pad", "V3")])
    rec = np.zeros(1, tick)
    rec["price"], rec["qty"], rec["side"] = 101.25, 7, 2
    with Queue.open_publisher(queue_dir, TINY) as w, Queue.open_subscriber(queue_dir) as r:
        w.append(9, rec)
        m = r.next()
        arr = m.as_array(tick)
        assert arr.shape == (1,)
        assert (arr[0]["price"], arr[0]["qty"], arr[0]["side"]) == (101.25, 7, 2)
        assert not arr.flags.writeable
        assert arr.__array_interface__["data"][0] == np.frombuffer(m.payload, np.uint8).__array_interface__["data"][0]
        assert np.array_equal(ca.as_array(m.payload, tick), arr)
        assert tick.itemsize == 16
        with pytest.raises(ca.InvalidArgumentError, match="16 bytes"):
            m.as_array(np.dtype("S3"))  # 16 bytes are not a whole number of 3-byte items


def test_reader_follows_the_writer_across_many_tiny_segments(queue_dir):
    n = 200
    with Queue.open_publisher(queue_dir, TINY) as w, Queue.open_subscriber(queue_dir) as r:
        got = []
        for i in range(n):
            w.append(i % 3, bytes([i % 256]) * 500)
            if i % 17 == 0:  # read while writing, too
                got += payloads(r)
        got += payloads(r)
        assert len(seg_files(queue_dir)) >= 6
        assert r.position[0] == w.segment_id
    assert got == [(i, i % 3, bytes([i % 256]) * 500) for i in range(n)]


def test_payload_view_stays_valid_after_the_reader_moves_on_and_closes(queue_dir):
    with Queue.open_publisher(queue_dir, TINY) as w:
        r = Queue.open_subscriber(queue_dir)
        w.append(0, b"keep me")
        first = r.next().payload
        for i in range(100):
            w.append(0, b"y" * 600)
        assert len(drain(r)) == 100
        assert r.position[0] > 0
        r.close()
    assert bytes(first) == b"keep me"


# -- append_batch ------------------------------------------------------------------------------


def test_append_batch_of_a_2d_array_appends_one_message_per_row(queue_dir):
    rows = np.arange(40, dtype=np.float64).reshape(10, 4)
    with Queue.open_publisher(queue_dir, TINY) as w, Queue.open_subscriber(queue_dir) as r:
        w.append(0, b"before")
        assert w.append_batch(3, rows) == 1
        assert w.next_seq == 11
        got = drain(r)
    assert [m.seq for m in got] == list(range(11))
    assert all(m.type_id == 3 for m in got[1:])
    for m, row in zip(got[1:], rows):
        assert np.array_equal(m.as_array(np.float64), row)


def test_append_batch_of_a_structured_array_appends_one_message_per_element(queue_dir):
    dt = np.dtype([("id", "<i8"), ("x", "<f4")])
    recs = np.zeros(5, dt)
    recs["id"] = [10, 20, 30, 40, 50]
    recs["x"] = [0.5, 1.5, 2.5, 3.5, 4.5]
    with Queue.open_publisher(queue_dir, TINY) as w, Queue.open_subscriber(queue_dir) as r:
        assert w.append_batch(0, recs) == 0
        got = drain(r)
    assert len(got) == 5
    for m, rec in zip(got, recs):
        assert len(m.payload) == dt.itemsize
        assert m.as_array(dt)[0] == rec


def test_append_batch_of_a_list_with_per_message_type_ids_and_timestamps(queue_dir):
    parts = [b"", b"a", bytearray(b"bc"), memoryview(b"def"), np.arange(3, dtype=np.int16)]
    tids = [5, 4, 3, 2, 1]
    tss = np.array([100, 200, 300, 400, 500], np.int64)
    with Queue.open_publisher(queue_dir, TINY) as w, Queue.open_subscriber(queue_dir) as r:
        assert w.append_batch(tids, parts, timestamps_ns=tss) == 0
        got = drain(r)
    assert [(m.seq, m.type_id, m.timestamp_ns) for m in got] == [(i, tids[i], int(tss[i])) for i in range(5)]
    assert [bytes(m.payload) for m in got] == [b"", b"a", b"bc", b"def", np.arange(3, dtype=np.int16).tobytes()]


def test_append_batch_default_timestamp_is_the_call_time_for_all(queue_dir):
    with Queue.open_publisher(queue_dir, TINY) as w, Queue.open_subscriber(queue_dir) as r:
        before = time.time_ns()
        w.append_batch(0, [b"x"] * 4)
        after = time.time_ns()
        stamps = {m.timestamp_ns for m in r}
    assert len(stamps) == 1 and before <= stamps.pop() <= after


def test_append_batch_rolls_segments_as_needed(queue_dir):
    parts = [bytes([i % 256]) * (100 + i * 7 % 900) for i in range(300)]
    with Queue.open_publisher(queue_dir, TINY) as w, Queue.open_subscriber(queue_dir) as r:
        w.append(0, b"first")
        assert w.append_batch(np.arange(300) % 7, parts) == 1
        assert w.next_seq == 301
        assert w.segment_id >= 3
        got = payloads(r)
    assert got[0] == (0, 0, b"first")
    assert got[1:] == [(i + 1, i % 7, parts[i]) for i in range(300)]


def test_append_batch_of_nothing_appends_nothing(queue_dir):
    with Queue.open_publisher(queue_dir, TINY) as w, Queue.open_subscriber(queue_dir) as r:
        w.append(0, b"a")
        assert w.append_batch(0, []) == 1
        assert w.append_batch(0, np.zeros((0, 8), np.uint8)) == 1
        assert w.next_seq == 1
        assert len(drain(r)) == 1


# -- start modes and named readers -------------------------------------------------------------


@pytest.fixture
def three(queue_dir):
    w = Queue.open_publisher(queue_dir, TINY)
    for i in range(3):
        w.append(0, b"old%d" % i)
    yield w, queue_dir
    w.close()


@pytest.mark.parametrize("start", [Start.EARLIEST, "earliest", Start.COMMITTED, "committed"])
def test_earliest_and_never_committed_readers_start_at_the_oldest_message(three, start):
    w, d = three
    with Queue.open_subscriber(d, "fresh" if "committed" in str(start).lower() else None, start) as r:
        assert [m.seq for m in r] == [0, 1, 2]


@pytest.mark.parametrize("start", [Start.LATEST, "latest"])
def test_latest_reader_sees_only_messages_appended_after_it_opened(three, start):
    w, d = three
    with Queue.open_subscriber(d, None, start) as r:
        assert r.next() is None
        assert r.next_seq == 3
        w.append(0, b"new")
        m = r.next()
        assert (m.seq, bytes(m.payload)) == (3, b"new")


def test_latest_reader_opens_at_the_tail_of_the_newest_segment(queue_dir):
    with Queue.open_publisher(queue_dir, TINY) as w:
        for _ in range(60):
            w.append(0, b"z" * 1000)
        assert w.segment_id >= 2
        with Queue.open_subscriber(queue_dir, start=Start.LATEST) as r:
            assert r.position[0] == w.segment_id
            assert r.next() is None
            w.append(1, b"after")
            assert r.next().seq == 60


def test_earliest_reader_starts_at_the_oldest_segment_still_on_disk(queue_dir):
    with Queue.open_publisher(queue_dir, TINY) as w:
        for i in range(60):
            w.append(0, b"z" * 1000)
        os.unlink(queue_dir / L.segment_file_name(0))
        with Queue.open_subscriber(queue_dir, start="earliest") as r:
            first = r.next()
    assert first is not None and first.seq > 0
    assert r.position[0] >= 1


def test_an_earliest_reader_delivers_everything_after_an_empty_first_segment(queue_dir):
    with Queue.open_publisher(queue_dir, TINY) as w:
        w.roll()  # segment 0 holds only its end marker
        for _ in range(5):
            w.append(0, b"m")
        with Queue.open_subscriber(queue_dir, start="earliest") as r:
            assert [m.seq for m in r] == [0, 1, 2, 3, 4]
            assert r.next_seq == 5


def test_an_earliest_reader_reports_the_seq_it_delivers_next_after_an_empty_first_segment(queue_dir):
    with Queue.open_publisher(queue_dir, TINY) as w:
        w.roll()
        for _ in range(5):
            w.append(0, b"m")
        with Queue.open_subscriber(queue_dir, start="earliest") as r:
            assert r.next_seq == 0
            assert r.next().seq == 0


def test_named_reader_resumes_after_its_last_commit(three):
    w, d = three
    with Queue.open_subscriber(d, "svc") as r:
        assert r.next().seq == 0
        assert r.next().seq == 1
        r.commit()
    with Queue.open_subscriber(d, "svc") as r:
        assert r.next_seq == 2
        assert [m.seq for m in r] == [2]


def test_named_reader_redelivers_uncommitted_messages_after_reopen(three):
    w, d = three
    with Queue.open_subscriber(d, "svc") as r:
        r.next()
        r.commit()
        r.next()
        r.next()  # read but never committed
    with Queue.open_subscriber(d, "svc") as r:
        assert [m.seq for m in r] == [1, 2]  # at-least-once: delivered again


def test_durable_commit_is_persisted(three):
    w, d = three
    with Queue.open_subscriber(d, "dur") as r:
        drain(r)
        r.commit(durable=True)
    w.append(0, b"later")
    with Queue.open_subscriber(d, "dur") as r:
        assert [m.seq for m in r] == [3]


def test_named_reader_commit_survives_segment_rolls(queue_dir):
    with Queue.open_publisher(queue_dir, TINY) as w:
        for i in range(100):
            w.append(0, b"p" * 700)
        with Queue.open_subscriber(queue_dir, "far") as r:
            for _ in range(70):
                r.next()
            r.commit()
            committed_at = r.position
        with Queue.open_subscriber(queue_dir, "far") as r:
            assert r.position == committed_at and committed_at[0] > 0
            assert [m.seq for m in r] == list(range(70, 100))


@pytest.mark.parametrize("start", [Start.EARLIEST, Start.LATEST, Start.COMMITTED])
def test_a_named_reader_that_committed_resumes_after_its_commit_whatever_its_start(three, start):
    w, d = three
    with Queue.open_subscriber(d, "svc") as r:
        assert r.next().seq == 0
        r.commit()
    w.append(0, b"new")
    with Queue.open_subscriber(d, "svc", start) as r:
        assert [m.seq for m in r] == [1, 2, 3]


def test_start_places_a_name_that_never_committed(three):
    w, d = three
    with Queue.open_subscriber(d, "new-early", Start.EARLIEST) as r:
        assert r.next().seq == 0
    with Queue.open_subscriber(d, "new-late", Start.LATEST) as r:
        assert r.next() is None
    with Queue.open_subscriber(d, "new-early", Start.LATEST) as r:
        assert r.next() is None, "it never committed: its start mode places it, at the tail"


def test_named_readers_keep_independent_positions(three):
    w, d = three
    with Queue.open_subscriber(d, "a") as a, Queue.open_subscriber(d, "b") as b:
        a.next()
        a.commit()
        drain(b)
        b.commit()
    with Queue.open_subscriber(d, "a") as a, Queue.open_subscriber(d, "b") as b:
        assert a.next().seq == 1
        assert b.next() is None


def test_anonymous_reader_cannot_commit(three):
    _w, d = three
    with Queue.open_subscriber(d) as r:
        r.next()
        with pytest.raises(ca.InvalidArgumentError, match="anonymous"):
            r.commit()
    assert not (d / L.READERS_DIR_NAME).exists() or os.listdir(d / L.READERS_DIR_NAME) == []


# -- seeking -----------------------------------------------------------------------------------


@pytest.fixture
def spread(queue_dir):
    """120 messages over several tiny segments, timestamps 10_000 + 100 * seq."""
    w = Queue.open_publisher(queue_dir, TINY)
    for i in range(120):
        w.append(i % 2, i.to_bytes(4, "little") * 150, timestamp_ns=10_000 + 100 * i)
    assert w.segment_id >= 3
    yield w, queue_dir
    w.close()


@pytest.mark.parametrize("target", [0, 1, 37, 59, 60, 98, 119])
def test_seek_positions_at_that_seq_in_any_segment(spread, target):
    _w, d = spread
    with Queue.open_subscriber(d) as r:
        drain(r)  # from the tail, seek backwards
        assert r.seek(target) is True
        assert r.next_seq == target
        m = r.next()
        assert m.seq == target and bytes(m.payload)[:4] == target.to_bytes(4, "little")
        assert [x.seq for x in r] == list(range(target + 1, 120))


def test_seek_forward_from_the_start(spread):
    _w, d = spread
    with Queue.open_subscriber(d) as r:
        assert r.seek(100)
        assert r.next().seq == 100


@pytest.mark.parametrize("ts,expect", [(0, 0), (10_000, 0), (10_001, 1), (10_050, 1), (15_999, 60), (21_900, 119)])
def test_seek_timestamp_positions_at_the_first_message_at_or_after_it(spread, ts, expect):
    _w, d = spread
    with Queue.open_subscriber(d) as r:
        drain(r)
        assert r.seek_timestamp(ts) is True
        assert r.next().seq == expect


def test_seeking_beyond_the_tail_returns_false_then_delivers_the_next_appended_message(spread):
    w, d = spread
    with Queue.open_subscriber(d) as r:
        assert r.seek(500) is False
        assert r.next() is None
        assert r.seek_timestamp(10**18) is False
        assert r.next() is None
        w.append(7, b"next one")
        m = r.next()
        assert (m.seq, m.type_id, bytes(m.payload)) == (120, 7, b"next one")


def test_seek_then_commit_moves_a_named_reader(spread):
    _w, d = spread
    with Queue.open_subscriber(d, "seeker") as r:
        assert r.seek(90)
        r.commit()
    with Queue.open_subscriber(d, "seeker") as r:
        assert r.next().seq == 90


def test_seek_timestamp_finds_the_first_of_equal_timestamps_spanning_segments(queue_dir):
    with Queue.open_publisher(queue_dir, TINY) as w, Queue.open_subscriber(queue_dir) as r:
        w.append(0, b"a", timestamp_ns=100)
        w.append_batch(0, [b"x" * 1000] * 50, timestamps_ns=500)
        w.append(0, b"z", timestamp_ns=900)
        assert w.segment_id >= 2
        assert r.seek_timestamp(500)
        assert r.next().seq == 1


def test_seek_timestamp_with_equal_timestamps_inside_one_segment_finds_the_first(queue_dir):
    with Queue.open_publisher(queue_dir, TINY) as w, Queue.open_subscriber(queue_dir) as r:
        w.append(0, b"a", timestamp_ns=100)
        w.append_batch(0, [b"x"] * 5, timestamps_ns=500)
        assert r.seek_timestamp(500) and r.next().seq == 1
        assert r.seek_timestamp(101) and r.next().seq == 1


# -- writer sessions ---------------------------------------------------------------------------


def test_writer_reopen_continues_seqs_and_increments_the_epoch(queue_dir):
    with Queue.open_publisher(queue_dir, TINY) as w:
        first_epoch = w.epoch
        for i in range(5):
            w.append(0, b"a")
    with Queue.open_publisher(queue_dir, TINY) as w:
        assert w.epoch == first_epoch + 1
        assert w.next_seq == 5
        assert w.append(0, b"b") == 5
    with Queue.open_subscriber(queue_dir) as r:
        assert [m.seq for m in r] == list(range(6))


def test_writer_reopen_after_rolls_and_an_explicit_roll_continues_seqs(queue_dir):
    with Queue.open_publisher(queue_dir, TINY) as w:
        for i in range(80):
            w.append(0, b"r" * 800)
        seg = w.roll()  # leaves an empty head segment
        assert seg == w.segment_id
    with Queue.open_publisher(queue_dir, TINY) as w:
        assert w.segment_id == seg
        assert w.next_seq == 80
        w.append(0, b"after")
    with Queue.open_subscriber(queue_dir) as r:
        assert [m.seq for m in r] == list(range(81))


def test_an_existing_queue_keeps_its_segment_size(queue_dir):
    with Queue.open_publisher(queue_dir, TINY):
        pass
    with Queue.open_publisher(queue_dir, WriterConfig(segment_size=64 * 1024)) as w:
        assert w.segment_size == TINY.segment_size
        assert w.max_payload == L.max_payload(TINY.segment_size)


@pytest.mark.parametrize("durability", ["none", "async", "sync"])
def test_flush_and_close_work_in_every_durability_mode(queue_dir, durability):
    cfg = WriterConfig(segment_size=16 * 1024, durability=durability, flush_interval=0.01)
    with Queue.open_publisher(queue_dir, cfg) as w:
        assert w.config.durability is ca.Durability(durability)
        for i in range(40):
            w.append(0, b"d" * 900)
        w.flush()
        time.sleep(0.03)
    with Queue.open_subscriber(queue_dir) as r:
        assert len(drain(r)) == 40


# -- liveness ----------------------------------------------------------------------------------


def test_writer_status_describes_a_live_writer(queue_dir):
    with Queue.open_publisher(queue_dir, TINY) as w, Queue.open_subscriber(queue_dir) as r:
        st = r.writer_status(ttl=2.0)
        assert st.alive and st.lock_held
        assert st.pid == os.getpid()
        assert st.epoch == w.epoch == r.writer_epoch
        assert st.state == "open"
        assert abs(st.heartbeat_ns - time.time_ns()) < 2e9
        assert 0 <= st.heartbeat_age < 2.0
        assert st.ttl == 2.0
    # after close: no lock, state closed
    w2 = Queue.open_publisher(queue_dir, TINY)
    r2 = Queue.open_subscriber(queue_dir)
    w2.close()
    st = r2.writer_status()
    assert not st.alive and not st.lock_held and st.state == "closed"
    r2.close()


def test_detect_disconnect_is_none_while_the_writer_lives(queue_dir):
    with Queue.open_publisher(queue_dir, TINY), Queue.open_subscriber(queue_dir) as r:
        assert r.detect_disconnect() is None


def test_detect_disconnect_reports_a_cleanly_closed_writer(queue_dir):
    w = Queue.open_publisher(queue_dir, TINY)
    with Queue.open_subscriber(queue_dir) as r:
        w.close()
        assert r.detect_disconnect() is DisconnectReason.WRITER_CLOSED


def test_detect_disconnect_reports_a_new_writer_epoch_until_acknowledged(queue_dir):
    w = Queue.open_publisher(queue_dir, TINY)
    with Queue.open_subscriber(queue_dir) as r:
        old = r.writer_epoch
        w.close()
        with Queue.open_publisher(queue_dir, TINY) as w2:
            assert r.detect_disconnect() is DisconnectReason.EPOCH_CHANGED
            assert r.acknowledge_epoch() == w2.epoch == old + 1
            assert r.writer_epoch == w2.epoch
            assert r.detect_disconnect() is None


def test_detect_disconnect_reports_a_deleted_current_segment(queue_dir):
    with Queue.open_publisher(queue_dir, TINY) as w, Queue.open_subscriber(queue_dir) as r:
        for i in range(60):
            w.append(0, i.to_bytes(2, "little") * 500)
        assert w.segment_id >= 2
        assert r.next().seq == 0
        assert r.position[0] == 0
        assert r.detect_disconnect() is None
        os.unlink(queue_dir / L.segment_file_name(0))
        assert r.detect_disconnect() is DisconnectReason.SEGMENT_MISSING
        # the reader still holds its mapping of the deleted file, and reads on from it
        assert [m.seq for m in r] == list(range(1, 60))
        assert r.detect_disconnect() is None


def test_a_reader_skips_a_missing_segment_and_the_seq_gap_is_visible(queue_dir):
    per_segment = (L.segment_data_end(TINY.segment_size) - L.SEGMENT_DATA_OFFSET) // L.record_length(1000)
    with Queue.open_publisher(queue_dir, TINY) as w, Queue.open_subscriber(queue_dir) as r:
        for i in range(4 * per_segment):
            w.append(0, b"g" * 1000)
        assert w.segment_id == 3
        first = r.next()
        os.unlink(queue_dir / L.segment_file_name(1))
        seqs = [first.seq] + [r.next().seq for _ in range(per_segment - 1)]
        assert r.next_seq == per_segment  # what the reader expects next...
        after_gap = r.next()
        assert after_gap.seq == 2 * per_segment  # ...and what it gets: the gap shows
        seqs += [after_gap.seq] + [m.seq for m in r]
    expect = list(range(per_segment)) + list(range(2 * per_segment, 4 * per_segment))
    assert seqs == expect


def test_detect_disconnect_reports_a_stale_heartbeat_while_the_lock_is_held(queue_dir):
    with Queue.open_publisher(queue_dir, WriterConfig(segment_size=16 * 1024, heartbeat_interval=5.0)):
        with Queue.open_subscriber(queue_dir) as r:
            time.sleep(0.2)
            st = r.writer_status(ttl=0.05)
            assert st.lock_held and not st.alive and st.heartbeat_age > 0.15
            assert r.detect_disconnect(ttl=0.05) is DisconnectReason.HEARTBEAT_STALE
            assert r.detect_disconnect(ttl=30.0) is None


def test_an_idle_writer_keeps_its_heartbeat_fresh(queue_dir):
    with Queue.open_publisher(queue_dir, TINY), Queue.open_subscriber(queue_dir) as r:
        time.sleep(1.5)
        st = r.writer_status(ttl=1.0)
        assert st.alive, st
        assert st.heartbeat_age < 0.5
        assert r.detect_disconnect(ttl=1.0) is None


def test_detect_disconnect_reports_a_deleted_queue(queue_dir):
    with Queue.open_publisher(queue_dir, TINY), Queue.open_subscriber(queue_dir) as r:
        os.unlink(queue_dir / L.CONTROL_FILE_NAME)
        assert r.detect_disconnect() is DisconnectReason.QUEUE_DELETED


_CHILD_WRITER = r"""
import sys, time
import chronicle_async as ca
w = ca.Queue.open_publisher(sys.argv[1], ca.WriterConfig(segment_size=16 * 1024))
for i in range(int(sys.argv[2])):
    w.append(1, b"child %d" % i)
print("ready", flush=True)
sys.stdin.read()  # hold the writer until the parent closes stdin or kills us
w.close()
"""


def spawn_writer(queue_dir, count: int) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    p = subprocess.Popen(
        [sys.executable, "-c", _CHILD_WRITER, str(queue_dir), str(count)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True,
    )
    line = p.stdout.readline()
    if line.strip() != "ready":
        p.kill()
        raise AssertionError(f"child writer failed: {line!r} {p.stderr.read()}")
    return p


def test_detect_disconnect_reports_a_writer_process_that_died_and_a_new_writer_continues(queue_dir):
    p = spawn_writer(queue_dir, 10)
    try:
        with Queue.open_subscriber(queue_dir) as r:
            assert r.writer_status().pid == p.pid
            assert r.detect_disconnect() is None
            os.kill(p.pid, signal.SIGKILL)
            p.wait(timeout=10)
            deadline = time.monotonic() + 5
            while r.detect_disconnect() is None and time.monotonic() < deadline:
                time.sleep(0.01)
            assert r.detect_disconnect() is DisconnectReason.WRITER_DIED
            assert r.writer_status().state == "open"  # it never closed
            with Queue.open_publisher(queue_dir, TINY) as w:
                assert w.next_seq == 10
                w.append(2, b"parent")
            assert [(m.seq, m.type_id) for m in r][-2:] == [(9, 1), (10, 2)]
    finally:
        if p.poll() is None:
            p.kill()
        p.stdout.close()
        p.stderr.close()
        p.stdin.close()


_CHILD_STREAM = r"""
import sys
import chronicle_async as ca
w = ca.Queue.open_publisher(sys.argv[1], ca.WriterConfig(segment_size=16 * 1024))
i = 0
while True:
    size = (i * 733) % 3000
    w.append(i % 7, (i.to_bytes(8, "little") * (size // 8 + 1))[:size])
    i += 1
    if i == 300:
        print("ready", flush=True)
"""

_CHILD_ROLL_CRASH = r"""
import os, sys
import chronicle_async as ca
w = ca.Queue.open_publisher(sys.argv[1], ca.WriterConfig(segment_size=16 * 1024))
for i in range(3):
    w.append(0, b"pre %d" % i)
print("ready", flush=True)
sys.stdin.readline()
import chronicle_async.queue.writer as writer_module  # roll() calls its write_end_marker
original = writer_module.write_end_marker
if sys.argv[2] == "before-end-marker":
    writer_module.write_end_marker = lambda m, off, seq: os._exit(9)
else:
    def marker_then_die(m, off, seq):
        original(m, off, seq)
        os._exit(9)
    writer_module.write_end_marker = marker_then_die
w.roll()
"""


def _run_child(script: str, *args: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    p = subprocess.Popen([sys.executable, "-c", script, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=env, text=True)
    line = p.stdout.readline()
    if line.strip() != "ready":
        p.kill()
        raise AssertionError(f"child failed: {line!r} {p.stderr.read()}")
    return p


def test_a_writer_killed_mid_stream_loses_nothing_it_committed_and_a_new_writer_continues(queue_dir):
    p = _run_child(_CHILD_STREAM, str(queue_dir))
    try:
        time.sleep(0.05)
        os.kill(p.pid, signal.SIGKILL)
        p.wait(timeout=10)
    finally:
        for f in (p.stdin, p.stdout, p.stderr):
            f.close()
    with Queue.open_subscriber(queue_dir) as r:
        got = drain(r)
        k = len(got)
        assert k >= 300
        assert [m.seq for m in got] == list(range(k))
        for m in got:
            size = (m.seq * 733) % 3000
            assert m.type_id == m.seq % 7
            assert bytes(m.payload) == (m.seq.to_bytes(8, "little") * (size // 8 + 1))[:size]
        with Queue.open_publisher(queue_dir, TINY) as w:
            assert w.next_seq == k
            assert w.append(1, b"after the crash") == k
        assert [(m.seq, bytes(m.payload)) for m in r] == [(k, b"after the crash")]


@pytest.mark.parametrize("crash_point", ["before-end-marker", "after-end-marker"])
def test_a_writer_that_died_inside_roll_is_recovered_and_waiting_readers_continue(queue_dir, crash_point):
    p = _run_child(_CHILD_ROLL_CRASH, str(queue_dir), crash_point)
    try:
        with Queue.open_subscriber(queue_dir, "waiting") as r:
            assert [bytes(m.payload) for m in r] == [b"pre 0", b"pre 1", b"pre 2"]
            r.commit()
            p.stdin.write("go\n")
            p.stdin.flush()
            assert p.wait(timeout=20) == 9
            with Queue.open_publisher(queue_dir, TINY) as w:
                assert w.next_seq == 3
                w.append(0, b"post")
                w.append(0, b"x" * (w.max_payload - 100))  # forces a roll after recovery, too
            deadline = time.monotonic() + 5
            got = []
            while len(got) < 2 and time.monotonic() < deadline:
                r.wait(0.1)
                got += [(m.seq, bytes(m.payload)[:4]) for m in r]
            assert got == [(3, b"post"), (4, b"xxxx")]
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        for f in (p.stdin, p.stdout, p.stderr):
            f.close()
    with Queue.open_subscriber(queue_dir, "waiting") as r:  # its commit survived too
        assert r.next().seq == 3


# -- waiting -----------------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", list(WaitStrategy))
def test_wait_times_out_with_false_when_nothing_arrives(queue_dir, strategy):
    with Queue.open_publisher(queue_dir, TINY), Queue.open_subscriber(queue_dir, wait_strategy=strategy) as r:
        t0 = time.monotonic()
        assert r.wait(timeout=0.2) is False
        elapsed = time.monotonic() - t0
        assert 0.19 <= elapsed < 2.0
        t0 = time.monotonic()
        assert r.wait(timeout=0) is False
        assert time.monotonic() - t0 < 0.5


@pytest.mark.parametrize("strategy", list(WaitStrategy) + [s.value for s in WaitStrategy])
def test_wait_returns_true_when_another_thread_appends(queue_dir, strategy):
    with Queue.open_publisher(queue_dir, TINY) as w, Queue.open_subscriber(queue_dir, wait_strategy=strategy) as r:
        def later():
            time.sleep(0.15)
            w.append(4, b"wake up")

        t = threading.Thread(target=later)
        t0 = time.monotonic()
        t.start()
        try:
            assert r.wait(timeout=10) is True
            elapsed = time.monotonic() - t0
        finally:
            t.join()
        assert 0.1 <= elapsed < 5
        m = r.next()
        assert (m.seq, bytes(m.payload)) == (0, b"wake up")


def test_wait_returns_at_once_when_data_is_already_there(queue_dir):
    with Queue.open_publisher(queue_dir, TINY) as w, Queue.open_subscriber(queue_dir, wait_strategy="park") as r:
        w.append(0, b"x")
        assert r.available()
        t0 = time.monotonic()
        assert r.wait(timeout=5) is True
        assert time.monotonic() - t0 < 0.5


def test_parked_reader_wakes_across_a_segment_roll(queue_dir):
    with Queue.open_publisher(queue_dir, TINY) as w, Queue.open_subscriber(queue_dir, wait_strategy="park") as r:
        big = b"b" * (w.max_payload - 2000)
        w.append(0, big)
        assert r.next().seq == 0

        def later():
            time.sleep(0.1)
            w.append(0, big)  # does not fit: rolls first, then appends in segment 1

        t = threading.Thread(target=later)
        t.start()
        try:
            got = None
            deadline = time.monotonic() + 5
            while got is None and time.monotonic() < deadline:
                assert r.wait(timeout=5)
                got = r.next()
        finally:
            t.join()
        assert got.seq == 1 and r.position[0] == 1


def test_a_parked_reader_wakes_for_a_writer_in_another_process(queue_dir):
    with Queue.open_publisher(queue_dir, TINY):
        pass  # create the queue; the child becomes the next writer
    with Queue.open_subscriber(queue_dir, wait_strategy="park") as r:
        p = spawn_writer(queue_dir, 3)
        try:
            assert r.wait(timeout=10)
            assert [bytes(m.payload) for m in r] == [b"child 0", b"child 1", b"child 2"]
        finally:
            p.stdin.close()
            p.wait(timeout=10)
            p.stdout.close()
            p.stderr.close()
        assert p.returncode == 0
        assert r.detect_disconnect() is DisconnectReason.WRITER_CLOSED


# -- lifecycle ---------------------------------------------------------------------------------


def test_context_managers_close_the_writer_and_reader(queue_dir):
    with Queue.open_publisher(queue_dir, TINY) as w:
        w.append(0, b"x")
        with Queue.open_subscriber(queue_dir, "ctx") as r:
            assert not r.closed
        assert r.closed
        assert not w.closed
    assert w.closed
    # the writer lock and the reader name are free again
    with Queue.open_publisher(queue_dir, TINY) as w2, Queue.open_subscriber(queue_dir, "ctx") as r2:
        assert w2.next_seq == 1 and r2.next().seq == 0


def test_context_managers_close_on_an_exception(queue_dir):
    with pytest.raises(RuntimeError):
        with Queue.open_publisher(queue_dir, TINY) as w:
            raise RuntimeError("boom")
    assert w.closed
    with Queue.open_publisher(queue_dir, TINY):
        pass


def test_a_closed_writer_raises_queue_closed_error(queue_dir):
    w = Queue.open_publisher(queue_dir, TINY)
    w.close()
    w.close()  # idempotent
    calls = [
        lambda: w.append(0, b"x"),
        lambda: w.append(0, bytearray(b"x")),
        lambda: w.append_batch(0, [b"x"]),
        lambda: w.append_batch(0, np.zeros((2, 2), np.uint8)),
        w.roll,
        w.flush,
        w.hot_handle,
        lambda: w.next_seq,
    ]
    for call in calls:
        with pytest.raises(ca.QueueClosedError):
            call()
    assert "closed" in repr(w)


def test_a_closed_reader_raises_queue_closed_error(queue_dir):
    with Queue.open_publisher(queue_dir, TINY) as w:
        w.append(0, b"x")
        r = Queue.open_subscriber(queue_dir, "closing")
        r.close()
        r.close()  # idempotent
        calls = [r.next, r.available, lambda: r.wait(0.01), r.commit, lambda: r.seek(0),
                 lambda: r.seek_timestamp(0), r.writer_status, r.detect_disconnect, r.acknowledge_epoch,
                 lambda: list(r)]
        for call in calls:
            with pytest.raises(ca.QueueClosedError):
                call()


def test_close_unmaps_the_segment_and_control_files(queue_dir):
    w = Queue.open_publisher(queue_dir, TINY)
    w.append(0, b"x")
    r = Queue.open_subscriber(queue_dir)
    r.next()  # the Message is dropped at once: nothing of ours pins the mapping
    seg = queue_dir / L.segment_file_name(0)
    ctl = queue_dir / L.CONTROL_FILE_NAME
    assert mapped_ranges(seg) and mapped_ranges(ctl)
    w.close()
    r.close()
    assert mapped_ranges(seg) == [] and mapped_ranges(ctl) == []


def test_queue_exists_only_once_a_writer_created_it(tmp_path):
    d = tmp_path / "q"
    assert not Queue.exists(d)
    d.mkdir()
    assert not Queue.exists(d)
    assert not Queue.exists(str(d))
    with Queue.open_publisher(d, TINY):
        assert Queue.exists(d) and Queue.exists(str(d))
    assert Queue.exists(d)
    (tmp_path / "file").write_bytes(b"x")
    assert not Queue.exists(tmp_path / "file")


def test_a_new_queue_in_a_missing_nested_folder_is_created(tmp_path):
    d = tmp_path / "a" / "b" / "q"
    with Queue.open_publisher(d, TINY) as w:
        w.append(0, b"x")
    assert Queue.exists(d)
    assert seg_files(d) == [0]


def test_reprs_name_the_path_and_position(queue_dir):
    with Queue.open_publisher(queue_dir, TINY) as w, Queue.open_subscriber(queue_dir, "rep") as r:
        assert str(queue_dir) in repr(w) and "next_seq=0" in repr(w)
        assert "rep" in repr(r) and str(queue_dir) in repr(r)


def test_a_reader_dropped_without_close_frees_its_name(queue_dir):
    import gc

    from chronicle_async import Queue

    path = str(queue_dir / "q")
    with Queue.open_publisher(path) as w:
        w.append(1, b"x")
        r = Queue.open_subscriber(path, "forgetful")
        assert r.next().payload == b"x"
        del r
        gc.collect()
        with Queue.open_subscriber(path, "forgetful") as again:  # no ReaderLockedError
            assert again.name == "forgetful"


def test_a_writer_dropped_without_close_frees_the_queue(queue_dir):
    import gc

    from chronicle_async import Queue

    path = str(queue_dir / "q")
    w = Queue.open_publisher(path)
    w.append(1, b"x")
    del w
    gc.collect()
    with Queue.open_publisher(path) as again:  # no WriterLockedError
        assert again.next_seq == 1
