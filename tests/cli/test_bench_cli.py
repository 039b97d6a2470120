"""``chronicle bench``: the packaged bench runs from the installed console script, outside any checkout."""
from __future__ import annotations

import json
import subprocess

import pytest

from .console import CHRONICLE


def _bench_in(cwd, *args):
    """Run the console script from ``cwd`` (``console.chronicle`` runs it from the test's own cwd)."""
    return subprocess.run([CHRONICLE, "bench", *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=120, check=False)


@pytest.mark.slow  # spawns eight processes; about 10 s idle, longer on a loaded machine
def test_bench_from_outside_the_checkout_reports_in_process_and_two_process_rows(tmp_path):
    p = _bench_in(tmp_path, "--messages", 2000, "--rounds", 1, "--json")
    assert p.returncode == 0, p.stdout + p.stderr
    doc = json.loads(p.stdout)
    assert doc["messages"] == 2000 and doc["rounds"] == 1
    local = {r["peer"]: r for r in doc["in_process"]}
    remote = {r["peer"]: r for r in doc["two_process"]}
    assert set(local) == {"chronicle", "queue.SimpleQueue", "collections.deque"}
    assert {"chronicle", "multiprocessing.Queue", "os.pipe"} <= set(remote)
    for row in [*local.values(), *remote.values()]:
        assert row["n"] == 2000 and row["msgs_per_s"] > 0
        assert 0 < row["p50"] <= row["p99"] <= row["p999"] <= row["max"]
    assert "two-process chronicle" in p.stderr  # progress goes to stderr, never into the JSON


@pytest.mark.slow
def test_bench_prints_the_in_process_and_two_process_tables_apart(tmp_path):
    p = _bench_in(tmp_path, "--messages", 500, "--rounds", 1)
    assert p.returncode == 0, p.stdout + p.stderr
    local, remote = p.stdout.index("in-process"), p.stdout.index("two processes")
    assert local < p.stdout.index("collections.deque") < remote < p.stdout.index("multiprocessing.Queue")
