"""The writer's housekeeping thread: heartbeat, async flush, inline retention caps.

It never touches the append path: it stores the heartbeat word (its own cache
line in the control file), takes the writer's I/O lock to flush, and deletes
old segments with ``cleanup_segments`` (safe beside the writer without a lock).
Directory scans therefore happen here, never in ``append``.
"""
from __future__ import annotations

import logging
import threading
import time
import weakref
from typing import TYPE_CHECKING

from . import _files as F
from ._config import Durability
from .hot import layout as L

if TYPE_CHECKING:
    from ._writer import QueueWriter

log = logging.getLogger("chronicle_async")


class Housekeeper(threading.Thread):
    """Daemon thread owned by one QueueWriter (holds it weakly)."""

    def __init__(self, writer: "QueueWriter"):
        super().__init__(name=f"chronicle-housekeeper:{writer.path}", daemon=True)
        cfg = writer.config
        self._writer = weakref.ref(writer)
        self._stop_event = threading.Event()
        self._ctl_q = writer._ctl.q
        self._heartbeat = cfg.heartbeat_interval
        self._flush = cfg.flush_interval if cfg.durability is Durability.ASYNC else None
        caps = cfg.max_bytes is not None or cfg.max_segments is not None
        self._retention = cfg.retention_check_interval if caps else None
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
            self._ctl_q = None  # release our view of the control mapping so it can unmap

    def run(self) -> None:
        now = time.monotonic()
        next_flush = now + (self._flush or 0)
        next_retention = now
        hb = L.CTL_HEARTBEAT_NS_OFFSET // 8
        while not self._stop_event.wait(self._tick):
            w = self._writer()
            if w is None or w.closed:
                return
            try:
                self._ctl_q[hb] = time.time_ns()
                now = time.monotonic()
                if self._flush is not None and now >= next_flush and not self._gone:
                    next_flush = now + self._flush
                    with w._io_lock:
                        if not w.closed:
                            w._flush_locked()
                if self._retention is not None and now >= next_retention and not self._gone:
                    next_retention = now + self._retention
                    self._apply_caps(w)
            except Exception as e:  # never let housekeeping kill the process; report and go on
                if isinstance(e, OSError) and F.queue_gone(w.path, w._queue_id):  # QueueDeletedError included
                    self._gone = True
                    log.warning("chronicle_async housekeeping for %s stops flushing and retention: the queue was "
                                "deleted under its writer (reopen the publisher to create it again)", w.path)
                else:
                    log.exception("chronicle_async housekeeping for %s failed", w.path)
            del w

    @staticmethod
    def _apply_caps(w: "QueueWriter") -> None:
        from .retention import cleanup_segments

        cfg = w.config
        cleanup_segments(
            w.path, w.segment_id, w.segment_size, max_bytes=cfg.max_bytes, max_segments=cfg.max_segments
        )
