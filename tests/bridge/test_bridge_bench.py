"""Smoke test of ``benchmarks/bridge.py`` at a tiny size: every row measured, every message delivered."""
from __future__ import annotations

import os
import pathlib

from chronicle_async.bridge import LocalNatsServer
from chronicle_async.control import run


def test_one_round_of_the_bridge_benchmark_measures_every_row(tmp_path: pathlib.Path,
                                                              nats_server: LocalNatsServer) -> None:
    from benchmarks import bridge

    rows = run(bridge.one_round(nats_server.url, str(tmp_path), "t", 2_000, 2_000.0, 200, 500))
    by_name = {r.name: r for r in rows}
    assert len(by_name) == 6, list(by_name)
    throughput = [r for r in rows if r.kind == "throughput"]
    assert len(throughput) == 4 and all(r.msgs_per_s and r.msgs_per_s > 0 and r.n == 2_000 for r in throughput)
    latency = [r for r in rows if r.kind == "latency"]
    assert len(latency) == 2 and all(r.n == 500 and 0 < r.p50 <= r.p99 <= r.p999 <= r.max for r in latency)
