"""The prealloc worker: prepare segment N+1 of each managed writer while N is written.

The writer tells the worker it rolled (the roll callback given to
``QueueWriter.attach_supplier``, called on the writer's thread, which puts a
request in this worker's queue). That wake-up is a system call (a futex wake of
this worker's thread, ~9 µs here, most of a roll), so the writer makes it only
when its stock of prepared segments falls to half of ``prepare_ahead``: with
small, fast-rolling segments, a deeper stock means fewer wake-ups. The worker,
on its own executor thread, then:

1. creates segments N+1 .. N+k (``prepare_ahead``, 2 by default) under temp
   names: space reserved with ``fallocate``, the header written, the file
   ``fsync``-ed,
2. publishes each by hard link (like a rename, but never replacing a file that
   is already there), then ``fsync``-s the directory. The ``fsync`` calls are
   skipped when the writer's durability is ``Durability.NONE`` (no power-loss
   durability asked for; on a disk they cost milliseconds per segment),
3. maps it and pre-faults its pages (``WriterConfig.prefault``),
4. offers the mapping to the writer (``QueueWriter.offer_prepared``), which
   re-checks the header and the segment id when it rolls; a stale offer (the
   writer already rolled past it, inline) is discarded,
5. unmaps the segments the writer rolled away from (``release_retired``).

The writer's roll then costs an end marker and a few stores, not file work.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import threading
from typing import TYPE_CHECKING

from ..queue.supply import prepare_next

if TYPE_CHECKING:
    from ..queue.writer import QueueWriter

log = logging.getLogger("chronicle_async")


class Prealloc:
    """Prepares the next segments of each managed writer on its own thread.

    Requests are writers, deduplicated, in a bounded queue. The worker's thread
    blocks on that queue directly, so a busy event loop (a retention pass, a
    discovery scan) never delays a preparation: the writer's roll hook puts the
    request straight into it (a futex wake-up, no event-loop round trip).
    """

    _STOP = object()

    def __init__(self, executor: concurrent.futures.Executor, loop: asyncio.AbstractEventLoop, depth: int = 64):
        self._executor = executor
        self._loop = loop
        self._requests: queue.Queue = queue.Queue(maxsize=depth)
        self._pending: set[int] = set()
        self._lock = threading.Lock()
        #: Segments prepared and offered; stale offers discarded; requests dropped on a full queue.
        self.prepared = 0
        self.stale = 0
        self.dropped = 0

    def request(self, writer: "QueueWriter") -> None:
        """Ask for ``writer``'s next segments (any thread; never blocks)."""
        with self._lock:
            if id(writer) in self._pending:
                return
            self._pending.add(id(writer))
        try:
            self._requests.put_nowait(writer)
        except queue.Full:
            with self._lock:
                self._pending.discard(id(writer))
            self.dropped += 1  # the writer will create the segment itself, as without a control plane

    async def run(self) -> None:
        """Serve requests on the prealloc thread until cancelled (then the thread is released)."""
        fut = self._loop.run_in_executor(self._executor, self._serve)
        try:
            await asyncio.shield(fut)
        except asyncio.CancelledError:
            self._requests.put(self._STOP)
            await asyncio.gather(fut, return_exceptions=True)
            raise

    def _serve(self) -> None:
        while True:
            writer = self._requests.get()
            if writer is self._STOP:
                return
            with self._lock:
                self._pending.discard(id(writer))
            if not writer.closed:
                self.prepare_now(writer)

    def prepare_now(self, writer: "QueueWriter") -> int:
        """Prepare and offer ``writer``'s next segments (blocking; on the prealloc thread).

        Returns how many were offered. Segments go in order, so N+1 is ready first.
        """
        offered, stale = prepare_next(writer)
        self.prepared += offered
        self.stale += stale
        return offered
