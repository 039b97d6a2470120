"""Queue: the entry point that opens writers and readers."""
from __future__ import annotations

import os

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

        ``verify=True`` checks every record's checksum (header and payload) and seq order before
        delivering it; a damaged record raises :class:`DamagedRecordError` instead (see QueueReader).

        Raises ``QueueNotFoundError`` if no writer has created the queue yet (poll for it).
        """
        return QueueReader(path, name, start, wait_strategy=wait_strategy, spin_time=spin_time, verify=verify)

    @staticmethod
    def exists(path: str | os.PathLike) -> bool:
        """True if ``path`` holds a queue (its control file exists)."""
        return os.path.isfile(os.path.join(os.fspath(path), L.CONTROL_FILE_NAME))
