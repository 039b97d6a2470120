"""BridgeIn's push consumer: it acks as soon as the stream has no more, and recreates a consumer that vanished."""
from __future__ import annotations

import asyncio
import pathlib
from typing import Any, Callable

from chronicle_async import Queue
from chronicle_async.bridge import BridgeIn, LocalNatsServer, unpack
from tests.bridge.natsserver import add_stream


async def _eventually(check: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        assert loop.time() < deadline, f"not within {timeout:g} s: {what}"
        await asyncio.sleep(0.01)


async def _publish(url: str, subject: str, payloads: list[bytes], first_seq: int = 0) -> None:
    import nats

    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        for i, p in enumerate(payloads):
            await js.publish(subject, p, headers={"Chronicle-Seq": str(first_seq + i), "Chronicle-Type-Id": "3"})
    finally:
        await nc.close()


def _run(tmp_path: pathlib.Path, server: LocalNatsServer, body: Callable[[BridgeIn, Any], Any], **kw: Any) -> BridgeIn:
    add_stream(server.url, "S", ["in.>"])
    bridge = BridgeIn(tmp_path / "dst", server=server.url, stream="S", subject="in.x", **kw)

    async def main() -> None:
        task = asyncio.ensure_future(bridge.run())
        try:
            await _eventually(lambda: Queue.exists(tmp_path / "dst"), "the bridge opened its queue")
            await body(bridge, task)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(main())
    return bridge


def test_a_message_alone_on_a_quiet_stream_is_appended_and_acked_without_waiting_for_a_batch(
    tmp_path: pathlib.Path, nats_server: LocalNatsServer
) -> None:
    async def body(bridge: BridgeIn, task: Any) -> None:
        for i in range(3):  # one at a time: each is the last the stream has when it arrives
            await _publish(nats_server.url, "in.x", [b"m%d" % i], first_seq=i)
            await _eventually(lambda: bridge.stats.appended == i + 1, f"message {i} appended")
            await _eventually(lambda: bridge.stats.acks == i + 1, f"message {i} acked on its own")

    bridge = _run(tmp_path, nats_server, body, batch=1000)
    assert bridge.stats.acks == 3 and bridge.stats.skipped == 0
    with Queue.open_subscriber(tmp_path / "dst", None, "earliest") as r:
        got = [unpack(m) for m in iter(lambda: r.next(0.0), None)]
    assert [bytes(m.payload) for m in got] == [b"m0", b"m1", b"m2"]
    assert [m.source_seq for m in got] == [0, 1, 2] and {m.type_id for m in got} == {3}


def test_a_backlog_is_acked_once_per_batch_and_once_at_its_end(
    tmp_path: pathlib.Path, nats_server: LocalNatsServer
) -> None:
    add_stream(nats_server.url, "S", ["in.>"])
    asyncio.run(_publish(nats_server.url, "in.x", [b"%d" % i for i in range(250)]))

    async def body(bridge: BridgeIn, task: Any) -> None:
        await _eventually(lambda: bridge.stats.appended == 250, "the backlog appended")
        await _eventually(lambda: bridge.stats.acks >= 3, "the backlog acked")

    bridge = BridgeIn(tmp_path / "dst", server=nats_server.url, stream="S", subject="in.x", batch=100)

    async def main() -> None:
        task = asyncio.ensure_future(bridge.run())
        try:
            await body(bridge, task)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(main())
    # 100, 200, then 250 (the stream has no more): three acks, not one per message.
    assert bridge.stats.acks == 3, bridge.stats


def test_a_consumer_deleted_on_the_server_is_recreated_after_the_last_appended_message(
    tmp_path: pathlib.Path, nats_server: LocalNatsServer
) -> None:
    async def body(bridge: BridgeIn, task: Any) -> None:
        import nats

        await _publish(nats_server.url, "in.x", [b"a", b"b"])
        await _eventually(lambda: bridge.stats.appended == 2, "the first two appended")
        nc = await nats.connect(nats_server.url)
        await nc.jetstream().delete_consumer("S", bridge.durable)
        await nc.close()
        await _eventually(lambda: bridge.stats.outages == 1, "the vanished consumer noticed and replaced")
        await _publish(nats_server.url, "in.x", [b"c"])
        await _eventually(lambda: bridge.stats.appended == 3, "a message after the replacement appended")

    bridge = _run(tmp_path, nats_server, body, check_interval=0.2)
    with Queue.open_subscriber(tmp_path / "dst", None, "earliest") as r:
        got = [bytes(unpack(m).payload) for m in iter(lambda: r.next(0.0), None)]
    assert got == [b"a", b"b", b"c"]
