"""FanInReader on real queue folders: merge order, sources in and out, commits, lateness, waiting."""
from __future__ import annotations

import os
import tempfile
import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chronicle_async import (
    ArgumentTypeError,
    FanInReader,
    InvalidArgumentError,
    Queue,
    QueueClosedError,
    WriterConfig,
)

TINY = WriterConfig(segment_size=16 * 1024)


@pytest.fixture
def qdirs(tmp_path):
    def make(n: int) -> list:
        out = []
        for i in range(n):
            d = tmp_path / f"q{i}"
            d.mkdir()
            out.append(d)
        return out

    return make


@pytest.fixture
def writers():
    """Open writers that are closed at teardown."""
    made = []

    def make(dirs, config=TINY):
        ws = [Queue.open_publisher(d, config) for d in dirs]
        made.extend(ws)
        return ws

    yield make
    for w in made:
        if not w.closed:
            w.close()


def items(fan) -> list[tuple[int, int, int, bytes]]:
    """Everything releasable now as (timestamp_ns, source, seq, payload)."""
    return [(m.timestamp_ns, s, m.seq, bytes(m.payload)) for s, m in fan]


# -- order -------------------------------------------------------------------------------------


def test_messages_of_four_queues_come_out_in_timestamp_order_with_their_bytes(qdirs, writers):
    dirs = qdirs(4)
    ws = writers(dirs)
    written = []
    stamps = {0: [5, 9, 30, 31, 80], 1: [1, 2, 3, 70, 71, 72], 2: [10, 40, 50], 3: [0, 100]}
    for q, tss in stamps.items():
        for i, ts in enumerate(tss):
            p = b"q%d-%d-" % (q, i) + bytes(range(q * 10))
            ws[q].append(q, p, timestamp_ns=ts)
            written.append((ts, q, i, p))
    with FanInReader([Queue.open_subscriber(d) for d in dirs]) as fan:
        assert list(fan.sources) == [0, 1, 2, 3]
        got = items(fan)
        assert fan.next() is None
    assert got == sorted(written)
    assert [t for t, *_ in got] == sorted(t for tss in stamps.values() for t in tss)


def test_equal_timestamps_go_to_the_smaller_source_id_and_keep_each_queue_order(qdirs, writers):
    dirs = qdirs(3)
    ws = writers(dirs)
    for q in (2, 0, 1):  # written in another order than the source ids
        for i, ts in enumerate((10, 10, 20, 20)):
            ws[q].append(0, b"%d:%d" % (q, i), timestamp_ns=ts)
    with FanInReader([Queue.open_subscriber(d) for d in dirs]) as fan:
        got = [(m.timestamp_ns, s, m.seq) for s, m in fan]
        assert got == [(10, 0, 0), (10, 0, 1), (10, 1, 0), (10, 1, 1), (10, 2, 0), (10, 2, 1),
                       (20, 0, 2), (20, 0, 3), (20, 1, 2), (20, 1, 3), (20, 2, 2), (20, 2, 3)]
        # a source added again gets a new, larger id: it now loses the ties
        r0 = fan.remove_reader(0)
        r0.seek(0)
        assert fan.add_reader(r0) == 3
        for q in (1, 2):
            fan.sources[q].seek(0)
        got = [(m.timestamp_ns, s, m.seq) for s, m in fan]
        assert [s for _t, s, _q in got[:6]] == [1, 1, 2, 2, 3, 3]


def test_a_later_write_with_an_older_timestamp_is_ordered_only_among_what_is_visible(qdirs, writers):
    dirs = qdirs(2)
    w0, w1 = writers(dirs)
    w0.append(0, b"a", timestamp_ns=100)
    w0.append(0, b"b", timestamp_ns=300)
    with FanInReader([Queue.open_subscriber(d) for d in dirs]) as fan:
        s, m = fan.next()
        assert (s, bytes(m.payload)) == (0, b"a")
        w1.append(0, b"late", timestamp_ns=50)  # older than what was handed out: cannot go before it
        w1.append(0, b"mid", timestamp_ns=200)
        assert [bytes(m.payload) for _s, m in fan] == [b"late", b"mid", b"b"]


# -- sources in and out ------------------------------------------------------------------------


def test_readers_added_and_removed_while_iterating_keep_every_message_exactly_once(qdirs, writers):
    dirs = qdirs(3)
    ws = writers(dirs)
    for q in range(3):
        for i in range(30):
            ws[q].append(q, b"%d/%d" % (q, i), timestamp_ns=1000 * i + q)
    fan = FanInReader([Queue.open_subscriber(dirs[0]), Queue.open_subscriber(dirs[1])])
    seen = []
    removed = None
    added = None
    for s, m in fan:
        seen.append((s, m.seq))
        if len(seen) == 10:
            removed = fan.remove_reader(1)  # its next message is buffered in the fan: it must come back
        if len(seen) == 15:
            added = fan.add_reader(Queue.open_subscriber(dirs[2]))
    assert removed is not None and added == 2
    from_1 = [q for s, q in seen if s == 1]
    assert from_1 == list(range(len(from_1)))
    assert removed.next_seq == len(from_1)
    m = removed.next()
    assert (m.seq, bytes(m.payload)) == (len(from_1), b"1/%d" % len(from_1))
    removed.close()
    assert [q for s, q in seen if s == 0] == list(range(30))
    assert [q for s, q in seen if s == 2] == list(range(30))
    assert 1 not in fan.sources
    with pytest.raises(InvalidArgumentError):
        fan.remove_reader(1)
    fan.close()


def test_remove_reader_positions_a_reader_that_crossed_segments_at_its_first_message_not_handed_out(qdirs, writers):
    dirs = qdirs(2)
    w0, w1 = writers(dirs)
    for i in range(600):  # ~8 segments of 16 KiB
        w0.append(1, bytes([i & 0xFF]) * 100, timestamp_ns=2 * i)
        w1.append(2, b"other", timestamp_ns=2 * i + 1)
    assert w0.segment_id >= 3
    with FanInReader([Queue.open_subscriber(dirs[0]), Queue.open_subscriber(dirs[1])]) as fan:
        for k in range(2 * 437 + 1):  # the last one handed out is from source 0; 1 is buffered
            s, m = fan.next()
            assert (s, m.seq) == (k % 2, k // 2)
        r = fan.remove_reader(1)
        assert r.next_seq == 437
        assert [m.seq for m in r] == list(range(437, 600))
        r.close()
        assert [m.seq for _s, m in fan] == list(range(438, 600))


# -- commits -----------------------------------------------------------------------------------


def test_commit_covers_exactly_what_was_handed_out_and_buffered_messages_are_redelivered(qdirs, writers):
    dirs = qdirs(3)
    ws = writers(dirs)
    for q in range(3):
        for i in range(20):
            ws[q].append(q, b"%d/%d" % (q, i), timestamp_ns=10 * i + q)
    fan = FanInReader([Queue.open_subscriber(d, "merge") for d in dirs])
    handed = [fan.next() for _ in range(8)]  # 0/0 1/0 2/0 0/1 1/1 2/1 0/2 1/2; 2/2 and 0/3 are buffered
    assert [(s, m.seq) for s, m in handed] == [(0, 0), (1, 0), (2, 0), (0, 1), (1, 1), (2, 1), (0, 2), (1, 2)]
    fan.commit(durable=True)
    fan.close()  # closes the readers without committing again
    for q, want in zip(range(3), (3, 3, 2)):
        with Queue.open_subscriber(dirs[q], "merge") as r:
            assert r.next_seq == want
            m = r.next()
            assert (m.seq, bytes(m.payload)) == (want, b"%d/%d" % (q, want))


def test_commit_with_nothing_buffered_is_the_readers_own_position_and_anonymous_readers_are_skipped(qdirs, writers):
    dirs = qdirs(2)
    w0, _w1 = writers(dirs)
    for i in range(5):
        w0.append(0, b"x", timestamp_ns=i)
    fan = FanInReader([Queue.open_subscriber(dirs[0], "named"), Queue.open_subscriber(dirs[1])])
    assert len(list(fan)) == 5
    fan.commit()
    fan.close()
    with Queue.open_subscriber(dirs[0], "named") as r:
        assert r.next_seq == 5 and r.next() is None


# -- lateness ----------------------------------------------------------------------------------


def test_lateness_holds_the_oldest_message_until_every_source_has_data(qdirs, writers):
    dirs = qdirs(2)
    w0, w1 = writers(dirs)
    with FanInReader([Queue.open_subscriber(d) for d in dirs], lateness=5.0) as fan:
        now = time.time_ns()
        w0.append(0, b"fresh", timestamp_ns=now)
        assert fan.next() is None  # source 1 may still produce something older
        assert fan.wait(timeout=0.05) is False
        w1.append(0, b"older", timestamp_ns=now - 1000)
        w1.append(0, b"newer", timestamp_ns=now + 1000)
        assert [bytes(m.payload) for _s, m in fan] == [b"older", b"fresh"]
        assert fan.next() is None  # now source 0 is the empty one: "newer" waits for it
        w0.append(0, b"newest", timestamp_ns=now + 2000)
        assert [bytes(m.payload) for _s, m in fan] == [b"newer"]


def test_lateness_releases_a_message_once_it_is_old_enough(qdirs, writers):
    dirs = qdirs(2)
    w0, _w1 = writers(dirs)
    with FanInReader([Queue.open_subscriber(d) for d in dirs], lateness=1.0) as fan:
        w0.append(0, b"ancient", timestamp_ns=time.time_ns() - 10_000_000_000)
        _s, m = fan.next()  # far older than the lateness: no hold
        assert bytes(m.payload) == b"ancient"
        w0.append(0, b"nearly", timestamp_ns=time.time_ns() - 700_000_000)
        t0 = time.monotonic()
        assert fan.wait(timeout=5.0) is True  # released when it turns 1 s old, ~0.3 s from now
        assert time.monotonic() - t0 < 2.0
        assert bytes(fan.next()[1].payload) == b"nearly"


def test_without_lateness_nothing_is_held(qdirs, writers):
    dirs = qdirs(2)
    w0, _w1 = writers(dirs)
    with FanInReader([Queue.open_subscriber(d) for d in dirs]) as fan:
        w0.append(0, b"now", timestamp_ns=time.time_ns())
        assert fan.wait(timeout=0) is True
        assert bytes(fan.next()[1].payload) == b"now"


# -- waiting -----------------------------------------------------------------------------------


@pytest.mark.parametrize("which", [0, 1, 2, 3])
def test_wait_wakes_when_any_one_of_several_idle_queues_is_written_by_another_thread(qdirs, writers, which):
    dirs = qdirs(4)
    ws = writers(dirs)
    with FanInReader([Queue.open_subscriber(d) for d in dirs]) as fan:
        assert fan.next() is None
        written_at = []

        def write() -> None:
            time.sleep(0.1)
            written_at.append(time.monotonic())
            ws[which].append(7, b"wake %d" % which)

        t = threading.Thread(target=write)
        t0 = time.monotonic()
        t.start()
        try:
            assert fan.wait(timeout=5.0) is True
            woke = time.monotonic()
        finally:
            t.join(5)
        assert woke - written_at[0] < 0.8, f"woke {woke - written_at[0]:.3f} s after the write to queue {which}"
        assert woke - t0 < 1.0
        s, m = fan.next()
        assert (s, bytes(m.payload)) == (which, b"wake %d" % which)


def test_wait_returns_false_on_timeout_and_true_at_once_when_something_is_buffered(qdirs, writers):
    dirs = qdirs(3)
    ws = writers(dirs)
    with FanInReader([Queue.open_subscriber(d) for d in dirs]) as fan:
        t0 = time.monotonic()
        assert fan.wait(timeout=0.2) is False
        took = time.monotonic() - t0
        assert 0.19 <= took < 2.0
        assert fan.wait(timeout=0) is False
        ws[2].append(0, b"x")
        assert fan.wait(timeout=5.0) is True
        assert fan.wait(timeout=0) is True  # buffered: still True, nothing consumed
        assert fan.next()[0] == 2
        assert fan.wait(timeout=0.01) is False


def test_wait_with_no_sources_times_out():
    with FanInReader() as fan:
        assert fan.next() is None
        assert fan.wait(timeout=0.05) is False


# -- arguments and lifetime --------------------------------------------------------------------


def test_bad_arguments_raise_typed_errors(qdirs, writers):
    (d,) = qdirs(1)
    writers([d])
    with pytest.raises(InvalidArgumentError):
        FanInReader(lateness=-1)
    with pytest.raises(InvalidArgumentError):
        FanInReader(lateness=float("nan"))
    with pytest.raises(InvalidArgumentError):
        FanInReader(spin_time=-1e-6)
    fan = FanInReader()
    r = Queue.open_subscriber(d)
    fan.add_reader(r)
    with pytest.raises(InvalidArgumentError):
        fan.add_reader(r)
    with pytest.raises(ArgumentTypeError):
        fan.add_reader("not a reader")
    with pytest.raises(InvalidArgumentError):
        fan.remove_reader(5)
    with pytest.raises(InvalidArgumentError):
        fan.wait(timeout=-1)
    closed = Queue.open_subscriber(d)
    closed.close()
    with pytest.raises(QueueClosedError):
        fan.add_reader(closed)
    fan.close()
    fan.close()  # idempotent
    assert r.closed
    for call in (lambda: fan.add_reader(Queue.open_subscriber(d)), lambda: fan.remove_reader(0),
                 lambda: fan.commit(), lambda: fan.wait(0)):
        with pytest.raises(QueueClosedError):
            call()


def test_next_of_a_closed_fan_in_raises_queue_closed_error(qdirs, writers):
    (d,) = qdirs(1)
    (w,) = writers([d])
    w.append(0, b"x")
    fan = FanInReader([Queue.open_subscriber(d)])
    fan.close()
    with pytest.raises(QueueClosedError):
        fan.next()


# -- property: the merge equals a sort ---------------------------------------------------------

appends = st.lists(
    st.tuples(st.integers(0, 3), st.integers(0, 3), st.integers(0, 40)),  # queue, timestamp step, payload size
    min_size=0, max_size=80,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(1, 4), ops=appends, start=st.integers(0, 50))
def test_merge_of_everything_written_equals_the_sort_by_timestamp_then_source(n, ops, start):
    with tempfile.TemporaryDirectory() as tmp:
        dirs = [os.path.join(tmp, f"q{i}") for i in range(n)]
        ws = [Queue.open_publisher(d, TINY) for d in dirs]
        try:
            last = [start] * n
            written = []
            for q, step, size in ops:
                q %= n
                last[q] += step
                p = bytes((q * 17 + size + j) & 0xFF for j in range(size))
                seq = ws[q].append(size, p, timestamp_ns=last[q])
                written.append((last[q], q, seq, p))
            with FanInReader([Queue.open_subscriber(d) for d in dirs]) as fan:
                got = items(fan)
        finally:
            for w in ws:
                w.close()
    assert got == sorted(written, key=lambda x: (x[0], x[1]))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(1, 4), ops=st.lists(st.tuples(st.integers(0, 3), st.booleans()), max_size=80))
def test_reading_interleaved_with_writing_delivers_everything_once_in_each_queue_order(n, ops):
    with tempfile.TemporaryDirectory() as tmp:
        dirs = [os.path.join(tmp, f"q{i}") for i in range(n)]
        ws = [Queue.open_publisher(d, TINY) for d in dirs]
        got = []
        try:
            with FanInReader([Queue.open_subscriber(d) for d in dirs]) as fan:
                for q, read in ops:
                    ws[q % n].append(0, b"m", timestamp_ns=len(got))
                    if read:
                        item = fan.next()
                        if item is not None:
                            got.append((item[0], item[1].seq))
                got.extend((s, m.seq) for s, m in fan)
            counts = [w.next_seq for w in ws]
        finally:
            for w in ws:
                w.close()
    for q in range(n):
        assert [seq for s, seq in got if s == q] == list(range(counts[q]))
    assert len(got) == sum(counts)
