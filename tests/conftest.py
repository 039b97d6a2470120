"""Shared fixtures: kept minimal on purpose."""
from __future__ import annotations

import pathlib

import pytest


@pytest.fixture
def queue_dir(tmp_path: pathlib.Path) -> pathlib.Path:
    """A fresh, empty folder (under pytest's tmp_path) to hold one queue."""
    d = tmp_path / "queue"
    d.mkdir()
    return d
