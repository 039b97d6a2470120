"""The retention worker: apply each managed writer's ``max_bytes`` / ``max_segments`` caps
(from ``ControlPlane.manage_writer``, else from the writer's ``WriterConfig``).

It plans with :func:`chronicle_async.queue.retention.plan_cleanup` (which documents
what it reads and why stale values can only make it delete less), then deletes
in batches of ``batch`` files, yielding to the event loop between batches, all
file work on an executor thread. It never deletes the head segment or newer,
nor a segment a live named reader still needs. It also removes orphaned temp
files (``*.seg.tmp-<pid>-*`` of dead processes).
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from typing import TYPE_CHECKING

from ..queue import files as F
from ..queue.retention import delete_segments, plan_cleanup
from ._supervise import WorkerFailure

log = logging.getLogger("chronicle_async")

if TYPE_CHECKING:
    from ..queue.writer import QueueWriter


class Retention:
    """Runs a pass per managed writer every ``interval`` seconds, and after rolls."""

    def __init__(self, executor: concurrent.futures.Executor, loop: asyncio.AbstractEventLoop, *,
                 interval: float = 0.1, batch: int = 4, failures: list | None = None):
        self._executor = executor
        self._loop = loop
        self._interval = interval
        self._batch = batch
        self._writers: list[QueueWriter] = []
        self._caps: dict[int, tuple[int | None, int | None]] = {}
        self._wake = asyncio.Event()
        self._last_poke = 0.0
        self._failures = failures if failures is not None else []
        #: Segment files deleted, and passes run.
        self.deleted = 0
        self.passes = 0

    def add(self, writer: "QueueWriter", max_bytes: int | None = None, max_segments: int | None = None) -> None:
        """Manage ``writer``: caps given here win over its ``WriterConfig`` caps."""
        self._writers.append(writer)
        cfg = writer.config
        self._caps[id(writer)] = (max_bytes if max_bytes is not None else cfg.max_bytes,
                                  max_segments if max_segments is not None else cfg.max_segments)
        self._wake.set()

    def remove(self, writer: "QueueWriter") -> None:
        self._writers = [w for w in self._writers if w is not writer]
        self._caps.pop(id(writer), None)

    def poke(self) -> None:
        """Run a pass soon (event-loop thread only)."""
        self._wake.set()

    def poke_from_any_thread(self) -> None:
        """A roll happened: run a pass soon, but at most one every quarter of ``interval``.

        Costs the writer nothing when a pass is already due: no wake-up is sent.
        """
        now = time.monotonic()
        if now - self._last_poke < self._interval / 4:
            return
        self._last_poke = now
        try:
            self._loop.call_soon_threadsafe(self._wake.set)
        except RuntimeError:  # the loop is closed
            pass

    async def run(self) -> None:
        while True:
            timer = self._loop.call_later(self._interval, self._wake.set)  # a pass at least this often
            try:
                await self._wake.wait()
            finally:
                timer.cancel()
            self._wake.clear()
            for w in list(self._writers):
                if w.closed:
                    self.remove(w)
                    continue
                try:
                    await self.pass_for(w)
                except Exception as e:  # one broken queue must not stop retention of the others
                    failure = WorkerFailure(f"retention:{w.path}", e, time.time(), self._interval)
                    self._failures.append(failure)
                    del self._failures[:-100]
                    log.error("chronicle_async retention of %s failed (%s: %s); trying again next pass",
                              w.path, type(e).__name__, e, exc_info=e)

    async def pass_for(self, w: "QueueWriter") -> list[int]:
        """One retention pass over one writer's queue; returns the ids deleted."""
        max_bytes, max_segments = self._caps.get(id(w), (w.config.max_bytes, w.config.max_segments))
        self.passes += 1
        run = self._loop.run_in_executor
        await run(self._executor, F.remove_orphan_temp_files, w.path)
        if max_bytes is None and max_segments is None:
            return []
        if w.recycles and w.supply_pending:  # the supplier is about to recycle the segment the roll retired
            max_bytes = None if max_bytes is None else max_bytes + w.segment_size
            max_segments = None if max_segments is None else max_segments + 1
        victims = await run(self._executor, lambda: plan_cleanup(
            w.path, w.segment_id, w.segment_size, max_bytes=max_bytes, max_segments=max_segments))
        deleted: list[int] = []
        for i in range(0, len(victims), self._batch):
            batch = await run(self._executor, delete_segments, w.path, victims[i : i + self._batch])
            deleted += batch
            self.deleted += len(batch)  # counted per batch: progress shows while a long pass runs
            await asyncio.sleep(0)  # let everything else on the loop run between batches
        return deleted
