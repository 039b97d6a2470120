"""Every example in examples/ runs end to end, with real processes and files, and does what it says."""
from __future__ import annotations

import os
import re
import subprocess
import sys

EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "..", "examples")


def run_example(name: str, *args: str, timeout: float = 240) -> str:
    proc = subprocess.run([sys.executable, os.path.join(EXAMPLES, name), *args],
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    return proc.stdout


def test_sidecar_routes_every_message_of_every_discovered_stream(tmp_path):
    out = run_example("sidecar.py", str(tmp_path / "bus"))
    m = re.search(r"routed (\d+) messages from (\d+) discovered streams", out)
    assert m and int(m.group(1)) == 200_000 and int(m.group(2)) == 4, out
    assert "output seqs 0..199999" in out


def test_dedicated_workers_prepare_every_roll_and_restart_a_failing_worker(tmp_path):
    out = run_example("dedicated_workers.py", str(tmp_path / "q"))
    m = re.search(r"1000 rolls: .*prepared (\d+), deleted by retention (\d+)", out)
    assert m and int(m.group(1)) > 0 and int(m.group(2)) > 0, out
    assert out.count("flaky worker, attempt") == 2  # failed twice, restarted, then ran
    assert "retention cap: 16 segments of data" in out, out
    settled = re.search(r"caught up: (\d+) segment files \((\d+) of data \+ (\d+) prepared ahead", out)
    assert settled and int(settled.group(2)) <= 16 + 1, out  # the cap, plus one kept for recycling
    assert int(settled.group(1)) == int(settled.group(2)) + int(settled.group(3)), out


def test_async_retention_keeps_a_live_readers_data_then_honours_the_cap(tmp_path):
    out = run_example("async_retention.py", str(tmp_path / "q"))
    assert "retention cap: 8 segments of data" in out, out
    kept = re.search(r"at seq 0: (\d+) segments on disk \((\d+) of data \+ (\d+) prepared ahead", out)
    after = re.search(r"committed: (\d+) segments on disk \((\d+) of data \+ (\d+) prepared ahead", out)
    assert kept and int(kept.group(2)) > 30, out  # the live reader holds every data segment
    assert after and int(after.group(2)) <= 8 + 1, out  # the cap, plus one the supplier may be recycling
    for m in (kept, after):  # the split adds up to the files on disk
        assert int(m.group(1)) == int(m.group(2)) + int(m.group(3)), out


def test_sidecar_with_the_primitives_merges_every_stream_the_sidecar_hands_over(tmp_path):
    out = run_example("sidecar_fanin.py", str(tmp_path / "bus"))
    m = re.search(r"hot thread merged (\d+) messages from (\d+) streams", out)
    assert m and int(m.group(1)) == 60_000 and int(m.group(2)) == 3, out
