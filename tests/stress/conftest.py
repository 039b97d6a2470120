"""Fixtures of the stress tests: worker processes that never outlive their test, and disk hygiene."""
from __future__ import annotations

import pathlib
import shutil
from typing import Any, Callable, Iterator

import pytest

from ._workers import Worker


@pytest.fixture
def spawn() -> Iterator[Callable[..., Worker]]:
    """``spawn(command, **kwargs)`` starts a worker process; all are killed at teardown."""
    started: list[Worker] = []

    def start(command: str, **kwargs: Any) -> Worker:
        w = Worker(command, **kwargs)
        started.append(w)
        return w

    yield start
    for w in started:
        w.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"stress_rep_{rep.when}", rep)


@pytest.fixture(autouse=True)
def _drop_queue_files_of_passing_tests(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> Iterator[None]:
    """These tests write hundreds of MB of segments: keep them only when the test failed."""
    yield
    rep = getattr(request.node, "stress_rep_call", None)
    if rep is not None and rep.passed and not hasattr(rep, "wasxfail"):
        shutil.rmtree(tmp_path, ignore_errors=True)
