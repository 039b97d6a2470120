"""Supervision of the control plane's workers: report a failure, restart with back-off."""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Awaitable, Callable

log = logging.getLogger("chronicle_async")


@dataclass(frozen=True)
class WorkerFailure:
    """One failure of a control-plane worker (it was restarted after ``restart_in`` seconds)."""

    worker: str
    error: BaseException
    time: float  # time.time() of the failure
    restart_in: float


async def supervise(
    name: str,
    body: Callable[[], Awaitable[None]],
    failures: list[WorkerFailure],
    *,
    backoff: float = 0.05,
    max_backoff: float = 5.0,
    on_failure: Callable[[WorkerFailure], None] | None = None,
) -> None:
    """Run ``body()`` until it returns or is cancelled; on an exception, report it and restart.

    The delay doubles after each failure (``backoff`` up to ``max_backoff``) and
    goes back to ``backoff`` once the worker has run for ten times the current
    delay without failing. Nothing here touches the hot thread.
    """
    delay = backoff
    while True:
        started = time.monotonic()
        try:
            await body()
            return
        except asyncio.CancelledError:
            raise
        except Exception as e:  # a worker's bug or an I/O error: report it, never let it spread
            if time.monotonic() - started > 10 * delay:
                delay = backoff
            failure = WorkerFailure(name, e, time.time(), delay)
            failures.append(failure)
            del failures[:-100]  # keep the last hundred
            log.error("chronicle_async control plane: worker %r failed (%s: %s); restarting in %.3f s",
                      name, type(e).__name__, e, delay, exc_info=e)
            if on_failure is not None:
                on_failure(failure)
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_backoff)
