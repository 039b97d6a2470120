"""Recovery never hides an intact committed record and never reuses a seq: a torn tail is told
from a hole in committed data, a hole is a typed error, and a repair says what it skipped.

The files are real segment files damaged in place, as a bad disk or a stray write would.
"""
from __future__ import annotations

import hashlib
import os
import struct

import pytest

from chronicle_async import CorruptRecordError, CorruptSegmentError, Queue, WriterConfig
from chronicle_async.hot import layout as L
from tests.reference import records_on_disk

SEG = 16 * 1024
N = 250


_records = records_on_disk


def _fill(queue_dir, n: int = N) -> dict[int, tuple[int, int]]:
    with Queue.open_publisher(queue_dir, WriterConfig(segment_size=SEG)) as w:
        for i in range(n):
            w.append(1, b"message %05d " % i + bytes(20))
    return _records(queue_dir)


def _poke(queue_dir, seg: int, off: int, fmt: str, value) -> None:
    with open(os.path.join(queue_dir, L.segment_file_name(seg)), "r+b") as f:
        f.seek(off)
        f.write(struct.pack(fmt, value))


def _digest(queue_dir) -> str:
    h = hashlib.sha256()
    for name in sorted(os.listdir(queue_dir)):
        p = os.path.join(queue_dir, name)
        if os.path.isfile(p) and name != L.WRITER_LOCK_NAME:
            h.update(name.encode() + open(p, "rb").read())
    return h.hexdigest()


def _seqs(queue_dir) -> list[int]:
    with Queue.open_subscriber(queue_dir, None, "earliest") as r:
        return [m.seq for m in r]


def test_a_damaged_length_in_the_head_segment_with_intact_records_after_it_is_a_typed_error_that_changes_nothing(queue_dir):
    where = _fill(queue_dir)
    seg, off = where[196]
    assert where[249][0] == seg, "the damage must be in the head segment for this case"
    _poke(queue_dir, seg, off + L.REC_LENGTH_OFFSET, "<i", 7)  # length != commit - 1: malformed
    before = _digest(queue_dir)
    with pytest.raises(CorruptRecordError) as e:
        Queue.open_publisher(queue_dir)
    err = e.value
    assert (err.segment, err.offset, err.seq) == (seg, off, 196)
    assert (err.next_offset, err.next_seq) == (where[197][1], 197)
    assert isinstance(err, CorruptSegmentError)
    assert str(seg) in str(err) and str(off) in str(err) and "repair=True" in str(err)
    assert _digest(queue_dir) == before, "a refused recovery must not change a byte"


def test_a_repair_covers_only_the_damaged_record_keeps_the_rest_and_never_reuses_a_seq(queue_dir):
    where = _fill(queue_dir)
    seg, off = where[196]
    _poke(queue_dir, seg, off + L.REC_LENGTH_OFFSET, "<i", 7)
    with Queue.open_publisher(queue_dir, repair=True) as w:
        rep = w.recovery
        assert [(h.segment, h.offset, h.next_offset, h.seq, h.next_seq) for h in rep.holes] == [
            (seg, off, where[197][1], 196, 197)]
        assert rep.next_seq == N and not rep.clean
        assert w.append(1, b"after") == N
    assert _seqs(queue_dir) == [s for s in range(N + 1) if s != 196]  # 197..249 kept, 250 new


def test_a_zeroed_commit_word_in_the_segment_before_the_head_is_a_hole_not_a_crash_mid_roll(queue_dir):
    where = _fill(queue_dir)
    head = where[N - 1][0]
    victim = next(s for s in range(N) if where[s][0] == head - 1 and where.get(s + 1, (None,))[0] == head - 1)
    seg, off = where[victim]
    _poke(queue_dir, seg, off + L.REC_COMMIT_OFFSET, "<i", 0)
    before = _digest(queue_dir)
    with pytest.raises(CorruptRecordError) as e:
        Queue.open_publisher(queue_dir)
    assert (e.value.segment, e.value.offset, e.value.seq, e.value.next_seq) == (seg, off, victim, victim + 1)
    assert _digest(queue_dir) == before
    with Queue.open_publisher(queue_dir, repair=True) as w:
        assert [h.seq for h in w.recovery.holes] == [victim] and w.recovery.sealed is None
        assert w.append(1, b"after") == N
    assert _seqs(queue_dir) == [s for s in range(N + 1) if s != victim]


def test_a_tail_record_that_fails_its_checksum_is_covered_and_its_seq_is_not_given_again(queue_dir):
    where = _fill(queue_dir)
    seg, off = where[N - 1]
    _poke(queue_dir, seg, off + L.RECORD_HEADER_LENGTH, "<B", 0xEE)  # one payload byte: a torn tail
    with Queue.open_publisher(queue_dir) as w:
        rep = w.recovery
        assert rep.torn_tail == (seg, off) and rep.skipped_seq == N - 1 and not rep.holes
        assert w.append(1, b"after") == N  # not N - 1: a reader may have seen N - 1 already
    assert _seqs(queue_dir) == list(range(N - 1)) + [N]


def test_a_clean_queue_recovers_with_nothing_to_report(queue_dir):
    _fill(queue_dir)
    with Queue.open_publisher(queue_dir) as w:
        assert w.recovery.clean and w.recovery.next_seq == N
        assert w.append(1, b"x") == N


def test_a_half_written_record_of_a_killed_writer_is_still_a_torn_tail(queue_dir):
    """The common crash: payload bytes written, commit word still 0, writer never closed."""
    where = _fill(queue_dir, 20)
    seg, off = where[19]
    tail = off + L.record_length(len(b"message %05d " % 19 + bytes(20)))
    with open(os.path.join(queue_dir, L.segment_file_name(seg)), "r+b") as f:
        f.seek(tail + L.REC_TYPE_ID_OFFSET)
        f.write(struct.pack("<iqqII", 1, 20, 0, 28, 0) + b"half-written payload bytes..")
    with open(os.path.join(queue_dir, L.CONTROL_FILE_NAME), "r+b") as f:
        f.seek(L.CTL_WRITER_STATE_OFFSET)
        f.write(struct.pack("<I", L.WRITER_STATE_OPEN))
    with Queue.open_publisher(queue_dir) as w:
        assert w.recovery.torn_tail == (seg, tail) and not w.recovery.holes
        assert w.append(1, b"after") == 20
    assert _seqs(queue_dir) == list(range(21))


def test_a_repair_flag_that_is_not_a_bool_is_refused(queue_dir):
    from chronicle_async import ArgumentTypeError

    with pytest.raises(ArgumentTypeError, match="repair"):
        Queue.open_publisher(queue_dir, repair="yes")


@pytest.mark.parametrize("case", range(24))
def test_any_single_damaged_record_before_the_last_is_refused_then_repaired_losing_only_its_seq(tmp_path, case):
    """Seeded random damage (zeroed commit word, wrong length, commit word against length, or a
    flipped bit in a checksummed header field or the payload) of one record anywhere in the last
    two segments, but not the last record: always a hole, never a tail."""
    import random

    rng = random.Random(case)
    q = str(tmp_path / "q")
    where = _fill(q)
    head = where[N - 1][0]
    candidates = [s for s in range(N - 1) if where[s][0] >= head - 1]
    victim = rng.choice(candidates)
    seg, off = where[victim]
    how = rng.choice(["commit", "length", "type", "payload", "timestamp", "type_id"])
    flip_at = {"payload": L.RECORD_HEADER_LENGTH + rng.randrange(14), "timestamp": L.REC_TIMESTAMP_OFFSET + rng.randrange(8),
               "type_id": L.REC_TYPE_ID_OFFSET}.get(how)
    if flip_at is not None:
        path = os.path.join(q, L.segment_file_name(seg))
        data = bytearray(open(path, "rb").read())
        data[off + flip_at] ^= 1 << rng.randrange(7)
        open(path, "r+b").write(data)
    elif how == "commit":
        _poke(q, seg, off + L.REC_COMMIT_OFFSET, "<i", 0)
    elif how == "length":
        _poke(q, seg, off + L.REC_LENGTH_OFFSET, "<i", rng.randrange(1000, 5000))
    else:
        _poke(q, seg, off + L.REC_COMMIT_OFFSET, "<i", 1 << 30)  # commit word disagrees with the length
    before = _digest(q)
    with pytest.raises(CorruptRecordError) as e:
        Queue.open_publisher(q)
    assert (e.value.segment, e.value.offset, e.value.seq, e.value.next_seq) == (seg, off, victim, victim + 1), how
    assert _digest(q) == before
    with Queue.open_publisher(q, repair=True) as w:
        assert [h.seq for h in w.recovery.holes] == [victim]
        assert w.append(1, b"after") == N
    assert _seqs(q) == [s for s in range(N + 1) if s != victim]


@pytest.mark.parametrize("blank", ["empty", "zeros"])
def test_a_newest_segment_left_blank_by_a_power_cut_is_created_again_and_nothing_older_is_touched(queue_dir, blank):
    where = _fill(queue_dir)
    head = max(seg for seg, _off in where.values())
    in_head = sorted(seq for seq, (seg, _off) in where.items() if seg == head)
    path = os.path.join(queue_dir, L.segment_file_name(head))
    with open(path, "r+b") as f:  # what a power cut leaves of a file whose contents never reached the disk
        if blank == "empty":
            f.truncate(0)
        else:
            f.write(bytes(os.path.getsize(path)))
    with Queue.open_publisher(queue_dir) as w:
        assert w.recovery.recreated == (head,) and not w.recovery.clean
        seq = w.append(1, b"after the cut")
    assert seq >= in_head[0]  # the lost messages' seqs are never below what the disk still holds
    seqs = _seqs(queue_dir)
    assert seqs == list(range(in_head[0])) + [seq]  # everything before the blank segment is intact


def test_a_blank_segment_older_than_the_head_is_created_again_and_readers_meet_it_as_a_hole(queue_dir):
    from chronicle_async import DamagedRecordError

    where = _fill(queue_dir, 600)
    segments = sorted({seg for seg, _off in where.values()})
    assert len(segments) >= 3, "the blank segment must be older than the head's predecessor"
    lost = sorted(seq for seq, (seg, _off) in where.items() if seg == segments[0])
    path = os.path.join(queue_dir, L.segment_file_name(segments[0]))
    with open(path, "r+b") as f:
        f.truncate(0)  # a file whose contents never reached the disk
    with Queue.open_publisher(queue_dir) as w:
        assert w.recovery.recreated == (segments[0],)
    assert os.path.getsize(path) == SEG  # a valid, empty segment again: nothing was there to keep
    with pytest.raises(CorruptSegmentError, match="moved on"):
        _seqs(queue_dir)  # a plain reader says data is missing there instead of waiting for ever
    with Queue.open_subscriber(queue_dir, None, "earliest", verify=True) as r:
        with pytest.raises(DamagedRecordError) as e:
            r.next()
        assert e.value.reason == "hole" and e.value.segment == segments[0]
        assert [m.seq for m in r] == list(range(lost[-1] + 1, 600))


@pytest.mark.parametrize("stale_head", [False, True], ids=["head-is-next", "control-file-behind"])
def test_a_lost_segment_end_with_data_in_a_later_segment_is_a_hole_not_a_tail(queue_dir, stale_head):
    """A power cut kept a later segment's records but lost the end of an earlier one (its end marker
    included). Taking that for a torn tail would make the writer append over the later records."""
    where = _fill(queue_dir, 600)
    segments = sorted({seg for seg, _off in where.values()})
    victim_seg = segments[-2]  # the head's predecessor: the later segment holds data
    in_victim = sorted(seq for seq, (seg, _off) in where.items() if seg == victim_seg)
    first_lost = in_victim[len(in_victim) // 2]
    _seg, off = where[first_lost]
    path = os.path.join(queue_dir, L.segment_file_name(victim_seg))
    with open(path, "r+b") as f:
        f.seek(off)
        f.write(bytes(SEG - off))  # the rest of the segment, end marker included, never reached the disk
    if stale_head:  # and the control file is from before the roll
        with open(os.path.join(queue_dir, L.CONTROL_FILE_NAME), "r+b") as f:
            f.seek(L.CTL_WRITE_SEGMENT_OFFSET)
            f.write(struct.pack("<qqq", victim_seg, off, first_lost))
    next_first = min(seq for seq, (seg, _o) in where.items() if seg > victim_seg)
    before = _digest(queue_dir)
    with pytest.raises(CorruptRecordError) as e:
        Queue.open_publisher(queue_dir)
    assert (e.value.segment, e.value.offset, e.value.seq, e.value.next_seq) == (victim_seg, off, first_lost, next_first)
    assert _digest(queue_dir) == before  # nothing changed
    with Queue.open_publisher(queue_dir, repair=True) as w:
        assert [(h.segment, h.seq, h.next_seq) for h in w.recovery.holes] == [(victim_seg, first_lost, next_first)]
        assert w.append(1, b"after") == 600  # after every seq on disk: none is reused, nothing overwritten
    lost = set(range(first_lost, next_first))
    assert _seqs(queue_dir) == [s for s in range(601) if s not in lost]


def test_the_next_seq_is_after_every_intact_record_even_past_damage_in_a_segment_recovery_does_not_repair(queue_dir):
    with Queue.open_publisher(queue_dir, WriterConfig(segment_size=SEG)) as w:
        for i in range(600):
            w.append(1, b"message %05d " % i + bytes(20))
        last_data = w.segment_id
        w.roll()
        w.roll()  # the head's predecessor holds no record: the last seq is found further back
    where = _records(queue_dir)
    mid = sorted(s for s, (seg, _o) in where.items() if seg == last_data)[10]
    _poke(queue_dir, last_data, where[mid][1] + L.REC_COMMIT_OFFSET, "<i", 0)  # a hole, intact records after it
    with open(os.path.join(queue_dir, L.CONTROL_FILE_NAME), "r+b") as f:
        f.seek(L.CTL_NEXT_SEQ_OFFSET)
        f.write(struct.pack("<q", 0))  # and a control file that does not help (its hint is ignored)
    with Queue.open_publisher(queue_dir) as w:
        assert w.append(1, b"after") == 600  # not mid: seqs mid+1..599 are on disk and may have been read
