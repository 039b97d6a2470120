"""HotLoop on real queue folders: the jitted duty cycle and the Python-callback mode.

Most tests drive the loop by hand with ``run_once()`` (no thread, deterministic); a few
start the hot thread. Every jitted test shares ONE handler (``probe``) and one state type,
so the duty cycle is compiled once per process (~4 s); what ``probe`` does per message is
steered by control words in its state.
"""
from __future__ import annotations

import collections
import logging
import os
import time

import numba
import numpy as np
import pytest

from chronicle_async import (
    ArgumentTypeError,
    Backoff,
    BusySpin,
    HandlerError,
    HotLogRecord,
    HotLoop,
    InvalidArgumentError,
    Message,
    Park,
    Queue,
    QueueClosedError,
    WriterConfig,
)
from chronicle_async.hot import layout as L
from chronicle_async.hot import loop as K
from chronicle_async.hot.loop import emit, log, param
from chronicle_async.queue.position import read_reader_position

SMALL = WriterConfig(segment_size=64 * 1024)

# -- the one jitted handler -------------------------------------------------------------------
#
# state = (words: int64[:], data: uint8[:])
# words[:16] are control words, then one record of REC words per handled message;
# `data` receives a copy of every payload, so the test compares real bytes.

C_COUNT = 0  # records written
C_FAIL_SOURCE, C_FAIL_SEQ, C_FAIL_RESULT = 1, 2, 3  # return C_FAIL_RESULT for that message
C_RAISE_SOURCE, C_RAISE_SEQ = 4, 5  # raise ValueError inside numba for that message
C_EMIT = 6  # 1: emit every even type_id to output 0 as type_id + 1000 (same payload, same timestamp)
C_LOG = 7  # 1: log one record per message
C_BYTES = 8  # bytes of `data` used
C_CALLS = 9  # handler calls, including the failing ones
REC0 = 16
REC = 8  # source, type_id, seq, timestamp_ns, length, data offset, param(0) * 1000, emit result
FULL = 99  # result when the records area is full: a test sized wrongly fails loudly


@numba.njit(cache=False)
def probe(state, ctx, source, type_id, seq, timestamp_ns, payload):
    w = state[0]
    data = state[1]
    w[C_CALLS] += 1
    if source == w[C_FAIL_SOURCE] and seq == w[C_FAIL_SEQ]:
        return w[C_FAIL_RESULT]
    if source == w[C_RAISE_SOURCE] and seq == w[C_RAISE_SEQ]:
        raise ValueError("probe was told to raise")
    k = w[C_COUNT]
    n = payload.shape[0]
    at = REC0 + k * REC
    if at + REC > w.shape[0] or w[C_BYTES] + n > data.shape[0]:
        return FULL
    b = w[C_BYTES]
    for j in range(n):
        data[b + j] = payload[j]
    w[C_BYTES] = b + n
    emitted = -1
    if w[C_EMIT] != 0 and type_id % 2 == 0:
        emitted = emit(ctx, 0, type_id + 1000, payload, timestamp_ns)
    if w[C_LOG] != 0:
        log(ctx, K.LOG_INFO, source, seq, type_id, n, 0)
    w[at] = source
    w[at + 1] = type_id
    w[at + 2] = seq
    w[at + 3] = timestamp_ns
    w[at + 4] = n
    w[at + 5] = b
    w[at + 6] = np.int64(param(ctx, 0) * 1000.0)
    w[at + 7] = emitted
    w[C_COUNT] = k + 1
    return 0


Rec = collections.namedtuple("Rec", "source type_id seq timestamp_ns payload param_milli emitted")


def new_state(records: int = 20_000, data_bytes: int = 4 << 20) -> tuple[np.ndarray, np.ndarray]:
    words = np.zeros(REC0 + REC * records, np.int64)
    words[[C_FAIL_SOURCE, C_FAIL_SEQ, C_RAISE_SOURCE, C_RAISE_SEQ]] = -1
    return words, np.zeros(data_bytes, np.uint8)


def records(state) -> list[Rec]:
    words, data = state
    out = []
    for k in range(int(words[C_COUNT])):
        s, t, q, ts, n, b, p, e = (int(x) for x in words[REC0 + k * REC : REC0 + (k + 1) * REC])
        out.append(Rec(s, t, q, ts, bytes(data[b : b + n]), p, e))
    return out


def run_all(loop: HotLoop, limit: int = 10_000) -> int:
    """run_once until a pass handles nothing; the number of passes is bounded, so a bug fails."""
    total = 0
    for _ in range(limit):
        n = loop.run_once()
        if n == 0:
            return total
        total += n
    raise AssertionError(f"run_once still found messages after {limit} passes")


def wait_until(pred, timeout: float = 10.0, what: str = "condition") -> None:
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.001)


def body(qi: int, i: int) -> bytes:
    """A payload of 0..199 bytes that names its queue and index."""
    n = (i * 37 + qi * 11) % 200
    return bytes((qi * 31 + i * 7 + j) & 0xFF for j in range(n))


def pos_file(queue_dir, name: str) -> str:
    return os.path.join(os.fspath(queue_dir), L.READERS_DIR_NAME, name + L.READER_FILE_SUFFIX)


def committed_next_seq(queue_dir, name: str) -> int | None:
    """next_seq of a named reader's committed position, read from its file without taking the name."""
    pos = read_reader_position(pos_file(queue_dir, name))
    return None if pos is None else pos[2]


@pytest.fixture
def loops():
    """Make HotLoops that are always closed at teardown (a failing test never leaves a thread behind)."""
    made: list[HotLoop] = []

    def make(handler=probe, state=None, **kw) -> HotLoop:
        lp = HotLoop(handler, new_state() if state is None and handler is probe else state, **kw)
        made.append(lp)
        return lp

    yield make
    for lp in made:
        try:
            lp.close()
        except HandlerError:
            pass


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


# -- delivery ----------------------------------------------------------------------------------


def test_handler_sees_every_message_of_several_queues_with_its_source_type_seq_timestamp_and_bytes(loops, qdirs):
    dirs = qdirs(3)
    state = new_state()
    loop = loops(probe, state)
    writers = [Queue.open_publisher(d, SMALL) for d in dirs]
    expected = {}
    try:
        for qi, w in enumerate(writers):
            expected[qi] = []
            for i in range(60):
                p, t, ts = body(qi, i), (qi * 100 + i) % 65536, 1_000_000 * qi + 17 * i
                assert w.append(t, p, timestamp_ns=ts) == i
                expected[qi].append((t, i, ts, p))
        sources = [loop.add_reader(Queue.open_subscriber(d, "hot", "earliest"), source=10 * (qi + 1))
                   for qi, d in enumerate(dirs)]
        assert sources == [10, 20, 30]
        assert set(loop.sources) == {10, 20, 30}
        assert run_all(loop) == 180
    finally:
        for w in writers:
            w.close()
    got = collections.defaultdict(list)
    for r in records(state):
        got[r.source].append((r.type_id, r.seq, r.timestamp_ns, r.payload))
    assert {s: got[s] for s in sources} == {10 * (qi + 1): expected[qi] for qi in range(3)}
    assert set(got) == {10, 20, 30}
    assert loop.messages == 180
    assert [loop.delivered(s) for s in sources] == [60, 60, 60]
    assert loop.cycles >= 1


def test_default_source_ids_are_the_slot_numbers(loops, qdirs):
    dirs = qdirs(2)
    loop = loops()
    for d in dirs:
        Queue.open_publisher(d, SMALL).close()
    a = loop.add_reader(Queue.open_subscriber(dirs[0]))
    b = loop.add_reader(Queue.open_subscriber(dirs[1]))
    assert (a, b) == (0, 1)


def test_one_pass_reads_at_most_batch_messages_from_each_source_so_a_busy_queue_cannot_starve_others(loops, qdirs):
    dirs = qdirs(3)
    state = new_state()
    loop = loops(probe, state, batch=8)
    for qi, d in enumerate(dirs):
        with Queue.open_publisher(d, SMALL) as w:
            for i in range(100 if qi == 0 else 20):
                w.append(qi, body(qi, i))
        loop.add_reader(Queue.open_subscriber(d), source=qi)
    assert loop.run_once() == 24
    first = records(state)
    assert [r.source for r in first] == [0] * 8 + [1] * 8 + [2] * 8
    assert loop.run_once() == 24
    assert loop.run_once() == 8 + 4 + 4  # sources 1 and 2 run dry mid-batch
    assert run_all(loop) == 76  # only source 0 is left: 8 per pass
    per = collections.Counter(r.source for r in records(state))
    assert per == {0: 100, 1: 20, 2: 20}
    for s in range(3):
        assert [r.seq for r in records(state) if r.source == s] == list(range(per[s]))


def test_segment_ends_are_crossed_transparently_while_the_writer_rolls_between_passes(loops, qdirs):
    dirs = qdirs(2)
    state = new_state(records=8000, data_bytes=2 << 20)
    loop = loops(probe, state, batch=64)
    w0 = Queue.open_publisher(dirs[0], SMALL)
    w1 = Queue.open_publisher(dirs[1], SMALL)
    try:
        a = loop.add_reader(Queue.open_subscriber(dirs[0]), source=0)
        b = loop.add_reader(Queue.open_subscriber(dirs[1]), source=1)
        i = 0
        while i < 3000:
            for _ in range(97):  # chunks that do not line up with segment ends
                w0.append(7, body(0, i))
                if i % 3 == 0:
                    w1.append(8, body(1, i))
                i += 1
            run_all(loop)
        assert w0.segment_id >= 4, "the test must cross several segment ends"
        run_all(loop)
    finally:
        w0.close()
        w1.close()
    recs = records(state)
    got0 = [(r.seq, r.payload) for r in recs if r.source == a]
    got1 = [(r.seq, r.payload) for r in recs if r.source == b]
    assert got0 == [(k, body(0, k)) for k in range(i)]
    assert got1 == [(k, body(1, j)) for k, j in enumerate(range(0, i, 3))]


# -- segment ends crossed inside the cycle (the next segment mapped ahead) ----------------------


def segment_files(queue_dir) -> list[str]:
    return sorted(n for n in os.listdir(queue_dir) if n.endswith(L.SEGMENT_SUFFIX))


def test_a_thread_reading_a_backlog_of_many_segments_gets_every_message_once_in_order_and_crosses_most_ends_in_cycle(loops, queue_dir):
    state = new_state(records=12_000, data_bytes=2 << 20)
    with Queue.open_publisher(queue_dir, SMALL) as w:
        for i in range(10_000):
            w.append(i % 5, body(0, i), timestamp_ns=i)
        ends = w.segment_id
    assert ends >= 12, "the test must cross many segment ends"
    loop = loops(probe, state, idle=Backoff())
    loop.add_reader(Queue.open_subscriber(queue_dir, "ahead"), source=0)
    loop.start()
    wait_until(lambda: loop.messages == 10_000, what="the whole backlog")
    loop.stop()
    assert [(r.seq, r.type_id, r.payload) for r in records(state)] == [(i, i % 5, body(0, i)) for i in range(10_000)]
    crossed = loop.segment_crossings
    # Segment 1 is mapped ahead when the reader is added; each time the thread leaves the cycle
    # at an end, it maps the segment after the new one: at least every other end is crossed inside.
    assert crossed.in_cycle + crossed.by_exit == ends
    assert crossed.in_cycle >= crossed.by_exit
    assert committed_next_seq(queue_dir, "ahead") == 10_000


def test_a_loop_whose_control_side_maps_ahead_between_passes_crosses_every_segment_end_inside_the_cycle(loops, queue_dir):
    state = new_state(records=12_000, data_bytes=2 << 20)
    with Queue.open_publisher(queue_dir, SMALL) as w:
        for i in range(10_000):
            w.append(7, body(0, i))
        ends = w.segment_id
    loop = loops(probe, state, batch=64)  # fewer messages per pass than a segment holds
    loop.add_reader(Queue.open_subscriber(queue_dir), source=0)
    assert loop.map_ahead() == 1
    assert run_all(loop) == 10_000
    assert [(r.seq, r.payload) for r in records(state)] == [(i, body(0, i)) for i in range(10_000)]
    assert loop.segment_crossings == (ends, 0)


def test_a_reader_whose_next_segment_does_not_exist_yet_crosses_by_leaving_the_cycle_when_it_appears(loops, queue_dir):
    state = new_state()
    loop = loops(probe, state, batch=64)
    # No segments prepared ahead: segment N + 1 is created by the roll that ends segment N.
    with Queue.open_publisher(queue_dir, WriterConfig(segment_size=64 * 1024, prepare_ahead=0)) as w:
        for i in range(100):
            w.append(7, body(0, i))
        loop.add_reader(Queue.open_subscriber(queue_dir), source=0)
        assert loop.map_ahead() == 0, "segment 1 does not exist: nothing to map ahead"
        assert run_all(loop) == 100
        w.roll()  # segment 1 appears, and segment 0 ends, at once: the caught-up reader is at the end
        for i in range(100, 150):
            w.append(7, body(0, i))
        assert segment_files(queue_dir) == ["000000000000" + L.SEGMENT_SUFFIX, "000000000001" + L.SEGMENT_SUFFIX]
        assert run_all(loop) == 50
        assert loop.segment_crossings == (0, 1)
        w.roll()
        for i in range(150, 200):
            w.append(7, body(0, i))
        assert loop.map_ahead() == 1  # segment 2 exists now: the next control step maps it
        assert run_all(loop) == 50
        assert loop.segment_crossings == (1, 1)
    assert [(r.seq, r.payload) for r in records(state)] == [(k, body(0, k)) for k in range(200)]


def test_a_thread_following_a_live_writer_crosses_each_segment_end_once_by_either_path(loops, queue_dir):
    state = new_state(records=8000, data_bytes=2 << 20)
    loop = loops(probe, state, idle=Backoff())
    with Queue.open_publisher(queue_dir, SMALL) as w:
        loop.add_reader(Queue.open_subscriber(queue_dir), source=0)
        loop.start()
        for i in range(6000):
            w.append(3, body(0, i))
            if i % 500 == 0:
                loop.map_ahead()  # the control side's step, from this (non-hot) thread
        wait_until(lambda: loop.messages == 6000, what="6000 messages")
        ends = w.segment_id
    loop.stop()
    assert [(r.seq, r.payload) for r in records(state)] == [(i, body(0, i)) for i in range(6000)]
    assert sum(loop.segment_crossings) == ends


def test_a_reader_taken_back_after_crossings_inside_the_cycle_reads_on_from_its_position(loops, queue_dir):
    state = new_state()
    with Queue.open_publisher(queue_dir, SMALL) as w:
        for i in range(3000):
            w.append(7, body(0, i))
        loop = loops(probe, state, batch=64)
        src = loop.add_reader(Queue.open_subscriber(queue_dir, "back"))
        for _ in range(30):
            loop.run_once()
        assert loop.segment_crossings.in_cycle >= 1
        handled = loop.messages
        r = loop.remove_reader(src)
        try:
            m = r.next()
            assert (m.seq, bytes(m.payload)) == (handled, body(0, handled))
        finally:
            r.close()


# -- handler errors ----------------------------------------------------------------------------


def test_a_non_zero_result_raises_handler_error_naming_source_and_seq_and_the_message_is_redelivered(loops, queue_dir):
    state = new_state()
    words = state[0]
    loop = loops(probe, state)
    with Queue.open_publisher(queue_dir, SMALL) as w:
        for i in range(10):
            w.append(1, b"m%d" % i)
    sid = loop.add_reader(Queue.open_subscriber(queue_dir, "hot"), source=5)
    words[[C_FAIL_SOURCE, C_FAIL_SEQ, C_FAIL_RESULT]] = (5, 4, 42)
    with pytest.raises(HandlerError) as ei:
        loop.run_once()
    e = ei.value
    assert (e.result, e.source, e.seq) == (42, 5, 4)
    assert "seq 4" in str(e) and "source 5" in str(e) and "42" in str(e)
    assert [r.seq for r in records(state)] == [0, 1, 2, 3]
    assert loop.delivered(sid) == 4 and loop.messages == 4
    assert committed_next_seq(queue_dir, "hot") == 4  # the committed position points at it
    with pytest.raises(HandlerError):  # still not consumed: it comes again, and fails again
        loop.run_once()
    assert words[C_CALLS] == 6
    words[C_FAIL_SEQ] = -1  # fixed
    assert run_all(loop) == 6
    assert [r.seq for r in records(state)] == list(range(10))
    assert [r.payload for r in records(state)] == [b"m%d" % i for i in range(10)]


def test_after_a_handler_error_in_the_thread_stop_raises_it_and_a_new_reader_resumes_at_the_failed_message(loops, queue_dir):
    state = new_state()
    words = state[0]
    words[[C_FAIL_SOURCE, C_FAIL_SEQ, C_FAIL_RESULT]] = (0, 7, -3)
    loop = loops(probe, state)
    with Queue.open_publisher(queue_dir, SMALL) as w:
        for i in range(20):
            w.append(1, b"m%d" % i)
    loop.add_reader(Queue.open_subscriber(queue_dir, "hot"), source=0)
    loop.start()
    assert loop.wait_stopped(5.0), "the loop kept running after its handler failed"
    assert isinstance(loop.error, HandlerError) and loop.error.seq == 7 and loop.error.result == -3
    with pytest.raises(HandlerError) as ei:
        loop.stop()
    assert ei.value.seq == 7 and ei.value.source == 0
    assert not loop.running
    assert [r.seq for r in records(state)] == list(range(7))
    events = [(r.event, r.source, r.args[:2]) for r in loop.drain_log()]
    assert ("handler error", 0, (-3, 7)) in events
    loop.close()
    with Queue.open_subscriber(queue_dir, "hot") as r:
        assert r.next_seq == 7
        m = r.next()
        assert (m.seq, bytes(m.payload)) == (7, b"m7")


def test_a_python_exception_raised_inside_the_jitted_handler_stops_the_thread_with_handler_error(loops, queue_dir):
    state = new_state()
    words = state[0]
    words[[C_RAISE_SOURCE, C_RAISE_SEQ]] = (3, 5)
    loop = loops(probe, state)
    with Queue.open_publisher(queue_dir, SMALL) as w:
        for i in range(12):
            w.append(1, b"m%d" % i)
    loop.add_reader(Queue.open_subscriber(queue_dir, "hot"), source=3)
    loop.start()
    assert loop.wait_stopped(5.0), "the loop swallowed the handler's exception and kept running"
    with pytest.raises(HandlerError) as ei:
        loop.stop()
    assert isinstance(ei.value.__cause__, ValueError)
    assert "probe was told to raise" in str(ei.value)
    assert [r.seq for r in records(state)] == list(range(5))
    loop.close()
    with Queue.open_subscriber(queue_dir, "hot") as r:  # the message that raised was not consumed
        assert r.next_seq == 5


def test_run_once_reports_an_exception_raised_inside_the_jitted_handler_as_handler_error(loops, queue_dir):
    state = new_state()
    state[0][[C_RAISE_SOURCE, C_RAISE_SEQ]] = (0, 2)
    loop = loops(probe, state)
    with Queue.open_publisher(queue_dir, SMALL) as w:
        for i in range(4):
            w.append(1, b"m%d" % i)
    loop.add_reader(Queue.open_subscriber(queue_dir), source=0)
    with pytest.raises(HandlerError) as ei:
        loop.run_once()
    assert isinstance(ei.value.__cause__, ValueError)


def die_of_a_jitted_raise(loops, queue_dir):
    """A thread whose handler raises on message seq 5 of source 3 (seqs 0..4 handled, in one batch)."""
    state = new_state()
    state[0][[C_RAISE_SOURCE, C_RAISE_SEQ]] = (3, 5)
    loop = loops(probe, state)
    with Queue.open_publisher(queue_dir, SMALL) as w:
        for i in range(12):
            w.append(1, b"m%d" % i)
    loop.add_reader(Queue.open_subscriber(queue_dir, "hot"), source=3)
    loop.start()
    assert loop.wait_stopped(5.0)
    assert len(records(state)) == 5
    with pytest.raises(HandlerError) as ei:
        loop.stop()
    return loop, ei.value


def test_handler_error_for_a_jitted_exception_names_the_source_and_seq(loops, queue_dir):
    _loop, err = die_of_a_jitted_raise(loops, queue_dir)
    assert (err.source, err.seq) == (3, 5)


def test_messages_handled_before_a_jitted_exception_are_counted(loops, queue_dir):
    loop, _err = die_of_a_jitted_raise(loops, queue_dir)
    assert loop.messages == 5 and loop.delivered(3) == 5


def test_the_position_of_a_message_whose_jitted_handler_raised_is_committed_when_the_loop_stops(loops, queue_dir):
    _loop, _err = die_of_a_jitted_raise(loops, queue_dir)
    assert committed_next_seq(queue_dir, "hot") == 5


# -- the Python-callback mode -----------------------------------------------------------------


class Collector:
    """A Python handler: records what it sees; raises on (source, seq) in ``fail_on``."""

    def __init__(self):
        self.seen: list[tuple[int, int, int, int, bytes]] = []
        self.fail_on: set[tuple[int, int]] = set()
        self.calls = 0

    def __call__(self, source: int, msg: Message) -> None:
        self.calls += 1
        assert isinstance(msg, Message)
        assert isinstance(msg.payload, memoryview) and msg.payload.readonly
        if (source, msg.seq) in self.fail_on:
            raise RuntimeError(f"collector refuses {source}/{msg.seq}")
        self.seen.append((source, msg.seq, msg.type_id, msg.timestamp_ns, bytes(msg.payload)))


def test_python_callback_mode_delivers_message_objects_of_every_queue_in_order(loops, qdirs):
    dirs = qdirs(2)
    cb = Collector()
    loop = loops(cb, batch=16)
    expected = []
    for qi, d in enumerate(dirs):
        with Queue.open_publisher(d, SMALL) as w:
            for i in range(50):
                w.append(qi + 1, body(qi, i), timestamp_ns=1000 * i + qi)
                expected.append((qi, i, qi + 1, 1000 * i + qi, body(qi, i)))
        loop.add_reader(Queue.open_subscriber(d), source=qi)
    assert run_all(loop) == 100
    assert sorted(cb.seen) == sorted(expected)
    for s in (0, 1):
        assert [x[1] for x in cb.seen if x[0] == s] == list(range(50))
    assert loop.messages == 100 and loop.delivered(0) == loop.delivered(1) == 50


def test_python_callback_messages_kept_by_the_handler_stay_valid_after_the_loop_crosses_segment_ends(loops, queue_dir):
    kept: list[Message] = []
    loop = loops(lambda source, msg: kept.append(msg), batch=64)
    with Queue.open_publisher(queue_dir, SMALL) as w:
        loop.add_reader(Queue.open_subscriber(queue_dir))
        for i in range(2000):
            w.append(1, bytes([i & 0xFF]) * 100)
            if i % 300 == 0:
                loop.run_once()
        run_all(loop)
        assert w.segment_id >= 3
    assert [m.seq for m in kept] == list(range(2000))
    assert [bytes(m.payload) for m in kept] == [bytes([i & 0xFF]) * 100 for i in range(2000)]


def test_python_callback_mode_in_the_thread_follows_a_writer_across_segments(loops, queue_dir):
    cb = Collector()
    loop = loops(cb, idle=Park())
    with Queue.open_publisher(queue_dir, SMALL) as w:
        loop.add_reader(Queue.open_subscriber(queue_dir, "cb"), source=0)
        loop.start()
        for i in range(3000):
            w.append(i % 7, body(0, i), timestamp_ns=i)
        wait_until(lambda: loop.messages == 3000, what="3000 messages through the Python callback")
        assert w.segment_id >= 4
    loop.stop()
    assert cb.seen == [(0, i, i % 7, i, body(0, i)) for i in range(3000)]
    assert committed_next_seq(queue_dir, "cb") == 3000


def test_python_callback_exception_stops_with_handler_error_and_no_collected_message_is_lost(loops, qdirs):
    dirs = qdirs(2)
    cb = Collector()
    loop = loops(cb)
    for qi, d in enumerate(dirs):
        with Queue.open_publisher(d, SMALL) as w:
            for i in range(10):
                w.append(1, b"%d/%d" % (qi, i))
        loop.add_reader(Queue.open_subscriber(d, "cb"), source=qi)
    cb.fail_on = {(0, 5)}  # source 1's messages were collected in the same pass, after it
    with pytest.raises(HandlerError) as ei:
        loop.run_once()
    e = ei.value
    assert (e.source, e.seq) == (0, 5)
    assert isinstance(e.__cause__, RuntimeError)
    assert [x[:2] for x in cb.seen] == [(0, i) for i in range(5)]
    assert loop.messages == 5 and loop.delivered(0) == 5 and loop.delivered(1) == 0
    assert committed_next_seq(dirs[0], "cb") == 5
    cb.fail_on = set()
    assert run_all(loop) == 15
    assert collections.Counter(x[:2] for x in cb.seen) == collections.Counter(
        [(0, i) for i in range(10)] + [(1, i) for i in range(10)]
    )
    loop.close()
    for d in dirs:
        with Queue.open_subscriber(d, "cb") as r:
            assert r.next_seq == 10


def test_python_callback_exception_in_the_thread_is_raised_by_stop(loops, queue_dir):
    cb = Collector()
    cb.fail_on = {(0, 3)}
    loop = loops(cb)
    with Queue.open_publisher(queue_dir, SMALL) as w:
        for i in range(8):
            w.append(1, b"x")
    loop.add_reader(Queue.open_subscriber(queue_dir, "cb"), source=0)
    loop.start()
    assert loop.wait_stopped(5.0)
    with pytest.raises(HandlerError) as ei:
        loop.stop()
    assert ei.value.seq == 3 and isinstance(ei.value.__cause__, RuntimeError)
    assert [x[1] for x in cb.seen] == [0, 1, 2]
    loop.close()
    with Queue.open_subscriber(queue_dir, "cb") as r:
        assert r.next_seq == 3


# -- readers in and out ------------------------------------------------------------------------


def test_remove_reader_returns_it_after_the_last_handled_message_with_that_position_committed(loops, queue_dir):
    state = new_state()
    loop = loops(probe, state)
    w = Queue.open_publisher(queue_dir, SMALL)
    try:
        for i in range(20):
            w.append(1, b"a%d" % i)
        sid = loop.add_reader(Queue.open_subscriber(queue_dir, "hot"), source=9)
        assert run_all(loop) == 20
        for i in range(20, 25):  # written, never handled
            w.append(1, b"a%d" % i)
        r = loop.remove_reader(sid)
        assert 9 not in loop.sources
        with pytest.raises(InvalidArgumentError):
            loop.delivered(9)
        assert not r.closed
        assert r.next_seq == 20
        assert committed_next_seq(queue_dir, "hot") == 20
        m = r.next()
        assert (m.seq, bytes(m.payload)) == (20, b"a20")
        r.close()
        with Queue.open_subscriber(queue_dir, "hot") as again:
            assert again.next_seq == 20
        assert loop.run_once() == 0  # the loop no longer reads it
    finally:
        w.close()


def test_readers_can_be_added_and_removed_while_the_thread_runs(loops, qdirs):
    dirs = qdirs(2)
    state = new_state()
    loop = loops(probe, state)
    w0 = Queue.open_publisher(dirs[0], SMALL)
    w1 = Queue.open_publisher(dirs[1], SMALL)
    try:
        loop.start()
        a = loop.add_reader(Queue.open_subscriber(dirs[0], "hot"), source=1)
        for i in range(30):
            w0.append(1, b"x%d" % i)
        wait_until(lambda: loop.delivered(a) == 30, what="30 messages of the first reader")
        b = loop.add_reader(Queue.open_subscriber(dirs[1], "hot"), source=2)
        for i in range(10):
            w1.append(2, b"y%d" % i)
        wait_until(lambda: loop.delivered(b) == 10, what="10 messages of the reader added while running")
        r = loop.remove_reader(a, timeout=2.0)
        assert r.next_seq == 30 and committed_next_seq(dirs[0], "hot") == 30
        w0.append(1, b"x30")  # no longer the loop's
        w1.append(2, b"y10")
        wait_until(lambda: loop.delivered(b) == 11, what="the remaining reader's next message")
        assert r.next().seq == 30
        r.close()
        assert loop.running
        loop.stop()
        events = [(x.event, x.source) for x in loop.drain_log()]
        assert ("reader added", 1) in events and ("reader added", 2) in events and ("reader removed", 1) in events
        assert ("stopped", -1) in events
    finally:
        w0.close()
        w1.close()
    recs = records(state)
    assert [r.payload for r in recs if r.source == 1] == [b"x%d" % i for i in range(30)]
    assert [r.payload for r in recs if r.source == 2] == [b"y%d" % i for i in range(11)]


def test_context_manager_runs_the_loop_and_closes_and_commits_the_readers_it_owns(queue_dir):
    state = new_state()
    with Queue.open_publisher(queue_dir, SMALL) as w:
        reader = Queue.open_subscriber(queue_dir, "cm")
        with HotLoop(probe, state, idle=Park()) as loop:
            assert loop.running
            loop.add_reader(reader)
            for i in range(40):
                w.append(1, b"%d" % i)
            wait_until(lambda: loop.messages == 40, what="40 messages")
        assert reader.closed
        assert not loop.running
    with Queue.open_subscriber(queue_dir, "cm") as r:
        assert r.next_seq == 40
    assert [r.seq for r in records(state)] == list(range(40))


# -- params, outputs, log ----------------------------------------------------------------------


def test_set_param_is_seen_by_the_handler_stopped_and_running(loops, queue_dir):
    state = new_state()
    loop = loops(probe, state, params=[1.5, 0.0])
    assert loop.param(0) == 1.5
    w = Queue.open_publisher(queue_dir, SMALL)
    try:
        loop.add_reader(Queue.open_subscriber(queue_dir))
        w.append(1, b"a")
        run_all(loop)
        loop.set_param(0, 2.25)
        w.append(1, b"b")
        run_all(loop)
        loop.start()
        loop.set_param(0, 7.125)
        wait_until(lambda: loop.param(0) == 7.125, timeout=2.0, what="the hot thread to apply set_param")
        w.append(1, b"c")
        wait_until(lambda: loop.messages == 3, what="the third message")
        loop.stop()
    finally:
        w.close()
    assert [(r.payload, r.param_milli) for r in records(state)] == [(b"a", 1500), (b"b", 2250), (b"c", 7125)]
    with pytest.raises(InvalidArgumentError):
        loop.set_param(2, 1.0)
    with pytest.raises(ArgumentTypeError):
        loop.set_param(0, "fast")
    with pytest.raises(ArgumentTypeError):
        loop.set_param(1.0, 1.0)


@pytest.mark.parametrize("threaded", [False, True], ids=["run_once", "thread"])
def test_emit_writes_exactly_the_decided_messages_to_the_output_across_its_rolls(loops, qdirs, threaded):
    src, out = qdirs(2)
    state = new_state()
    state[0][C_EMIT] = 1
    ow = Queue.open_publisher(out, WriterConfig(segment_size=16 * 1024))
    loop = loops(probe, state, outputs=[ow], emit_headroom=1024)
    inputs = [(i % 5, body(0, i), 10_000 + i) for i in range(1500)]  # type ids 0..4: 0, 2, 4 are emitted
    with Queue.open_publisher(src, SMALL) as w:
        if threaded:
            loop.start()
        loop.add_reader(Queue.open_subscriber(src))
        for t, p, ts in inputs:
            w.append(t, p, timestamp_ns=ts)
        if threaded:
            wait_until(lambda: loop.messages == len(inputs), what="every input handled")
            loop.stop()
        else:
            assert run_all(loop) == len(inputs)
    want = [(t + 1000, p, ts) for t, p, ts in inputs if t % 2 == 0]
    recs = records(state)
    assert [r.emitted for r in recs if r.type_id % 2 == 0] == list(range(len(want)))  # emit returned each seq
    assert all(r.emitted == -1 for r in recs if r.type_id % 2)
    assert ow.segment_id >= 5, "the output must have rolled several times"
    assert ow.next_seq == len(want)
    assert ow.append(1, b"python again") == len(want)  # the writer is still consistent after the loop
    ow.close()
    with Queue.open_subscriber(out) as r:
        got = [(m.seq, m.type_id, bytes(m.payload), m.timestamp_ns) for m in r]
    assert got[:-1] == [(i, t, p, ts) for i, (t, p, ts) in enumerate(want)]
    assert got[-1] == (len(want), 1, b"python again", got[-1][3])


def test_handler_log_records_come_out_of_drain_log_and_a_full_ring_drops_instead_of_stalling(loops, queue_dir):
    state = new_state()
    state[0][C_LOG] = 1
    loop = loops(probe, state, log_capacity=8)
    w = Queue.open_publisher(queue_dir, SMALL)
    try:
        loop.add_reader(Queue.open_subscriber(queue_dir), source=4)
        for i in range(100):
            w.append(i % 3, b"p" * (i % 11))
        before = time.time_ns()
        assert loop.run_once() == 100  # the handler logged 100 times into 8 slots and never waited
        got = loop.drain_log()
        assert 1 <= len(got) <= 8
        assert len(got) + loop.log_dropped == 100
        assert all(isinstance(x, HotLogRecord) for x in got)
        assert [(x.level, x.event, x.source) for x in got] == [(logging.INFO, "user", 4)] * len(got)
        assert [x.args for x in got] == [(i, i % 3, i % 11, 0) for i in range(len(got))]
        assert all(abs(x.timestamp_ns - before) < 5_000_000_000 for x in got)  # the jitted clock is calibrated
        assert loop.drain_log() == []
        dropped = loop.log_dropped
        for i in range(100, 103):
            w.append(0, b"")
        assert loop.run_once() == 3
        assert [x.args[0] for x in loop.drain_log()] == [100, 101, 102]  # the ring works again once drained
        assert loop.log_dropped == dropped
        assert len(records(state)) == 103
    finally:
        w.close()


# -- bad arguments, lifetime -------------------------------------------------------------------


@numba.njit(cache=False)
def two_args(a, b):
    return 0


def test_bad_constructor_arguments_raise_typed_errors():
    with pytest.raises(ArgumentTypeError):
        HotLoop(42)
    with pytest.raises(ArgumentTypeError, match="could not be compiled"):
        HotLoop(two_args, new_state())
    with pytest.raises(InvalidArgumentError):
        HotLoop(probe, new_state(), max_readers=0)
    with pytest.raises(InvalidArgumentError):
        HotLoop(probe, new_state(), max_readers=100_000)
    with pytest.raises(ArgumentTypeError):
        HotLoop(probe, new_state(), max_readers=2.0)
    with pytest.raises(ArgumentTypeError):
        HotLoop(probe, new_state(), idle="spin")
    with pytest.raises(ArgumentTypeError):
        HotLoop(probe, new_state(), idle=BusySpin)  # the class, not an instance
    with pytest.raises(InvalidArgumentError):
        HotLoop(probe, new_state(), batch=0)
    with pytest.raises(InvalidArgumentError):
        HotLoop(probe, new_state(), log_capacity=6)
    with pytest.raises(ArgumentTypeError):
        HotLoop(probe, new_state(), cpu="0")
    with pytest.raises(ArgumentTypeError):
        HotLoop(probe, new_state(), outputs=["not a writer"])
    with pytest.raises(InvalidArgumentError):
        Backoff(park_time=0)
    with pytest.raises(ArgumentTypeError):
        Backoff(spins=1.5)


def test_bad_reader_arguments_raise_typed_errors(loops, qdirs):
    dirs = qdirs(2)
    loop = loops()
    for d in dirs:
        Queue.open_publisher(d, SMALL).close()
    r = Queue.open_subscriber(dirs[0])
    loop.add_reader(r, source=1)
    with pytest.raises(InvalidArgumentError):
        loop.add_reader(r)  # the same reader twice
    other = Queue.open_subscriber(dirs[1])
    with pytest.raises(InvalidArgumentError):
        loop.add_reader(other, source=1)  # a source id in use
    with pytest.raises(ArgumentTypeError):
        loop.add_reader(other, source="two")
    with pytest.raises(ArgumentTypeError):
        loop.add_reader("not a reader")
    with pytest.raises(InvalidArgumentError):
        loop.remove_reader(77)
    with pytest.raises(InvalidArgumentError):
        loop.delivered(77)
    closed = Queue.open_subscriber(dirs[1])
    closed.close()
    with pytest.raises(QueueClosedError):
        loop.add_reader(closed)
    assert loop.add_reader(other, source=2) == 2


def test_more_readers_than_max_readers_is_refused(loops, qdirs):
    dirs = qdirs(3)
    loop = loops(max_readers=2)
    readers = []
    for d in dirs:
        Queue.open_publisher(d, SMALL).close()
        readers.append(Queue.open_subscriber(d))
    loop.add_reader(readers[0])
    loop.add_reader(readers[1])
    with pytest.raises(InvalidArgumentError, match="max_readers"):
        loop.add_reader(readers[2])
    readers[2].close()


def test_a_closed_loop_raises_queue_closed_error_and_closed_its_readers(loops, queue_dir):
    loop = loops()
    Queue.open_publisher(queue_dir, SMALL).close()
    r = Queue.open_subscriber(queue_dir)
    sid = loop.add_reader(r)
    loop.close()
    loop.close()  # idempotent
    assert r.closed
    for call in (lambda: loop.run_once(), lambda: loop.start(), lambda: loop.set_param(0, 1.0),
                 lambda: loop.remove_reader(sid), lambda: loop.add_reader(Queue.open_subscriber(queue_dir))):
        with pytest.raises(QueueClosedError):
            call()
    assert "closed" in repr(loop)


def test_run_once_and_start_refuse_a_running_loop(loops):
    loop = loops()
    loop.start()
    with pytest.raises(InvalidArgumentError):
        loop.run_once()
    with pytest.raises(InvalidArgumentError):
        loop.start()
    loop.stop()
    assert not loop.running
    loop.start()  # a stopped loop starts again
    assert loop.running
    loop.stop()


def test_pinning_to_a_cpu_outside_the_allowed_set_keeps_the_reason_and_runs_unpinned(loops, queue_dir):
    state = new_state()
    bad_cpu = max(os.sched_getaffinity(0)) + 1000
    loop = loops(probe, state, cpu=bad_cpu)
    with Queue.open_publisher(queue_dir, SMALL) as w:
        loop.add_reader(Queue.open_subscriber(queue_dir))

        def start_and_handle_one() -> None:
            loop.start()
            w.append(1, b"still runs")
            wait_until(lambda: loop.messages == 1, what="the unpinned loop to handle a message")

        with pytest.warns(RuntimeWarning, match="could not pin"):
            start_and_handle_one()
    assert loop.pin_error is not None and str(bad_cpu) in loop.pin_error
    loop.stop()


def test_closing_a_reader_the_loop_owns_is_refused_until_it_is_taken_back(tmp_path):
    q = tmp_path / "owned"
    with Queue.open_publisher(q, SMALL) as w:
        w.append(1, b"x")
        reader = Queue.open_subscriber(q, "owned", "earliest")
        loop = HotLoop(probe, new_state(100, 4096))
        try:
            src = loop.add_reader(reader)
            with pytest.raises(InvalidArgumentError, match="remove_reader"):
                reader.close()
            assert not reader.closed
            assert loop.run_once() == 1  # the loop still reads its mapping
            back = loop.remove_reader(src)
            back.close()  # taken back: closing is allowed again
            assert back.closed
        finally:
            loop.close()


def test_closing_an_output_writer_while_the_loop_runs_is_refused(tmp_path):
    with Queue.open_publisher(tmp_path / "in", SMALL) as _w_in, Queue.open_publisher(tmp_path / "out", SMALL) as out:
        loop = HotLoop(probe, new_state(100, 4096), outputs=[out], idle=Park())
        loop.start()
        try:
            with pytest.raises(InvalidArgumentError, match="stop or close the loop"):
                out.close()
            assert not out.closed
        finally:
            loop.close()
        out.close()  # the loop is closed: the writer is the application's again
        assert out.closed
