"""Torn tails: bytes a dying writer (or a lost page) leaves past the last good record.

A writer process appends N messages and is SIGKILLed (or closes cleanly). The test then
damages the head segment through the file, at offsets computed only from
``chronicle_async.hot.layout``:

- ``garbage``: a half-written record at the tail (commit word 0, other header fields and
  payload bytes non-zero), as a writer killed mid-append leaves;
- ``checksum``: payload bytes of the last committed record flipped (its commit word intact),
  as a power loss can leave; recovery must drop that record (N-1 good messages) and never give
  its seq to another message (a reader may have seen it): the next message is seq N;
- ``both``: the two at once;
- ``malformed``: a committed-looking record at the tail whose length disagrees with its
  commit word.

Reopening the writer must cover the damage with an end marker, continue the seqs right after
the last committed record (good or dropped), and readers (one started afterwards in another process, and for the
``garbage`` crash one live across the recovery) must see exactly the good messages and the new
ones. (Before recovery a reader would, by design, deliver a record failing its checksum, and
report ``malformed`` as CorruptSegmentError: readers do not verify checksums.)
"""
from __future__ import annotations

import os
import struct

import pytest

from chronicle_async import Queue
from chronicle_async.hot import layout as L

from ._workers import check_message, expected, read_control_i64

SEGMENT_SIZE = L.MIN_SEGMENT_SIZE
MAX_SIZE = 300
NEW = 150  # messages appended after recovery: enough for a couple of rolls
_REC = struct.Struct(L.RECORD_HEADER_FORMAT)


def segment_ids(d: str) -> list[int]:
    return sorted(i for i in (L.parse_segment_file_name(n) for n in os.listdir(d)) if i is not None)


def walk(seg: bytes) -> tuple[list[tuple[int, int, int, int, int]], int]:
    """Committed records ``(offset, commit, type_id, seq, length)`` from the data start, and the tail offset."""
    out = []
    off = L.SEGMENT_DATA_OFFSET
    while off < len(seg):
        commit, type_id, seq, _ts, length, _ck = _REC.unpack_from(seg, off)
        if commit == 0:
            break
        out.append((off, commit, type_id, seq, length))
        off += L.record_length(length)
    return out, off


def damage(seg_path: str, kind: str, n: int) -> int:
    """Damage the tail of ``seg_path`` as ``kind`` says; returns the offset recovery must cover from."""
    with open(seg_path, "rb") as f:
        seg = f.read()
    recs, tail = walk(seg)
    user = [r for r in recs if r[2] != L.PADDING_TYPE_ID]
    assert user and user[-1][3] == n - 1, f"the last record of the head segment is not seq {n - 1}: {recs[-3:]}"
    last_off, _c, _t, _seq, last_len = user[-1]
    assert tail == last_off + L.record_length(last_len)
    fd = os.open(seg_path, os.O_RDWR)
    try:
        cover = tail
        if kind in ("checksum", "both"):
            assert last_len > 0, "pick an n whose last payload is not empty"
            at = last_off + L.RECORD_HEADER_LENGTH + last_len // 2
            os.pwrite(fd, bytes([seg[at] ^ 0xFF]), at)
            cover = last_off
        if kind in ("garbage", "both", "malformed"):
            room = SEGMENT_SIZE - tail
            length = 200
            commit = 5 if kind == "malformed" else 0  # malformed: commit word says 4 bytes, length says 200
            header = _REC.pack(commit, 7, n + 5, 123456789, length, 0xDEADBEEF)
            body = bytes((i * 37 + 11) % 251 + 1 for i in range(L.record_length(length) + 3 * L.RECORD_ALIGNMENT))
            os.pwrite(fd, (header + body)[:room], tail)  # non-zero where the next records' commit words go
    finally:
        os.close(fd)
    return cover


CASES = [
    pytest.param("garbage", 1, False, id="garbage-after-1"),
    pytest.param("garbage", 37, False, id="garbage-after-37"),
    pytest.param("garbage", 700, False, id="garbage-after-700-rolled"),
    pytest.param("garbage", 150, True, id="garbage-after-first-record-of-segment"),
    pytest.param("checksum", 37, False, id="checksum-of-37"),
    pytest.param("checksum", 700, False, id="checksum-of-700-rolled"),
    pytest.param("checksum", 150, True, id="checksum-of-first-record-of-segment"),
    pytest.param("checksum", 1, False, id="checksum-of-only-record"),
    pytest.param("both", 700, False, id="checksum-and-garbage-700"),
    pytest.param("malformed", 37, False, id="malformed-committed-after-37"),
]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind,n,roll_before_last", CASES)
def test_recovery_covers_torn_tail_of_killed_writer(spawn, queue_dir, kind, n, roll_before_last):
    path = str(queue_dir / "q")
    filler = spawn("fill", path=path, count=n, segment_size=SEGMENT_SIZE, max_size=MAX_SIZE,
                   roll_before_last=roll_before_last)
    filled = filler.expect("filled", timeout=60)
    assert filler.kill9() < 0
    assert read_control_i32_state(path) == L.WRITER_STATE_OPEN  # a crash: never closed
    head = read_control_i64(path, L.CTL_WRITE_SEGMENT_OFFSET)  # files past it are prepared, empty
    assert head == filled["segment_id"] and head in segment_ids(path)
    if n == 700:
        assert head >= 3, "the tail should sit several rolls in"
    cover = damage(os.path.join(path, L.segment_file_name(head)), kind, n)
    good = n - 1 if kind in ("checksum", "both") else n
    check_recovery(spawn, path, head, cover, good, live_reader=kind == "garbage", skipped=n - good)


@pytest.mark.timeout(120)
def test_recovery_drops_tail_record_failing_its_checksum_after_clean_close(spawn, queue_dir):
    """The tail checksum is checked even when the previous writer closed cleanly (a power loss)."""
    path = str(queue_dir / "q")
    n = 37
    spawn("fill", path=path, count=n, segment_size=SEGMENT_SIZE, max_size=MAX_SIZE, close=True).result(timeout=60)
    assert read_control_i32_state(path) == L.WRITER_STATE_CLOSED
    head = read_control_i64(path, L.CTL_WRITE_SEGMENT_OFFSET)  # files past it are prepared, empty
    cover = damage(os.path.join(path, L.segment_file_name(head)), "checksum", n)
    check_recovery(spawn, path, head, cover, n - 1, live_reader=False, skipped=1)


def read_control_i32_state(path: str) -> int:
    with open(os.path.join(path, L.CONTROL_FILE_NAME), "rb") as f:
        f.seek(L.CTL_WRITER_STATE_OFFSET)
        return struct.unpack("<I", f.read(4))[0]


def check_recovery(spawn, path: str, head: int, cover: int, good: int, live_reader: bool, skipped: int = 0) -> None:
    """``good`` messages survive; ``skipped`` committed-but-torn seqs after them are never reused."""
    nxt = good + skipped
    live = None
    if live_reader:
        # A reader that read every good message and waits at the torn tail while recovery runs.
        live = Queue.open_subscriber(path, None, "earliest")
        for seq in range(good):
            m = live.next()
            assert m is not None, f"live reader: seq {seq} missing before recovery"
            assert check_message(m, seq, MAX_SIZE) is None, check_message(m, seq, MAX_SIZE)
        assert live.next() is None, "a reader saw the torn record as a message"
    try:
        with Queue.open_publisher(path) as w:
            assert w.epoch == 2
            assert w.next_seq == nxt, f"recovery continues at seq {w.next_seq}, expected {nxt}"
            assert w.recovery.skipped_seq == (good if skipped else None)
            assert w.segment_id == head + 1, "the torn segment must be ended and left"
            with open(os.path.join(path, L.segment_file_name(head)), "rb") as f:
                f.seek(cover)
                commit, type_id, seq, _ts, length, _ck = _REC.unpack(f.read(L.RECORD_HEADER_LENGTH))
            assert type_id == L.PADDING_TYPE_ID and commit == length + 1, "torn bytes not covered by padding"
            assert cover + L.record_length(length) == SEGMENT_SIZE, "the padding must end the segment"
            assert seq == nxt  # an end marker's seq is the next seq
            for seq in range(nxt, nxt + NEW):
                tid, data = expected(seq, MAX_SIZE)
                assert w.append(tid, data) == seq
            assert w.segment_id > head + 1  # rolled again after recovery
        assert read_control_i64(path, L.CTL_NEXT_SEQ_OFFSET) == nxt + NEW
        if live is not None:
            for seq in range(nxt, nxt + NEW):
                m = live.next()
                assert m is not None, f"live reader: seq {seq} missing after recovery"
                assert check_message(m, seq, MAX_SIZE) is None, check_message(m, seq, MAX_SIZE)
            assert live.next() is None
    finally:
        if live is not None:
            live.close()
    if skipped:  # a gap of seqs: read it here, every byte checked
        with Queue.open_subscriber(path, None, "earliest") as r:
            got = []
            for m in r:
                assert check_message(m, m.seq, MAX_SIZE) is None, check_message(m, m.seq, MAX_SIZE)
                got.append(m.seq)
        assert got == list(range(good)) + list(range(nxt, nxt + NEW))
        return
    # A fresh reader in another process: exactly seqs 0..good+NEW-1, every byte right, nothing else.
    reader = spawn("reader", path=path, name=None, max_size=MAX_SIZE, count=good + NEW, start="earliest", deadline=60.0)
    assert reader.result(timeout=90)["count"] == good + NEW
