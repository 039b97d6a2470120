"""The writer's housekeeping thread: heartbeat, async flush, inline retention caps.

It never touches the append path: it stores the heartbeat word (its own cache
line in the control file), calls the writer's flush (which takes the writer's
I/O lock), and deletes old segments with ``cleanup_segments`` (safe beside the
writer without a lock). Directory scans therefore happen here, never in ``append``.

It knows no writer object: the writer gives it the heartbeat word, the queue's
identity and caps, and three callables that hold the writer weakly.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable

from . import files as F

log = logging.getLogger("chronicle_async")


class Housekeeper(threading.Thread):
    """Daemon thread beside one queue writer.

    ``heartbeat_word``: a one-word int64 view of the control file's heartbeat (``ns``), stored every
    ``heartbeat_interval`` seconds. ``flush_interval``: seconds between calls of ``flush`` (None: no
    periodic flush, durability other than ``ASYNC``). ``retention_interval``: seconds between
    applications of the caps ``max_bytes`` / ``max_segments`` (used only if one of them is set), with
    the writer's head segment from ``head_segment``. The callables run on this thread and must not
    keep the writer alive: ``closed()`` is True once the writer closed or is gone (the thread then
    ends), ``flush()`` flushes under the writer's I/O lock unless it closed meanwhile, and
    ``head_segment()`` is None once the writer is gone. ``spare()``: segments to leave over the caps
    for now (1 while the writer's supplier is about to recycle the segment a roll retired).
    """

    def __init__(
        self,
        queue_dir: str,
        queue_id: int,
        segment_size: int,
        heartbeat_word: Any,
        *,
        heartbeat_interval: float,
        flush_interval: float | None,
        retention_interval: float,
        max_bytes: int | None,
        max_segments: int | None,
        flush: Callable[[], None],
        closed: Callable[[], bool],
        head_segment: Callable[[], int | None],
        spare: Callable[[], int] | None = None,
    ):
        super().__init__(name=f"chronicle-housekeeper:{queue_dir}", daemon=True)
        self._path = queue_dir
        self._queue_id = queue_id
        self._segment_size = segment_size
        self._stop_event = threading.Event()
        self._heartbeat_word = heartbeat_word
        self._flush_fn = flush
        self._writer_closed = closed
        self._head_segment = head_segment
        self._spare = spare
        self._max_bytes = max_bytes
        self._max_segments = max_segments
        self._heartbeat = heartbeat_interval
        self._flush = flush_interval
        caps = max_bytes is not None or max_segments is not None
        self._retention = retention_interval if caps else None
        self._own_retention = self._retention
        self._gone = False  # the queue was deleted under the writer: only the heartbeat goes on
        self._tick = min(x for x in (self._heartbeat, self._flush, self._retention) if x is not None)

    def hand_off_retention(self) -> None:
        """A control plane's retention worker applies the caps from now on; stop doing it here."""
        self._retention = None

    def take_back_retention(self) -> None:
        """The control plane let go of the writer: apply its ``WriterConfig`` caps here again."""
        self._retention = self._own_retention

    def stop(self, join: bool = True) -> None:
        self._stop_event.set()
        if join and self.is_alive() and threading.current_thread() is not self:
            self.join(timeout=5)
        if not self.is_alive():
            self._heartbeat_word = None  # release our view of the control mapping so it can unmap

    def run(self) -> None:
        now = time.monotonic()
        next_flush = now + (self._flush or 0)
        next_retention = now
        while not self._stop_event.wait(self._tick):
            if self._writer_closed():
                return
            try:
                self._heartbeat_word[0] = time.time_ns()
                now = time.monotonic()
                if self._flush is not None and now >= next_flush and not self._gone:
                    next_flush = now + self._flush
                    self._flush_fn()
                if self._retention is not None and now >= next_retention and not self._gone:
                    next_retention = now + self._retention
                    self._apply_caps()
            except Exception as e:  # never let housekeeping kill the process; report and go on
                if isinstance(e, OSError) and F.queue_gone(self._path, self._queue_id):  # QueueDeletedError included
                    self._gone = True
                    log.warning("chronicle_async housekeeping for %s stops flushing and retention: the queue was "
                                "deleted under its writer (reopen the publisher to create it again)", self._path)
                else:
                    log.exception("chronicle_async housekeeping for %s failed", self._path)

    def _apply_caps(self) -> None:
        from .retention import cleanup_segments

        head = self._head_segment()
        if head is None:  # the writer is gone: the next tick ends the thread
            return
        spare = self._spare() if self._spare is not None else 0
        mb, ms = self._max_bytes, self._max_segments
        cleanup_segments(
            self._path, head, self._segment_size,
            max_bytes=None if mb is None else mb + spare * self._segment_size,
            max_segments=None if ms is None else ms + spare,
        )
