"""Idle strategies of the hot loop: what an empty pass does. Parking happens only when idle."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from .._errors import ArgumentTypeError, InvalidArgumentError
from ..hot import tables as T
from ..hot.idle import PARK_OUTCOMES
from ..hot.wait import PARK_SLICE_S


def _check_count(name: str, v: object) -> None:
    if isinstance(v, bool) or not isinstance(v, int):
        raise ArgumentTypeError(f"{name} must be an int, got {type(v).__name__}")
    if v < 0:
        raise InvalidArgumentError(f"{name} must be >= 0, got {v}")


def _check_seconds(name: str, v: object) -> None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ArgumentTypeError(f"{name} must be a number of seconds, got {type(v).__name__}")
    if math.isnan(v) or v <= 0 or v > PARK_SLICE_S:
        raise InvalidArgumentError(
            f"{name} must be in (0, {PARK_SLICE_S}] seconds, got {v!r} (longer parks are re-registered slices)"
        )


@dataclass(frozen=True)
class BusySpin:
    """Never sleep: an empty pass issues a ``pause`` and polls again. Lowest latency; burns its core."""

    def words(self) -> np.ndarray:
        """This strategy as the hot loop's idle words (``hot.layout.IDLE_*``), a fresh int64 array."""
        return _words(T.IDLE_SPIN, 0, 0, 0.0)


@dataclass(frozen=True)
class Backoff:
    """Spin ``spins`` empty passes, then ``sched_yield`` for ``yields`` more, then park.

    Parking sleeps in one ``futex_waitv`` on every queue and on the command ring
    (at most ``park_time`` seconds per sleep). The default spins 2000 empty
    passes (tens of microseconds) before it yields.
    """

    spins: int = 2000
    yields: int = 50
    park_time: float = 0.1

    def __post_init__(self) -> None:
        _check_count("spins", self.spins)
        _check_count("yields", self.yields)
        _check_seconds("park_time", self.park_time)

    def words(self) -> np.ndarray:
        """This strategy as the hot loop's idle words (``hot.layout.IDLE_*``), a fresh int64 array."""
        return _words(T.IDLE_BACKOFF, self.spins, self.yields, self.park_time)


@dataclass(frozen=True)
class Park:
    """Park as soon as a pass finds nothing: least CPU, a futex wake-up (~20-50 µs) per burst."""

    park_time: float = PARK_SLICE_S

    def __post_init__(self) -> None:
        _check_seconds("park_time", self.park_time)

    def words(self) -> np.ndarray:
        """This strategy as the hot loop's idle words (``hot.layout.IDLE_*``), a fresh int64 array."""
        return _words(T.IDLE_PARK, 0, 0, self.park_time)


IdleStrategy = BusySpin | Backoff | Park


def _words(mode: int, spins: int, yields: int, park_time: float) -> np.ndarray:
    w = np.zeros(T.IDLE_FIELDS, np.int64)
    w[T.IDLE_MODE] = mode
    w[T.IDLE_SPINS] = spins
    w[T.IDLE_YIELDS] = yields
    w[T.IDLE_PARK_NS] = int(park_time * 1e9)
    return w


class ParkCounts(NamedTuple):
    """How the parks of a waiter ended, counted (``HotLoop.park_counts``, ``QueueReader.park_counts``,
    ``FanInReader.park_counts``, ``control.aio.park_counts()``).

    A healthy waiter ends its parks at ``woken`` (a writer's futex wake), ``moved`` (the wake raced
    the sleep) or ``ready`` (data was already there). ``slice`` parks timed out with nothing to
    read: idle time. ``missed`` parks timed out although data had been committed: a lost wake-up,
    which delays a message by up to a park slice. It must stay 0; tests assert that it does.
    ``polled`` parks were short polling sleeps (a read-only control file, no ``futex_waitv``, or
    more queues than one call can watch), where a timeout is the mechanism, not a fault.
    """

    ready: int = 0
    woken: int = 0
    moved: int = 0
    slice: int = 0
    missed: int = 0
    polled: int = 0
    interrupted: int = 0

    @classmethod
    def from_array(cls, counts: Any) -> "ParkCounts":
        """From an array of ``PARK_OUTCOMES`` counters indexed by ``hot.idle.PARK_*``."""
        return cls(*(int(x) for x in counts[:PARK_OUTCOMES]))

    @property
    def total(self) -> int:
        return sum(self)
