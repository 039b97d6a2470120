"""Readers opened with ``verify=True`` never deliver a damaged record: every header field and every
payload byte is covered by the record checksum (segment format 2), and seqs must follow in order.

Damage is done in place to real segment files, as a bad disk or a stray write would; the same
records read without ``verify`` show what would have reached the application.
"""
from __future__ import annotations

import logging
import os
import struct
import time
import zlib

import numba
import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from chronicle_async import CorruptSegmentError, DamagedRecordError, FanInReader, HotLoop, Queue, WriterConfig
from chronicle_async.hot import layout as L
from tests.reference import record_checksum, records_on_disk

SEG = 16 * 1024
N = 120


def _payload(i: int) -> bytes:
    return b"message %05d " % i + bytes((i * 7 + j) & 0xFF for j in range(i % 40))


def _fill(queue_dir, n: int = N, start: int = 0) -> None:
    with Queue.open_publisher(queue_dir, WriterConfig(segment_size=SEG)) as w:
        for i in range(start, start + n):
            w.append(i % 5, _payload(i), 1_000_000 + i)


def _records(queue_dir) -> dict[int, tuple[str, int]]:
    """``{seq: (segment file, offset)}`` of every user record (``reference.records_on_disk``)."""
    return {seq: (os.path.join(queue_dir, L.segment_file_name(sid)), off)
            for seq, (sid, off) in records_on_disk(queue_dir).items()}


def _flip(path: str, at: int, bit: int) -> None:
    with open(path, "r+b") as f:
        f.seek(at)
        b = f.read(1)[0]
        f.seek(at)
        f.write(bytes([b ^ (1 << bit)]))


def _rewrite(path: str, off: int, *, seq: int) -> None:
    """Give the record at ``off`` another seq *and a matching checksum*: only the seq rule can tell."""
    with open(path, "r+b") as f:
        f.seek(off)
        head = bytearray(f.read(L.RECORD_HEADER_LENGTH))
        commit, t, _seq, ts, n, _ck = struct.unpack_from(L.RECORD_HEADER_FORMAT, head)
        payload = f.read(n)
        struct.pack_into(L.RECORD_HEADER_FORMAT, head, 0, commit, t, seq, ts, n, record_checksum(t, seq, ts, payload))
        f.seek(off)
        f.write(head)


def _read_all(queue_dir, verify: bool):
    """Every message (seq, type_id, timestamp, payload), and every DamagedRecordError met."""
    got, errors = [], []
    with Queue.open_subscriber(queue_dir, None, "earliest", verify=verify) as r:
        while True:
            try:
                m = r.next()
            except DamagedRecordError as e:
                errors.append(e)
                continue
            if m is None:
                break
            got.append((m.seq, m.type_id, m.timestamp_ns, bytes(m.payload)))
        if verify:
            assert r.damaged == len(errors)
    return got, errors


def _expected(seqs) -> list:
    return [(i, i % 5, 1_000_000 + i, _payload(i)) for i in seqs]


def test_an_undamaged_queue_reads_the_same_with_and_without_verify(queue_dir):
    _fill(queue_dir)
    assert _read_all(queue_dir, True) == (_expected(range(N)), [])
    assert _read_all(queue_dir, False) == (_expected(range(N)), [])


# Every checked byte: type_id, seq, timestamp (the length is also checked structurally) and payload.
_FIELDS = {"type_id": (L.REC_TYPE_ID_OFFSET, 4), "seq": (L.REC_SEQ_OFFSET, 8),
           "timestamp_ns": (L.REC_TIMESTAMP_OFFSET, 8), "payload": (L.RECORD_HEADER_LENGTH, 14)}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(victim=st.integers(0, N - 1), field=st.sampled_from(sorted(_FIELDS)), byte=st.integers(0, 13), bit=st.integers(0, 7))
@example(victim=0, field="type_id", byte=3, bit=7)  # the sign bit: found by hypothesis on 3.13
@example(victim=N - 1, field="seq", byte=7, bit=7)
def test_a_flipped_bit_in_any_header_field_or_payload_is_refused_with_its_seq_and_the_rest_is_delivered(tmp_path_factory, victim, field, byte, bit):
    queue_dir = tmp_path_factory.mktemp("q")
    _fill(queue_dir)
    path, off = _records(queue_dir)[victim]
    start, width = _FIELDS[field]
    _flip(path, off + start + byte % width, bit)
    got, errors = _read_all(queue_dir, True)
    sign_bit = field == "type_id" and byte % width == 3 and bit == 7  # a negative type: malformed before any checksum
    assert [e.reason for e in errors] == ["malformed" if sign_bit else "checksum"]
    e = errors[0]
    assert e.offset == off and e.segment == L.parse_segment_file_name(os.path.basename(path))
    if not (victim == 0 and field == "seq"):  # a reader opened at "earliest" takes its first seq from that header
        assert e.expected_seq == victim
    assert isinstance(e, CorruptSegmentError) and path in str(e)
    assert got == _expected(i for i in range(N) if i != victim)  # nothing else lost, nothing damaged delivered
    if sign_bit:  # structural damage: every reader refuses it, verify or not
        with pytest.raises(CorruptSegmentError, match="malformed"):
            _read_all(queue_dir, False)
        return
    plain, _ = _read_all(queue_dir, False)
    assert len(plain) == N and plain != _expected(range(N))  # without verify the damage reaches the application


def test_a_seq_that_goes_back_is_refused_even_with_a_matching_checksum(queue_dir):
    _fill(queue_dir)
    path, off = _records(queue_dir)[50]
    _rewrite(path, off, seq=20)
    got, errors = _read_all(queue_dir, True)
    assert [(e.reason, e.seq, e.expected_seq) for e in errors] == [("seq went back", 20, 50)]
    assert got == _expected(i for i in range(N) if i != 50)
    assert 20 in [s for s, *_ in _read_all(queue_dir, False)[0][45:55]]  # without verify: seq 20 twice


def test_a_seq_that_jumps_forward_with_no_padding_before_it_is_refused(queue_dir):
    _fill(queue_dir)
    where = _records(queue_dir)
    path, off = where[50]
    assert where[49][0] == path, "the jump must be inside one segment for this case"
    _rewrite(path, off, seq=5_000)
    got, errors = _read_all(queue_dir, True)
    assert [(e.reason, e.seq, e.expected_seq) for e in errors] == [("seq jumped forward", 5_000, 50)]
    assert got == _expected(i for i in range(N) if i != 50)


def test_a_gap_left_by_a_repaired_hole_is_not_damage(queue_dir):
    _fill(queue_dir, 250)
    where = _records(queue_dir)
    path, off = where[100]
    with open(path, "r+b") as f:  # zero the commit word: a hole with intact records after it
        f.seek(off)
        f.write(b"\0\0\0\0")
    with Queue.open_publisher(queue_dir, repair=True) as w:
        assert [(h.seq, h.next_seq) for h in w.recovery.holes] == [(100, 101)]
    got, errors = _read_all(queue_dir, True)
    assert errors == []
    assert [g[0] for g in got] == [i for i in range(250) if i != 100]


def test_verify_follows_the_seqs_across_segments_and_writer_sessions(queue_dir):
    _fill(queue_dir, 200)
    _fill(queue_dir, 200, start=200)  # a second writer session continues the seqs
    assert len({p for p, _ in _records(queue_dir).values()}) >= 3
    assert _read_all(queue_dir, True) == (_expected(range(400)), [])


def test_a_verifying_reader_moves_past_a_damaged_record_and_commits_after_it(queue_dir):
    _fill(queue_dir)
    path, off = _records(queue_dir)[3]
    _flip(path, off + L.RECORD_HEADER_LENGTH, 0)
    with Queue.open_subscriber(queue_dir, "svc", "earliest", verify=True) as r:
        assert [r.next().seq for _ in range(3)] == [0, 1, 2]
        with pytest.raises(DamagedRecordError) as e:
            r.next()
        assert e.value.expected_seq == 3 and r.damaged == 1
        assert r.next().seq == 4
        r.commit()
    with Queue.open_subscriber(queue_dir, "svc", verify=True) as r:
        assert r.next().seq == 5


def test_a_fan_in_reader_of_verifying_readers_raises_the_damage_and_goes_on(tmp_path):
    qa, qb = tmp_path / "a", tmp_path / "b"
    _fill(qa, 10)
    _fill(qb, 10)
    path, off = _records(qa)[4]
    _flip(path, off + L.REC_TIMESTAMP_OFFSET, 3)
    readers = [Queue.open_subscriber(q, None, "earliest", verify=True) for q in (qa, qb)]
    seen, damaged = [], []
    with FanInReader(readers) as fan:
        while True:
            try:
                item = fan.next()
            except DamagedRecordError as e:
                damaged.append(e.expected_seq)
                continue
            if item is None:
                break
            seen.append(item)
    assert damaged == [4] and len(seen) == 19


@numba.njit(cache=False)
def _note(state, ctx, source, type_id, seq, timestamp_ns, payload):
    """Record (source, seq, first payload byte) of every message handled."""
    k = state[0, 0] + 1
    state[k, 0] = source
    state[k, 1] = seq
    state[k, 2] = payload[0]
    state[0, 0] = k
    return 0


@pytest.mark.parametrize("threaded", [False, True], ids=["run_once", "thread"])
def test_a_hot_loop_skips_and_counts_damaged_records_of_verifying_sources_and_logs_their_seqs(tmp_path, threaded):
    qa, qb = tmp_path / "a", tmp_path / "b"
    _fill(qa)
    _fill(qb)
    path, off = _records(qa)[7]
    _flip(path, off + L.RECORD_HEADER_LENGTH, 0)  # payload byte 0 of seq 7: a checksum failure
    path, off = _records(qb)[60]
    _rewrite(path, off, seq=10)  # a seq that goes back, with a checksum to match
    for verify in (True, False):
        state = np.zeros((2 * N + 8, 3), np.int64)
        loop = HotLoop(_note, state)
        try:
            for src, q in enumerate((qa, qb)):
                loop.add_reader(Queue.open_subscriber(q, None, "earliest", verify=verify), source=src)
            if threaded:
                loop.start()
                deadline = time.monotonic() + 30
                while loop.delivered(0) + loop.damaged(0) < N or loop.delivered(1) + loop.damaged(1) < N:
                    assert time.monotonic() < deadline, "the hot loop did not reach the end of both queues"
                    time.sleep(0.0005)
                loop.stop()
            else:
                while loop.run_once():
                    pass
            seen = {(int(s), int(q)) for s, q, _b in state[1 : state[0, 0] + 1]}
            if verify:
                assert [loop.damaged(0), loop.damaged(1)] == [1, 1]
                assert seen == {(0, i) for i in range(N) if i != 7} | {(1, i) for i in range(N) if i != 60}
                events = [r for r in loop.drain_log() if r.event == "damaged record"]
                assert sorted((r.source, r.args[2], r.args[3]) for r in events) == [(0, 7, 7), (1, 10, 60)]
                assert all(r.level == logging.ERROR for r in events)
            else:
                assert [loop.damaged(0), loop.damaged(1)] == [0, 0]
                assert int(state[0, 0]) == 2 * N  # without verify both damaged records reach the handler
                assert (1, 10) in [(int(s), int(q)) for s, q, _b in state[1 : state[0, 0] + 1]]
        finally:
            loop.close()


def test_verify_must_be_a_bool(queue_dir):
    _fill(queue_dir, 1)
    with pytest.raises(TypeError, match="verify"):
        Queue.open_subscriber(queue_dir, None, verify="yes")


# -- segment format version 1 (payload-only checksums) is still read and continued ------------


def _downgrade_to_version_1(queue_dir) -> None:
    """Rewrite every segment as format 1 wrote it: version 1 header, checksums over payloads only."""
    for name in os.listdir(queue_dir):
        if L.parse_segment_file_name(name) is None:
            continue
        path = os.path.join(queue_dir, name)
        data = bytearray(open(path, "rb").read())
        struct.pack_into("<I", data, L.SEG_VERSION_OFFSET, 1)
        off = L.SEGMENT_DATA_OFFSET
        while off + L.RECORD_HEADER_LENGTH <= len(data):
            (commit,) = struct.unpack_from("<i", data, off)
            if commit <= 0:
                break
            (t,) = struct.unpack_from("<i", data, off + L.REC_TYPE_ID_OFFSET)
            n = commit - 1
            if t >= 0:
                ck = zlib.adler32(bytes(data[off + L.RECORD_HEADER_LENGTH : off + L.RECORD_HEADER_LENGTH + n]))
                struct.pack_into("<I", data, off + L.REC_CHECKSUM_OFFSET, ck)
            off += L.record_length(n)
        open(path, "wb").write(data)


def _versions(queue_dir) -> dict[int, int]:
    out = {}
    for name in os.listdir(queue_dir):
        sid = L.parse_segment_file_name(name)
        if sid is not None:
            out[sid] = struct.unpack_from("<I", open(os.path.join(queue_dir, name), "rb").read(8), L.SEG_VERSION_OFFSET)[0]
    return out


def test_version_1_segments_are_verified_by_their_payload_checksum_and_a_writer_continues_in_a_new_segment(queue_dir):
    _fill(queue_dir, 100)
    _downgrade_to_version_1(queue_dir)
    assert set(_versions(queue_dir).values()) == {1}
    assert _read_all(queue_dir, True) == (_expected(range(100)), [])
    path, off = _records(queue_dir)[30]
    _flip(path, off + L.RECORD_HEADER_LENGTH + 2, 5)  # a payload flip is still caught in format 1
    got, errors = _read_all(queue_dir, True)
    assert [e.expected_seq for e in errors] == [30] and len(got) == 99
    _flip(path, off + L.RECORD_HEADER_LENGTH + 2, 5)  # undo
    head = max(_versions(queue_dir))
    _fill(queue_dir, 50, start=100)  # the new writer must not add format 2 records to a format 1 segment
    versions = _versions(queue_dir)
    assert versions[head] == 1 and all(v == 2 for sid, v in versions.items() if sid > head)
    assert _read_all(queue_dir, True) == (_expected(range(150)), [])


# -- damage that stops reading: a hole (zero commit word) or a malformed record in an older segment --


def _older_segment_records(queue_dir, n: int = 600) -> tuple[dict, int, list[int]]:
    """Fill 4+ segments; return the records, the id of the oldest (never scanned by recovery) and its seqs."""
    _fill(queue_dir, n)
    where = _records(queue_dir)
    segments = sorted({L.parse_segment_file_name(os.path.basename(p)) for p, _ in where.values()})
    assert len(segments) >= 4, "recovery scans the head and the one before it; the damage must be older"
    oldest = segments[0]
    return where, oldest, sorted(s for s, (p, _o) in where.items() if L.parse_segment_file_name(os.path.basename(p)) == oldest)


@pytest.mark.parametrize("damage", ["commit word", "page", "malformed"])
def test_a_reader_never_waits_forever_at_damage_in_a_segment_the_writer_has_left(queue_dir, damage):
    where, oldest, victims = _older_segment_records(queue_dir)
    victim = victims[len(victims) // 3]
    path, off = where[victim]
    with open(path, "r+b") as f:
        if damage == "commit word":
            f.seek(off)
            f.write(bytes(4))
        elif damage == "page":  # a 4 KiB page lost in a power cut: every record starting in it is gone
            f.seek(off & ~4095)
            f.write(bytes(4096))
        else:
            f.seek(off + L.REC_LENGTH_OFFSET)
            f.write(struct.pack("<i", 9_999))
    lost = {s for s, (p, o) in where.items() if p == path and (o == off if damage != "page" else o >> 12 == off >> 12)}
    if damage == "page":
        lost |= {s for s, (p, o) in where.items() if p == path and o < off and o + L.record_length(len(_payload(s))) > (off & ~4095)}
    with Queue.open_publisher(queue_dir) as w:  # recovery does not scan the oldest segments: it opens
        w.append(0, b"after")
    # a plain reader stops there with a typed error instead of returning None for ever
    with Queue.open_subscriber(queue_dir, None, "earliest") as r:
        seqs = []
        with pytest.raises(CorruptSegmentError) as e:
            while (m := r.next()) is not None:
                seqs.append(m.seq)
        assert seqs == list(range(min(lost)))
        assert path in str(e.value) and "verify=True" in str(e.value)
    # a verifying reader skips the damage, says what it expected, and reaches the end
    got, errors = _read_all(queue_dir, True)
    reason = {"commit word": "hole", "page": "hole", "malformed": "malformed"}[damage]
    assert [(e.reason, e.expected_seq) for e in errors] == [(reason, min(lost))]
    assert [g[0] for g in got] == [s for s in range(601) if s not in lost]


def test_a_reader_racing_a_writer_that_rolls_often_never_mistakes_a_segment_end_for_a_hole(queue_dir):
    import threading

    count = 30_000
    with Queue.open_publisher(queue_dir, WriterConfig(segment_size=SEG)) as w:
        r = Queue.open_subscriber(queue_dir, None, "earliest")

        def write() -> None:
            for i in range(count):
                w.append(1, b"%06d" % i)

        t = threading.Thread(target=write)
        t.start()
        seqs = 0
        try:
            while seqs < count:
                m = r.next()  # raises CorruptSegmentError on a false hole
                if m is not None:
                    assert m.seq == seqs
                    seqs += 1
        finally:
            t.join()
            r.close()
        assert w.segment_id > 50  # many segment ends were crossed at the live tail


@pytest.mark.parametrize("damage", ["commit word", "malformed"])
def test_a_hot_loop_source_skips_damage_that_stops_reading_when_verifying_and_stops_with_a_typed_error_otherwise(queue_dir, damage):
    where, oldest, victims = _older_segment_records(queue_dir)
    victim = victims[len(victims) // 2]
    path, off = where[victim]
    with open(path, "r+b") as f:
        f.seek(off if damage == "commit word" else off + L.REC_LENGTH_OFFSET)
        f.write(bytes(4) if damage == "commit word" else struct.pack("<i", 9_999))
    for verify in (True, False):
        state = np.zeros((N * 6, 3), np.int64)
        loop = HotLoop(_note, state)
        try:
            loop.add_reader(Queue.open_subscriber(queue_dir, None, "earliest", verify=verify), source=0)
            if verify:
                for _ in range(100_000):
                    if not loop.run_once() and loop.damaged(0):
                        break
                while loop.run_once():
                    pass
                assert loop.damaged(0) == 1
                assert [int(q) for q in state[1 : state[0, 0] + 1, 1]] == [s for s in range(600) if s != victim]
                events = [r for r in loop.drain_log() if r.event == "damaged record"]
                assert [(r.args[0], r.args[1], r.args[3]) for r in events] == [(oldest, off, victim)]
            else:
                with pytest.raises(CorruptSegmentError, match="verify=True"):
                    for _ in range(100_000):
                        loop.run_once()
                assert int(state[0, 0]) == victim  # delivered up to the damage, nothing after it
        finally:
            loop.close()


def test_seqs_that_recovery_skips_are_announced_by_padding_so_a_verifying_reader_takes_the_jump(queue_dir):
    _fill(queue_dir, 10)
    with open(os.path.join(queue_dir, L.CONTROL_FILE_NAME), "r+b") as f:
        f.seek(L.CTL_NEXT_SEQ_OFFSET)  # seqs 10..14 were committed (and maybe read), then lost in a power cut
        f.write(struct.pack("<q", 15))
    with Queue.open_publisher(queue_dir) as w:
        assert w.recovery.next_seq == 15
        assert w.append(0, b"after") == 15  # never a seq a reader may have seen
    got, errors = _read_all(queue_dir, True)
    assert errors == [] and [g[0] for g in got] == list(range(10)) + [15]
