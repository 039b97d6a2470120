"""The trading examples run end to end (real processes, a real kill -9) and their summaries say so.

No timing assertions: only the order of events and the counts.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys

EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "..", "examples")


def run_example(name: str, *args: str, timeout: float = 240) -> str:
    proc = subprocess.run([sys.executable, os.path.join(EXAMPLES, name), *args],
                          check=False, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ALL CHECKS PASSED" in proc.stdout, proc.stdout + proc.stderr
    return proc.stdout


def positions(out: str, *needles: str) -> list[int]:
    """Where each needle first appears in ``out``, each searched after the previous one."""
    at, found = 0, []
    for n in needles:
        i = out.find(n, at)
        assert i >= 0, f"{n!r} not found after position {at} in:\n{out}"
        found.append(i)
        at = i + len(n)
    return found


def test_strategy_fsm_shuts_down_on_kill_and_resumes_after_the_snapshot_of_the_new_epoch(tmp_path):
    out = run_example("strategy_fsm.py", str(tmp_path / "bus"))
    transitions = re.findall(r"\] (\w+) -> (\w+)  \(", out)
    assert transitions == [
        ("Initializing", "WaitingForFeed"), ("WaitingForFeed", "Trading"),
        ("Trading", "SafetyShutdown"),                        # the feed was killed
        ("SafetyShutdown", "WaitingForFeed"), ("WaitingForFeed", "Trading"),   # restarted, snapshot
        ("Trading", "SafetyShutdown"),                        # the feed closed
    ], out
    assert ("transitions: Initializing > WaitingForFeed > Trading > SafetyShutdown > WaitingForFeed > "
            "Trading > SafetyShutdown") in out
    # kill -9 -> WRITER_DIED -> cancel_all + flatten -> SafetyShutdown
    positions(out, "kill -9 feed pid", "SAFETY cancel_all()", "(WRITER_DIED)", "SAFETY flatten()",
              "(WRITER_DIED)", "Trading -> SafetyShutdown  (Disconnected: WRITER_DIED)")
    assert ("safety actions: ['cancel_all:WRITER_DIED', 'flatten:WRITER_DIED', "
            "'cancel_all:WRITER_CLOSED', 'flatten:WRITER_CLOSED']") in out
    # the restart: EPOCH_CHANGED and the snapshot of epoch 2 (in either order), then Trading again
    died = out.index("Disconnected: WRITER_DIED")
    epoch = out.index("EPOCH_CHANGED: the feed restarted, epoch 1 -> 2")
    snap = out.index("book rebuilt for epoch 2")
    trading_again = out.index("WaitingForFeed -> Trading", died)
    assert died < epoch < trading_again and died < snap < trading_again, out
    assert "epoch changes: [(1, 2)]" in out
    m = re.search(r"snapshots rebuilt \(seq, epoch\): \[\(0, 1\), \((\d+), 2\)\]", out)
    last = re.search(r"last of epoch 1 = (\d+), snapshot of epoch 2 = (\d+)", out)
    assert m and last and int(last.group(2)) == int(last.group(1)) + 1 == int(m.group(1)), out  # seqs continue
    # gaps: none in the strategy's stream; the late monitor's check fired and seek() filled it
    m = re.search(r"book errors 0, strategy gaps 0; monitor gap: (\d+) missed, (\d+) replayed", out)
    assert m and int(m.group(1)) > 0 and m.group(1) == m.group(2), out
    assert "monitor GAP: last seen" in out
    assert "FAILED" not in out


def test_pipeline_routes_every_order_of_every_tick_across_three_processes(tmp_path):
    out = run_example("pipeline.py", str(tmp_path / "bus"))
    assert "exit codes [0, 0, 0]" in out
    m = re.search(r"ticks (\d+), handled by the strategy (\d+), orders (\d+) \(rule says (\d+)\), "
                  r"routed (\d+), fills (\d+)", out)
    assert m, out
    ticks, handled, orders, rule, routed, fills = map(int, m.groups())
    assert ticks == 200_000 and handled == ticks + 1, out          # + the END marker
    assert orders > 0 and orders == rule == routed == fills, out
    assert re.search(r"latency tick -> fill .*: p50 [\d.]+ µs", out), out
    assert "FAILED" not in out
