"""Offline integrity check of a whole queue: every record of every segment file, read-only.

:func:`verify_queue` maps each segment read-only (no lock: a live writer is never blocked),
checks the segment header against the file name and the control file, then walks the records
with one jitted kernel per segment (:func:`_walk_segment`, built from the reader's kernels in
``hot/read.py`` and the checksum in ``hot/checksum.py``): framing (commit word equals
length + 1, the record fits the segment, end markers), each record's Adler-32, and seq continuity
within and across segments (``seq_in_order``: a jump is allowed only after padding, a segment
change or damage; a repeat or a step back never). A live writer's uncommitted tail is not a problem.
"""
from __future__ import annotations

import mmap
import os
import struct
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from . import files as F
from .._errors import QueueNotFoundError
from ..hot import layout as L
from ..hot import read as R
from ..hot import status as S
from ..hot._jit import kernel
from ..hot.atomics import address_of, load_acquire_i32_at, load_plain_i32_at, load_plain_i64_at
from ..hot.checksum import record_checksum_ok_at

#: Problem kinds, as stored by the kernel and as reported.
KIND_FRAMING = 0
KIND_CHECKSUM = 1
KIND_SEQ = 2
KIND_NAMES = {KIND_FRAMING: "framing", KIND_CHECKSUM: "checksum", KIND_SEQ: "seq"}
KIND_HEADER = "header"

_MAX_PROBLEMS_PER_SEGMENT = 1024
_SEG_HEADER = struct.Struct(L.SEGMENT_HEADER_FORMAT)

#: ``progress(bytes_done, bytes_total)``, called after each segment.
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Problem:
    """One defect: in segment file ``segment`` at byte ``offset``; ``seq`` when the record has one."""

    segment: str
    offset: int
    seq: int | None
    kind: str
    detail: str


@dataclass(frozen=True)
class VerifyReport:
    """What :func:`verify_queue` checked and found; ``ok`` when no problem was found."""

    path: str
    segments: int
    records: int
    bytes: int
    first_seq: int | None
    last_seq: int | None
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


@kernel(inline="always")
def _next_user_seq(base, size, off):
    """The seq of a well-formed user record right at ``off``, else -1 (lookahead after a stray seq)."""
    if off + L.RECORD_HEADER_LENGTH > size:
        return -1
    c = load_acquire_i32_at(base + off)
    if c <= 0 or R.check_record(base, size, off, c) < 0:
        return -1
    if load_plain_i32_at(base + off + L.REC_TYPE_ID_OFFSET) == L.PADDING_TYPE_ID:
        return -1
    return load_plain_i64_at(base + off + L.REC_SEQ_OFFSET)


@kernel
def _walk_segment(seg, expected, may_jump, out):
    """Walk every record of one segment, writing defects to ``out`` (rows: offset, seq, kind, expected).

    ``expected`` is the next seq expected (-1: any); ``may_jump`` whether a forward jump is fine at
    the start (a segment change). Returns ``(problems, records, first_seq, last_seq, end_code,
    stop_offset)``; ``end_code`` is ``END_OF_SEGMENT`` when an end marker closes the segment,
    ``NO_DATA`` where the committed records end (a live or crashed writer's tail).
    """
    base = address_of(seg, 0)
    size = seg.shape[0]
    version = load_plain_i32_at(base + L.SEG_VERSION_OFFSET)
    cap = out.shape[0]
    n_prob = 0
    records = 0
    first = -1
    last = -1
    off = L.SEGMENT_DATA_OFFSET
    code = S.NO_DATA
    while True:
        if off >= size:
            code = S.END_OF_SEGMENT
            break
        c = load_acquire_i32_at(base + off)
        bad = False
        rec = 0
        if c == 0:
            bad = True
        else:
            rec = R.check_record(base, size, off, c)
            bad = rec < 0
        if bad:
            nxt, nseq = R.find_intact(seg, off + L.RECORD_ALIGNMENT, -(1 << 62), 1 << 62)
            if nxt < 0:
                if c != 0 and n_prob < cap:  # committed garbage with nothing after it
                    out[n_prob, 0] = off
                    out[n_prob, 1] = -1
                    out[n_prob, 2] = KIND_FRAMING
                    out[n_prob, 3] = c
                    n_prob += 1
                code = S.NO_DATA if c == 0 else S.CORRUPT
                break
            if n_prob < cap:
                out[n_prob, 0] = off
                out[n_prob, 1] = -1
                out[n_prob, 2] = KIND_FRAMING
                out[n_prob, 3] = c
                n_prob += 1
            off = nxt
            may_jump = True
            continue
        t = load_plain_i32_at(base + off + L.REC_TYPE_ID_OFFSET)
        if t == L.PADDING_TYPE_ID:
            if off + rec >= size:
                code = S.END_OF_SEGMENT
                break
            may_jump = True
            off += rec
            continue
        seq = load_plain_i64_at(base + off + L.REC_SEQ_OFFSET)
        records += 1
        if not record_checksum_ok_at(base + off, c - 1, version):
            if n_prob < cap:
                out[n_prob, 0] = off
                out[n_prob, 1] = seq
                out[n_prob, 2] = KIND_CHECKSUM
                out[n_prob, 3] = expected
                n_prob += 1
            if expected >= 0:
                expected += 1
            may_jump = True
            off += rec
            continue
        nxt_expected = seq + 1
        if expected >= 0 and not R.seq_in_order(seq, expected, may_jump):
            if n_prob < cap:
                out[n_prob, 0] = off
                out[n_prob, 1] = seq
                out[n_prob, 2] = KIND_SEQ
                out[n_prob, 3] = expected
                n_prob += 1
            if _next_user_seq(base, size, off + rec) == expected + 1:
                nxt_expected = expected + 1  # one stray seq: the records after it continue the old run
        if first < 0:
            first = seq
        last = seq
        expected = nxt_expected
        may_jump = False
        off += rec
    return n_prob, records, first, last, code, off


class _ReadOnlySegment:
    """A segment file mapped read-only with no lock (a context manager); ``arr`` is a uint8 view."""

    def __init__(self, path: str):
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            self.size = os.fstat(fd).st_size
            self._mm = mmap.mmap(fd, self.size, prot=mmap.PROT_READ) if self.size else None
        finally:
            os.close(fd)
        self.arr = np.frombuffer(self._mm, dtype=np.uint8) if self._mm is not None else np.zeros(0, np.uint8)

    def __enter__(self) -> _ReadOnlySegment:
        return self

    def __exit__(self, *exc: object) -> None:
        self.arr = np.zeros(0, np.uint8)
        if self._mm is not None:
            self._mm.close()


def _header_problem(name: str, seg: _ReadOnlySegment, segment_id: int, segment_size: int, queue_id: int) -> Problem | None:
    if seg.size != segment_size:
        return Problem(name, 0, None, KIND_HEADER, f"file is {seg.size} bytes, the queue's segments are {segment_size}")
    magic, version, sid, qid, size, _created = _SEG_HEADER.unpack_from(seg.arr, L.SEG_MAGIC_OFFSET)
    why = None
    if magic != L.SEGMENT_MAGIC:
        why = f"bad magic {magic:#x} (expected {L.SEGMENT_MAGIC:#x})"
    elif not L.SEGMENT_MIN_VERSION <= version <= L.SEGMENT_VERSION:
        why = f"format version {version} (this code reads {L.SEGMENT_MIN_VERSION}..{L.SEGMENT_VERSION})"
    elif sid != segment_id:
        why = f"header says segment id {sid}, the file name says {segment_id}"
    elif qid != queue_id:
        why = f"header says queue id {qid:#x}, the control file says {queue_id:#x}"
    elif size != segment_size:
        why = f"header says segment size {size}, the control file says {segment_size}"
    return Problem(name, 0, None, KIND_HEADER, why) if why else None


def _describe(kind: int, seq: int, extra: int) -> str:
    if kind == KIND_FRAMING:
        if extra == 0:
            return "zero commit word with committed records after it (a hole in committed data)"
        return f"malformed record: commit word {extra} does not match its length or the record overruns the segment"
    if kind == KIND_CHECKSUM:
        return "payload or header does not match its checksum"
    if seq == extra - 1:
        return f"seq {seq} repeated"
    if seq < extra:
        return f"seq went backwards: expected {extra}, found {seq}"
    return f"seq gap: expected {extra}, found {seq} ({seq - extra} missing)"


def verify_queue(path: str | os.PathLike, *, progress: Progress | None = None) -> VerifyReport:
    """Check every record of every segment of the queue at ``path``; read-only, takes no lock.

    Raises :class:`QueueNotFoundError` if ``path`` holds no queue. A gap before the first
    segment on disk (deleted by retention) and a live writer's uncommitted tail are not problems.
    """
    queue_dir = os.fspath(path)
    if not os.path.isdir(queue_dir):
        raise QueueNotFoundError(f"no queue at {queue_dir}: the folder does not exist; check the path")
    ctl, info = F.open_control(queue_dir, writable=False)
    ctl.close()
    sizes = {}
    for sid in F.list_segments(queue_dir):
        try:
            sizes[sid] = os.path.getsize(F.segment_path(queue_dir, sid))
        except FileNotFoundError:  # deleted by retention since the listing
            pass
    ids = list(sizes)
    total = sum(sizes.values())
    out = np.zeros((_MAX_PROBLEMS_PER_SEGMENT, 4), dtype=np.int64)
    problems: list[Problem] = []
    done = records = 0
    first_seq: int | None = None
    last_seq: int | None = None
    expected = -1
    pending_open: tuple[str, int] | None = None  # a segment that ended without an end marker
    for sid in ids:
        name = L.segment_file_name(sid)
        try:
            mapped = _ReadOnlySegment(F.segment_path(queue_dir, sid))
        except FileNotFoundError:  # deleted by retention meanwhile: what follows may start later
            done += sizes[sid]
            expected = -1
            continue
        with mapped as seg:
            bad = _header_problem(name, seg, sid, info.segment_size, info.queue_id)
            if bad is not None:
                problems.append(bad)
                done += sizes[sid]
                expected = -1
                pending_open = None
                if progress:
                    progress(done, total)
                continue
            n, recs, first, last, code, stop = _walk_segment(seg.arr, expected, True, out)
            rows = out[:n].tolist()
        if recs and pending_open is not None:
            problems.append(Problem(pending_open[0], pending_open[1], None, "framing",
                                    "segment ends without an end marker, yet a later segment holds records"))
        if recs or code == S.END_OF_SEGMENT:
            pending_open = None
        if code != S.END_OF_SEGMENT and (recs or stop > L.SEGMENT_DATA_OFFSET):
            pending_open = (name, int(stop))
        for off, seq, kind, extra in rows:
            problems.append(Problem(name, off, None if seq < 0 and kind == KIND_FRAMING else seq,
                                    KIND_NAMES[kind], _describe(kind, seq, extra)))
        records += recs
        if first >= 0 and first_seq is None:
            first_seq = first
        if n >= _MAX_PROBLEMS_PER_SEGMENT:
            problems.append(Problem(name, int(stop), None, "framing",
                                    f"more than {_MAX_PROBLEMS_PER_SEGMENT} problems in this segment; the rest are not listed"))
        if last >= 0:
            expected = last + 1
            last_seq = last
        done += sizes[sid]
        if progress:
            progress(done, total)
    return VerifyReport(queue_dir, len(ids), records, total, first_seq, last_seq, problems)
