"""Crash recovery of a queue's tail, run by a writer at open while it holds the writer lock.

Scans from the start of the hinted head segment, verifies the checksum of the
last committed record, covers torn or dirty bytes (a crashed writer's
half-written record) with an end marker and moves to the next segment, gives a
predecessor left without an end marker (a crash mid-roll) its marker, and sets
the next seq to the last committed seq + 1. See docs/format.md, "Crash recovery".
"""
from __future__ import annotations

import logging
import os
import struct
import time
import zlib
from typing import TYPE_CHECKING

from . import _files as F
from .hot import layout as L
from .hot import read as R
from .hot import status as S

if TYPE_CHECKING:
    from ._writer import QueueWriter

log = logging.getLogger("chronicle_async")

_BODY = struct.Struct(L.RECORD_BODY_FORMAT)
_BODY_OFFSET = L.REC_TYPE_ID_OFFSET
_HDR = L.RECORD_HEADER_LENGTH
_IDX_WRITE_OFFSET = L.CTL_WRITE_OFFSET_OFFSET // 8
_IDX_NEXT_SEQ = L.CTL_NEXT_SEQ_OFFSET // 8
_IDX_WRITE_SEGMENT = L.CTL_WRITE_SEGMENT_OFFSET // 8


def write_end_marker(m: F.Mapping, off: int, seq: int) -> None:
    """Commit a padding record in segment mapping ``m`` from ``off`` to the end of the segment.

    Header first, commit word last (a release store), as for every record; ``seq`` is
    the next seq, which the marker does not consume.
    """
    n = m.length - off - _HDR
    _BODY.pack_into(m.mv, off + _BODY_OFFSET, L.PADDING_TYPE_ID, seq, time.time_ns(), n, 0)
    F.commit_view(m)[off >> 2] = n + 1


def recover(w: "QueueWriter") -> None:
    """Find the tail after any previous writer, clean or crashed, and continue after it.

    Scans from the start of the hinted head segment, verifies the checksum of
    the last committed record, and if anything past the tail is torn or dirty
    (a crashed writer's half-written record), covers it with an end marker and
    moves to the next segment. The next seq is the last committed seq + 1.
    """
    q = w._ctl.q
    d = w._path
    clean = w._ctl.i32[L.CTL_WRITER_STATE_OFFSET // 4] == L.WRITER_STATE_CLOSED
    seq_hint = q[_IDX_NEXT_SEQ]
    ids = F.list_segments(d)
    seg_id = q[_IDX_WRITE_SEGMENT]
    if seg_id not in ids:
        older = [i for i in ids if i <= seg_id]
        seg_id = older[-1] if older else (ids[-1] if ids else seg_id)
        F.create_segment(d, seg_id, w._segment_size, w._queue_id)
    _seal_predecessor(w, seg_id)
    last_seq = -1
    while True:
        w._map_segment(seg_id)
        st, off, lseq, loff, _count = R.scan(w._seg.arr, L.SEGMENT_DATA_OFFSET, R.SCAN_TO_TAIL, 0)
        if lseq >= 0:
            last_seq = lseq
        if st != S.END_OF_SEGMENT:
            break
        seg_id += 1
        F.create_segment(d, seg_id, w._segment_size, w._queue_id)
    torn = st == S.CORRUPT
    next_seq = None if last_seq < 0 else last_seq + 1
    if loff >= 0 and not _checksum_ok(w, loff):
        log.warning("%s: tail record seq %d at offset %d fails its checksum; covering it", w._seg.path, lseq, loff)
        torn, off, next_seq = True, loff, lseq  # the torn record's seq is reused
    if torn or (not clean and R.any_nonzero(w._seg.arr, off)):
        log.warning("%s: covering torn or uncommitted bytes after offset %d with padding", w._seg.path, off)
        write_end_marker(w._seg, off, next_seq if next_seq is not None else 0)
        seg_id += 1
        F.create_segment(d, seg_id, w._segment_size, w._queue_id)
        w._map_segment(seg_id)
        off = L.SEGMENT_DATA_OFFSET
    if next_seq is None:
        next_seq = _last_seq_before(w, seg_id, seq_hint) + 1
    q[_IDX_WRITE_SEGMENT] = seg_id
    q[_IDX_WRITE_OFFSET] = off
    q[_IDX_NEXT_SEQ] = next_seq

def _seal_predecessor(w: "QueueWriter", seg_id: int) -> None:
    """Give segment ``seg_id - 1`` an end marker if a crash left it without one."""
    prev = seg_id - 1
    if prev < 0 or not os.path.exists(F.segment_path(w._path, prev)):
        return
    m = F.open_segment(w._path, prev, w._segment_size, w._queue_id, writable=True)
    try:
        st, off, lseq, _lo, _n = R.scan(m.arr, L.SEGMENT_DATA_OFFSET, R.SCAN_TO_TAIL, 0)
        if st != S.END_OF_SEGMENT:
            log.warning("%s: segment %d has no end marker (a crash during a roll); adding one at %d", w._path, prev, off)
            write_end_marker(m, off, max(lseq + 1, 0))
    finally:
        m.close()

def _last_seq_before(w: "QueueWriter", seg_id: int, seq_hint: int) -> int:
    for sid in reversed([i for i in F.list_segments(w._path) if i < seg_id]):
        try:
            m = F.open_segment(w._path, sid, w._segment_size, w._queue_id, writable=False)
        except FileNotFoundError:
            continue
        try:
            _st, _off, lseq, _loff, _n = R.scan(m.arr, L.SEGMENT_DATA_OFFSET, R.SCAN_TO_TAIL, 0)
        finally:
            m.close()
        if lseq >= 0:
            return lseq
    return seq_hint - 1

def _checksum_ok(w: "QueueWriter", off: int) -> bool:
    mv = w._seg.mv
    _t, _seq, _ts, n, ck = _BODY.unpack_from(mv, off + L.REC_TYPE_ID_OFFSET)
    return zlib.adler32(mv[off + _HDR : off + _HDR + n]) == ck
