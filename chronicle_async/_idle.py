"""Idle strategies of the hot loop: what an empty pass does. Parking happens only when idle."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ._errors import ArgumentTypeError, InvalidArgumentError
from .hot import layout as L
from .hot.wait import PARK_SLICE_S


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

    def _words(self) -> np.ndarray:
        return _words(L.IDLE_SPIN, 0, 0, 0.0)


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

    def _words(self) -> np.ndarray:
        return _words(L.IDLE_BACKOFF, self.spins, self.yields, self.park_time)


@dataclass(frozen=True)
class Park:
    """Park as soon as a pass finds nothing: least CPU, a futex wake-up (~20-50 µs) per burst."""

    park_time: float = PARK_SLICE_S

    def __post_init__(self) -> None:
        _check_seconds("park_time", self.park_time)

    def _words(self) -> np.ndarray:
        return _words(L.IDLE_PARK, 0, 0, self.park_time)


IdleStrategy = BusySpin | Backoff | Park


def _words(mode: int, spins: int, yields: int, park_time: float) -> np.ndarray:
    w = np.zeros(L.IDLE_FIELDS, np.int64)
    w[L.IDLE_MODE] = mode
    w[L.IDLE_SPINS] = spins
    w[L.IDLE_YIELDS] = yields
    w[L.IDLE_PARK_NS] = int(park_time * 1e9)
    return w
