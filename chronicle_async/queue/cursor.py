"""ReaderCursor: the position of one reader and the mapped files it reads, owned in one place.

A :class:`~chronicle_async.QueueReader` reads through its cursor, as an aeron subscriber reads
through its Image: the cursor holds the mapped control file, the mapped segment being read, the
offset and next seq there, the writer epoch seen, the position file (named readers), the owner
(a HotLoop) and the closed/gone state, and it has the operations that move or persist that
position: map a segment, advance to the next one, seek, skip damage, commit. The library's
consumers of a reader (``HotLoop``, ``FanInReader``, the asyncio waits, ``frames``) see and move
positions only through it; it is the only place that knows how a position maps to a row of a
jitted source table (:meth:`ReaderCursor.to_row` / :meth:`ReaderCursor.from_row`).

Its fields without a leading underscore are read and written directly, for speed: they are
single-thread state, touched only by the thread using the reader (the same thread rules as
the reader; a HotLoop owns them while it owns the reader). This module imports no reader.
"""
from __future__ import annotations

import logging
import struct
from typing import Any

import numpy as np

from . import files as F
from . import fork as _fork
from .config import Start
from .._errors import ChronicleError, CorruptSegmentError, DamagedRecordError, QueueClosedError, QueueDeletedError
from .position import PositionFile
from .liveness import DisconnectReason
from .warm import warm_waiters
from ..hot import layout as L
from ..hot import tables as T
from ..hot import read as R
from ..hot import status as S
from ..hot.syscalls import HAVE_RAW_SYSCALL

log = logging.getLogger("chronicle_async")

#: How long ``wait()`` sleeps (at most) before returning False on a queue deleted under the reader.
GONE_WAIT_S = 0.1
#: verify: the seq rule for the next record (``ReaderCursor.may_jump``). NONE: exactly the expected
#: seq; FORWARD: or later (after padding, a segment change, a damaged record); ANY: at a new
#: position, whose expected seq came from a record header not yet checked.
JUMP_NONE, JUMP_FORWARD, JUMP_ANY = 0, 1, 2
_HEADER_CK = L.HEADER_CHECKSUM_VERSION
_SEQ = struct.Struct("<q")


_CLOSED = F.ClosedView("reader")


class ReaderCursor:
    """Where one :class:`QueueReader` is, and the mapped files it reads: it owns that state.

    The one object through which the library's consumers of a reader (``HotLoop``,
    ``FanInReader``, the asyncio waits, ``frames``) see and move its position, and the only
    place that knows how a position maps to a row of a jitted source table (``to_row`` /
    ``from_row``). Created and opened by its reader.

    Not for applications: use the reader's own methods. Fields (single-thread: the thread using
    the reader, or the HotLoop that owns it):

    - ``offset``, ``next_seq``: the position in the mapped segment, and the seq expected there;
    - ``segment`` (the mapped segment: ``.arr``, ``.mv``, ``.path``), ``segment_id``, and its
      views ``seg_i32`` (commit words) and ``seg_mv`` (bytes); ``seg_checks_header`` (verify: the
      segment's checksums cover the record headers);
    - ``ahead``: segment ``segment_id + 1`` mapped ahead (:meth:`map_ahead`) for a HotLoop's hot
      thread to switch to at the end marker, else None; the cursor follows it (:meth:`follow_row`);
    - ``ctl`` (the mapped control file) and its views ``ctl_q``, ``ctl_i32``, ``ctl_arr``;
    - ``epoch``: the writer epoch acknowledged; ``segment_size``, ``queue_id``, ``path``, ``name``;
    - ``position_file`` (a named reader's :class:`PositionFile`, else None);
    - ``can_park`` (the futex word is writable), ``verify``, ``may_jump`` (``JUMP_*``),
      ``damaged`` (records refused as damaged);
    - ``owner`` (the HotLoop reading the mapping, if any), ``gone`` (``QUEUE_DELETED`` once the
      queue was found deleted or replaced under the reader), ``closed``, ``forked``.
    """

    __slots__ = (
        "offset", "next_seq", "seg_i32", "seg_mv", "segment_id", "segment", "segment_size", "verify",
        "ctl_q", "ctl_i32", "ctl_arr", "ctl", "epoch", "queue_id", "path", "name", "position_file",
        "can_park", "seg_checks_header", "may_jump", "damaged", "owner", "gone", "closed", "forked",
        "ahead", "__weakref__",
    )

    def __init__(self, path: str, name: str | None, start: Start, verify: bool):
        """Open the queue at ``path`` for reading (and ``name``'s position file), positioned at ``start``."""
        self.path = path
        self.name = name
        self.verify = verify
        self.may_jump = JUMP_ANY
        self.damaged = 0
        self.owner: object | None = None
        self.gone: DisconnectReason | None = None
        self.forked: Exception | None = None
        self.closed = True
        self.ctl = self.segment = self.position_file = self.ahead = None
        self.seg_i32 = self.ctl_i32 = self.ctl_q = _CLOSED
        self.seg_mv = self.ctl_arr = None
        self.segment_id = -1
        self.offset = self.next_seq = self.epoch = self.segment_size = self.queue_id = 0
        self.can_park = self.seg_checks_header = False
        try:
            self._open(start)
        except BaseException:
            self.close()
            raise
        self.closed = False

    def _open(self, start: Start) -> None:
        try:
            self.ctl, info = F.open_control(self.path, writable=True)
            self.can_park = HAVE_RAW_SYSCALL
        except F.QueuePermissionError:
            self.ctl, info = F.open_control(self.path, writable=False)
            self.can_park = False  # no write access to the futex word: poll instead
        self.ctl_q, self.ctl_i32, self.ctl_arr = self.ctl.q, self.ctl.i32, self.ctl.arr
        self.segment_size = info.segment_size
        self.queue_id = info.queue_id
        self.epoch = self.ctl_q[L.CTL_WRITER_EPOCH_OFFSET // 8]
        warm_waiters()  # the first park must not wait for a compile (queue/warm.py)
        if self.name:
            self.position_file = PositionFile.open(self.path, self.name, self.segment_size, self.queue_id)
            saved = self.position_file.saved
        else:
            saved = None
        if saved is not None:  # a name that committed resumes there; ``start`` is for a new name only
            seg, off, nseq = saved
            if self.map_segment(seg):
                self.set_position(off, nseq)
                self._revalidate_position()
                return
            log.warning(
                "reader %r of %s: its committed segment %d was deleted; starting at the earliest data (seqs will show the gap)",
                self.name, self.path, seg,
            )
            start = Start.EARLIEST
        if start is Start.LATEST:
            self._seek_tail()
        else:
            self._seek_earliest()

    # -- state ---------------------------------------------------------------------------------

    def check_open(self) -> None:
        if self.closed:
            raise self.forked or QueueClosedError(f"reader {self.name!r} of {self.path} is closed")

    @property
    def segment_address(self) -> int:
        return self.segment.arr.ctypes.data

    @property
    def control_words(self) -> tuple[Any, Any]:
        """The control file's ``int32`` and ``int64`` views (futex word, waiters, the writer's head)."""
        return self.ctl_i32, self.ctl_q

    def writer_head(self) -> tuple[int, int, int]:
        """The writer's ``(write_segment, write_offset, next_seq)`` as the control file says now."""
        q = self.ctl_q
        return (int(q[L.CTL_WRITE_SEGMENT_OFFSET // 8]), int(q[L.CTL_WRITE_OFFSET_OFFSET // 8]),
                int(q[L.CTL_NEXT_SEQ_OFFSET // 8]))

    def writer_closed(self) -> bool:
        """True if the control file says the writer closed the queue cleanly (and none reopened it)."""
        return int(self.ctl_i32[L.CTL_WRITER_STATE_OFFSET // 4]) == L.WRITER_STATE_CLOSED

    def has_data(self) -> bool:
        """True if a record is committed at the position (no other check)."""
        return bool(self.seg_i32[self.offset >> 2])

    def seq_at(self, offset: int) -> int:
        """The seq in the header of the record at ``offset`` of the mapped segment."""
        return _SEQ.unpack_from(self.seg_mv, offset + L.REC_SEQ_OFFSET)[0]

    # -- moves ---------------------------------------------------------------------------------

    def move_to(self, offset: int, next_seq: int) -> None:
        """Set the position inside the mapped segment (a consumer took messages the reader did not)."""
        self.offset = offset
        self.next_seq = next_seq

    def map_segment(self, seg_id: int) -> bool:
        """Map segment ``seg_id`` (unmapping the one before); False if its file does not exist.
        The position is left to :meth:`set_position` (or the caller)."""
        if self.segment is not None and self.segment_id == seg_id:
            return True
        if self.ahead is not None and seg_id == self.segment_id + 1:
            m, self.ahead = self.ahead, None  # mapped ahead already: no syscall
        else:
            self.drop_ahead()
            try:
                m = F.open_segment(self.path, seg_id, self.segment_size, self.queue_id, writable=False)
            except FileNotFoundError:
                return False
        old, self.segment = self.segment, m
        self.segment_id = seg_id
        self.seg_i32 = F.load_view(m)
        self.seg_mv = m.mv
        self.seg_checks_header = F.segment_version(m) >= _HEADER_CK  # verify: the checksum covers the header
        if old is not None:
            F.close_later(old)  # the unmap costs milliseconds for a large segment: off this thread
        return True

    def map_ahead(self) -> int:
        """Map segment ``segment_id + 1`` ahead, if its file exists (kept in ``ahead`` until the
        cursor moves there or elsewhere); its address, or 0 if it is not there (yet), or cannot
        be mapped (then advancing to it reports why, as without mapping ahead)."""
        if self.ahead is None:
            if self.closed or self.gone is not None or self.segment is None:
                return 0
            try:
                self.ahead = F.open_segment(self.path, self.segment_id + 1, self.segment_size, self.queue_id,
                                            writable=False)
            except (OSError, ChronicleError):
                return 0
        return self.ahead.arr.ctypes.data

    @property
    def ahead_address(self) -> int:
        """The address of the segment mapped ahead, 0 if none."""
        return self.ahead.arr.ctypes.data if self.ahead is not None else 0

    def drop_ahead(self) -> None:
        """Unmap the segment mapped ahead, if any (its reader moved elsewhere, or is handed back)."""
        m, self.ahead = self.ahead, None
        if m is not None:
            m.close()

    def follow_row(self, row: np.ndarray) -> None:
        """A source-table row switched to the segment this cursor mapped ahead (the hot thread did it
        at the end marker): make it the cursor's segment, at its start, and unmap the one before.
        Reads only the row's segment id, which moves only into ``ahead``, so a HotLoop may call it
        while its hot thread runs, once it has seen the row's ``SRC_NEXT_SEG_ADDR`` cleared."""
        if int(row[T.SRC_SEG_ID]) == self.segment_id + 1 and self.ahead is not None:
            self.map_segment(self.segment_id + 1)
            self.offset = L.SEGMENT_DATA_OFFSET

    def set_position(self, offset: int, next_seq: int) -> None:
        """Position in the segment already mapped by :meth:`map_segment`."""
        self.offset = offset
        self.next_seq = next_seq
        self.may_jump = JUMP_ANY  # a new position: its first intact record sets the seq order

    def _revalidate_position(self) -> None:
        """Make sure a saved position is still on a record boundary at or before the tail.

        Recovery after a torn write may have covered records this reader had already
        read with an end marker; a position inside that padding would never see data.
        """
        st, stop, _ls, _lo, _n = R.scan(self.segment.arr, L.SEGMENT_DATA_OFFSET, R.SCAN_TO_SEQ, self.next_seq)
        if st == 0 or stop >= self.offset:
            return  # the saved offset lies on or before the first record still to read: fine
        if st == S.END_OF_SEGMENT:
            log.warning("reader %r of %s: its position was covered by recovery; continuing after the end marker",
                        self.name, self.path)
            self.offset = stop  # next() follows the end marker to the next segment
        else:
            log.warning("reader %r of %s: its position is past the recovered tail; moving back to the tail",
                        self.name, self.path)
            self.offset = stop

    def _seek_earliest(self) -> None:
        for sid in F.list_segments(self.path):
            if self.map_segment(sid):
                self.set_position(L.SEGMENT_DATA_OFFSET, self._first_seq_or_hint(sid))
                return
        raise CorruptSegmentError(f"queue {self.path} has no segment files; its data was deleted")

    def _first_seq_or_hint(self, from_segment: int) -> int:
        """Seq of the first message at or after ``from_segment`` (the writer's next seq if none)."""
        seq, _ts = R.first_record(self.segment.arr)
        if seq >= 0:
            return seq
        for sid in F.list_segments(self.path):
            if sid <= from_segment:
                continue
            try:
                m = F.open_segment(self.path, sid, self.segment_size, self.queue_id, writable=False)
            except FileNotFoundError:
                continue
            try:
                seq, _ts = R.first_record(m.arr)
            finally:
                m.close()
            if seq >= 0:
                return seq
        return self.ctl_q[L.CTL_NEXT_SEQ_OFFSET // 8]

    def _seek_tail(self) -> None:
        sid = self.ctl_q[L.CTL_WRITE_SEGMENT_OFFSET // 8]
        while True:
            if not self.map_segment(sid):
                self._seek_earliest()
                return
            st, off, lseq, _lo, _n = R.scan(self.segment.arr, L.SEGMENT_DATA_OFFSET, R.SCAN_TO_TAIL, 0)
            if st == S.END_OF_SEGMENT:
                sid += 1
                continue
            nseq = lseq + 1 if lseq >= 0 else self.ctl_q[L.CTL_NEXT_SEQ_OFFSET // 8]
            self.set_position(off, nseq)
            return

    def seek(self, mode: int, target: int, key: int) -> bool:
        """Position at the first record whose seq (``mode`` ``R.SCAN_TO_SEQ``, ``key`` 0) or timestamp
        (``R.SCAN_TO_TIMESTAMP``, ``key`` 1) reaches ``target``; True if there is one, else the tail."""
        try:
            if self.gone is not None:
                raise FileNotFoundError
            ids = F.list_segments(self.path)
        except (FileNotFoundError, NotADirectoryError):
            raise QueueDeletedError(
                f"cannot seek reader {self.name!r}: queue {self.path} was deleted (or replaced) under it; "
                "close the reader and open it again once the queue exists"
            ) from None
        lo, hi, start = 0, len(ids) - 1, 0
        while lo <= hi:  # last segment whose first record is <= target
            mid = (lo + hi) // 2
            if not self.map_segment(ids[mid]):
                ids.pop(mid)
                hi -= 1
                continue
            first = R.first_record(self.segment.arr)[key]
            # seqs are unique; timestamps may repeat across a segment boundary, so for them
            # start in the last segment that begins strictly before the target.
            if 0 <= first and (first <= target if mode == R.SCAN_TO_SEQ else first < target):
                start, lo = mid, mid + 1
            else:
                hi = mid - 1
        for sid in ids[start:]:
            if not self.map_segment(sid):
                continue
            st, off, _ls, _lo, _n = R.scan(self.segment.arr, L.SEGMENT_DATA_OFFSET, mode, target)
            if st == 0:
                self.set_position(off, self.seq_at(off))
                return True
            if st == S.END_OF_SEGMENT:
                continue
            if st == S.CORRUPT:
                raise CorruptSegmentError(f"segment {self.segment.path} has a malformed record at offset {off}")
            self.set_position(off, self.ctl_q[L.CTL_NEXT_SEQ_OFFSET // 8])
            return False
        return False

    def advance_segment(self) -> bool:
        """At a segment's end: map the next segment (or the next one present). False if none yet."""
        if self.gone is not None:
            return False
        nxt = self.segment_id + 1
        try:
            if self.map_segment(nxt):
                self.offset = L.SEGMENT_DATA_OFFSET
                return True
            later = [i for i in F.list_segments(self.path) if i > nxt]
            if later and self.map_segment(later[0]):
                log.warning("%s: segment %d is missing; skipping to segment %d", self.path, nxt, later[0])
                self.offset = L.SEGMENT_DATA_OFFSET
                return True
        except (FileNotFoundError, NotADirectoryError):
            pass  # the folder itself is gone: judged below
        except CorruptSegmentError:  # a segment of another queue, created at this path since
            if not F.queue_gone(self.path, self.queue_id):
                raise
        if F.queue_gone(self.path, self.queue_id):
            self._queue_deleted()
        return False

    def _queue_deleted(self) -> None:
        """The queue was deleted (or replaced by a new one) under this reader, which sits at a segment end.

        Nothing more can come. The position stays after the last message delivered; from now on the
        cursor maps a private zero mapping, so ``next()``, ``available()``, waiters (and a HotLoop or
        FanInReader that owns the reader) see "no message" without touching the queue's files again.
        ``detect_disconnect`` reports ``QUEUE_DELETED``.
        """
        log.warning(
            "reader %r of %s: the queue was deleted (or replaced by a new queue) under it; no more messages "
            "will come: close this reader and open it again once the queue exists", self.name, self.path,
        )
        self.gone = DisconnectReason.QUEUE_DELETED
        self.drop_ahead()
        old = self.segment
        zero = F.Mapping(old.path, -1, self.segment_size, False)  # anonymous: zero pages, no file
        self.segment, self.seg_i32, self.seg_mv = zero, F.load_view(zero), zero.mv
        old.close()

    def skip_damaged(self, reason: str, what: str = "damage that stops reading") -> None:
        """Verify mode: move past damage that stops reading at the position (a malformed record, a
        hole) to the next intact record of this segment (or the next segment), count it, and raise
        :class:`DamagedRecordError` after moving, as ``next()`` does."""
        off = self.offset
        expected = self.next_seq
        limit = expected + self.segment_size // L.RECORD_ALIGNMENT
        nxt, _seq = R.find_intact(self.segment.arr, off + L.RECORD_ALIGNMENT, max(expected, 0), limit)
        seg_id = self.segment_id
        if nxt >= 0:
            self.offset = nxt
            where = f"reading goes on at offset {nxt}"
        else:
            self.offset = self.segment_size - L.RECORD_ALIGNMENT  # nothing intact follows in this segment
            self.advance_segment()
            where = f"nothing intact follows in this segment; reading goes on in segment {self.segment_id}"
        self.may_jump = max(self.may_jump, JUMP_FORWARD)
        self.damaged += 1
        raise DamagedRecordError(
            f"segment {F.segment_path(self.path, seg_id)}: {what} at offset {off} ({reason}; seq {expected} "
            f"expected there); the damaged bytes were skipped, {where}. Restore the segment from a copy to "
            "get what was lost",
            seg_id, off, -1, expected, reason,
        )

    def commit(self, segment: int, offset: int, next_seq: int, durable: bool = False) -> bool:
        """Commit a position for a named reader (False for an anonymous one, which keeps none)."""
        pos = self.position_file
        if pos is None:
            return False
        pos.commit(segment, offset, next_seq, self.epoch, durable)
        return True

    # -- jitted source tables -------------------------------------------------------------------

    def wait_key(self) -> tuple:
        """Readers of one queue waiting at the same record share one futex entry: their key."""
        return (self.path, self.queue_id, self.segment_id, self.offset)

    def mappings(self) -> tuple[Any, Any, Any]:
        """The arrays a parked waiter must keep alive: segment, control (``uint8``), segment ``int32``."""
        return self.segment.arr, self.ctl_arr, self.seg_i32

    def to_row(self, row: np.ndarray, *, generation: bool = False, new_position: bool = False) -> None:
        """Write this position into a source-table row (``tables.SRC_*``), all but its state and,
        unless ``generation``, the position file's slot generation (a row that has committed
        positions itself is ahead of the reader there). ``new_position``: a verifying row takes
        the seq order from its first intact record (a row handed to a loop for the first time).

        A HotLoop reads and advances the row; ``park_many`` parks on it; ``from_row`` takes it back.
        """
        pos = self.position_file
        row[T.SRC_SEG_ADDR] = self.segment.arr.ctypes.data
        row[T.SRC_SEG_SIZE] = self.segment_size
        row[T.SRC_SEG_ID] = self.segment_id
        row[T.SRC_NEXT_SEG_ADDR] = self.ahead_address
        row[T.SRC_OFFSET] = self.offset
        row[T.SRC_NEXT_SEQ] = self.next_seq
        row[T.SRC_CTL_ADDR] = self.ctl_arr.ctypes.data
        row[T.SRC_POS_ADDR] = pos.address if pos is not None else 0
        if generation:
            row[T.SRC_POS_GEN] = pos.generation if pos is not None else 0
        row[T.SRC_EPOCH] = self.epoch
        row[T.SRC_CAN_PARK] = 1 if self.can_park else 0
        row[T.SRC_VERIFY] = T.SRC_VERIFY_ON | T.SRC_VERIFY_MAY_JUMP if self.verify else 0  # a segment start
        if self.verify and new_position:
            row[T.SRC_VERIFY] |= T.SRC_VERIFY_ANY_SEQ

    def from_row(self, row: np.ndarray) -> None:
        """Take the position back from a source-table row that jitted code advanced (and moved into
        the segment mapped ahead, if it did)."""
        self.follow_row(row)
        self.offset = int(row[T.SRC_OFFSET])
        self.next_seq = int(row[T.SRC_NEXT_SEQ])
        if self.position_file is not None:
            self.position_file.generation = int(row[T.SRC_POS_GEN])

    @staticmethod
    def row_position(row: np.ndarray) -> tuple[int, int, int]:
        """``(segment_id, offset, next_seq)`` of a source-table row, which may be ahead of its cursor."""
        return int(row[T.SRC_SEG_ID]), int(row[T.SRC_OFFSET]), int(row[T.SRC_NEXT_SEQ])

    def seq_at_row(self, row: np.ndarray) -> int:
        """The seq of the record at a row's position (the message a handler was given when it
        raised), or the row's next seq if the row has moved past this cursor's segment."""
        if row[T.SRC_SEG_ADDR] == self.segment_address:
            return _SEQ.unpack_from(self.segment.mv, int(row[T.SRC_OFFSET]) + L.REC_SEQ_OFFSET)[0]
        return int(row[T.SRC_NEXT_SEQ])

    def rewind_row(self, row: np.ndarray, record_address: int, seq: int) -> None:
        """Put a row back at the record at ``record_address`` (its payload's address in this
        cursor's segment, as the loop collected it), whose seq is ``seq``."""
        row[T.SRC_OFFSET] = record_address - self.segment_address - L.RECORD_HEADER_LENGTH
        row[T.SRC_NEXT_SEQ] = seq

    # -- lifetime --------------------------------------------------------------------------------

    def close(self) -> None:
        """Unmap everything and release the reader name (the position file's lock). Does not commit."""
        self.closed = True
        # Drop our own views first: an mmap cannot close while views of it exist.
        self.seg_i32 = self.ctl_i32 = self.ctl_q = _CLOSED
        self.seg_mv = self.ctl_arr = None
        for m in (self.segment, self.ahead, self.ctl, self.position_file):
            if m is not None:
                m.close()
        self.segment = self.ahead = self.ctl = self.position_file = None  # the position file's close releases the reader name

    def forget_in_child(self) -> None:
        """In a forked child: switch this inherited cursor off without touching its files (``queue/fork.py``).

        Its position file stays the parent's: a commit here would move the parent's position.
        """
        if self.closed:
            return
        self.forked = _fork.error(f"reader {self.name!r}", self.path)
        self.closed = True
        self.seg_i32 = self.ctl_i32 = self.ctl_q = _fork.ForkedView(self.forked)
        self.seg_mv = self.ctl_arr = None
        self.position_file = self.ahead = None
        self.owner = None
