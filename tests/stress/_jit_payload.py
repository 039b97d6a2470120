"""The jitted twin of ``_workers.mix64``, shared by the tests whose HotLoop handlers re-derive payloads."""
from __future__ import annotations

import numba
import numpy as np


@numba.njit(inline="always")
def mix64(x):
    """``tests.stress._workers.mix64`` on uint64 (wrapping arithmetic)."""
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))
