"""chronicle_async: persisted, memory-mapped, segmented queues between processes on one host.

The layers, from the bottom (each imports only those below it):

- ``chronicle_async.hot``: the data plane. The on-disk layout (``layout.py``), the in-process
  tables (``tables.py``), atomics with the memory order in their names, and numba kernels that
  append and read with no syscalls, locks or allocations. Import its kernels to call them from
  your own ``@numba.njit`` code (``hot.append.append``); ``hot.loop`` has what a jitted
  :class:`HotLoop` handler calls (``emit``, ``param``, ``log``, ``clock``).
- ``chronicle_async.queue`` (internal): one queue's files and the objects over them: writer,
  reader, cursor, recovery, positions, retention rules, the asyncio waits.
- ``chronicle_async.loop``: consumers of many cursors: ``HotLoop``, ``FanInReader``,
  ``SpscRing`` and the idle strategies.
- ``chronicle_async.control``: the asyncio control plane (``ControlPlane``, discovery,
  ``PassiveDiscovery``, ``wait_async``, ``run`` on uvloop).
- ``chronicle_async.frames``: queues as numpy arrays and pandas frames, and plots (notebooks).
- ``chronicle_async.cli``: the ``chronicle`` command and the demo.

This face holds the queue, its readers and writers, and every error. The hot loop, control-plane
and notebook names are reachable here too (``chronicle_async.HotLoop``), loaded on first use,
and listed only in their subpackage's ``__all__``: ``import chronicle_async`` loads no asyncio,
watchfiles, pandas or hot loop.
"""
from __future__ import annotations

import logging as _logging

from ._public import claim as _claim

from ._errors import ArgumentTypeError as ArgumentTypeError
from ._errors import BackPressureError as BackPressureError
from ._errors import ChronicleError as ChronicleError
from ._errors import CorruptQueueError as CorruptQueueError
from ._errors import CorruptRecordError as CorruptRecordError
from ._errors import CorruptSegmentError as CorruptSegmentError
from ._errors import DamagedRecordError as DamagedRecordError
from ._errors import DiskFullError as DiskFullError
from ._errors import ForkError as ForkError
from ._errors import HandlerError as HandlerError
from ._errors import InvalidArgumentError as InvalidArgumentError
from ._errors import NotAQueueError as NotAQueueError
from ._errors import PayloadTooLargeError as PayloadTooLargeError
from ._errors import QueueClosedError as QueueClosedError
from ._errors import QueueDeletedError as QueueDeletedError
from ._errors import QueueNotFoundError as QueueNotFoundError
from ._errors import QueuePermissionError as QueuePermissionError
from ._errors import ReaderLockedError as ReaderLockedError
from ._errors import ReaderNotFoundError as ReaderNotFoundError
from ._errors import UnsupportedVersionError as UnsupportedVersionError
from ._errors import WriterLockedError as WriterLockedError
from .queue.config import Durability as Durability
from .queue.config import Start as Start
from .queue.config import WaitStrategy as WaitStrategy
from .queue.config import WriterConfig as WriterConfig
from .queue.idle import ParkCounts as ParkCounts
from .queue.info import QueueInfo as QueueInfo
from .queue.info import QueueSummary as QueueSummary
from .queue.liveness import DisconnectReason as DisconnectReason
from .queue.liveness import WriterStatus as WriterStatus
from .queue.queue import Queue as Queue
from .queue.reader import as_array as as_array
from .queue.reader import Message as Message
from .queue.reader import QueueReader as QueueReader
from .queue.recovery import RecoveryReport as RecoveryReport
from .queue.retention import cleanup_segments as cleanup_segments
from .queue.writer import QueueWriter as QueueWriter

#: The library logs to "chronicle_async"; with no logging configured by the application, its
#: warnings go nowhere (not to stderr through logging's last-resort handler).
_logging.getLogger(__name__).addHandler(_logging.NullHandler())

#: Reachable as ``chronicle_async.X`` too, loaded on first use, so that ``import chronicle_async``
#: in a plain writer or reader process loads no asyncio, watchfiles or pandas. Their public home,
#: and the only place they are listed, is the subpackage named here.
_ELSEWHERE = {
    "Connected": "control", "ControlPlane": "control", "Disconnected": "control", "Discovery": "control",
    "PassiveDiscovery": "control", "Waiting": "control", "WorkerFailure": "control", "wait_async": "control",
    "plot_interarrival": "frames", "plot_latency": "frames", "read_array": "frames", "read_array_async": "frames",
    "read_dataframe": "frames", "read_dataframe_async": "frames",
    "Backoff": "loop", "BusySpin": "loop", "FanInReader": "loop", "HotLogRecord": "loop", "HotLoop": "loop",
    "Park": "loop", "SegmentCrossings": "loop", "SpscRing": "loop",
}


def __getattr__(name: str) -> object:
    home = _ELSEWHERE.get(name)
    if home is None:
        raise AttributeError(f"module 'chronicle_async' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value  # the next access is a plain lookup
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_ELSEWHERE))


__version__ = "0.1.0"

__all__ = (
    "ArgumentTypeError", "BackPressureError", "ChronicleError", "CorruptQueueError",
    "CorruptRecordError", "CorruptSegmentError", "DamagedRecordError", "DisconnectReason",
    "DiskFullError", "Durability", "ForkError", "HandlerError", "InvalidArgumentError", "Message",
    "NotAQueueError", "ParkCounts", "PayloadTooLargeError", "Queue", "QueueClosedError",
    "QueueDeletedError", "QueueNotFoundError", "QueuePermissionError", "QueueReader", "QueueWriter",
    "ReaderLockedError", "ReaderNotFoundError", "RecoveryReport", "Start", "UnsupportedVersionError", "WaitStrategy",
    "WriterConfig", "WriterLockedError", "WriterStatus", "as_array", "cleanup_segments",
    "QueueInfo", "QueueSummary",
)

_claim(__name__, globals(), __all__)  # tracebacks and docs show the one public path
