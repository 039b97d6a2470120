"""Shared fixtures: kept minimal on purpose."""
from __future__ import annotations

import os
import pathlib
import shutil
import tempfile
from typing import Iterator

import pytest


@pytest.fixture
def queue_dir(tmp_path: pathlib.Path) -> pathlib.Path:
    """A fresh, empty folder (under pytest's tmp_path) to hold one queue."""
    d = tmp_path / "queue"
    d.mkdir()
    return d


@pytest.fixture
def root_owned_dir() -> Iterator[pathlib.Path]:
    """A 0o755 folder outside pytest's private (0o700) tmp tree: another user may look in, not write."""
    d = tempfile.mkdtemp(prefix="chronicle-shared-")
    os.chmod(d, 0o755)
    yield pathlib.Path(d)
    shutil.rmtree(d, ignore_errors=True)
