"""``reader.until_closed()``: iterate a reader until its writer closes the queue (sync and async).

The end is the control file's writer state word reading CLOSED (a clean ``close()``), checked
only when the reader has caught up; once seen, the reader drains what is left and stops. Waits
are bounded slices (``SLICE_S``), so a close that lands between the state check and the park
is noticed within one slice instead of never; a wake from the writer ends a slice at once.
"""
from __future__ import annotations

from typing import Any

#: The longest wait between two looks at the writer state while caught up (seconds).
SLICE_S = 0.25


class UntilClosed:
    """Iterator (``for``) and async iterator (``async for``) over one reader; made by ``reader.until_closed()``.

    Use it from one thread (the reader's) or one event loop.
    """

    __slots__ = ("_reader", "_closed_seen", "_streak")

    def __init__(self, reader: Any):
        self._reader = reader
        self._closed_seen = False
        self._streak = 0

    def _caught_up(self) -> bool:
        """Nothing to read now: True if the iteration ends (the writer closed and all was read)."""
        if self._closed_seen:
            return True
        if self._reader.cursor.writer_closed():
            self._closed_seen = True  # read once more: what was committed before the close
        return False

    def __iter__(self) -> "UntilClosed":
        return self

    def __next__(self) -> Any:
        r = self._reader
        while True:
            m = r.next()
            if m is not None:
                return m
            if self._caught_up():
                raise StopIteration
            if not self._closed_seen:
                r.wait(SLICE_S)

    def __aiter__(self) -> "UntilClosed":
        return self

    async def __anext__(self) -> Any:
        from . import waits as _waits

        r = self._reader
        while True:
            m = r.next()
            if m is not None:
                self._streak += 1
                if self._streak >= _waits.FAIRNESS_BATCH:
                    self._streak = 0
                    await _waits.yield_to_loop()  # let other tasks run between bursts of a backlog
                return m
            self._streak = 0
            if self._caught_up():
                raise StopAsyncIteration
            if not self._closed_seen:
                await r.wait_async(SLICE_S)
