"""Queue: the entry point that opens writers and readers."""
from __future__ import annotations

import os

from . import info as _info
from . import readers as _readers
from .info import QueueInfo, QueueSummary
from .config import Start, WaitStrategy, WriterConfig
from .reader import QueueReader
from .writer import QueueWriter
from ..hot import layout as L


class Queue:
    """Namespace of constructors; a queue is a directory, not an object you keep open."""

    @staticmethod
    def open_publisher(path: str | os.PathLike, config: WriterConfig | None = None, *, repair: bool = False) -> QueueWriter:
        """Open (creating if needed) the queue at ``path`` for writing. One writer per queue.

        Opening recovers the tail a crashed writer left (``writer.recovery`` reports what it
        did). Raises ``WriterLockedError`` if another live process writes it, ``NotAQueueError``
        if ``path`` is a file or a folder of other things, and ``CorruptRecordError`` if
        committed data has a damaged record with intact records after it; ``repair=True``
        then covers the damaged bytes with padding instead (see ``RecoveryReport.holes``).
        """
        return QueueWriter(path, config, repair=repair)

    @staticmethod
    def open_subscriber(
        path: str | os.PathLike,
        name: str | None = None,
        start: Start | str = Start.COMMITTED,
        *,
        wait_strategy: WaitStrategy | str = WaitStrategy.SPIN_THEN_PARK,
        spin_time: float = 20e-6,
        verify: bool = False,
    ) -> QueueReader:
        """Open a reader. A ``name`` makes its position persistent (``commit()``); None reads anonymously.

        A named reader that has committed resumes after its last commit, whatever ``start`` says;
        ``start`` applies to an anonymous reader and to a name with no committed position (new, or
        reset): the default starts a new name at the earliest message still on disk. To move a
        name, use :meth:`reset_reader` (or ``seek()`` then ``commit()`` on the open reader).

        ``verify=True`` checks every record's checksum (header and payload) and seq order before
        delivering it; a damaged record raises :class:`DamagedRecordError` instead (see QueueReader).

        Raises ``QueueNotFoundError`` if no writer has created the queue yet (poll for it).
        """
        return QueueReader(path, name, start, wait_strategy=wait_strategy, spin_time=spin_time, verify=verify)

    @staticmethod
    def reset_reader(
        path: str | os.PathLike, name: str, to: Start | str | int = Start.EARLIEST, *, timestamp_ns: int | None = None
    ) -> int:
        """Move named reader ``name`` to ``to`` (``"earliest"``, ``"latest"`` or a seq) or to the first
        message at or after ``timestamp_ns``, and commit it durably; returns the seq it delivers next.

        Refuses with ``ReaderLockedError`` while a process has that reader open. The CLI twin is
        ``chronicle readers QUEUE reset NAME --to ...``.
        """
        return _readers.reset_reader(path, name, to, timestamp_ns=timestamp_ns)

    @staticmethod
    def delete_reader(path: str | os.PathLike, name: str) -> None:
        """Delete named reader ``name``'s position; the name then starts afresh, as its ``start`` says.

        Raises ``ReaderNotFoundError`` if there is no such reader, ``ReaderLockedError`` while it is
        open. The CLI twin is ``chronicle readers QUEUE delete NAME``.
        """
        _readers.delete_reader(path, name)

    @staticmethod
    def inspect(path: str | os.PathLike, ttl: float = 1.0) -> QueueInfo:
        """What ``chronicle inspect`` shows, as a :class:`QueueInfo`: segments, writer (its one-word
        ``status``: open, closed, dead, stale or none), first and last message, and each named
        reader with its lag. Read-only: takes no lock, creates and writes nothing.

        ``ttl`` is the heartbeat age (seconds) above which an open writer counts as stale.
        """
        return _info.inspect_queue(path, ttl)

    @staticmethod
    def list_queues(root: str | os.PathLike, ttl: float = 1.0) -> list[QueueSummary]:
        """One :class:`QueueSummary` per queue under the bus folder ``root`` (what ``chronicle ls``
        shows), by name; a queue that cannot be read is listed with ``error`` set. Read-only."""
        return _info.list_queues(root, ttl)

    @staticmethod
    def exists(path: str | os.PathLike) -> bool:
        """True if ``path`` holds a queue (its control file exists)."""
        return os.path.isfile(os.path.join(os.fspath(path), L.CONTROL_FILE_NAME))
