"""A stop (one cancel, or SIGTERM to `chronicle bridge out`) always ends the bridge, promptly.

One ``task.cancel()`` is one CancelledError thrown at one await, and two things on the bridge's way
swallowed it, so the bridge went on serving after a SIGTERM (found hung for 60 s):

- Python 3.11's ``asyncio.wait_for`` returns the result when the awaited future completed in the loop
  iteration of the cancel: a SIGTERM landing with a window's acks (fixed in Python 3.12);
- nats-py's ``Client._flush_pending`` catches CancelledError: a publish stalled on a full socket (a
  stopped or unreachable server) returns normally, and the next one stalls again.

And nats-py's ``close()`` waits for the socket to drain, for as long as a stalled server does not read.
The in-process tests replay each mechanism on a fake client and count it; the last ones stop the real CLI
while its server is stopped (SIGSTOP) with publishes stalled, or killed.
"""
from __future__ import annotations

import asyncio
import pathlib
import signal
import time
from types import SimpleNamespace
from typing import Any

import pytest

from tests.bridge.conftest import Procs
from chronicle_async.bridge import LocalNatsServer
from tests.bridge.natsserver import add_stream
from tests.cli.console import chronicle_json


class FakeJetStream:
    """Just what BridgeOut calls; every publish_async returns a pending ack future (kept in ``acks``)."""

    def __init__(self, stall_after: int | None = None):
        self.acks: list[asyncio.Future] = []
        self.stall_after = stall_after  # from this publish on, each publish stalls like nats-py on a full socket
        self.swallowed = 0  # cancels the stalled publishes swallowed, as nats-py's _flush_pending does
        self.published_after_a_swallow = 0
        self._stalls: list[asyncio.Future] = []

    def release(self) -> None:
        """End the stalls with an error (a failing test must not hang in its loop's shutdown)."""
        self.stall_after = None
        for f in self._stalls:
            if not f.done():
                f.set_exception(RuntimeError("released by the test"))

    async def get_last_msg(self, stream: str, subject: str) -> Any:
        import nats.js.errors as jse

        raise jse.NotFoundError

    async def publish_async(self, subject: str, payload: bytes = b"", headers: Any = None) -> asyncio.Future:
        if self.swallowed:
            self.published_after_a_swallow += 1
        if self.stall_after is not None and len(self.acks) >= self.stall_after:
            stall = asyncio.get_running_loop().create_future()
            self._stalls.append(stall)
            try:  # nats.aio.client.Client._flush_pending(force_flush=True), nats-py 2.x
                await stall
            except asyncio.CancelledError:
                self.swallowed += 1
        ack = asyncio.get_running_loop().create_future()
        self.acks.append(ack)
        return ack


class FakeClient:
    def __init__(self, js: FakeJetStream, close_hangs: bool = False):
        self.js, self.close_hangs, self.closes, self.aborts = js, close_hangs, 0, 0
        writer = SimpleNamespace(transport=SimpleNamespace(abort=self._abort))
        self._transport = SimpleNamespace(_io_writer=writer)  # where nats-py's TcpTransport keeps its socket
        self._aborted = asyncio.Event()

    def jetstream(self, **kw: Any) -> FakeJetStream:
        return self.js

    def _abort(self) -> None:
        self.aborts += 1
        self._aborted.set()

    async def close(self) -> None:
        self.closes += 1
        while self.close_hangs and not self._aborted.is_set():  # drain/wait_closed on a server that does not read
            try:
                await self._aborted.wait()
            except asyncio.CancelledError:  # nats-py's _close swallows these too
                pass


def _bridge(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, nc: FakeClient, n: int) -> Any:
    from chronicle_async import Queue
    from chronicle_async.bridge import BridgeOut
    import chronicle_async.bridge.out as out

    async def connect(*a: Any, **kw: Any) -> FakeClient:
        return nc

    async def check_stream(*a: Any, **kw: Any) -> list[str]:
        return ["bus.>"]

    monkeypatch.setattr(out, "connect", connect)
    monkeypatch.setattr(out, "check_stream", check_stream)
    src = tmp_path / "src"
    with Queue.open_publisher(src) as w:
        for i in range(n):
            w.append(1, i.to_bytes(8, "little"))
    return BridgeOut(src, server="nats://127.0.0.1:1", stream="S", subject="bus.src", ack_timeout=30.0)


async def _until(cond: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "the bridge never got there"
        await asyncio.sleep(0.005)


def _committed(tmp_path: pathlib.Path) -> int:
    from chronicle_async import Queue

    with Queue.open_subscriber(tmp_path / "src", "bridge-out") as r:
        return r.next_seq


def test_a_cancel_landing_in_the_iteration_that_completes_the_windows_acks_stops_bridge_out(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    js = FakeJetStream()
    nc = FakeClient(js)
    bridge = _bridge(tmp_path, monkeypatch, nc, 10)

    async def main() -> None:
        task = asyncio.ensure_future(bridge.run())
        await _until(lambda: len(js.acks) == 10)
        for a in js.acks:  # the acks land ...
            a.set_result(SimpleNamespace(duplicate=False))
        task.cancel()  # ... and SIGTERM's cancel, in the same loop iteration (3.11's wait_for returned the acks)
        done, _ = await asyncio.wait((task,), timeout=5.0)
        if not done:
            task.cancel()
        assert done, "one cancel did not stop the bridge: a lost cancel"
        assert task.cancelled()

    asyncio.run(main())
    assert nc.closes == 1
    assert bridge.stats.published in (0, 10) and _committed(tmp_path) == bridge.stats.committed_seq


def test_a_cancel_swallowed_by_a_stalled_publish_stops_bridge_out_at_that_publish(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    js = FakeJetStream(stall_after=3)
    nc = FakeClient(js)
    bridge = _bridge(tmp_path, monkeypatch, nc, 10)

    async def main() -> None:
        task = asyncio.ensure_future(bridge.run())
        await _until(lambda: len(js.acks) == 3)
        await asyncio.sleep(0.05)  # the 4th publish stalls
        task.cancel()
        done, _ = await asyncio.wait((task,), timeout=5.0)
        if not done:
            js.release()
        assert done, f"the bridge did not stop: {js.swallowed} cancels swallowed, {len(js.acks)} publishes"
        assert task.cancelled()

    asyncio.run(main())
    assert js.swallowed == 1, "the stalled publish swallowed the stop's cancel once"
    assert js.published_after_a_swallow == 0, "the bridge published again after its stop"
    assert all(a.cancelled() for a in js.acks), "the window's acks are dropped, not left pending"
    assert bridge.stats.published == 0 and _committed(tmp_path) == 0, "nothing unacknowledged is committed"
    assert nc.closes == 1


def test_a_close_that_waits_on_a_server_not_reading_is_cut_and_the_socket_aborted(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import chronicle_async.bridge.nats_link as link

    monkeypatch.setattr(link, "CLOSE_TIMEOUT_S", 0.3)
    js = FakeJetStream()
    nc = FakeClient(js, close_hangs=True)
    bridge = _bridge(tmp_path, monkeypatch, nc, 10)

    async def main() -> float:
        task = asyncio.ensure_future(bridge.run())
        await _until(lambda: len(js.acks) == 10)
        t0 = time.monotonic()
        task.cancel()
        done, _ = await asyncio.wait((task,), timeout=5.0)
        if not done:
            nc._abort()
        assert done, "the bridge waited on its close"
        assert task.cancelled()
        return time.monotonic() - t0

    took = asyncio.run(main())
    assert (nc.closes, nc.aborts) == (1, 1)
    assert took < 3.0


def _out(procs: Procs, src: pathlib.Path, server: LocalNatsServer) -> Any:
    return procs.chronicle("bridge", "out", src, "--server", server.url, "--stream", "S", "--subject", "bus.src",
                           "--ack-timeout", "1")


def _wait_live(src: pathlib.Path, p: Any) -> None:
    deadline = time.monotonic() + 60
    while not any(e["name"] == "bridge-out" and e["live"] for e in chronicle_json("readers", src)["readers"]):
        assert time.monotonic() < deadline and p.poll() is None, open(p.log_path).read()
        time.sleep(0.1)
    time.sleep(0.5)  # past its stream check: it waits for messages


@pytest.mark.parametrize("outage", ["stopped", "killed"])
def test_sigterm_to_bridge_out_during_an_outage_with_publishes_in_flight_exits_143_by_itself(
    tmp_path: pathlib.Path, nats_server: LocalNatsServer, procs: Procs, outage: str
) -> None:
    from chronicle_async import Queue
    from chronicle_async.cli.bridge import STOP_GRACE_S

    add_stream(nats_server.url, "S", ["bus.>"])
    src = tmp_path / "src"
    Queue.open_publisher(src).close()
    p = _out(procs, src, nats_server)
    _wait_live(src, p)
    try:
        if outage == "stopped":  # a server that does not read: its socket fills, the publishes stall
            nats_server.proc.send_signal(signal.SIGSTOP)
        else:
            nats_server.kill9()
        with Queue.open_publisher(src) as w:  # 60 MB: far more than loopback's socket buffers
            for i in range(1000):
                w.append(1, i.to_bytes(8, "little") * 7500)
        time.sleep(1.5)  # publishing into the stall; a window's acks time out (--ack-timeout 1)
        t0 = time.monotonic()
        p.send_signal(signal.SIGTERM)
        rc = p.wait(STOP_GRACE_S + 20)
        took = time.monotonic() - t0
    finally:
        if outage == "stopped":
            nats_server.proc.send_signal(signal.SIGCONT)
    log = open(p.log_path).read()
    assert rc == 143, log[-3000:]
    assert "did not stop within" not in log, f"the safety net had to end it: {log[-3000:]}"
    assert "chronicle bridge: stopped: OutStats(" in log
    assert took < STOP_GRACE_S / 2, f"the stop took {took:.1f} s"
