"""Typed errors. Every message names the file involved and what to do about it."""
from __future__ import annotations


class ChronicleError(Exception):
    """Base class of every error chronicle_async raises on purpose."""


class QueueNotFoundError(ChronicleError, FileNotFoundError):
    """No queue at this path yet (no control file). Poll for it, or open a publisher to create it."""


class QueueDeletedError(QueueNotFoundError):
    """The queue was deleted (its folder or control file removed, or replaced by a new queue) under
    an open writer or reader. Nothing more can be written to it: close the writer and open the
    publisher again (``Queue.open_publisher``) to create the queue anew; readers open again too.
    """


class NotAQueueError(ChronicleError):
    """The path exists but is not a queue directory (a file, or a folder holding other things)."""


class CorruptQueueError(ChronicleError):
    """A control, segment or reader file is damaged or truncated."""


class CorruptSegmentError(CorruptQueueError):
    """A segment file's header or a committed record in it is malformed."""


class CorruptRecordError(CorruptSegmentError):
    """Committed data has a hole: a damaged or zeroed record with intact records after it.

    Raised by ``open_publisher``'s recovery instead of treating the hole as a torn tail (which
    would hide the intact records and reuse their seqs). ``segment`` and ``offset`` locate the
    damaged slot, ``seq`` is the seq expected there, ``next_offset``/``next_seq`` the first intact
    record after it. Nothing was changed; ``Queue.open_publisher(path, repair=True)`` covers the
    damaged bytes with padding (readers see a gap of seqs ``seq .. next_seq - 1``).
    """

    def __init__(self, message: str, segment: int, offset: int, seq: int, next_offset: int, next_seq: int):
        super().__init__(message)
        self.segment = segment
        self.offset = offset
        self.seq = seq
        self.next_offset = next_offset
        self.next_seq = next_seq

    def __reduce__(self):  # picklable across processes, with its fields
        return (type(self), (str(self), self.segment, self.offset, self.seq, self.next_offset, self.next_seq))


class DamagedRecordError(CorruptSegmentError):
    """A verifying reader met a committed record that fails its checksum, or whose seq is out of order.

    Raised by ``next()`` of a reader opened with ``verify=True``; the record was *not* delivered.
    ``segment`` and ``offset`` locate it, ``seq`` is the seq its header claims (untrustworthy when
    the checksum failed; -1 when there is no header to read), ``expected_seq`` the seq the reader
    expected, ``reason`` says what was found: ``"checksum"``, ``"seq went back"``, ``"seq jumped
    forward"``, ``"malformed"`` (a header that does not hold together) or ``"hole"`` (a zero commit
    word in a segment the writer has left). The reader has already moved past the damage (to the
    next intact record): ``next()`` goes on from there.
    """

    def __init__(self, message: str, segment: int, offset: int, seq: int, expected_seq: int, reason: str):
        super().__init__(message)
        self.segment = segment
        self.offset = offset
        self.seq = seq
        self.expected_seq = expected_seq
        self.reason = reason

    def __reduce__(self):  # picklable across processes, with its fields
        return (type(self), (str(self), self.segment, self.offset, self.seq, self.expected_seq, self.reason))


class ForkError(ChronicleError):
    """A writer, reader or HotLoop inherited through ``fork()`` was used in the child process.

    Open it again in the child, or start children with the ``spawn`` method.
    """


class UnsupportedVersionError(ChronicleError):
    """A file was written by a newer format version than this library reads."""


class WriterLockedError(ChronicleError):
    """Another live process holds this queue's writer lock."""

    def __init__(self, message: str, pid: int | None = None):
        super().__init__(message)
        self.pid = pid


class ReaderLockedError(ChronicleError):
    """Another live process has this named reader open."""

    def __init__(self, message: str, pid: int | None = None):
        super().__init__(message)
        self.pid = pid


class ReaderNotFoundError(ChronicleError, LookupError):
    """No named reader of that name has a position file in this queue."""


class PayloadTooLargeError(ChronicleError, ValueError):
    """A payload larger than this queue's segments allow."""


class ArgumentTypeError(ChronicleError, TypeError):
    """An argument of the wrong type."""


class InvalidArgumentError(ChronicleError, ValueError):
    """An argument with a value out of range."""


class QueuePermissionError(ChronicleError, PermissionError):
    """The process may not create or write a file the operation needs."""


class DiskFullError(ChronicleError, OSError):
    """No space left to reserve a new segment (or reader file). Nothing written so far is lost.

    From ``append_batch``, ``appended`` says how many messages of the batch went in
    before the disk filled (the others were not appended).
    """

    appended: int = 0


class QueueClosedError(ChronicleError):
    """The writer or reader was closed."""


class HandlerError(ChronicleError):
    """A hot-loop handler failed: it returned a non-zero result, or raised.

    The message it failed on was not consumed: ``source`` and ``seq`` name it,
    and the source's position (committed) still points at it.
    """

    def __init__(self, message: str, result: int, source: int, seq: int):
        super().__init__(message)
        self.result = result
        self.source = source
        self.seq = seq


class BackPressureError(ChronicleError):
    """A bounded ring stayed full for longer than the caller allowed (the consumer is not draining it)."""
