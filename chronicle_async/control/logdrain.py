"""The log drain: move a HotLoop's log ring into Python logging or a file, never blocking it.

The hot thread writes fixed-size records into an SPSC ring and counts a drop
when it is full; this coroutine takes them off every ``interval`` seconds (the
drain is a few hundred ns per record, on the event loop) and writes them to a
``logging.Logger`` or, with aiofiles, to a file. Drops are reported as one
warning with the count.
"""
from __future__ import annotations

import asyncio
import logging
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..loop.hotloop import HotLogRecord, HotLoop


def format_record(r: "HotLogRecord") -> str:
    a0, a1, a2, a3 = r.args
    return f"{r.timestamp_ns} {logging.getLevelName(r.level)} hot {r.event} source={r.source} args=({a0}, {a1}, {a2}, {a3})"


class LogDrain:
    """Drains one HotLoop's log ring to ``target``: a Logger, or a file path (appended to)."""

    def __init__(self, hot_loop: "HotLoop", target: Any = None, *, interval: float = 0.01, limit: int = 4096):
        self._hot = hot_loop
        self._interval = interval
        self._limit = limit
        self._path = os.fspath(target) if isinstance(target, (str, os.PathLike)) else None
        self._logger = target if isinstance(target, logging.Logger) else logging.getLogger("chronicle_async.hot")
        self._reported_drops = 0
        self.records = 0

    async def run(self) -> None:
        f = None
        try:
            if self._path is not None:
                import aiofiles

                f = await aiofiles.open(self._path, "a")
            while True:
                await self.drain_once(f)
                await asyncio.sleep(self._interval)
        finally:
            try:
                await self.drain_once(f)  # what the hot thread logged since the last pass
            finally:
                if f is not None:
                    await f.close()

    async def drain_once(self, f: Any = None) -> int:
        recs = self._hot.drain_log(self._limit)
        dropped = self._hot.log_dropped
        if f is not None:
            if recs:
                await f.write("".join(format_record(r) + "\n" for r in recs))
                await f.flush()
        else:
            for r in recs:
                self._logger.log(r.level, "%s", format_record(r))
        if dropped > self._reported_drops:
            msg = f"the hot loop's log ring was full: {dropped - self._reported_drops} records dropped"
            if f is not None:
                await f.write(msg + "\n")
            else:
                self._logger.warning("%s", msg)
            self._reported_drops = dropped
        self.records += len(recs)
        return len(recs)
