"""Consumers of many cursors: :class:`HotLoop`, the jitted duty cycle on a pinned thread, and
:class:`FanInReader`, several queues merged by timestamp in the caller's thread.

These are the public home of the hot loop's names. They are reachable as ``chronicle_async.X``
too, loaded on first use, so that ``import chronicle_async`` compiles and loads none of it.
"""
from __future__ import annotations

from .._public import claim as _claim

from ..queue.idle import Backoff as Backoff
from ..queue.idle import BusySpin as BusySpin
from ..queue.idle import Park as Park
from ..queue.ring import SpscRing as SpscRing
from .fanin import FanInReader as FanInReader
from .hotloop import HotLogRecord as HotLogRecord
from .hotloop import HotLoop as HotLoop
from .hotloop import SegmentCrossings as SegmentCrossings

__all__ = ["Backoff", "BusySpin", "FanInReader", "HotLogRecord", "HotLoop", "Park", "SegmentCrossings", "SpscRing"]

_claim(__name__, globals(), __all__)  # tracebacks and docs show the one public path
