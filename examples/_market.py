"""Shared by the trading examples (strategy_fsm.py, pipeline.py): record layouts and small helpers.

Every payload is one numpy structured record, decoded zero-copy on the reading side
with ``msg.as_array(DTYPE)[0]`` (or ``payload.view(DTYPE)[0]`` inside a jitted handler).
"""
from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

INSTRUMENTS = 8

# type_ids: the application's message kinds (the library only carries the number)
TICK_T, SNAPSHOT_T, ORDER_T, FILL_T, END_T = 1, 2, 3, 4, 9

#: A market-data update. ``delta`` is the change since the previous tick of the same instrument:
#: a consumer needs a base (a snapshot) to turn deltas into prices, as with real incremental feeds.
#: Its time is the message header's ``timestamp_ns`` (CLOCK_REALTIME at append, as time.time_ns()).
TICK = np.dtype([("instrument", "<i8"), ("price", "<f8"), ("delta", "<f8")])
#: The whole book, published first by a feed after each start, stamped with the writer epoch.
SNAPSHOT = np.dtype([("epoch", "<i8"), ("prices", "<f8", (INSTRUMENTS,))])
ORDER = np.dtype([("tick_seq", "<i8"), ("tick_ts_ns", "<i8"), ("order_ts_ns", "<i8"),
                  ("instrument", "<i8"), ("side", "<i8"), ("price", "<f8")])
FILL = np.dtype([("order_seq", "<i8"), ("tick_seq", "<i8"), ("tick_ts_ns", "<i8"), ("order_ts_ns", "<i8"),
                 ("fill_ts_ns", "<i8"), ("instrument", "<i8"), ("side", "<i8"), ("price", "<f8")])


def seq_gap(expected: int | None, seq: int) -> int:
    """Messages missed before ``seq``, given the seq we expected next (None: nothing seen yet).

    Seqs are dense per queue (0, 1, 2, ...) and continue across writer restarts, so
    ``seq > expected`` always means lost data for this reader (it started late, seeked,
    or a segment it needed was deleted). ``seq < expected`` would be a replay.
    """
    return 0 if expected is None else seq - expected


def contiguous(seqs: Iterable[int], first: int = 0) -> bool:
    """True if ``seqs`` is exactly first, first+1, ..."""
    s = np.fromiter(seqs, np.int64)
    return bool(s.size == 0 or (s[0] == first and np.all(np.diff(s) == 1)))


def run_in_folder(main: Callable[[str], Any], prefix: str) -> Any:
    """``python examples/X.py [folder]``: use the folder given (created if needed), else a temp one."""
    if len(sys.argv) > 1:
        os.makedirs(sys.argv[1], exist_ok=True)
        return main(sys.argv[1])
    with tempfile.TemporaryDirectory(prefix=prefix) as d:
        return main(d)


async def until(pred: Callable[[], bool], what: str, timeout: float = 60) -> None:
    """Poll ``pred`` from asyncio until it holds; exit with a failure after ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            raise SystemExit(f"FAILED: timed out waiting for {what}")
        await asyncio.sleep(0.01)
