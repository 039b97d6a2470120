"""Statistics shared by the packaged bench and the source checkout's benchmarks/ suite."""
from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Sequence

import numpy as np


def percentiles_ns(samples: Sequence[int] | np.ndarray) -> dict[str, int]:
    """Summarise latency samples (nanoseconds): integer ``p50``, ``p99``, ``p999`` and ``max``.

    Percentiles use numpy's default linear interpolation, rounded to the nearest ns.
    Raises ValueError if ``samples`` is empty.
    """
    arr = np.asarray(samples, dtype=np.int64).ravel()
    if arr.size == 0:
        raise ValueError("percentiles_ns() needs at least one sample")
    p50, p99, p999 = np.percentile(arr, [50.0, 99.0, 99.9])
    return {
        "p50": int(round(float(p50))),
        "p99": int(round(float(p99))),
        "p999": int(round(float(p999))),
        "max": int(arr.max()),
    }


@dataclass(frozen=True)
class Row:
    """One peer's figures: messages per second and latency percentiles in ns (one-way or round trip)."""

    peer: str
    msgs_per_s: float
    p50: int
    p99: int
    p999: int
    max: int
    n: int


def median_row(rows: list[Row]) -> Row:
    """The median of each figure over rounds of the same peer."""
    return Row(
        rows[0].peer,
        statistics.median(r.msgs_per_s for r in rows),
        int(statistics.median(r.p50 for r in rows)),
        int(statistics.median(r.p99 for r in rows)),
        int(statistics.median(r.p999 for r in rows)),
        int(statistics.median(r.max for r in rows)),
        rows[0].n,
    )
