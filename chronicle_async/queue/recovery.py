"""Crash recovery of a queue's tail, run by a writer at open while it holds the writer lock.

Scans from the start of the hinted head segment and tells a torn tail (the end of what
was written: covered with an end marker) from a hole in committed data (a damaged record
with intact records after it: a typed error, or with ``repair`` padding over exactly the
damaged bytes). Checks the tail record's checksum, seals a predecessor a crash left
without an end marker, and continues the seqs without ever reusing one that was
committed. A function of the queue's files: :func:`recover` takes the control file's hints as
plain values and returns a :class:`Tail` (where to continue, and a :class:`RecoveryReport`),
which the writer stores. See docs/format.md, "Crash recovery".
"""
from __future__ import annotations

import logging
import os
import struct
import time
from dataclasses import dataclass

from . import files as F
from .._errors import CorruptRecordError, CorruptSegmentError
from ..hot import layout as L
from ..hot import read as R
from ..hot import status as S

log = logging.getLogger("chronicle_async")

_BODY = struct.Struct(L.RECORD_BODY_FORMAT)
_BODY_OFFSET = L.REC_TYPE_ID_OFFSET
_HDR = L.RECORD_HEADER_LENGTH


def write_padding(m: F.Mapping, off: int, end: int, seq: int) -> None:
    """Commit a padding record in segment mapping ``m`` covering bytes ``[off, end)``.

    Header first, commit word last (a release store), as for every record; ``seq`` is
    the next seq, which padding does not consume. Readers skip it; reaching the end of
    the segment, it is the end marker.
    """
    n = end - off - _HDR
    _BODY.pack_into(m.mv, off + _BODY_OFFSET, L.PADDING_TYPE_ID, seq, time.time_ns(), n, 0)
    F.commit_view(m)[off >> 2] = n + 1


def write_end_marker(m: F.Mapping, off: int, seq: int) -> None:
    """Commit the end marker of segment mapping ``m`` at ``off`` (padding to the end of the segment)."""
    write_padding(m, off, m.length, seq)


@dataclass(frozen=True)
class Hole:
    """Damaged committed data that a repair covered with padding: bytes ``[offset, next_offset)``
    of ``segment``; seqs ``seq .. next_seq - 1`` are lost (readers see the gap)."""

    segment: int
    offset: int
    next_offset: int
    seq: int
    next_seq: int


@dataclass(frozen=True)
class RecoveryReport:
    """What the recovery at ``open_publisher`` found and did (``QueueWriter.recovery``).

    ``torn_tail``: ``(segment, offset)`` where a crashed writer's torn or half-written tail was
    covered with an end marker, or None. ``skipped_seq``: the seq of a committed tail record
    that failed its checksum and was covered; it is never given to another message. ``sealed``:
    ``(segment, offset)`` of an end marker added to a segment a crash left without one.
    ``holes``: damaged data inside committed data, covered only with ``repair=True`` (without
    it, recovery raises :class:`CorruptRecordError` and changes nothing). ``recreated``: ids of
    the newest segment files, found blank (all zeros or empty: lost in a power cut before any of
    their bytes reached the disk) and created again. ``next_seq``: where the writer continues.
    """

    next_seq: int
    torn_tail: tuple[int, int] | None = None
    skipped_seq: int | None = None
    sealed: tuple[int, int] | None = None
    holes: tuple[Hole, ...] = ()
    recreated: tuple[int, ...] = ()

    @property
    def clean(self) -> bool:
        """True if recovery changed nothing."""
        return self.torn_tail is None and self.sealed is None and not self.holes and not self.recreated


def _never_below_committed(scanned_next: int, seq_hint: int, segment_size: int) -> int:
    """The next seq: after the last record on disk, and never below the control file's ``next_seq``.

    The writer stores ``next_seq`` in the control file after every commit, so a seq below it may
    have been delivered (for instance a tail record that the power cut then lost). The hint is
    trusted only within a segment's worth of records of the scan, so a damaged control file
    cannot make seqs jump by an absurd amount.
    """
    if scanned_next < seq_hint <= scanned_next + segment_size // L.RECORD_ALIGNMENT:
        return seq_hint
    return scanned_next

@dataclass(frozen=True, eq=False)
class Tail:
    """Where a writer continues after :func:`recover`: the head segment, its write offset and
    the next seq (the three control-file words the writer stores), with the report.

    ``mapping`` is a writable mapping of segment ``segment_id`` (mapped with the ``prefault``
    given to :func:`recover`); the caller owns it from now on and closes it.
    """

    segment_id: int
    offset: int
    next_seq: int
    mapping: F.Mapping
    report: RecoveryReport


def recover(queue_dir: str, segment_size: int, queue_id: int, *, head_hint: int, seq_hint: int, clean: bool,
            repair: bool = False, prefault: bool = False) -> Tail:
    """Find the tail after any previous writer, clean or crashed, and say where to continue.

    The caller (a writer holding the writer lock) reads the hints from the control file of
    ``queue_dir``: ``head_hint`` its write segment, ``seq_hint`` its next seq, ``clean`` whether
    the previous writer closed cleanly. This reads and repairs the segment files only, never the
    control file: the caller stores the returned :class:`Tail`'s segment, offset and next seq.

    A torn tail exists only at the very end of what was written. So where the scan stops
    (a zero commit word or a malformed record), recovery first looks for intact committed
    data beyond that point: if there is some, the stop is a hole in committed data, not a
    tail, and recovery raises :class:`CorruptRecordError` (or, with ``repair``, covers the
    hole with padding and goes on). Only a stop with nothing intact after it is a tail: a
    torn or half-written tail record is covered with an end marker. The next seq never goes
    below a seq that was committed (so readers never see one seq twice). See docs/format.md,
    "Crash recovery".
    """
    return _Recovery(queue_dir, segment_size, queue_id, prefault).run(head_hint, seq_hint, clean, repair)


class _Recovery:
    """One recovery pass over the segment files of a queue; holds the head segment's mapping."""

    def __init__(self, queue_dir: str, segment_size: int, queue_id: int, prefault: bool):
        self._dir = queue_dir
        self._segment_size = segment_size
        self._queue_id = queue_id
        self._prefault = prefault
        self._seg: F.Mapping | None = None

    def _map(self, seg_id: int) -> None:
        """Map segment ``seg_id`` writable as the current one (the previous mapping is closed)."""
        m = F.open_segment(self._dir, seg_id, self._segment_size, self._queue_id, writable=True,
                           prefault=self._prefault)
        old, self._seg = self._seg, m
        if old is not None:
            old.close()

    def run(self, head_hint: int, seq_hint: int, clean: bool, repair: bool) -> Tail:
        try:
            return self._run(head_hint, seq_hint, clean, repair)
        except BaseException:
            if self._seg is not None:
                self._seg.close()
                self._seg = None
            raise

    def _run(self, head_hint: int, seq_hint: int, clean: bool, repair: bool) -> Tail:
        d = self._dir
        recreated = self._recreate_blank()
        ids = F.list_segments(d)
        seg_id = head_hint
        if seg_id not in ids:
            older = [i for i in ids if i <= seg_id]
            seg_id = older[-1] if older else (ids[-1] if ids else seg_id)
            F.create_segment(d, seg_id, self._segment_size, self._queue_id)
        holes: list[Hole] = []
        sealed = self._seal_predecessor(seg_id, seq_hint, repair, holes)
        last_seq = -1  # the last user record passed, over every segment scanned
        self._map(seg_id)
        off = L.SEGMENT_DATA_OFFSET
        while True:
            st, off, last_seq, damaged = self._scan_to_stop(self._seg, seg_id, off, last_seq, seq_hint, repair, holes)
            if st != S.END_OF_SEGMENT:
                expected = (last_seq if last_seq >= 0 else self._last_seq_before(seg_id, -1)) + 1
                later = self._data_after(seg_id, expected, seq_hint)
                if later is None:
                    break  # nothing intact after the stop in any segment: it is the tail
                seg_id, off = self._bridge(seg_id, off, expected, later, repair, holes)
                continue
            seg_id += 1
            F.create_segment(d, seg_id, self._segment_size, self._queue_id)
            self._map(seg_id)
            off = L.SEGMENT_DATA_OFFSET
        torn = st == S.CORRUPT  # a malformed or damaged record with nothing intact after it: a torn tail
        skipped = None
        if damaged is not None:
            log.warning("%s: tail record seq %d at offset %d fails its checksum; covering it (its seq is not reused)",
                        self._seg.path, damaged, off)
            skipped = last_seq = damaged
        torn_tail = None
        if torn or (not clean and R.any_nonzero(self._seg.arr, off)):
            log.warning("%s: covering torn or uncommitted bytes after offset %d with padding", self._seg.path, off)
            torn_tail = (seg_id, off)
            nxt = last_seq + 1 if last_seq >= 0 else max(seq_hint, 0)
            write_end_marker(self._seg, off, nxt)
            seg_id += 1
            F.create_segment(d, seg_id, self._segment_size, self._queue_id)
            self._map(seg_id)
            off = L.SEGMENT_DATA_OFFSET
        if last_seq < 0:
            last_seq = self._last_seq_before(seg_id, seq_hint - 1)
        next_seq = _never_below_committed(last_seq + 1, seq_hint, self._segment_size)
        if next_seq > last_seq + 1 and off > L.SEGMENT_DATA_OFFSET:
            # Seqs committed but lost are skipped. Say so in the segment: a seq jump after padding is a
            # gap readers expect (verify); one straight after a record would read as damage.
            if off + L.RECORD_ALIGNMENT <= L.segment_data_end(self._segment_size):
                write_padding(self._seg, off, off + L.RECORD_ALIGNMENT, next_seq)
                off += L.RECORD_ALIGNMENT
            else:
                write_end_marker(self._seg, off, next_seq)
                seg_id += 1
                F.create_segment(d, seg_id, self._segment_size, self._queue_id)
                self._map(seg_id)
                off = L.SEGMENT_DATA_OFFSET
        seg, self._seg = self._seg, None
        assert seg is not None
        report = RecoveryReport(next_seq, torn_tail, skipped, sealed, tuple(holes), recreated)
        return Tail(seg_id, off, next_seq, seg, report)

    def _recreate_blank(self) -> tuple[int, ...]:
        """Create again every segment file that holds nothing but zeros, or no bytes at all.

        A power cut after a segment was created but before any of it was synced (``Durability.NONE``
        or ``ASYNC``) can leave such a file: no header, no record, nothing to lose. At or after the
        head it was prepared or just rolled to; before the head its data was lost, and readers meet
        the recreated, empty segment as a hole (``CorruptSegmentError``, or skipped with ``verify``).
        """
        done = []
        for sid in F.list_segments(self._dir):
            path = F.segment_path(self._dir, sid)
            if not F.is_blank(path):
                continue
            log.warning("%s: segment %d is blank (created, then lost before any of it reached the disk); "
                        "creating it again", self._dir, sid)
            os.unlink(path)
            F.create_segment(self._dir, sid, self._segment_size, self._queue_id)
            done.append(sid)
        return tuple(done)

    def _data_after(self, seg_id: int, seq: int, seq_hint: int) -> tuple[int, int, int] | None:
        """The first intact committed record in a segment after ``seg_id``, as ``(segment, offset, seq)``.

        After a power cut a later segment can hold data that reached the disk while the end of
        ``seg_id`` did not: then the stop in ``seg_id`` is a hole, not the tail. None if no later
        segment holds any (the usual case: at most a prepared, empty segment follows the head).
        """
        per_segment = self._segment_size // L.RECORD_ALIGNMENT
        for sid in F.list_segments(self._dir):
            if sid <= seg_id:
                continue
            try:
                m = F.open_segment(self._dir, sid, self._segment_size, self._queue_id, writable=False)
            except (FileNotFoundError, CorruptSegmentError):
                continue  # unreadable: no intact data to keep there
            try:
                max_seq = max(seq_hint, seq) + (sid - seg_id + 1) * per_segment
                off, found = R.find_intact(m.arr, L.SEGMENT_DATA_OFFSET, max(seq, 0), max_seq)
            finally:
                m.close()
            if off >= 0:
                return sid, int(off), int(found)
        return None

    def _hole_into(self, seg_id: int, off: int, seq: int, later: tuple[int, int, int], repair: bool) -> Hole:
        """The stop at ``off`` of ``seg_id`` is a hole that runs into segment ``later[0]``: raise
        :class:`CorruptRecordError`, or (``repair``) say what is lost and return the hole to cover."""
        lsid, loff, lseq = later
        where = f"segment {seg_id} of {self._dir}"
        if not repair:
            raise CorruptRecordError(
                f"{where}: the record at offset {off} (seq {seq} expected there) is damaged or zeroed, and nothing "
                f"intact follows in that segment, yet segment {lsid} holds intact records from offset {loff} (seq "
                f"{lseq}): this is corruption (a power cut lost part of the data), not a torn tail, and nothing was "
                f"changed. Restore the files from a copy, or open with Queue.open_publisher(path, repair=True) to "
                f"skip from there to segment {lsid} (seqs {seq}..{lseq - 1} are then lost)",
                seg_id, off, seq, loff, lseq,
            )
        log.warning("%s: repair: ending the segment at damaged offset %d and skipping to segment %d offset %d; "
                    "seqs %d..%d are lost", where, off, lsid, loff, seq, lseq - 1)
        return Hole(seg_id, off, self._segment_size, seq, lseq)

    def _bridge(self, seg_id: int, off: int, seq: int, later: tuple[int, int, int], repair: bool,
                holes: list[Hole]) -> tuple[int, int]:
        """The stop at ``off`` of ``seg_id`` (seq ``seq`` expected) is a hole running into a later segment
        (``later``, from :func:`_data_after`): raise :class:`CorruptRecordError`, or with ``repair`` end
        this segment there, give every segment in between an end marker, cover the start of the later
        one with padding, and return where the scan goes on."""
        lsid, loff, lseq = later
        holes.append(self._hole_into(seg_id, off, seq, later, repair))
        write_end_marker(self._seg, off, lseq)
        for sid in range(seg_id + 1, lsid):
            F.create_segment(self._dir, sid, self._segment_size, self._queue_id)  # a missing one is made (kept if present)
            self._map(sid)
            if not F.commit_view(self._seg)[L.SEGMENT_DATA_OFFSET >> 2]:
                write_end_marker(self._seg, L.SEGMENT_DATA_OFFSET, lseq)
                holes.append(Hole(sid, L.SEGMENT_DATA_OFFSET, self._segment_size, lseq, lseq))
        self._map(lsid)
        if loff > L.SEGMENT_DATA_OFFSET:
            write_padding(self._seg, L.SEGMENT_DATA_OFFSET, loff, lseq)
            holes.append(Hole(lsid, L.SEGMENT_DATA_OFFSET, loff, lseq, lseq))
        return lsid, L.SEGMENT_DATA_OFFSET

    def _hole_at(self, m: F.Mapping, seg_id: int, off: int, seq: int, seq_hint: int,
                 repair: bool) -> Hole | None:
        """If committed data lies beyond the stop at ``off`` (where ``seq`` was expected), the stop is
        a hole: raise :class:`CorruptRecordError`, or with ``repair`` cover it and return it.
        None if nothing intact follows (a tail)."""
        max_seq = max(seq_hint, seq) + self._segment_size // L.RECORD_ALIGNMENT
        nxt_off, nxt_seq = R.find_intact(m.arr, off + L.RECORD_ALIGNMENT, max(seq, 0), max_seq)
        if nxt_off < 0:
            return None
        where = f"segment {seg_id} of {self._dir} ({m.path})"
        if not repair:
            raise CorruptRecordError(
                f"{where}: the record at offset {off} (seq {seq} expected there) is damaged or zeroed, yet intact "
                f"records follow from offset {nxt_off} (seq {nxt_seq}): this is corruption, not a torn tail, and "
                f"nothing was changed. Restore the file from a copy, or open with Queue.open_publisher(path, "
                f"repair=True) to cover bytes {off}..{nxt_off} with padding (seqs {seq}..{nxt_seq - 1} are then lost)",
                seg_id, off, seq, nxt_off, nxt_seq,
            )
        log.warning("%s: repair: covering damaged bytes %d..%d with padding; seqs %d..%d are lost, the records after "
                    "are kept", where, off, nxt_off, seq, nxt_seq - 1)
        write_padding(m, off, nxt_off, seq)
        return Hole(seg_id, off, nxt_off, seq, nxt_seq)

    def _seal_predecessor(self, seg_id: int, seq_hint: int, repair: bool,
                          holes: list[Hole]) -> tuple[int, int] | None:
        """Give segment ``seg_id - 1`` an end marker if a crash during a roll left it without one.

        The scan of it stopping early is a crash mid-roll only if nothing intact lies beyond the
        stop; otherwise it is a hole (see :func:`_hole_at`). Returns where a marker was added.
        """
        prev = seg_id - 1
        if prev < 0 or not os.path.exists(F.segment_path(self._dir, prev)):
            return None
        m = F.open_segment(self._dir, prev, self._segment_size, self._queue_id, writable=True)
        try:
            st, off, last, damaged = self._scan_to_stop(m, prev, L.SEGMENT_DATA_OFFSET, -1, seq_hint, repair, holes)
            if st == S.END_OF_SEGMENT:
                return None
            expected = (last if last >= 0 else self._last_seq_before(prev, -1)) + 1
            later = self._data_after(prev, expected, seq_hint)
            if later is not None and (later[0] > seg_id or later[2] > expected):  # seqs are missing: a hole
                holes.append(self._hole_into(prev, off, expected, later, repair))
                write_end_marker(m, off, later[2])
                return None
            if damaged is not None:
                log.warning("%s: record seq %d at offset %d of segment %d fails its checksum; the end marker covers it",
                            self._dir, damaged, off, prev)
                expected = damaged + 1
            log.warning("%s: segment %d has no end marker (a crash during a roll); adding one at %d", self._dir, prev, off)
            write_end_marker(m, off, max(expected, 0))
            return (prev, off)
        finally:
            m.close()

    def _scan_to_stop(self, m: F.Mapping, seg_id: int, off: int, last_seq: int, seq_hint: int,
                      repair: bool, holes: list[Hole]) -> tuple[int, int, int, int | None]:
        """Scan segment ``seg_id`` (mapping ``m``) from ``off`` to its end marker or to its tail.

        Every committed user record passed is checked against its checksum (header and payload). A
        stop (a zero commit word, a malformed record, or a record failing its checksum) with intact
        records after it is a hole: :class:`CorruptRecordError`, or with ``repair`` padding over it
        (added to ``holes``) and the scan goes on. Returns ``(status, offset, last_seq, damaged)``:
        ``END_OF_SEGMENT`` or the tail's status and offset; ``last_seq`` the last intact user record's
        seq (carried in from earlier segments); ``damaged`` the seq expected at a tail record that is
        committed but fails its checksum (torn by a power cut: its seq must not be reused), else None.
        """
        while True:
            start = off
            st, off, lseq, _loff, _n = R.scan(m.arr, off, R.SCAN_TO_TAIL, 0)
            bad, good_seq = R.first_damaged(m.arr, start, off)
            if bad >= 0:  # a committed record that fails its checksum: the stop is there
                st, off, lseq = S.CORRUPT, bad, good_seq
            if lseq >= 0:
                last_seq = lseq
            if st == S.END_OF_SEGMENT:
                return st, off, last_seq, None
            before = last_seq if last_seq >= 0 else self._last_seq_before(seg_id, -1)
            hole = self._hole_at(m, seg_id, off, before + 1, seq_hint, repair)
            if hole is None:
                return st, off, last_seq, (before + 1 if bad >= 0 else None)
            holes.append(hole)  # covered with padding: scan on from the same offset, over it

    def _last_seq_before(self, seg_id: int, fallback: int) -> int:
        """The last seq in the newest segment before ``seg_id`` that has a user record; ``fallback`` if none."""
        for sid in reversed([i for i in F.list_segments(self._dir) if i < seg_id]):
            try:
                m = F.open_segment(self._dir, sid, self._segment_size, self._queue_id, writable=False)
            except (FileNotFoundError, CorruptSegmentError):
                continue  # missing or unreadable: readers report it where they meet it
            try:
                lseq = R.last_intact_seq(m.arr)  # past any damage: its seqs were given out
            finally:
                m.close()
            if lseq >= 0:
                return lseq
        return fallback
