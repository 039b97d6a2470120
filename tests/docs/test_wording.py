"""The code and docs speak of this project alone, and say what the command line really does."""
from __future__ import annotations

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[2]
TEXT = [*ROOT.glob("README.md"), *ROOT.glob("docs/*.md"), *ROOT.glob("examples/*.py"),
        *ROOT.glob("chronicle_async/**/*.py")]


def test_no_text_refers_to_an_outside_design_document():
    pattern = re.compile(r"the seed\b|seed's|seed design|sketch", re.IGNORECASE)
    hits = [f"{p.relative_to(ROOT)}:{n}: {line.strip()}" for p in TEXT
            for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if pattern.search(line)]
    assert hits == []


def test_readme_does_not_say_tail_never_commits():
    assert "never commits" not in (ROOT / "README.md").read_text(encoding="utf-8")


def test_control_plane_doc_does_not_call_uvloop_optional():
    assert "uvloop when installed" not in (ROOT / "docs" / "control-plane.md").read_text(encoding="utf-8")
