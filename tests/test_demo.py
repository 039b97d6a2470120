"""The README's main job, `chronicle demo`, runs end to end with real processes."""
from __future__ import annotations

import os
import subprocess
import sys


def test_demo_exchanges_every_message_between_two_processes(tmp_path):
    q = tmp_path / "bus" / "ticks"
    proc = subprocess.run(
        [sys.executable, "-m", "chronicle_async.cli", "demo", str(q), "-n", "50000", "--segment-size", str(256 * 1024)],
        capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "all seqs contiguous and prices correct" in proc.stdout
    assert len([f for f in os.listdir(q) if f.endswith(".seg")]) > 3  # it rolled


def test_jitted_append_example_runs(tmp_path):
    ex = os.path.join(os.path.dirname(__file__), "..", "examples", "jitted_append.py")
    proc = subprocess.run([sys.executable, ex, str(tmp_path / "q")], capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    assert "read back 2,000,000 messages" in proc.stdout


def test_hot_loop_strategy_example_handles_every_tick_and_writes_orders(tmp_path):
    ex = os.path.join(os.path.dirname(__file__), "..", "examples", "hot_loop_strategy.py")
    proc = subprocess.run([sys.executable, ex, str(tmp_path)], capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "handled 600000 ticks from 3 feed processes" in proc.stdout
    assert "first order: instrument" in proc.stdout
