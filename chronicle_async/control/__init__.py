"""The asyncio control plane: the cold path beside a hot loop, on uvloop.

- :class:`ControlPlane` (``_plane.py``): an async context manager owning the
  workers below, each a supervised coroutine with a bounded request queue;
  blocking file work runs in executor threads, never on the event loop.
- prealloc (``prealloc.py``): prepares segment N+1 of each managed writer.
- retention (``retention.py``): deletes old segments in small batches.
- discovery (``discovery.py``): finds new queues under a bus root with
  inotify (watchfiles) and hands their readers to a :class:`HotLoop`.
- log drain (``logdrain.py``): the hot loop's log ring to logging or a file.
- :class:`PassiveDiscovery` (``passive.py``): Waiting / Connected / Disconnected
  events for one queue, for services that follow a writer's life.
- async consumption (``aio.py``): ``async for`` over a reader or a fan-in.
"""
from __future__ import annotations

from .._public import claim as _claim

from ._plane import ControlPlane as ControlPlane
from ._plane import run as run
from ._supervise import WorkerFailure as WorkerFailure
from .aio import next_async as next_async
from .aio import wait_async as wait_async
from .discovery import Discovery as Discovery
from .passive import Connected as Connected
from .passive import Disconnected as Disconnected
from .passive import PassiveDiscovery as PassiveDiscovery
from .passive import Waiting as Waiting

__all__ = [
    "Connected", "ControlPlane", "Disconnected", "Discovery", "PassiveDiscovery", "Waiting", "WorkerFailure",
    "next_async", "run", "wait_async",
]

_claim(__name__, globals(), __all__)  # tracebacks and docs show the one public path
