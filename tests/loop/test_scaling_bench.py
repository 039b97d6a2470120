"""Smoke test of ``benchmarks/scaling.py`` at a tiny size: the counts, not the rates."""
from __future__ import annotations

from chronicle_async.hot.clock import tsc_per_ns

N = 20_000


def test_the_scaling_benchmark_delivers_every_message_to_the_reader_and_from_the_writer():
    from benchmarks import scaling

    per_ns = tsc_per_ns(0.05)
    out = scaling.fanout_once(1, N, per_ns)
    assert out["counts"] == [N] and out["bad"] == 0 and out["rolls"] == 0
    assert out["aggregate"] > 0 and out["slowest"] > 0 and out["writer"] > 0
    fan_in = scaling.fanin_once(1, N, per_ns)
    assert fan_in["count"] == 1 * N and fan_in["rolls"] == 0 and fan_in["aggregate"] > 0
