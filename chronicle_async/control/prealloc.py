"""The prealloc worker: prepare segment N+1 of each managed writer while N is written.

The writer tells the worker it rolled (``QueueWriter._on_roll``, called on the
writer's thread, which only schedules a wake-up of this coroutine). That wake-up
is a system call (an eventfd write, ~9 µs here, most of a roll), so the writer
makes it only when its stock of prepared segments falls to half of
``prepare_ahead``: with small, fast-rolling segments, a deeper stock means fewer
wake-ups. The worker, on its own executor thread, then:

1. creates segments N+1 .. N+k (``prepare_ahead``, 2 by default) under temp names: space reserved with ``fallocate``,
   the header written, the file ``fsync``-ed,
2. publishes it by hard link (like a rename, but never replacing a file that is
   already there), then ``fsync``-s the directory,
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
from typing import TYPE_CHECKING

from .. import _files as F

if TYPE_CHECKING:
    from .._writer import QueueWriter

log = logging.getLogger("chronicle_async")


class Prealloc:
    """Prepares the next segment of each managed writer; requests are writers, deduplicated."""

    def __init__(self, executor: concurrent.futures.Executor, loop: asyncio.AbstractEventLoop, depth: int = 64):
        self._executor = executor
        self._loop = loop
        self._requests: asyncio.Queue[QueueWriter] = asyncio.Queue(maxsize=depth)
        self._pending: set[int] = set()
        #: Segments prepared and offered; stale offers discarded; requests dropped on a full queue.
        self.prepared = 0
        self.stale = 0
        self.dropped = 0

    def request(self, writer: "QueueWriter") -> None:
        """Ask for ``writer``'s next segment (event-loop thread only)."""
        if id(writer) in self._pending:
            return
        try:
            self._requests.put_nowait(writer)
            self._pending.add(id(writer))
        except asyncio.QueueFull:
            self.dropped += 1  # the writer will create the segment itself, as without a control plane

    def notify_from_any_thread(self, writer: "QueueWriter") -> None:
        """The writer's roll hook: schedule a request on the event loop (never blocks the writer)."""
        try:
            self._loop.call_soon_threadsafe(self.request, writer)
        except RuntimeError:  # the loop is closed: the writer carries on preparing inline
            pass

    async def run(self) -> None:
        while True:
            writer = await self._requests.get()
            self._pending.discard(id(writer))
            if writer.closed:
                continue
            await self._loop.run_in_executor(self._executor, self.prepare_now, writer)

    def prepare_now(self, writer: "QueueWriter") -> int:
        """Prepare and offer ``writer``'s next segments (blocking; on the prealloc thread).

        Returns how many were offered. Segments go in order, so N+1 is ready first.
        """
        offered = 0
        try:
            writer.release_retired()
            head = writer.segment_id
        except Exception:  # closed meanwhile
            return 0
        d, size, qid = writer.path, writer.segment_size, writer._queue_id
        for target in range(head + 1, head + 1 + writer._prepare_ahead):
            if target in writer.prepared_segments:
                continue
            F.create_segment(d, target, size, qid, durable=True)
            m = F.open_segment(d, target, size, qid, writable=True, prefault=writer.config.prefault)
            if writer.offer_prepared(target, m):
                self.prepared += 1
                offered += 1
            else:
                m.close()
                self.stale += 1
                break  # the writer moved on meanwhile: the next request starts from its new head
        return offered
