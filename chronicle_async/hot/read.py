"""Jitted read-side kernels: peek, read one record, and scan (tail, seq, timestamp).

Readers load the commit word with acquire order first and touch nothing else
of a record until it is non-zero. All functions take the segment mapping as a
``uint8`` array and a byte offset, and return values or negative status codes.
"""
from __future__ import annotations

from . import layout as L
from . import status
from ._jit import kernel
from .atomics import load_acquire_i32, load_plain_i32, load_plain_i64

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
def check_record(seg, off, commit):
    """Record length in bytes if the committed record at ``off`` is well formed, else CORRUPT."""
    n = load_plain_i32(seg, off + L.REC_LENGTH_OFFSET)
    if commit <= 0 or n != commit - 1:
        return status.CORRUPT
    rec = (L.RECORD_HEADER_LENGTH + n + L.RECORD_ALIGNMENT - 1) & _ALIGN_MASK
    if off + rec > seg.shape[0]:
        return status.CORRUPT
    return rec


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
    last_seq = -1
    last_off = -1
    count = 0
    size = seg.shape[0]
    while True:
        if off >= size:
            return status.END_OF_SEGMENT, off, last_seq, last_off, count
        c = load_acquire_i32(seg, off)
        if c == 0:
            return status.NO_DATA, off, last_seq, last_off, count
        rec = check_record(seg, off, c)
        if rec < 0:
            return status.CORRUPT, off, last_seq, last_off, count
        t = load_plain_i32(seg, off + L.REC_TYPE_ID_OFFSET)
        if t == L.PADDING_TYPE_ID:
            if off + rec >= size:
                return status.END_OF_SEGMENT, off, last_seq, last_off, count
            off += rec
            continue
        if mode == SCAN_TO_SEQ and load_plain_i64(seg, off + L.REC_SEQ_OFFSET) >= target:
            return 0, off, last_seq, last_off, count
        if mode == SCAN_TO_TIMESTAMP and load_plain_i64(seg, off + L.REC_TIMESTAMP_OFFSET) >= target:
            return 0, off, last_seq, last_off, count
        last_seq = load_plain_i64(seg, off + L.REC_SEQ_OFFSET)
        last_off = off
        count += 1
        off += rec


@kernel
def first_record(seg):
    """``(seq, timestamp_ns)`` of the first user record in a segment, or ``(-1, -1)``."""
    off = L.SEGMENT_DATA_OFFSET
    size = seg.shape[0]
    while off < size:
        c = load_acquire_i32(seg, off)
        if c == 0:
            return -1, -1
        rec = check_record(seg, off, c)
        if rec < 0:
            return -1, -1
        if load_plain_i32(seg, off + L.REC_TYPE_ID_OFFSET) != L.PADDING_TYPE_ID:
            return load_plain_i64(seg, off + L.REC_SEQ_OFFSET), load_plain_i64(seg, off + L.REC_TIMESTAMP_OFFSET)
        off += rec
    return -1, -1


@kernel(inline="always")
def read_next(seg, off):
    """Read the record at ``off`` for a jitted consumer.

    Returns ``(code, next_offset, seq, timestamp_ns, type_id, payload_offset, length)``
    where ``code`` is 0 for a user message, ``NO_DATA``, ``END_OF_SEGMENT`` or
    ``CORRUPT``. Padding that does not end the segment is skipped.
    """
    size = seg.shape[0]
    while True:
        c = load_acquire_i32(seg, off)
        if c == 0:
            return status.NO_DATA, off, -1, -1, -1, -1, -1
        rec = check_record(seg, off, c)
        if rec < 0:
            return status.CORRUPT, off, -1, -1, -1, -1, -1
        t = load_plain_i32(seg, off + L.REC_TYPE_ID_OFFSET)
        if t == L.PADDING_TYPE_ID:
            if off + rec >= size:
                return status.END_OF_SEGMENT, off, -1, -1, -1, -1, -1
            off += rec
            continue
        return (
            0,
            off + rec,
            load_plain_i64(seg, off + L.REC_SEQ_OFFSET),
            load_plain_i64(seg, off + L.REC_TIMESTAMP_OFFSET),
            t,
            off + L.RECORD_HEADER_LENGTH,
            c - 1,
        )


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
