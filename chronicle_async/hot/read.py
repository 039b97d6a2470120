"""Jitted read-side kernels: peek, read one record, and scan (tail, seq, timestamp).

Readers load the commit word with acquire order first and touch nothing else
of a record until it is non-zero. All functions take the segment mapping as a
``uint8`` array and a byte offset, and return values or negative status codes.
"""
from __future__ import annotations

from . import layout as L
from . import status
from ._jit import kernel
from .checksum import record_checksum_ok_at
from .atomics import (
    address_of,
    load_acquire_i32,
    load_acquire_i32_at,
    load_plain_i32_at,
    load_plain_i64,
    load_plain_i64_at,
)

_ALIGN_MASK = ~(L.RECORD_ALIGNMENT - 1)

#: ``scan`` modes: where to stop.
SCAN_TO_TAIL = 0
SCAN_TO_SEQ = 1
SCAN_TO_TIMESTAMP = 2


@kernel(inline="always")
def peek(seg, off):
    """The commit word at ``off`` (acquire): 0 means nothing committed there yet."""
    return load_acquire_i32(seg, off)


@kernel(inline="always")
def check_record(seg_addr, size, off, commit):
    """Record length in bytes if the committed record at ``off`` is well formed, else CORRUPT."""
    n = load_plain_i32_at(seg_addr + off + L.REC_LENGTH_OFFSET)
    rec = (L.RECORD_HEADER_LENGTH + n + L.RECORD_ALIGNMENT - 1) & _ALIGN_MASK
    result = rec
    if commit <= 0 or n != commit - 1 or off + rec > size:
        result = status.CORRUPT
    return result


@kernel(inline="always")
def skip_to_user_record(base, size, off):
    """From ``off`` in the segment mapped at ``base`` (``size`` bytes), pass padding records.

    Returns ``(code, offset, record_length)``: code 0 with the offset and length of the next
    committed user record, or ``NO_DATA`` / ``END_OF_SEGMENT`` / ``CORRUPT`` with the offset where
    the walk stopped. The one record walk of ``scan`` and of the notebook's ``gather_records``.
    """
    while True:
        if off >= size:
            return status.END_OF_SEGMENT, off, 0
        c = load_acquire_i32_at(base + off)
        if c == 0:
            return status.NO_DATA, off, 0
        rec = check_record(base, size, off, c)
        if rec < 0:
            return status.CORRUPT, off, 0
        if load_plain_i32_at(base + off + L.REC_TYPE_ID_OFFSET) != L.PADDING_TYPE_ID:
            return 0, off, rec
        if off + rec >= size:
            return status.END_OF_SEGMENT, off, 0
        off += rec


@kernel
def scan(seg, off, mode, target):
    """Walk committed records from ``off``.

    Stops at the first uncommitted slot (``NO_DATA``), at the end marker
    (``END_OF_SEGMENT``), at a malformed record (``CORRUPT``), or, for
    ``SCAN_TO_SEQ``/``SCAN_TO_TIMESTAMP``, *at* the first user record whose seq
    or timestamp is ``>= target`` (status 0).

    Returns ``(status, stop_offset, last_seq, last_record_offset, user_records_passed)``;
    ``last_seq`` and ``last_record_offset`` are -1 if no user record was passed.
    """
    base = address_of(seg, 0)
    size = seg.shape[0]
    last_seq = -1
    last_off = -1
    count = 0
    code = 0
    while True:
        code, off, rec = skip_to_user_record(base, size, off)
        if code != 0:
            break
        seq = load_plain_i64_at(base + off + L.REC_SEQ_OFFSET)
        if mode == SCAN_TO_SEQ and seq >= target:
            break
        if mode == SCAN_TO_TIMESTAMP and load_plain_i64_at(base + off + L.REC_TIMESTAMP_OFFSET) >= target:
            break
        last_seq = seq
        last_off = off
        count += 1
        off += rec
    return code, off, last_seq, last_off, count


@kernel
def first_record(seg):
    """``(seq, timestamp_ns)`` of the first user record in a segment, or ``(-1, -1)``."""
    code, off, _ls, _lo, _n = scan(seg, L.SEGMENT_DATA_OFFSET, SCAN_TO_SEQ, -(1 << 62))
    if code != 0:
        return -1, -1
    return load_plain_i64(seg, off + L.REC_SEQ_OFFSET), load_plain_i64(seg, off + L.REC_TIMESTAMP_OFFSET)


@kernel(inline="always")
def read_next_at(seg_addr, size, off):
    """``read_next`` on a raw segment address (no array crosses inlined code)."""
    code = status.NO_DATA
    nxt = off
    seq = -1
    ts = -1
    t = -1
    poff = -1
    n = -1
    while True:
        c = load_acquire_i32_at(seg_addr + off)
        if c == 0:
            break
        rec = check_record(seg_addr, size, off, c)
        if rec < 0:
            code = status.CORRUPT
            break
        t = load_plain_i32_at(seg_addr + off + L.REC_TYPE_ID_OFFSET)
        if t == L.PADDING_TYPE_ID:
            if off + rec >= size:
                code = status.END_OF_SEGMENT
                t = -1
                break
            off += rec
            nxt = off
            continue
        code = 0
        nxt = off + rec
        seq = load_plain_i64_at(seg_addr + off + L.REC_SEQ_OFFSET)
        ts = load_plain_i64_at(seg_addr + off + L.REC_TIMESTAMP_OFFSET)
        poff = off + L.RECORD_HEADER_LENGTH
        n = c - 1
        break
    return code, nxt, seq, ts, t, poff, n


@kernel(inline="always")
def read_next(seg, off):
    """Read the record at ``off`` for a jitted consumer.

    Returns ``(code, next_offset, seq, timestamp_ns, type_id, payload_offset, length)``
    where ``code`` is 0 for a user message, ``NO_DATA``, ``END_OF_SEGMENT`` or
    ``CORRUPT`` (then ``next_offset`` is where the reader stopped). Padding that
    does not end the segment is skipped.
    """
    return read_next_at(address_of(seg, 0), seg.shape[0], off)


@kernel(inline="always")
def seq_in_order(seq, expected, may_jump):
    """The verification rule for seqs: the expected one, or later only where ``may_jump`` (right
    after padding, a segment change or a damaged record); never earlier."""
    return seq == expected or (may_jump and seq > expected)


@kernel
def first_damaged(seg, start, stop):
    """The first user record in ``[start, stop)`` that fails its checksum (header too, from version 2).

    ``[start, stop)`` must hold records ``scan`` passed (well formed, committed). Returns
    ``(offset, last_good_seq)``: the damaged record's offset (-1 if none) and the seq of the last
    user record before it (-1 if none).
    """
    base = address_of(seg, 0)
    version = load_plain_i32_at(base + L.SEG_VERSION_OFFSET)
    last_seq = -1
    off = start
    while off < stop:
        n = load_acquire_i32_at(base + off) - 1
        if load_plain_i32_at(base + off + L.REC_TYPE_ID_OFFSET) != L.PADDING_TYPE_ID:
            if not record_checksum_ok_at(base + off, n, version):
                return off, last_seq
            last_seq = load_plain_i64_at(base + off + L.REC_SEQ_OFFSET)
        off += (L.RECORD_HEADER_LENGTH + n + L.RECORD_ALIGNMENT - 1) & _ALIGN_MASK
    return -1, last_seq


@kernel
def any_nonzero(seg, start):
    """True if any byte at or after ``start`` is non-zero (dirty bytes past a crashed tail)."""
    n = seg.shape[0]
    i = start
    while i + 8 <= n:
        if load_plain_i64(seg, i) != 0:
            return True
        i += 8
    while i < n:
        if seg[i] != 0:
            return True
        i += 1
    return False


@kernel
def find_intact(seg, start, min_seq, max_seq):
    """The first committed, intact record at or after ``start`` (at record alignment): recovery's
    test for "is there committed data beyond this damaged or zero slot?".

    A candidate is a well-formed committed record whose seq lies in ``[min_seq, max_seq)``: a
    user record whose payload matches its Adler-32, or an end marker (padding reaching the end
    of the segment). Returns ``(offset, seq)``, or ``(-1, -1)`` if there is none: then the slot at
    ``start - alignment`` was a torn tail, not a hole in committed data.
    """
    base = address_of(seg, 0)
    size = seg.shape[0]
    version = load_plain_i32_at(base + L.SEG_VERSION_OFFSET)
    off = (start + L.RECORD_ALIGNMENT - 1) & _ALIGN_MASK
    while off + L.RECORD_HEADER_LENGTH <= size:
        c = load_acquire_i32_at(base + off)
        if c > 0:
            rec = check_record(base, size, off, c)
            if rec > 0:
                t = load_plain_i32_at(base + off + L.REC_TYPE_ID_OFFSET)
                seq = load_plain_i64_at(base + off + L.REC_SEQ_OFFSET)
                if min_seq <= seq < max_seq:
                    if t == L.PADDING_TYPE_ID and off + rec == size:
                        return off, seq
                    if t >= 0 and off + rec <= size - L.RECORD_ALIGNMENT and record_checksum_ok_at(base + off, c - 1, version):
                        return off, seq
        off += L.RECORD_ALIGNMENT
    return -1, -1


@kernel
def last_intact_seq(seg):
    """The seq of the last intact user record anywhere in the segment, past any damage; -1 if none.

    Follows the records from the start; at a stop (a zero commit word, a malformed record, a record
    failing its checksum) looks for intact data beyond it (``find_intact``) and goes on from there.
    Recovery uses it for segments it does not repair, so a seq on disk is never given again.
    """
    off = L.SEGMENT_DATA_OFFSET
    last = -1
    while True:
        code, stop, lseq, _lo, _n = scan(seg, off, SCAN_TO_TAIL, 0)
        bad, good = first_damaged(seg, off, stop)
        if bad >= 0:
            code, stop, lseq = status.CORRUPT, bad, good
        if lseq > last:
            last = lseq
        if code == status.END_OF_SEGMENT:
            return last
        nxt, _seq = find_intact(seg, stop + L.RECORD_ALIGNMENT, last + 1, 1 << 62)
        if nxt < 0:
            return last
        off = nxt

