"""asyncio consumption of queues without a thread per reader: the public face.

``await wait_async(source, timeout)`` and ``await next_async(source)`` take a
:class:`~chronicle_async.QueueReader` or a :class:`~chronicle_async.FanInReader`;
``async for`` over either does the same (``reader.__aiter__``). The machinery (the one
waker thread for the whole process, its registrations, the semantics of a wait) lives in
``chronicle_async/queue/waits.py``, which this module only checks arguments for and calls; the
module notes on the semantics of these waits (the writer's close, fairness, spin, fork) are
that module's docstring.
"""
from __future__ import annotations

from typing import Any

from ..queue import waits as _waits
from .._errors import ArgumentTypeError
from ..loop.fanin import FanInReader
from ..queue.reader import QueueReader
from ..queue.waits import (
    DEFAULT_SPIN_S,
    FAIRNESS_BATCH,
    WAKER_THREAD_NAME,
    FanInAsyncIterator,
    ReaderAsyncIterator,
    park_counts,
    registered_waits,
    waker_thread,
)

__all__ = [
    "DEFAULT_SPIN_S",
    "FAIRNESS_BATCH",
    "FanInAsyncIterator",
    "ReaderAsyncIterator",
    "WAKER_THREAD_NAME",
    "next_async",
    "park_counts",
    "registered_waits",
    "wait_async",
    "waker_thread",
]


async def wait_async(
    source: QueueReader | FanInReader, timeout: float | None = None, *, spin: float = DEFAULT_SPIN_S
) -> bool:
    """Wait, without blocking the event loop, until ``source`` may have a message.

    ``source`` is a :class:`QueueReader` or a :class:`FanInReader`. Returns True if
    a message may be read now, False when ``timeout`` seconds pass (None: no limit),
    and, for a QueueReader, False early when its writer closes the queue during the
    wait, or after a short sleep (``GONE_WAIT_S``) once the queue was deleted under it. ``spin`` seconds of non-blocking checks come first (see the module notes).
    Raises :class:`QueueClosedError` if the reader is closed.
    """
    if isinstance(source, QueueReader):
        return await _waits.wait_reader(source, timeout, spin)
    if isinstance(source, FanInReader):
        return await _waits.wait_fanin(source, timeout, spin)
    _waits.check_timeout(timeout)  # a bad timeout or spin is reported first, whatever the source
    _waits.check_spin(spin)
    raise ArgumentTypeError(f"wait_async takes a QueueReader or a FanInReader, not {type(source).__name__}")


async def next_async(source: QueueReader | FanInReader) -> Any:
    """The next message of ``source``, waiting for it without blocking the event loop.

    A :class:`QueueReader` gives a :class:`Message`; a :class:`FanInReader` gives
    ``(source_id, Message)``. Waits for ever (cancel the task, or use
    ``asyncio.timeout``, to give up); see the module notes for the writer's close.
    """
    if isinstance(source, QueueReader):
        return await _waits.next_from_reader(source)
    if isinstance(source, FanInReader):
        return await _waits.next_from_fanin(source)
    raise ArgumentTypeError(f"next_async takes a QueueReader or a FanInReader, not {type(source).__name__}")
