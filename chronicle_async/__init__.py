"""chronicle_async: persisted, memory-mapped, segmented queues between processes on one host.

Layout of the package:

- ``chronicle_async`` (this face): the queue, its readers and writers, the hot loop, and
  every error; ``import chronicle_async`` loads no asyncio, watchfiles or pandas.
- ``chronicle_async.hot``: the data plane. Layout, atomics, and numba kernels that
  append and read with no syscalls, locks or allocations. Import its kernels to call
  them from your own ``@numba.njit`` code (``hot.append.append``).
- ``chronicle_async.hot.loop``: what a jitted :class:`HotLoop` handler calls
  (``emit``, ``param``, ``log``, ``clock``); ``chronicle_async.hot.ring``: the SPSC ring kernels.
- ``chronicle_async.control``: the asyncio control plane (``ControlPlane``, discovery,
  ``PassiveDiscovery``, ``wait_async``, ``run`` on uvloop).
- ``chronicle_async.frames``: queues as numpy arrays and pandas frames, and plots (notebooks).

The control-plane and notebook names are also reachable here (``chronicle_async.ControlPlane``),
loaded on first use; they are listed only in their subpackage's ``__all__``.
- private ``_*`` modules: the Python face over the hot kernels, and file handling.
"""
from __future__ import annotations

from .queue.config import Durability as Durability
from ._errors import BackPressureError as BackPressureError
from ._errors import HandlerError as HandlerError
from .loop.fanin import FanInReader as FanInReader
from .loop.hotloop import HotLogRecord as HotLogRecord
from .loop.hotloop import HotLoop as HotLoop
from .queue.idle import Backoff as Backoff
from .queue.idle import BusySpin as BusySpin
from .queue.idle import Park as Park
from .queue.idle import ParkCounts as ParkCounts
from .queue.ring import SpscRing as SpscRing
from .queue.config import Start as Start
from .queue.config import WaitStrategy as WaitStrategy
from .queue.config import WriterConfig as WriterConfig
from ._errors import ArgumentTypeError as ArgumentTypeError
from ._errors import ChronicleError as ChronicleError
from ._errors import CorruptQueueError as CorruptQueueError
from ._errors import CorruptRecordError as CorruptRecordError
from ._errors import CorruptSegmentError as CorruptSegmentError
from ._errors import DamagedRecordError as DamagedRecordError
from ._errors import ForkError as ForkError
from ._errors import DiskFullError as DiskFullError
from ._errors import InvalidArgumentError as InvalidArgumentError
from ._errors import NotAQueueError as NotAQueueError
from ._errors import PayloadTooLargeError as PayloadTooLargeError
from ._errors import QueueClosedError as QueueClosedError
from ._errors import QueueDeletedError as QueueDeletedError
from ._errors import QueueNotFoundError as QueueNotFoundError
from ._errors import QueuePermissionError as QueuePermissionError
from ._errors import ReaderLockedError as ReaderLockedError
from ._errors import UnsupportedVersionError as UnsupportedVersionError
from ._errors import WriterLockedError as WriterLockedError
from .queue.queue import Queue as Queue
from .queue.reader import Message as Message
from .queue.reader import QueueReader as QueueReader
from .queue.reader import as_array as as_array
from .queue.liveness import DisconnectReason as DisconnectReason
from .queue.liveness import WriterStatus as WriterStatus
from .queue.recovery import RecoveryReport as RecoveryReport
from .queue.writer import QueueWriter as QueueWriter
from .queue.retention import cleanup_segments as cleanup_segments

#: Reachable as ``chronicle_async.X`` too, loaded on first use, so that ``import chronicle_async``
#: in a plain writer or reader process loads no asyncio, watchfiles or pandas. Their public home,
#: and the only place they are listed, is the subpackage named here.
_ELSEWHERE = {
    "Connected": "control", "ControlPlane": "control", "Disconnected": "control", "Discovery": "control",
    "PassiveDiscovery": "control", "Waiting": "control", "WorkerFailure": "control", "wait_async": "control",
    "plot_interarrival": "frames", "plot_latency": "frames", "read_array": "frames", "read_array_async": "frames",
    "read_dataframe": "frames", "read_dataframe_async": "frames",
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
    "ArgumentTypeError", "BackPressureError", "Backoff", "BusySpin", "FanInReader", "HandlerError",
    "HotLogRecord", "HotLoop", "Park", "ParkCounts", "SpscRing", "ChronicleError", "CorruptQueueError", "CorruptRecordError", "CorruptSegmentError", "DamagedRecordError", "DiskFullError",
    "DisconnectReason", "Durability", "ForkError", "InvalidArgumentError", "Message", "NotAQueueError",
    "PayloadTooLargeError", "Queue", "QueueClosedError", "QueueDeletedError", "QueueNotFoundError", "QueuePermissionError",
    "QueueReader", "QueueWriter", "ReaderLockedError", "RecoveryReport", "Start", "UnsupportedVersionError", "WaitStrategy",
    "WriterConfig", "WriterLockedError", "WriterStatus", "as_array", "cleanup_segments",
)

for _name in __all__:  # tracebacks and docs show chronicle_async.X, not chronicle_async._x.X
    _obj = globals()[_name]
    if getattr(_obj, "__module__", "").startswith("chronicle_async."):
        try:
            _obj.__module__ = "chronicle_async"
        except (AttributeError, TypeError):
            pass
del _name, _obj
