"""``chronicle verify``: real queues with real corruption planted in their segment files, run through the console script."""
from __future__ import annotations

import json
import struct
import zlib

import pytest

from chronicle_async import Queue, WriterConfig
from chronicle_async.hot import layout as L

from .console import chronicle

SEGMENT_SIZE = 1 << 16


def _write(path, n=3000):
    with Queue.open_publisher(path, WriterConfig(segment_size=SEGMENT_SIZE)) as w:
        for i in range(n):
            w.append(1, b"msg-%06d" % i)


def _records(seg_path):
    """``(offset, seq, payload_length)`` of each user record in a segment file, by walking its framing."""
    data = open(seg_path, "rb").read()
    off, out = L.SEGMENT_DATA_OFFSET, []
    while off < len(data):
        commit, type_id, seq, _ts, length, _ck = struct.unpack_from(L.RECORD_HEADER_FORMAT, data, off)
        if commit == 0:
            break
        if type_id != L.PADDING_TYPE_ID:
            out.append((off, seq, length))
        off += L.record_length(length)
    return out


def _patch(seg_path, offset, fmt, *values):
    with open(seg_path, "r+b") as f:
        f.seek(offset)
        f.write(struct.pack(fmt, *values))


def _reseal_checksum(seg_path, offset, length):
    """Recompute a record's version 2 checksum (header fields, then payload), as the writer does."""
    with open(seg_path, "r+b") as f:
        f.seek(offset)
        rec = f.read(L.RECORD_HEADER_LENGTH + length)
        checked = rec[L.REC_CHECKED_OFFSET:L.REC_CHECKED_OFFSET + L.REC_CHECKED_LENGTH]
        ck = zlib.adler32(rec[L.RECORD_HEADER_LENGTH:], zlib.adler32(checked))
        f.seek(offset + L.REC_CHECKSUM_OFFSET)
        f.write(struct.pack("<I", ck))


@pytest.fixture
def queue(tmp_path):
    path = tmp_path / "q"
    _write(path)
    return path


def _seg(queue, sid=1):
    return queue / L.segment_file_name(sid)


def test_verify_a_clean_multi_segment_queue_exits_0_with_a_summary(queue):
    p = chronicle("verify", queue)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "3000 record(s)" in p.stdout and "seqs 0..2999: OK" in p.stdout
    doc = json.loads(chronicle("verify", queue, "--json").stdout)
    assert doc["ok"] and doc["segments"] >= 3 and doc["records"] == 3000 and doc["problems"] == []


def test_verify_reports_a_flipped_payload_byte_as_a_checksum_problem_with_segment_offset_and_seq(queue):
    off, seq, _n = _records(_seg(queue))[10]
    path = _seg(queue)
    with open(path, "r+b") as f:
        f.seek(off + L.RECORD_HEADER_LENGTH + 2)
        b = f.read(1)
        f.seek(off + L.RECORD_HEADER_LENGTH + 2)
        f.write(bytes([b[0] ^ 0xFF]))
    p = chronicle("verify", queue)
    assert p.returncode == 1
    assert f"segment {path.name} offset {off} seq {seq}: checksum:" in p.stdout
    assert "1 problem(s)" in p.stdout


def test_verify_reports_a_damaged_length_as_a_framing_problem_at_its_offset(queue):
    off, _seq, _n = _records(_seg(queue))[5]
    _patch(_seg(queue), off + L.REC_LENGTH_OFFSET, "<I", 999)
    p = chronicle("verify", queue)
    assert p.returncode == 1
    assert f"segment {_seg(queue).name} offset {off} seq -: framing: malformed record" in p.stdout


def test_verify_reports_a_zeroed_commit_word_inside_committed_data_as_a_hole(queue):
    off, _seq, _n = _records(_seg(queue))[7]
    _patch(_seg(queue), off + L.REC_COMMIT_OFFSET, "<i", 0)
    p = chronicle("verify", queue)
    assert p.returncode == 1
    assert f"segment {_seg(queue).name} offset {off} seq -: framing: zero commit word" in p.stdout


def test_verify_reports_a_rewritten_seq_with_a_valid_checksum_as_a_seq_problem(queue):
    recs = _records(_seg(queue))
    off, seq, n = recs[20]
    _patch(_seg(queue), off + L.REC_SEQ_OFFSET, "<q", seq - 3)
    _reseal_checksum(_seg(queue), off, n)
    p = chronicle("verify", queue, "--json")
    assert p.returncode == 1
    kinds = [(q["segment"], q["offset"], q["seq"], q["kind"]) for q in json.loads(p.stdout)["problems"]]
    assert (_seg(queue).name, off, seq - 3, "seq") in kinds
    assert "backwards" in json.loads(p.stdout)["problems"][0]["detail"]
    assert len(json.loads(p.stdout)["problems"]) == 1  # the records after it continue the old run


def test_verify_reports_a_segment_header_naming_another_segment_id(queue):
    _patch(_seg(queue, 2), L.SEG_ID_OFFSET, "<q", 7)
    p = chronicle("verify", queue)
    assert p.returncode == 1
    assert f"segment {_seg(queue, 2).name} offset 0 seq -: header: header says segment id 7" in p.stdout


def test_verify_accepts_a_front_deleted_by_retention(queue):
    _seg(queue, 0).unlink()
    p = chronicle("verify", queue)
    assert p.returncode == 0, p.stdout


def test_verify_of_a_path_with_no_queue_is_a_queue_not_found_error(tmp_path):
    p = chronicle("verify", tmp_path / "nothing")
    assert p.returncode == 1
    assert p.stderr.startswith("chronicle: QueueNotFoundError:")


def test_verify_while_a_writer_holds_the_queue_open_is_clean_and_does_not_block_it(tmp_path):
    with Queue.open_publisher(tmp_path / "live", WriterConfig(segment_size=SEGMENT_SIZE)) as w:
        for i in range(500):
            w.append(1, b"live-%d" % i)
        p = chronicle("verify", tmp_path / "live")
        w.append(1, b"after verify")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "500 record(s)" in p.stdout


def test_verify_reports_a_repeated_seq_and_a_gap_without_padding(queue):
    recs = _records(_seg(queue))
    off, seq, n = recs[30]
    _patch(_seg(queue), off + L.REC_SEQ_OFFSET, "<q", seq - 1)  # repeats the seq before it
    _reseal_checksum(_seg(queue), off, n)
    off2, seq2, n2 = recs[40]
    _patch(_seg(queue), off2 + L.REC_SEQ_OFFSET, "<q", seq2 + 5)  # five seqs vanish
    _reseal_checksum(_seg(queue), off2, n2)
    p = chronicle("verify", queue)
    assert p.returncode == 1
    assert f"offset {off} seq {seq - 1}: seq: seq {seq - 1} repeated" in p.stdout
    assert f"offset {off2} seq {seq2 + 5}: seq: seq gap: expected {seq2}, found {seq2 + 5}" in p.stdout
    assert "2 problem(s)" in p.stdout  # each stray seq reported once, not again at the record after it
