"""chronicle_async: persisted, memory-mapped, segmented queues between processes on one host.

Layout of the package:

- ``chronicle_async`` (this face): every public name, re-exported below.
- ``chronicle_async.hot``: the data plane. Layout, atomics, and numba kernels that
  append and read with no syscalls, locks or allocations. Import its kernels to call
  them from your own ``@numba.njit`` code (``hot.append.append``).
- ``chronicle_async.hot.loop``: what a jitted :class:`HotLoop` handler calls
  (``emit``, ``param``, ``log``, ``clock``); ``chronicle_async.hot.ring``: the SPSC ring kernels.
- ``chronicle_async.control``: the asyncio control plane (``ControlPlane``, discovery,
  ``PassiveDiscovery``, ``async for`` over readers, ``run`` on uvloop).
- private ``_*`` modules: the Python face over the hot kernels, and file handling.
"""
from __future__ import annotations

from ._config import Durability as Durability
from ._errors import BackPressureError as BackPressureError
from ._errors import HandlerError as HandlerError
from ._fanin import FanInReader as FanInReader
from ._hotloop import HotLogRecord as HotLogRecord
from ._hotloop import HotLoop as HotLoop
from ._idle import Backoff as Backoff
from ._idle import BusySpin as BusySpin
from ._idle import Park as Park
from ._idle import ParkCounts as ParkCounts
from ._ring import SpscRing as SpscRing
from ._config import Start as Start
from ._config import WaitStrategy as WaitStrategy
from ._config import WriterConfig as WriterConfig
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
from ._queue import Queue as Queue
from ._reader import Message as Message
from ._reader import QueueReader as QueueReader
from ._reader import as_array as as_array
from ._status import DisconnectReason as DisconnectReason
from ._status import WriterStatus as WriterStatus
from ._recovery import RecoveryReport as RecoveryReport
from ._writer import QueueWriter as QueueWriter
from .retention import cleanup_segments as cleanup_segments
from .control import Connected as Connected
from .control import ControlPlane as ControlPlane
from .control import Disconnected as Disconnected
from .control import Discovery as Discovery
from .control import PassiveDiscovery as PassiveDiscovery
from .control import Waiting as Waiting
from .control import WorkerFailure as WorkerFailure
from .control import wait_async as wait_async
from .frames import plot_interarrival as plot_interarrival
from .frames import plot_latency as plot_latency
from .frames import read_array as read_array
from .frames import read_array_async as read_array_async
from .frames import read_dataframe as read_dataframe
from .frames import read_dataframe_async as read_dataframe_async

__version__ = "0.1.0"

__all__ = (
    "ArgumentTypeError", "BackPressureError", "Backoff", "BusySpin", "FanInReader", "HandlerError",
    "HotLogRecord", "HotLoop", "Park", "ParkCounts", "SpscRing",
    "Connected", "ControlPlane", "Disconnected", "Discovery", "PassiveDiscovery", "Waiting", "WorkerFailure",
    "wait_async", "plot_interarrival", "plot_latency", "read_array", "read_array_async", "read_dataframe",
    "read_dataframe_async", "ChronicleError", "CorruptQueueError", "CorruptRecordError", "CorruptSegmentError", "DamagedRecordError", "DiskFullError",
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
