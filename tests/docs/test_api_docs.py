"""docs/api.md is generated from the docstrings, and kept up to date."""
from __future__ import annotations

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_api_reference_matches_the_docstrings():
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_api_docs.py"), "--check"], cwd=ROOT)
    assert proc.returncode == 0, "docs/api.md is out of date: run `python scripts/gen_api_docs.py`"


def test_api_reference_lists_every_public_name():
    import chronicle_async

    text = (ROOT / "docs" / "api.md").read_text()
    missing = [n for n in chronicle_async.__all__ if f"### `{n}" not in text]
    assert missing == []
