"""The record walk of the notebook readers (``frames.py``): select records of a segment and copy them
into rows of a preallocated buffer, with no Python work per record.

The row layout is ``hot/tables.py``'s gather row (``GATHER_*_OFFSET``). Besides the status codes
of ``status.py`` (``NO_DATA``, ``END_OF_SEGMENT``, ``CORRUPT``), the kernel returns one of the results below.
"""
from __future__ import annotations

from . import layout as L
from . import tables as T
from ._jit import kernel
from .atomics import (
    address_of,
    load_plain_i32_at,
    load_plain_i64_at,
    load_plain_u8_at,
    store_plain_i32_at,
    store_plain_i64_at,
    store_plain_u8_at,
)
from .read import skip_to_user_record

#: Passed the end of the range, or reached the limit: the selection is complete.
GATHER_DONE = 0
#: The output has no room for the next selected record: grow it and call again from the offset returned.
GATHER_FULL = 1
#: A selected payload is not ``itemsize`` bytes: report it (the dtype does not fit the data).
GATHER_BAD_SIZE = 2


@kernel
def gather_records(seg, off, by_time, lo, hi, types, itemsize, out, row, n, cap, stop_n):
    """Copy the selected records of one segment, from ``off``, into rows of ``out``.

    A record is selected if its key (seq, or timestamp when ``by_time``) is in
    ``[lo, hi)`` and, when ``types`` is not empty, its type id is one of them.
    The first key ``>= hi`` ends the range (keys are assumed not to go backwards,
    as for ``QueueReader.seek_timestamp``). Row ``n`` gets seq, timestamp, type id
    and length, then the payload (``itemsize >= 0``: every selected payload must
    be that long) or the payload's byte offset in ``seg`` (``itemsize < 0``).

    Returns ``(code, offset, n, bad_seq, bad_length)``: ``code`` is ``GATHER_DONE``,
    ``GATHER_FULL`` (row ``cap`` would be written), ``GATHER_BAD_SIZE`` (``bad_seq`` has
    ``bad_length`` bytes), ``NO_DATA`` (the tail), ``END_OF_SEGMENT`` or
    ``CORRUPT``; ``offset`` is the record to resume at.
    """
    base = address_of(seg, 0)
    size = seg.shape[0]
    obase = address_of(out, 0)
    ntypes = types.shape[0]
    bad_seq = -1
    bad_len = -1
    code = GATHER_DONE
    while True:
        if n >= stop_n:
            code = GATHER_DONE
            break
        code, off, rec = skip_to_user_record(base, size, off)
        if code != 0:
            break
        t = load_plain_i32_at(base + off + L.REC_TYPE_ID_OFFSET)
        seq = load_plain_i64_at(base + off + L.REC_SEQ_OFFSET)
        ts = load_plain_i64_at(base + off + L.REC_TIMESTAMP_OFFSET)
        key = ts if by_time else seq
        if key >= hi:
            code = GATHER_DONE
            break
        keep = key >= lo
        if keep and ntypes > 0:
            keep = False
            for i in range(ntypes):
                if types[i] == t:
                    keep = True
                    break
        if not keep:
            off += rec
            continue
        length = load_plain_i32_at(base + off + L.REC_LENGTH_OFFSET)  # checked against the commit word
        if itemsize >= 0 and length != itemsize:
            code = GATHER_BAD_SIZE
            bad_seq = seq
            bad_len = length
            break
        if n >= cap:
            code = GATHER_FULL
            break
        dst = obase + n * row
        store_plain_i64_at(dst + T.GATHER_SEQ_OFFSET, seq)
        store_plain_i64_at(dst + T.GATHER_TIMESTAMP_OFFSET, ts)
        store_plain_i32_at(dst + T.GATHER_TYPE_ID_OFFSET, t)
        store_plain_i32_at(dst + T.GATHER_LENGTH_OFFSET, length)
        src = base + off + L.RECORD_HEADER_LENGTH
        if itemsize >= 0:
            body = dst + T.GATHER_BODY_OFFSET
            j = 0
            while j + 8 <= itemsize:  # rows are 8-aligned and payloads 32-aligned
                store_plain_i64_at(body + j, load_plain_i64_at(src + j))
                j += 8
            while j < itemsize:
                store_plain_u8_at(body + j, load_plain_u8_at(src + j))
                j += 1
        else:
            store_plain_i64_at(dst + T.GATHER_BODY_OFFSET, off + L.RECORD_HEADER_LENGTH)
        n += 1
        off += rec
    return code, off, n, bad_seq, bad_len
