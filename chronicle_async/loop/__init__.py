"""Consumers of many cursors: :class:`HotLoop`, the jitted duty cycle on a pinned thread, and
:class:`FanInReader`, several queues merged by timestamp in the caller's thread.

These are the public home of the hot loop's names. They are reachable as ``chronicle_async.X``
too, loaded on first use, so that ``import chronicle_async`` compiles and loads none of it.
"""
from __future__ import annotations

from ..queue.idle import Backoff as Backoff
from ..queue.idle import BusySpin as BusySpin
from ..queue.idle import Park as Park
from ..queue.ring import SpscRing as SpscRing
from .fanin import FanInReader as FanInReader
from .hotloop import HotLogRecord as HotLogRecord
from .hotloop import HotLoop as HotLoop

__all__ = ["Backoff", "BusySpin", "FanInReader", "HotLogRecord", "HotLoop", "Park", "SpscRing"]

for _name in __all__:  # tracebacks and docs show chronicle_async.loop.X, their one public path
    _obj = globals()[_name]
    if getattr(_obj, "__module__", "").startswith("chronicle_async."):
        try:
            _obj.__module__ = __name__
        except (AttributeError, TypeError):
            pass
del _name, _obj
