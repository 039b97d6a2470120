"""plot_latency draws a bar for a constant column and labels its axis with the unit it plots."""
from __future__ import annotations

import numpy as np
import pytest

from chronicle_async import frames as fr

pd = pytest.importorskip("pandas")
matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")


def _bars(ax) -> list[float]:
    return [p.get_height() for p in ax.patches if p.get_height() > 0]


@pytest.mark.parametrize("log_x", [None, True, False])
def test_constant_latency_column_draws_one_bar_holding_every_message(log_x):
    df = pd.DataFrame({"latency_ns": np.full(100, 5_000, np.int64)})
    ax = fr.plot_latency(df, "latency_ns", log_x=log_x)
    assert _bars(ax) == [100]  # one bar, every message in it
    lo, hi = ax.get_xlim()
    assert lo < 5.0 < hi  # 5000 ns shown at 5 µs


def test_log_histogram_counts_the_smallest_and_largest_values():
    df = pd.DataFrame({"latency_ns": np.array([300, 1_700, 12_900, 4_321_000], np.int64)})
    ax = fr.plot_latency(df, "latency_ns", log_x=True)
    assert sum(_bars(ax)) == 4  # no extreme lost to rounding at the bin edges


def test_latency_axis_is_labelled_in_microseconds_without_the_columns_unit_suffix():
    df = pd.DataFrame({"latency_ns": np.arange(1, 1001) * 1000, "wait_ms": np.arange(1, 1001) / 10,
                       "delay": np.arange(1, 1001)})
    assert fr.plot_latency(df, "latency_ns").get_xlabel() == "latency (µs)"
    assert fr.plot_latency(df, "wait_ms", unit="ms").get_xlabel() == "wait (µs)"
    assert fr.plot_latency(df, "delay").get_xlabel() == "delay (µs)"
