"""Preparing a writer's next segments off its hot path.

A roll that finds segment N+1 prepared costs an end marker and a few stores. A roll that must
create it costs the file work: ``fallocate``, a hard link, ``mmap`` and faulting in every page
(about 40 ms for 64 MiB on tmpfs, where new pages are the limit). So the next segments are made
ahead, by whoever supplies the writer (``QueueWriter.attach_supplier``):

- by default, the writer's own supplier thread (:class:`SegmentSupplier`), started at open
  (``WriterConfig.prepare_ahead``; 0 turns it off and every roll creates its segment inline);
- under a :class:`~chronicle_async.control.ControlPlane`, its prealloc worker, which takes over
  from the writer's own thread until it lets the writer go.

Both run :func:`prepare_next`: create the segments past the head, map and pre-fault them, offer
each to the writer (``QueueWriter.offer_prepared``), and unmap the segments the writer rolled away
from (``QueueWriter.release_retired``). A supplier that falls behind costs speed, never data: a
roll that finds nothing prepared creates its segment itself, and an offer the writer has moved
past is discarded.
"""
from __future__ import annotations

import logging
import threading
import weakref
from typing import Any

from . import files as F
from .._errors import ChronicleError
from .config import Durability
from .retention import cleanup_segments, plan_cleanup

log = logging.getLogger("chronicle_async")


def auto_prepare_ahead(segment_size: int, capped: bool = False) -> int:
    """How many segments the writer's own supplier keeps ready: two for segments of 4 to 64 MiB
    (at 15 M msgs/s of 64 B, one late preparation with a stock of one put the writer into inline
    rolls it never left; with two, none in the sustained benchmark), one for larger segments (each
    is a long stock already, and pre-faulting two of 1 GiB would take a core for most of a second
    at open), up to 8 for small segments, which roll often (a deeper stock means fewer wake-ups).
    A queue with a retention cap keeps one: its segments are recycled ones, and prepared ones come
    on top of the caps."""
    if capped or segment_size > (64 << 20):
        return 1
    return max(2, min(8, (4 << 20) // segment_size))


def prepare_next(writer: Any, counts: "SupplyCounts | None" = None) -> tuple[int, int]:
    """Prepare and offer ``writer``'s next segments (blocking: call it off the writer's thread).

    Returns ``(offered, stale)``: segments the writer accepted, and segments it refused because it
    had rolled past them meanwhile (then this pass stops; the next request starts from the new head).
    Segments go in order, so N+1 is ready first. When the writer recycles (``writer.recycles``), each
    segment comes from the oldest segment its retention caps retire, if there is one (see
    :func:`~chronicle_async.queue.files.recycle_segment`); otherwise it is created. ``counts``, if
    given, adds up how each segment was made.
    """
    try:
        return _prepare(writer, counts)
    finally:
        writer.supply_done()  # even on failure: retention must not keep waiting for this pass


def _prepare(writer: Any, counts: "SupplyCounts | None") -> tuple[int, int]:
    try:
        keep = (writer.retained_segments or 0) + 1 if writer.recycles else 0
        writer.release_retired(keep)
        head = writer.segment_id
        depth = writer.prepare_ahead
        have = set(writer.prepared_segments)
    except Exception:  # closed meanwhile
        return 0, 0
    d, size, qid = writer.path, writer.segment_size, writer.queue_id
    durable = writer.config.durability is not Durability.NONE
    offered = 0
    victims: list[int] | None = None
    last = head + depth
    target = head + 1
    while target <= last:
        if target in have:
            target += 1
            continue
        m = None
        if keep:
            if victims is None:
                try:
                    victims = _victims(writer, head)
                except (ChronicleError, OSError) as e:  # cannot tell what readers need: create anew
                    log.warning("%s: not recycling (%s); creating segment %d anew", d, e, target)
                    victims = []
            while m is None and victims:
                victim = victims.pop(0)
                how, m, became = F.recycle_segment(d, victim, target, size, qid, writer.take_retired(victim),
                                                   durable=durable, last_target=last)
                if counts is not None:
                    counts.note(how)
                if m is not None:
                    target = became
        recycled = m is not None
        if m is None and keep and (offered or have):
            break  # a recycling writer keeps a stock of one from fresh pages; the rest waits for retired segments
        if m is None:
            F.create_segment(d, target, size, qid, durable=durable)
            m = F.open_segment(d, target, size, qid, writable=True, prefault=writer.config.prefault)
            if counts is not None:
                counts.created += 1
        if writer.offer_prepared(target, m, recycled=recycled):
            offered += 1
        else:
            m.close()
            return offered, 1
        target += 1
    if keep:  # the caps, now: a backlog older than the victims (a reader let go of it) goes too
        c = writer.config
        try:
            deleted = cleanup_segments(d, writer.segment_id, size, max_bytes=c.max_bytes, max_segments=c.max_segments)
        except (ChronicleError, OSError):
            deleted = []  # retention itself (the housekeeper or a plane) reports why, once per pass
        if counts is not None:
            counts.deleted += len(deleted)
    return offered, 0


def _victims(writer: Any, head: int) -> list[int]:
    """The segments the writer's caps retire now, oldest first (none a live named reader needs, never
    the head). Retention leaves them to this pass while ``writer.supply_pending`` says it is due."""
    c = writer.config
    return plan_cleanup(writer.path, head, writer.segment_size, max_bytes=c.max_bytes, max_segments=c.max_segments)


class SupplyCounts:
    """How a supplier made the segments it prepared (read from any thread; counts only grow).

    ``created``: new files (fresh pages). ``recycled``: retired segments zeroed in place.
    ``deleted``: retired segments deleted instead of recycled (a reader still mapped one, or the
    caps retired more than one segment per pass).
    """

    __slots__ = ("created", "recycled", "deleted")

    def __init__(self) -> None:
        self.created = 0
        self.recycled = 0
        self.deleted = 0

    def note(self, how: "F.Recycled") -> None:
        if how is F.Recycled.DONE:
            self.recycled += 1
        elif how is not F.Recycled.GONE:
            self.deleted += 1

    def __repr__(self) -> str:
        return f"SupplyCounts(created={self.created}, recycled={self.recycled}, deleted={self.deleted})"


class SegmentSupplier(threading.Thread):
    """The writer's own supplier: a daemon thread that runs :func:`prepare_next` when woken.

    :meth:`request` is the roll callback (called on the writer's thread: it sets an event, one
    futex wake when the thread sleeps). The thread holds the writer weakly and only while it
    prepares; it ends when the writer closes or is collected. ``prepared`` and ``stale`` count its
    offers (read them from any thread).
    """

    def __init__(self, writer: Any):
        super().__init__(name=f"chronicle-supplier:{writer.path}", daemon=True)
        self._wake = threading.Event()
        self._writer = weakref.ref(writer, lambda _ref, wake=self._wake: wake.set())  # a dropped writer ends it
        self._stopping = False
        self.prepared = 0
        self.stale = 0
        self.counts = SupplyCounts()

    def request(self, _new_segment_id: int = -1) -> None:
        """Ask for the next segments (any thread; never blocks)."""
        self._wake.set()

    def stop(self) -> None:
        """End the thread after the preparation under way, and wait for it (not from itself)."""
        self._stopping = True
        self._wake.set()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(timeout=5)

    def run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._stopping:
                return
            writer = self._writer()
            if writer is None or writer.closed:
                return
            try:
                offered, stale = prepare_next(writer, self.counts)
                self.prepared += offered
                self.stale += stale
            except Exception as e:  # the next roll creates its segment inline; say why once per failure
                if isinstance(e, OSError) and F.queue_gone(writer.path, writer.queue_id):
                    return  # the queue was deleted under the writer: its next roll says so
                log.warning("chronicle_async: preparing the next segment of %s failed (%s: %s); the next roll "
                            "creates it inline", writer.path, type(e).__name__, e)
            finally:
                del writer
