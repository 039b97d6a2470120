"""Examples run with no folder write a scratch queue and leave nothing behind in the temp folder."""
from __future__ import annotations

import os
import subprocess
import sys

EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "..", "examples")


def test_jitted_append_without_a_folder_removes_its_scratch_queue(tmp_path):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    proc = subprocess.run([sys.executable, os.path.join(EXAMPLES, "jitted_append.py")],
                          env={**os.environ, "TMPDIR": str(scratch)}, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "read back 2,000,000 messages, each carrying its own seq" in proc.stdout, proc.stdout
    assert list(scratch.iterdir()) == []


def test_jitted_append_keeps_the_queue_in_a_folder_the_user_gives(tmp_path):
    folder = tmp_path / "q"
    proc = subprocess.run([sys.executable, os.path.join(EXAMPLES, "jitted_append.py"), str(folder)],
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert any(f.endswith(".seg") for f in os.listdir(folder))
