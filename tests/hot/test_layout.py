"""The on-disk layout: every constant in ``hot/layout.py`` agrees with its diagram,
with the struct formats the Python face uses, and with the bytes real queues write.
"""
from __future__ import annotations

import io
import os
import pathlib
import struct
import tokenize
import zlib

import numba
import pytest
from hypothesis import given
from hypothesis import strategies as st

import chronicle_async as ca
from chronicle_async.hot import append as AP
from chronicle_async.hot import layout as L
from tests.reference import record_checksum

PACKAGE_DIR = pathlib.Path(ca.__file__).resolve().parent
LINE = 128

# (name, offset constant, size in bytes) in diagram order, per file region.
CONTROL_IDENTITY_FIELDS = [
    ("magic", L.CTL_MAGIC_OFFSET, 4),
    ("version", L.CTL_VERSION_OFFSET, 4),
    ("segment_size", L.CTL_SEGMENT_SIZE_OFFSET, 8),
    ("queue_id", L.CTL_QUEUE_ID_OFFSET, 8),
    ("created_ns", L.CTL_CREATED_NS_OFFSET, 8),
    ("writer_epoch", L.CTL_WRITER_EPOCH_OFFSET, 8),
    ("writer_pid", L.CTL_WRITER_PID_OFFSET, 8),
    ("writer_state", L.CTL_WRITER_STATE_OFFSET, 4),
    ("writer_flags", L.CTL_WRITER_FLAGS_OFFSET, 4),
]
CONTROL_HOT_FIELDS = [
    ("write_segment", L.CTL_WRITE_SEGMENT_OFFSET, 8),
    ("write_offset", L.CTL_WRITE_OFFSET_OFFSET, 8),
    ("next_seq", L.CTL_NEXT_SEQ_OFFSET, 8),
]
CONTROL_HEARTBEAT_FIELDS = [("heartbeat_ns", L.CTL_HEARTBEAT_NS_OFFSET, 8)]
CONTROL_NOTIFY_FIELDS = [
    ("notify_seq", L.CTL_NOTIFY_SEQ_OFFSET, 4),
    ("waiters", L.CTL_WAITERS_OFFSET, 4),
]
SEGMENT_HEADER_FIELDS = [
    ("magic", L.SEG_MAGIC_OFFSET, 4),
    ("version", L.SEG_VERSION_OFFSET, 4),
    ("segment_id", L.SEG_ID_OFFSET, 8),
    ("queue_id", L.SEG_QUEUE_ID_OFFSET, 8),
    ("segment_size", L.SEG_SIZE_OFFSET, 8),
    ("created_ns", L.SEG_CREATED_NS_OFFSET, 8),
]
RECORD_HEADER_FIELDS = [
    ("commit", L.REC_COMMIT_OFFSET, 4),
    ("type_id", L.REC_TYPE_ID_OFFSET, 4),
    ("seq", L.REC_SEQ_OFFSET, 8),
    ("timestamp_ns", L.REC_TIMESTAMP_OFFSET, 8),
    ("length", L.REC_LENGTH_OFFSET, 4),
    ("checksum", L.REC_CHECKSUM_OFFSET, 4),
]
READER_HEADER_FIELDS = [
    ("magic", L.RDR_MAGIC_OFFSET, 4),
    ("version", L.RDR_VERSION_OFFSET, 4),
    ("owner_pid", L.RDR_OWNER_PID_OFFSET, 8),
    ("queue_id", L.RDR_QUEUE_ID_OFFSET, 8),
]
READER_SLOT_FIELDS = [
    ("generation", L.SLOT_GENERATION_OFFSET, 8),
    ("segment", L.SLOT_SEGMENT_OFFSET, 8),
    ("offset", L.SLOT_OFFSET_OFFSET, 8),
    ("next_seq", L.SLOT_NEXT_SEQ_OFFSET, 8),
    ("heartbeat_ns", L.SLOT_HEARTBEAT_NS_OFFSET, 8),
    ("writer_epoch", L.SLOT_WRITER_EPOCH_OFFSET, 8),
    ("checksum", L.SLOT_CHECKSUM_OFFSET, 4),
]
ALL_GROUPS = {
    "control identity": CONTROL_IDENTITY_FIELDS,
    "control writer-hot": CONTROL_HOT_FIELDS,
    "control heartbeat": CONTROL_HEARTBEAT_FIELDS,
    "control notify": CONTROL_NOTIFY_FIELDS,
    "segment header": SEGMENT_HEADER_FIELDS,
    "record header": RECORD_HEADER_FIELDS,
    "reader header": READER_HEADER_FIELDS,
    "reader slot": READER_SLOT_FIELDS,
}


def _expected_offsets(start: int, fields: list[tuple[str, int, int]]) -> list[int]:
    out, pos = [], start
    for _name, _off, size in fields:
        out.append(pos)
        pos += size
    return out


# -- offsets derive as the diagrams say -------------------------------------------------------


def test_control_identity_offsets_are_the_documented_packed_sequence():
    assert [o for _, o, _ in CONTROL_IDENTITY_FIELDS] == [0, 4, 8, 16, 24, 32, 40, 48, 52]
    assert L.CTL_IDENTITY_END == 56


def test_control_writer_hot_heartbeat_and_notify_offsets_match_the_diagram():
    assert [o for _, o, _ in CONTROL_HOT_FIELDS] == [128, 136, 144]
    assert L.CTL_HEARTBEAT_NS_OFFSET == 256
    assert [o for _, o, _ in CONTROL_NOTIFY_FIELDS] == [384, 388]
    assert L.CONTROL_FILE_LENGTH == 512 == 4 * LINE


def test_segment_header_offsets_match_the_diagram():
    assert [o for _, o, _ in SEGMENT_HEADER_FIELDS] == [0, 4, 8, 16, 24, 32]
    assert L.SEG_HEADER_END == 40 <= L.SEGMENT_HEADER_LENGTH == 64
    assert L.SEGMENT_DATA_OFFSET == L.SEGMENT_HEADER_LENGTH
    assert L.SEGMENT_DATA_OFFSET % L.RECORD_ALIGNMENT == 0


def test_record_header_offsets_match_the_diagram():
    assert [o for _, o, _ in RECORD_HEADER_FIELDS] == [0, 4, 8, 16, 24, 28]
    assert L.RECORD_HEADER_LENGTH == 32
    assert L.RECORD_ALIGNMENT == 64


def test_reader_file_offsets_match_the_diagram():
    assert [o for _, o, _ in READER_HEADER_FIELDS] == [0, 4, 8, 16]
    assert L.READER_SLOT0_OFFSET == 64 and L.READER_SLOT_LENGTH == 64
    assert [o for _, o, _ in READER_SLOT_FIELDS] == [0, 8, 16, 24, 32, 40, 48]
    assert L.SLOT_END == 52 <= L.READER_SLOT_LENGTH
    assert L.READER_FILE_LENGTH == 64 + 2 * 64


@pytest.mark.parametrize("group", sorted(ALL_GROUPS))
def test_fields_of_each_group_are_contiguous_and_in_diagram_order(group):
    fields = ALL_GROUPS[group]
    start = fields[0][1]
    assert [o for _, o, _ in fields] == _expected_offsets(start, fields)


@pytest.mark.parametrize("group", sorted(ALL_GROUPS))
def test_every_shared_word_is_naturally_aligned(group):
    for name, off, size in ALL_GROUPS[group]:
        assert off % size == 0, f"{group}.{name} at {off} is not {size}-byte aligned"


def test_control_file_groups_each_sit_on_their_own_128_byte_line():
    def lines(fields):
        return {off // LINE for _, off, _ in fields} | {(off + size - 1) // LINE for _, off, size in fields}

    identity = lines(CONTROL_IDENTITY_FIELDS)
    hot = lines(CONTROL_HOT_FIELDS)
    heartbeat = lines(CONTROL_HEARTBEAT_FIELDS)
    notify = lines(CONTROL_NOTIFY_FIELDS)
    assert identity == {0}
    assert hot == {1}
    assert heartbeat == {2}
    assert notify == {3}
    assert L.CTL_IDENTITY_END <= LINE
    assert L.CACHE_LINE_PAIR == LINE
    for a in (L.CTL_WRITE_SEGMENT_OFFSET, L.CTL_HEARTBEAT_NS_OFFSET, L.CTL_NOTIFY_SEQ_OFFSET):
        assert a % LINE == 0, "each group starts a 128-byte line"
    assert max(off + size for _, off, size in CONTROL_NOTIFY_FIELDS) <= L.CONTROL_FILE_LENGTH


def test_reader_slots_do_not_overlap_the_header_or_each_other():
    slot0 = L.READER_SLOT0_OFFSET
    slot1 = slot0 + L.READER_SLOT_LENGTH
    header_end = max(off + size for _, off, size in READER_HEADER_FIELDS)
    assert header_end <= slot0
    assert slot0 + L.SLOT_END <= slot1
    assert slot1 + L.READER_SLOT_LENGTH == L.READER_FILE_LENGTH


# -- struct formats agree with the offsets -----------------------------------------------------


def _format_codes(fmt: str) -> list[str]:
    assert fmt[0] == "<", "formats are little-endian with no implicit padding"
    return list(fmt[1:])


FORMATS = [
    ("CONTROL_IDENTITY_FORMAT", L.CONTROL_IDENTITY_FORMAT, L.CTL_MAGIC_OFFSET, CONTROL_IDENTITY_FIELDS),
    ("SEGMENT_HEADER_FORMAT", L.SEGMENT_HEADER_FORMAT, L.SEG_MAGIC_OFFSET, SEGMENT_HEADER_FIELDS),
    ("RECORD_HEADER_FORMAT", L.RECORD_HEADER_FORMAT, L.REC_COMMIT_OFFSET, RECORD_HEADER_FIELDS),
    ("RECORD_BODY_FORMAT", L.RECORD_BODY_FORMAT, L.REC_TYPE_ID_OFFSET, RECORD_HEADER_FIELDS[1:]),
    ("READER_HEADER_FORMAT", L.READER_HEADER_FORMAT, L.RDR_MAGIC_OFFSET, READER_HEADER_FIELDS),
    ("READER_SLOT_FORMAT", L.READER_SLOT_FORMAT, L.SLOT_GENERATION_OFFSET, READER_SLOT_FIELDS),
]


@pytest.mark.parametrize("name,fmt,base,fields", FORMATS, ids=[f[0] for f in FORMATS])
def test_struct_format_field_positions_equal_the_offset_constants(name, fmt, base, fields):
    codes = _format_codes(fmt)
    assert len(codes) == len(fields), f"{name} has one code per field"
    for i, (field, off, size) in enumerate(fields):
        prefix = "<" + "".join(codes[:i])
        assert base + struct.calcsize(prefix) == off, f"{name}: field {field}"
        assert struct.calcsize("<" + codes[i]) == size, f"{name}: width of {field}"
    end = fields[-1][1] + fields[-1][2]
    assert base + struct.calcsize(fmt) == end


def test_struct_format_sizes_equal_the_region_lengths():
    assert struct.calcsize(L.CONTROL_IDENTITY_FORMAT) == L.CTL_IDENTITY_END - L.CTL_MAGIC_OFFSET
    assert struct.calcsize(L.SEGMENT_HEADER_FORMAT) == L.SEG_HEADER_END
    assert struct.calcsize(L.RECORD_HEADER_FORMAT) == L.RECORD_HEADER_LENGTH
    assert struct.calcsize(L.RECORD_BODY_FORMAT) == L.RECORD_HEADER_LENGTH - L.REC_TYPE_ID_OFFSET
    assert struct.calcsize(L.READER_SLOT_FORMAT) == L.SLOT_END
    assert struct.calcsize(L.READER_HEADER_FORMAT) <= L.READER_SLOT0_OFFSET


def test_signed_fields_use_signed_codes():
    # type_id holds PADDING_TYPE_ID (-1) and the commit word is compared with > 0: both signed i32.
    rec = _format_codes(L.RECORD_HEADER_FORMAT)
    assert rec[0] == "i" and rec[1] == "i"
    assert struct.unpack("<i", struct.pack("<i", L.PADDING_TYPE_ID))[0] == -1


# -- size arithmetic ---------------------------------------------------------------------------


@given(st.integers(min_value=0, max_value=1 << 31))
def test_record_length_is_header_plus_payload_rounded_up_to_alignment(n):
    r = L.record_length(n)
    assert r % L.RECORD_ALIGNMENT == 0
    assert L.RECORD_HEADER_LENGTH + n <= r < L.RECORD_HEADER_LENGTH + n + L.RECORD_ALIGNMENT


def test_record_length_examples():
    assert L.record_length(0) == 64
    assert L.record_length(32) == 64
    assert L.record_length(33) == 128
    assert L.record_length(96) == 128
    assert L.record_length(97) == 192


@pytest.mark.parametrize("size", [L.MIN_SEGMENT_SIZE, 20480, 1 << 20, L.DEFAULT_SEGMENT_SIZE])
def test_max_payload_exactly_fills_the_data_area_of_an_empty_segment(size):
    end = L.segment_data_end(size)
    assert end == size - L.RECORD_ALIGNMENT
    mp = L.max_payload(size)
    assert L.SEGMENT_DATA_OFFSET + L.record_length(mp) == end
    assert L.SEGMENT_DATA_OFFSET + L.record_length(mp + 1) > end


def test_max_payload_of_the_smallest_segment_is_16224_bytes():
    assert L.max_payload(16 * 1024) == 16 * 1024 - 64 - 64 - 32


def test_max_payload_is_capped_by_the_commit_word():
    assert L.max_payload(L.MAX_SEGMENT_SIZE) == L.MAX_PAYLOAD_BY_COMMIT_WORD
    assert L.MAX_PAYLOAD_BY_COMMIT_WORD + 1 <= 2**31 - 1  # commit word = length + 1 fits an i32


@numba.njit
def _jitted_max_payload(size):
    return AP.max_payload(size)


@pytest.mark.parametrize("size", [L.MIN_SEGMENT_SIZE, 1 << 20, L.DEFAULT_SEGMENT_SIZE, L.MAX_SEGMENT_SIZE])
def test_jitted_max_payload_twin_agrees_with_layout(size):
    assert _jitted_max_payload(size) == L.max_payload(size)


def test_segment_size_checks():
    assert L.check_segment_size(L.MIN_SEGMENT_SIZE) is None
    assert L.check_segment_size(L.DEFAULT_SEGMENT_SIZE) is None
    assert L.check_segment_size(L.MAX_SEGMENT_SIZE) is None
    assert "between" in L.check_segment_size(L.MIN_SEGMENT_SIZE - L.PAGE_SIZE)
    assert "between" in L.check_segment_size(L.MAX_SEGMENT_SIZE + L.PAGE_SIZE)
    assert "multiple" in L.check_segment_size(L.MIN_SEGMENT_SIZE + 100)


# -- segment names -----------------------------------------------------------------------------


def test_segment_file_names_are_twelve_zero_padded_digits():
    assert L.segment_file_name(0) == "000000000000.seg"
    assert L.segment_file_name(42) == "000000000042.seg"
    assert L.segment_file_name(10**12 - 1) == "999999999999.seg"


@given(st.integers(min_value=0, max_value=10**12 - 1))
def test_segment_name_round_trips(sid):
    assert L.parse_segment_file_name(L.segment_file_name(sid)) == sid


@pytest.mark.parametrize(
    "name",
    [
        "control.cq",
        "writer.lock",
        "1.seg",
        "0000000000001.seg",  # 13 digits
        "00000000000a.seg",
        "-00000000001.seg",
        "+00000000001.seg",
        "000000000001.seg.tmp-1-abcd",
        "000000000001.SEG",
        "000000000001",
        ".seg",
        " 00000000001.seg",
    ],
)
def test_non_segment_names_parse_to_none(name):
    assert L.parse_segment_file_name(name) is None


def test_temp_segment_names_are_not_segment_names():
    tmp = L.segment_temp_name(7, "123-abcd")
    assert tmp.startswith(L.segment_file_name(7))
    assert L.SEGMENT_TEMP_SUFFIX in tmp
    assert L.parse_segment_file_name(tmp) is None


@pytest.mark.parametrize("name", ["\u0660" * 11 + "\u0661.seg", "0" * 11 + "\u00b2.seg"])
def test_segment_names_with_non_ascii_digits_parse_to_none(name):
    assert L.parse_segment_file_name(name) is None


# -- the bytes real queues write sit where the layout says --------------------------------------


def test_real_files_hold_each_field_at_its_layout_offset(queue_dir):
    size = 16 * 1024
    with ca.Queue.open_publisher(queue_dir, ca.WriterConfig(segment_size=size)) as w:
        seq0 = w.append(7, b"hello", timestamp_ns=1234)
        seq1 = w.append(9, b"x" * 100, timestamp_ns=5678)
        epoch = w.epoch
        ctl = (queue_dir / L.CONTROL_FILE_NAME).read_bytes()
        seg = (queue_dir / L.segment_file_name(0)).read_bytes()

    assert len(ctl) == L.CONTROL_FILE_LENGTH
    magic, version, seg_size, qid, created, w_epoch, w_pid, w_state, _flags = struct.unpack_from(
        L.CONTROL_IDENTITY_FORMAT, ctl, L.CTL_MAGIC_OFFSET
    )
    assert magic == L.CONTROL_MAGIC and ctl[:4] == b"CQCT"
    assert version == L.CONTROL_VERSION
    assert seg_size == size
    assert qid != 0 and created > 0
    assert w_epoch == epoch and w_pid == os.getpid()
    assert w_state == L.WRITER_STATE_OPEN
    ws, wo, nseq = struct.unpack_from("<qqq", ctl, L.CTL_WRITE_SEGMENT_OFFSET)
    assert (ws, nseq) == (0, 2)
    assert wo == L.SEGMENT_DATA_OFFSET + L.record_length(5) + L.record_length(100)
    assert struct.unpack_from("<q", ctl, L.CTL_HEARTBEAT_NS_OFFSET)[0] > 0

    assert len(seg) == size
    smagic, sver, sid, sqid, ssize, screated = struct.unpack_from(L.SEGMENT_HEADER_FORMAT, seg, 0)
    assert smagic == L.SEGMENT_MAGIC and seg[:4] == b"CQSG"
    assert (sver, sid, sqid, ssize) == (L.SEGMENT_VERSION, 0, qid, size)
    assert screated > 0

    off = L.SEGMENT_DATA_OFFSET
    for seq, tid, ts, payload in [(seq0, 7, 1234, b"hello"), (seq1, 9, 5678, b"x" * 100)]:
        commit, t, s, stamp, n, ck = struct.unpack_from(L.RECORD_HEADER_FORMAT, seg, off)
        assert commit == len(payload) + 1
        assert (t, s, stamp, n) == (tid, seq, ts, len(payload))
        assert ck == record_checksum(tid, seq, ts, payload)
        body = struct.unpack_from(L.RECORD_BODY_FORMAT, seg, off + L.REC_TYPE_ID_OFFSET)
        assert body == (t, s, stamp, n, ck)
        start = off + L.RECORD_HEADER_LENGTH
        assert seg[start : start + n] == payload
        off += L.record_length(len(payload))
    assert struct.unpack_from("<i", seg, off)[0] == 0  # nothing committed past the tail

    after = (queue_dir / L.CONTROL_FILE_NAME).read_bytes()
    assert struct.unpack_from("<i", after, L.CTL_WRITER_STATE_OFFSET)[0] == L.WRITER_STATE_CLOSED


def test_reader_position_file_holds_the_committed_position_in_a_checksummed_slot(queue_dir):
    with ca.Queue.open_publisher(queue_dir, ca.WriterConfig(segment_size=16 * 1024)) as w:
        for i in range(3):
            w.append(1, bytes([i]) * 10)
        with ca.Queue.open_subscriber(queue_dir, "r1") as r:
            r.next()
            r.next()
            r.commit()
            data = (queue_dir / L.READERS_DIR_NAME / ("r1" + L.READER_FILE_SUFFIX)).read_bytes()
    assert len(data) == L.READER_FILE_LENGTH
    magic, version, pid, qid = struct.unpack_from(L.READER_HEADER_FORMAT, data, 0)
    assert (magic, version, pid) == (L.READER_MAGIC, L.READER_VERSION, os.getpid())
    ctl = (queue_dir / L.CONTROL_FILE_NAME).read_bytes()
    assert qid == struct.unpack_from("<q", ctl, L.CTL_QUEUE_ID_OFFSET)[0] != 0  # the queue it belongs to
    slots = []
    for i in range(2):
        base = L.READER_SLOT0_OFFSET + i * L.READER_SLOT_LENGTH
        fields = struct.unpack_from(L.READER_SLOT_FORMAT, data, base)
        valid = fields[0] > 0 and zlib.crc32(data[base : base + L.SLOT_CHECKSUM_OFFSET]) == fields[-1]
        if valid:
            slots.append(fields)
    assert len(slots) == 1
    gen, seg, off, nseq, hb, ep, _ck = slots[0]
    assert gen == 1 and seg == 0 and nseq == 2 and hb > 0 and ep == 1
    assert off == L.SEGMENT_DATA_OFFSET + 2 * L.record_length(10)


# -- no module but layout.py hard-codes byte offsets -------------------------------------------

_OFFSET_NAMES = ("off", "offset", "base", "pos", "ptr", "addr")


def _code_tokens(path: pathlib.Path) -> list[tokenize.TokenInfo]:
    """Tokens of real code: comments, strings (docstrings included) and layout noise dropped."""
    src = path.read_text()
    skip = {tokenize.COMMENT, tokenize.STRING, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT}
    skip |= {getattr(tokenize, n) for n in ("FSTRING_START", "FSTRING_MIDDLE", "FSTRING_END") if hasattr(tokenize, n)}
    return [t for t in tokenize.generate_tokens(io.StringIO(src).readline) if t.type not in skip]


def _rel(path: pathlib.Path) -> str:
    try:
        return str(path.relative_to(PACKAGE_DIR))
    except ValueError:
        return path.name


def _library_sources() -> list[pathlib.Path]:
    files = sorted(p for p in PACKAGE_DIR.rglob("*.py") if p.name != "layout.py" or p.parent.name != "hot")
    assert any(p.name == "writer.py" for p in files) and any(p.name == "read.py" for p in files)
    return files


def _is_offset_name(tok: tokenize.TokenInfo) -> bool:
    if tok.type != tokenize.NAME:
        return False
    low = tok.string.lower().lstrip("_")
    return any(low == n or low.startswith(n + "_") or low.endswith("_" + n) for n in _OFFSET_NAMES)


def _literal_offsets(path: pathlib.Path) -> list[str]:
    """``off + 8``, ``8 + off``, ``base - 16``...: a literal multiple of 4 added to an offset-named value."""
    toks = _code_tokens(path)
    hits = []
    for i in range(1, len(toks) - 1):
        op = toks[i]
        if op.type != tokenize.OP or op.string not in ("+", "-"):
            continue
        left, right = toks[i - 1], toks[i + 1]
        for name, num in ((left, right), (right, left)):
            if _is_offset_name(name) and num.type == tokenize.NUMBER:
                try:
                    value = int(num.string, 0)
                except ValueError:
                    continue
                if value and value % 4 == 0:
                    hits.append(f"{_rel(path)}:{op.start[0]}: {left.string} {op.string} {right.string}")
    return hits


def test_offset_scanner_catches_literal_offsets(tmp_path):
    # The scanner itself must be able to fail: feed it the patterns it is meant to catch.
    sample = tmp_path / "sample.py"
    sample.write_text(
        "x = load(seg, off + 24)\n"
        "y = pack(mv, 8 + base_off, 1)\n"
        "z = offsets[start + 1]  # an index, not a byte offset\n"
        "s = '''off + 16 in a docstring'''\n"
        "w = off + L.REC_SEQ_OFFSET\n"
    )
    hits = _literal_offsets(sample)
    assert len(hits) == 2 and "off + 24" in hits[0] and "8 + base_off" in hits[1]


def test_no_module_outside_layout_adds_a_literal_byte_offset():
    hits = [h for p in _library_sources() for h in _literal_offsets(p)]
    assert hits == []


def _alignment_literals(path: pathlib.Path) -> list[str]:
    """``+ 63``, ``& ~63``, ``% 64``...: the record alignment written as a number in arithmetic."""
    toks = _code_tokens(path)
    hits = []
    for i, t in enumerate(toks):
        if t.type != tokenize.NUMBER or t.string not in ("63", "64", "0x3f", "0x40", "0x3F"):
            continue
        neighbours = [toks[j].string for j in (i - 1, i + 1) if 0 <= j < len(toks)]
        if any(n in ("+", "-", "&", "~", "%", "//", "&=", "+=", "%=") for n in neighbours):
            hits.append(f"{_rel(path)}:{t.start[0]}: {' '.join(toks[k].string for k in range(max(0, i - 3), min(len(toks), i + 3)))}")
    return hits


def test_no_module_outside_layout_writes_the_record_alignment_as_a_literal():
    hits = [h for p in _library_sources() for h in _alignment_literals(p)]
    assert hits == []


def test_kernels_address_record_fields_only_through_layout_constants():
    # The jitted hot path (append/read/wait) is clean today: keep it so.
    hot = [PACKAGE_DIR / "hot" / n for n in ("append.py", "read.py", "wait.py", "checksum.py", "atomics.py")]
    assert [h for p in hot for h in _literal_offsets(p)] == []
    assert [h for p in hot for h in _alignment_literals(p)] == []
