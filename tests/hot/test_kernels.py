"""The jitted hot path: checksum, append, scan and read_next, called from user ``@numba.njit`` code
against real queue files."""
from __future__ import annotations

import mmap
import os
import struct
import zlib

import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import chronicle_async as ca
from chronicle_async.hot import append as AP
from chronicle_async.hot import checksum as C
from chronicle_async.hot import layout as L
from chronicle_async.hot import read as R
from chronicle_async.hot import status as S
from tests.reference import record_checksum

SEG = 16 * 1024
SEGMENT_FULL = S.SEGMENT_FULL
SCAN_TO_TAIL, SCAN_TO_SEQ, SCAN_TO_TIMESTAMP = R.SCAN_TO_TAIL, R.SCAN_TO_SEQ, R.SCAN_TO_TIMESTAMP


# -- helpers -----------------------------------------------------------------------------------


def map_segment(queue_dir, seg_id: int) -> np.ndarray:
    """A read-only uint8 view of a real segment file, as a reader process would map it."""
    path = os.path.join(queue_dir, L.segment_file_name(seg_id))
    fd = os.open(path, os.O_RDONLY)
    try:
        mm = mmap.mmap(fd, 0, prot=mmap.PROT_READ)
    finally:
        os.close(fd)
    return np.frombuffer(mm, np.uint8)


def expected_payload(i: int) -> bytes:
    n = (i * 37) % 301
    return bytes((i * 7 + j) % 256 for j in range(n))


def read_all(queue_dir):
    with ca.Queue.open_subscriber(queue_dir, start="earliest") as r:
        return [(m.seq, m.type_id, m.timestamp_ns, bytes(m.payload)) for m in r]


# -- checksum ----------------------------------------------------------------------------------


@numba.njit
def _adler_from_njit(buf, start, n):
    return C.adler32(buf, start, n)


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=0, max_size=5000))
def test_jitted_adler32_equals_zlib_for_any_bytes(data):
    arr = np.frombuffer(data, np.uint8) if data else np.zeros(0, np.uint8)
    assert C.adler32(arr, 0, len(data)) == zlib.adler32(data)


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=1, max_size=3000), st.data())
def test_jitted_adler32_of_a_slice_at_any_offset_equals_zlib(data, draw):
    start = draw.draw(st.integers(0, len(data)))
    n = draw.draw(st.integers(0, len(data) - start))
    arr = np.frombuffer(data, np.uint8)
    assert C.adler32(arr, start, n) == zlib.adler32(data[start : start + n])


@pytest.mark.parametrize("n", [0, 1, 31, 32, 33, 63, 64, 65, 4095, 4096, 4097, 8191, 8192, 8193, 20001, 1 << 20])
def test_jitted_adler32_equals_zlib_at_block_and_reduction_boundaries(n):
    rng = np.random.default_rng(n)
    arr = rng.integers(0, 256, n, dtype=np.uint8)
    assert C.adler32(arr, 0, n) == zlib.adler32(arr.tobytes())
    worst = np.full(n, 0xFF, np.uint8)  # largest sums: overflow or a missed modulo shows here
    assert C.adler32(worst, 0, n) == zlib.adler32(worst.tobytes())
    assert _adler_from_njit(worst, 0, n) == zlib.adler32(worst.tobytes())


# -- append from user jitted code ---------------------------------------------------------------


@numba.njit
def _produce(seg, ctl, scratch, first, last):
    """Append messages first..last-1; stop at the first status. Returns (next i, status)."""
    i = first
    while i < last:
        n = (i * 37) % 301
        for j in range(n):
            scratch[j] = (i * 7 + j) % 256
        r = AP.append(seg, ctl, i % 5, scratch[:n], 1000 + i)
        if r < 0:
            return i, r
        i += 1
    return i, 0


@numba.njit
def _append_one(seg, ctl, type_id, payload, ts):
    return AP.append(seg, ctl, type_id, payload, ts)


def _produce_all(w, count):
    scratch = np.zeros(512, np.uint8)
    h = w.hot_handle()
    i, rolls, seqs_before = 0, 0, w.next_seq
    while i < count:
        i, status = _produce(h.seg, h.ctl, scratch, i, count)
        if status == SEGMENT_FULL:
            w.roll()
            rolls += 1
            h = w.hot_handle()
        else:
            assert status == 0, S.NAMES.get(status, status)
    assert w.next_seq == seqs_before + count
    return rolls


def test_jitted_append_with_rolls_is_read_back_exactly_by_the_python_reader(queue_dir):
    count = 400
    with ca.Queue.open_publisher(queue_dir, ca.WriterConfig(segment_size=SEG)) as w:
        rolls = _produce_all(w, count)
        assert rolls >= 3, "the test must cross several segments"
        assert w.segment_id == rolls
        got = read_all(queue_dir)
    assert [g[0] for g in got] == list(range(count))
    for seq, tid, ts, payload in got:
        assert tid == seq % 5
        assert ts == 1000 + seq
        assert payload == expected_payload(seq)


def test_jitted_records_carry_the_zlib_checksum_and_commit_word(queue_dir):
    with ca.Queue.open_publisher(queue_dir, ca.WriterConfig(segment_size=SEG)) as w:
        h = w.hot_handle()
        payload = np.frombuffer(b"checksummed payload" * 3, np.uint8)
        assert _append_one(h.seg, h.ctl, 3, payload, 77) == 0
        seg = map_segment(queue_dir, 0)
        commit, t, seq, ts, n, ck = struct.unpack_from(L.RECORD_HEADER_FORMAT, seg, L.SEGMENT_DATA_OFFSET)
    assert (commit, t, seq, ts, n) == (len(payload) + 1, 3, 0, 77, len(payload))
    assert ck == record_checksum(3, 0, 77, payload.tobytes())


def test_python_and_jitted_appends_interleave_with_contiguous_seqs(queue_dir):
    with ca.Queue.open_publisher(queue_dir, ca.WriterConfig(segment_size=SEG)) as w:
        one = np.frombuffer(b"jit", np.uint8)
        assert w.append(1, b"py0") == 0
        h = w.hot_handle()
        assert _append_one(h.seg, h.ctl, 2, one, 5) == 1
        assert w.append(1, b"py2") == 2
        assert _append_one(h.seg, h.ctl, 2, one, 6) == 3
        assert w.next_seq == 4
        got = read_all(queue_dir)
    assert [(s, t, p) for s, t, _ts, p in got] == [(0, 1, b"py0"), (1, 2, b"jit"), (2, 1, b"py2"), (3, 2, b"jit")]


def test_jitted_append_reports_segment_full_without_writing(queue_dir):
    with ca.Queue.open_publisher(queue_dir, ca.WriterConfig(segment_size=SEG)) as w:
        h = w.hot_handle()
        big = np.full(w.max_payload - 1000, 1, np.uint8)
        assert _append_one(h.seg, h.ctl, 0, big, 1) == 0
        hot_line = slice(L.CTL_WRITE_SEGMENT_OFFSET, L.CTL_HEARTBEAT_NS_OFFSET)  # not the heartbeat: it ticks meanwhile
        before = (w.next_seq, h.ctl[hot_line].copy(), h.seg.copy())
        assert _append_one(h.seg, h.ctl, 0, big, 2) == SEGMENT_FULL
        assert w.next_seq == before[0] and np.array_equal(h.ctl[hot_line], before[1])
        assert np.array_equal(h.seg, before[2])  # nothing written
        w.roll()
        h2 = w.hot_handle()
        assert _append_one(h2.seg, h2.ctl, 0, big, 2) == 1
        got = read_all(queue_dir)
    assert [(s, ts) for s, _t, ts, _p in got] == [(0, 1), (1, 2)]


def test_jitted_append_accepts_exactly_max_payload_and_rejects_one_more(queue_dir):
    with ca.Queue.open_publisher(queue_dir, ca.WriterConfig(segment_size=SEG)) as w:
        h = w.hot_handle()
        too_big = np.zeros(w.max_payload + 1, np.uint8)
        assert _append_one(h.seg, h.ctl, 0, too_big, 1) == S.PAYLOAD_TOO_LARGE
        assert w.next_seq == 0
        exact = np.arange(w.max_payload, dtype=np.int64).astype(np.uint8)
        assert _append_one(h.seg, h.ctl, 0, exact, 1) == 0
        # the segment is now exactly full: anything more needs a roll
        assert _append_one(h.seg, h.ctl, 0, np.zeros(0, np.uint8), 1) == SEGMENT_FULL
        got = read_all(queue_dir)
    assert len(got) == 1 and got[0][3] == exact.tobytes()


@pytest.mark.parametrize("type_id", [-1, -2, L.MAX_TYPE_ID + 1, 1 << 40])
def test_jitted_append_rejects_type_ids_outside_the_user_range(queue_dir, type_id):
    with ca.Queue.open_publisher(queue_dir, ca.WriterConfig(segment_size=SEG)) as w:
        h = w.hot_handle()
        p = np.frombuffer(b"abc", np.uint8)
        assert _append_one(h.seg, h.ctl, type_id, p, 1) == S.BAD_TYPE_ID
        assert w.next_seq == 0
        assert _append_one(h.seg, h.ctl, L.MAX_TYPE_ID, p, 1) == 0  # the top of the range is fine
        got = read_all(queue_dir)
    assert [(s, t) for s, t, _ts, _p in got] == [(0, L.MAX_TYPE_ID)]


def test_a_stale_handle_after_a_roll_never_overwrites_committed_messages(queue_dir):
    with ca.Queue.open_publisher(queue_dir, ca.WriterConfig(segment_size=SEG)) as w:
        h = w.hot_handle()
        for i in range(20):
            w.append(0, b"%02d" % i + b"." * 1000)  # these Python appends roll implicitly
        assert w.segment_id == 1
        result = _append_one(h.seg, h.ctl, 5, np.frombuffer(b"STALE" * 10, np.uint8), 1)
        got = read_all(queue_dir)
    originals = [(s, p) for s, _t, _ts, p in got if s < 20]
    assert originals == [(i, b"%02d" % i + b"." * 1000) for i in range(20)]
    if result >= 0:
        assert [(s, t, p) for s, t, _ts, p in got if s >= 20] == [(result, 5, b"STALE" * 10)]


def test_batch_kernel_stops_at_segment_full_and_resumes_after_a_roll(queue_dir):
    count = 60
    sizes = np.array([(i * 97) % 700 for i in range(count)], np.int64)
    offsets = np.zeros(count + 1, np.int64)
    np.cumsum(sizes, out=offsets[1:])
    data = (np.arange(offsets[-1]) % 251).astype(np.uint8)
    tids = (np.arange(count) % 3).astype(np.int32)
    tss = np.arange(count, dtype=np.int64) + 10
    with ca.Queue.open_publisher(queue_dir, ca.WriterConfig(segment_size=SEG)) as w:
        start, calls = 0, 0
        while start < count:
            h = w.hot_handle()
            done = AP.append_batch(h.seg, h.ctl, tids, data, offsets, tss, start)
            assert done >= 0
            start += done
            calls += 1
            if start < count:
                w.roll()
        assert calls >= 2
        got = read_all(queue_dir)
    assert [g[0] for g in got] == list(range(count))
    for seq, t, ts, p in got:
        assert t == seq % 3 and ts == seq + 10
        assert p == data[offsets[seq] : offsets[seq + 1]].tobytes()


def test_batch_kernel_reports_bad_messages_only_when_nothing_was_appended(queue_dir):
    offsets = np.array([0, 1, 2, 3], np.int64)
    data = np.frombuffer(b"abc", np.uint8)
    tss = np.zeros(3, np.int64)
    with ca.Queue.open_publisher(queue_dir, ca.WriterConfig(segment_size=SEG)) as w:
        h = w.hot_handle()
        tids = np.array([0, -5, 0], np.int32)
        assert AP.append_batch(h.seg, h.ctl, tids, data, offsets, tss, 0) == 1  # message 0, then stop
        assert AP.append_batch(h.seg, h.ctl, tids, data, offsets, tss, 1) == S.BAD_TYPE_ID
        big = np.zeros(w.max_payload + 1, np.uint8)
        assert AP.append_batch(h.seg, h.ctl, np.zeros(1, np.int32), big, np.array([0, big.size], np.int64), tss[:1], 0) == S.PAYLOAD_TOO_LARGE
        assert w.next_seq == 1


# -- scan ----------------------------------------------------------------------------------------


@pytest.fixture
def filled(queue_dir):
    """A queue whose segment 0 holds 20 messages (ts = 1000 + 10*seq), then a writer still open."""
    w = ca.Queue.open_publisher(queue_dir, ca.WriterConfig(segment_size=SEG))
    offsets = []
    off = L.SEGMENT_DATA_OFFSET
    for i in range(20):
        p = bytes([i]) * (i * 13)
        offsets.append(off)
        w.append(i % 4, p, timestamp_ns=1000 + 10 * i)
        off += L.record_length(len(p))
    yield w, queue_dir, offsets, off
    w.close()


def test_scan_to_tail_stops_at_the_first_uncommitted_slot(filled):
    w, d, offsets, tail = filled
    seg = map_segment(d, 0)
    st_, off, last_seq, last_off, count = R.scan(seg, L.SEGMENT_DATA_OFFSET, SCAN_TO_TAIL, 0)
    assert (st_, off, last_seq, last_off, count) == (S.NO_DATA, tail, 19, offsets[19], 20)
    assert R.scan(seg, offsets[5], SCAN_TO_TAIL, 0) == (S.NO_DATA, tail, 19, offsets[19], 15)


def test_scan_to_tail_sees_a_new_commit_through_the_shared_mapping(filled):
    w, d, _offsets, tail = filled
    seg = map_segment(d, 0)
    w.append(0, b"late")
    st_, off, last_seq, last_off, count = R.scan(seg, tail, SCAN_TO_TAIL, 0)
    assert (st_, last_seq, last_off, count) == (S.NO_DATA, 20, tail, 1)
    assert off == tail + L.record_length(4)


@pytest.mark.parametrize("target", [0, 1, 7, 19])
def test_scan_to_seq_stops_at_the_record_with_that_seq(filled, target):
    _w, d, offsets, _tail = filled
    seg = map_segment(d, 0)
    st_, off, last_seq, last_off, count = R.scan(seg, L.SEGMENT_DATA_OFFSET, SCAN_TO_SEQ, target)
    assert st_ == 0 and off == offsets[target] and count == target
    assert last_seq == target - 1
    assert last_off == (offsets[target - 1] if target else -1)


def test_scan_to_a_seq_past_the_tail_reports_no_data_at_the_tail(filled):
    _w, d, _offsets, tail = filled
    seg = map_segment(d, 0)
    assert R.scan(seg, L.SEGMENT_DATA_OFFSET, SCAN_TO_SEQ, 1000)[:2] == (S.NO_DATA, tail)


@pytest.mark.parametrize("target,expect", [(0, 0), (1000, 0), (1001, 1), (1010, 1), (1095, 10), (1190, 19)])
def test_scan_to_timestamp_stops_at_the_first_record_at_or_after_it(filled, target, expect):
    _w, d, offsets, _tail = filled
    seg = map_segment(d, 0)
    st_, off, last_seq, _lo, count = R.scan(seg, L.SEGMENT_DATA_OFFSET, SCAN_TO_TIMESTAMP, target)
    assert (st_, off, last_seq, count) == (0, offsets[expect], expect - 1, expect)


def test_scan_stops_at_the_end_marker_of_a_rolled_segment(filled):
    w, d, offsets, tail = filled
    w.roll()
    seg = map_segment(d, 0)
    st_, off, last_seq, last_off, count = R.scan(seg, L.SEGMENT_DATA_OFFSET, SCAN_TO_TAIL, 0)
    assert (st_, off, last_seq, last_off, count) == (S.END_OF_SEGMENT, tail, 19, offsets[19], 20)
    # a seq or timestamp beyond this segment also ends at the marker
    assert R.scan(seg, L.SEGMENT_DATA_OFFSET, SCAN_TO_SEQ, 10**9)[0] == S.END_OF_SEGMENT
    assert R.scan(seg, L.SEGMENT_DATA_OFFSET, SCAN_TO_TIMESTAMP, 10**18)[0] == S.END_OF_SEGMENT
    # and the new segment starts empty
    seg1 = map_segment(d, 1)
    assert R.scan(seg1, L.SEGMENT_DATA_OFFSET, SCAN_TO_TAIL, 0) == (S.NO_DATA, L.SEGMENT_DATA_OFFSET, -1, -1, 0)
    assert R.first_record(seg1) == (-1, -1)
    assert R.first_record(seg) == (0, 1000)


def test_scan_reports_a_record_whose_length_disagrees_with_its_commit_word(filled):
    _w, d, offsets, _tail = filled
    seg = map_segment(d, 0).copy()  # damage a private copy, not the live file
    struct.pack_into("<I", seg, offsets[6] + L.REC_LENGTH_OFFSET, 999)
    st_, off, last_seq, _lo, count = R.scan(seg, L.SEGMENT_DATA_OFFSET, SCAN_TO_TAIL, 0)
    assert (st_, off, last_seq, count) == (S.CORRUPT, offsets[6], 5, 6)


def test_scan_reports_a_record_that_overruns_the_segment():
    seg = np.zeros(SEG, np.uint8)
    off = SEG - 128
    n = 500
    struct.pack_into(L.RECORD_HEADER_FORMAT, seg, off, n + 1, 0, 0, 0, n, 0)
    assert R.scan(seg, off, SCAN_TO_TAIL, 0)[:2] == (S.CORRUPT, off)


# -- read_next from a jitted consumer -------------------------------------------------------------


@numba.njit
def _consume(seg, off, seqs, tss, tids, sums, lens, k):
    """Read records from ``off`` into the output arrays from index k; returns (code, offset, k)."""
    while k < seqs.shape[0]:
        code, nxt, seq, ts, t, poff, n = R.read_next(seg, off)
        if code != 0:
            return code, off, k
        seqs[k] = seq
        tss[k] = ts
        tids[k] = t
        lens[k] = n
        sums[k] = C.adler32(seg, poff, n)
        off = nxt
        k += 1
    return 0, off, k


def test_jitted_consumer_reads_every_message_across_segments_with_read_next(queue_dir):
    count = 300
    with ca.Queue.open_publisher(queue_dir, ca.WriterConfig(segment_size=SEG)) as w:
        rolls = _produce_all(w, count)
        assert rolls >= 2
        out = [np.zeros(count + 1, np.int64) for _ in range(5)]
        seg_id, off, k, ends = 0, L.SEGMENT_DATA_OFFSET, 0, 0
        while True:
            code, off, k = _consume(map_segment(queue_dir, seg_id), off, *out, k)
            if code == S.END_OF_SEGMENT:
                seg_id, off, ends = seg_id + 1, L.SEGMENT_DATA_OFFSET, ends + 1
                continue
            assert code == S.NO_DATA
            break
        assert ends == rolls and seg_id == w.segment_id
        tail = R.scan(map_segment(queue_dir, seg_id), L.SEGMENT_DATA_OFFSET, SCAN_TO_TAIL, 0)
    seqs, tss, tids, sums, lens = out
    assert k == count
    assert list(seqs[:k]) == list(range(count))
    assert list(tss[:k]) == [1000 + i for i in range(count)]
    assert list(tids[:k]) == [i % 5 for i in range(count)]
    assert list(lens[:k]) == [len(expected_payload(i)) for i in range(count)]
    assert list(sums[:k]) == [zlib.adler32(expected_payload(i)) for i in range(count)]
    assert tail[0] == S.NO_DATA and off == tail[1]


def _synthetic_segment_with_inner_padding() -> tuple[np.ndarray, list[int]]:
    """user(seq 0) | padding (not at the end) | user(seq 1) | end marker to the end of the segment."""
    seg = np.zeros(SEG, np.uint8)
    struct.pack_into(L.SEGMENT_HEADER_FORMAT, seg, 0, L.SEGMENT_MAGIC, L.SEGMENT_VERSION, 0, 1, SEG, 1)
    off = L.SEGMENT_DATA_OFFSET
    starts = []

    def put(type_id, seq, payload_len):
        nonlocal off
        payload = bytes((j * 31 + payload_len) % 256 for j in range(payload_len))
        struct.pack_into(L.RECORD_HEADER_FORMAT, seg, off, payload_len + 1, type_id, seq, 50 + seq, payload_len, record_checksum(type_id, seq, 50 + seq, payload))
        seg[off + L.RECORD_HEADER_LENGTH : off + L.RECORD_HEADER_LENGTH + payload_len] = np.frombuffer(payload, np.uint8)
        starts.append(off)
        off += L.record_length(payload_len)

    put(4, 0, 10)
    put(L.PADDING_TYPE_ID, 1, 100)
    put(5, 1, 20)
    put(L.PADDING_TYPE_ID, 2, SEG - off - L.RECORD_HEADER_LENGTH)
    assert off == SEG
    return seg, starts


def test_read_next_and_scan_skip_padding_that_does_not_end_the_segment():
    seg, starts = _synthetic_segment_with_inner_padding()
    code, nxt, seq, ts, t, poff, n = R.read_next(seg, starts[0])
    assert (code, nxt, seq, ts, t, poff, n) == (0, starts[1], 0, 50, 4, starts[0] + L.RECORD_HEADER_LENGTH, 10)
    code, nxt, seq, ts, t, poff, n = R.read_next(seg, nxt)  # skips the padding
    assert (code, nxt, seq, t, n) == (0, starts[3], 1, 5, 20)
    assert R.read_next(seg, nxt)[:2] == (S.END_OF_SEGMENT, starts[3])
    st_, off, last_seq, last_off, count = R.scan(seg, L.SEGMENT_DATA_OFFSET, SCAN_TO_TAIL, 0)
    assert (st_, off, last_seq, last_off, count) == (S.END_OF_SEGMENT, starts[3], 1, starts[2], 2)
    assert R.scan(seg, L.SEGMENT_DATA_OFFSET, SCAN_TO_SEQ, 1)[:2] == (0, starts[2])


def test_read_next_reports_no_data_and_corrupt_records():
    seg = np.zeros(SEG, np.uint8)
    assert R.read_next(seg, L.SEGMENT_DATA_OFFSET)[0] == S.NO_DATA
    struct.pack_into(L.RECORD_HEADER_FORMAT, seg, L.SEGMENT_DATA_OFFSET, 11, 0, 0, 0, 12, 0)  # commit says 10 bytes
    assert R.read_next(seg, L.SEGMENT_DATA_OFFSET)[:2] == (S.CORRUPT, L.SEGMENT_DATA_OFFSET)
    assert R.peek(seg, L.SEGMENT_DATA_OFFSET) == 11


def test_any_nonzero_finds_dirty_bytes_after_an_offset():
    seg = np.zeros(SEG, np.uint8)
    assert not R.any_nonzero(seg, 0)
    seg[SEG - 1] = 1
    assert R.any_nonzero(seg, 100) and R.any_nonzero(seg, SEG - 1)
    seg[SEG - 1] = 0
    seg[101] = 9
    assert R.any_nonzero(seg, 100) and not R.any_nonzero(seg, 102)
