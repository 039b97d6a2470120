"""``chronicle tail -F``: follow a queue by its path, across deletion and re-creation (like ``tail -F``).

Built on :class:`~chronicle_async.control.PassiveDiscovery`, which waits for the queue with an
inotify watch (no sleep-polling) and reports it deleted. tail reads the reader it is given and
parks on ``reader.wait_async()`` while no message comes, racing the next discovery event:

- the queue does not exist yet: a notice on stderr, then wait; when it appears, print from its
  first message (``--from`` / ``--from-time`` still apply; ``--last`` does not: all is new);
- the queue is deleted: print what is left to read, say so on stderr, then wait for it again;
- a new queue at the path: ``chronicle: tail: QUEUE was recreated; following the new queue from
  seq 0`` on stderr, then its messages from the first.

Writer restarts, closes and deaths do not end it; ``--count`` and ``--until`` do, as does Ctrl-C.
"""
from __future__ import annotations

import asyncio
import sys
from typing import Any, Callable


def follow_across_recreation(args: Any, path: str, owned: str | None, printer: Any,
                             position: Callable[..., list[Any]]) -> int:
    """Run ``tail -F`` to the end (a stop condition); returns the exit code."""
    from ..queue.queue import Queue

    existed = Queue.exists(path)
    if not existed:
        print(f"chronicle: tail: waiting for queue {path} to be created", file=sys.stderr, flush=True)
    return asyncio.run(_follow(args, path, owned, printer, position, existed))


async def _follow(args: Any, path: str, owned: str | None, printer: Any, position: Callable[..., list[Any]],
                  existed: bool) -> int:
    from ..control.passive import Connected, Disconnected, PassiveDiscovery
    from ..queue.liveness import DisconnectReason

    reader = None
    connections = 0
    async with PassiveDiscovery(path, owned, start="committed" if owned else "earliest") as events:
        it = events.__aiter__()
        next_event: asyncio.Task = asyncio.ensure_future(it.__anext__())
        try:
            while True:
                if reader is not None:
                    if printer.drain(reader):
                        return 0
                    waiting = asyncio.ensure_future(reader.wait_async(0.5))
                    await asyncio.wait({next_event, waiting}, return_when=asyncio.FIRST_COMPLETED)
                    if not waiting.done():
                        waiting.cancel()  # its registration goes at once
                        await asyncio.wait({waiting})  # never raises what the task raised
                else:
                    await asyncio.wait({next_event})
                if not next_event.done():
                    continue
                ev = next_event.result()
                if isinstance(ev, Connected) and ev.reader is not reader:
                    reader = ev.reader
                    connections += 1
                    if connections > 1:
                        print(f"chronicle: tail: {path} was recreated; following the new queue from seq 0",
                              file=sys.stderr, flush=True)
                    elif _positioned(reader, args, path, printer, owned, position, existed):
                        return 0
                elif isinstance(ev, Disconnected) and ev.reason is DisconnectReason.QUEUE_DELETED:
                    if reader is not None and printer.drain(reader):  # what was written before the deletion
                        return 0
                    reader = None
                    print(f"chronicle: tail: {path} was deleted; waiting for it to be created again",
                          file=sys.stderr, flush=True)
                next_event = asyncio.ensure_future(it.__anext__())
        finally:
            if not next_event.done():
                next_event.cancel()
                await asyncio.wait({next_event}, timeout=1.0)
            if reader is not None and not reader.closed and owned and printer.dirty and printer.committed_ok:
                reader.commit()


def _positioned(reader: Any, args: Any, path: str, printer: Any, owned: str | None,
                position: Callable[..., list[Any]], existed: bool) -> bool:
    """Apply the start options to the first reader; True if the backlog already met a stop condition."""
    if not existed and args.from_seq is None and args.from_time is None:
        return False  # a queue that appeared while tail waited: everything in it is new
    printer.dirty = owned is not None and (
        args.from_seq is not None or args.from_time is not None or args.last is not None)
    if printer.backlog(reader, position(reader, args, path, printer.types, owned)):
        printer.flush(reader)
        return True
    return False
