"""Every ```python block in README.md and docs/*.md runs, in a fresh folder."""
from __future__ import annotations

import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def _blocks():
    for f in FILES:
        for i, m in enumerate(BLOCK.finditer(f.read_text())):
            yield pytest.param(m.group(1), id=f"{f.name}#{i}")


@pytest.mark.parametrize("code", list(_blocks()))
def test_documented_python_block_runs(code, tmp_path):
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
