"""Small JetStream helpers for the bridge tests (the server itself is chronicle_async.bridge.LocalNatsServer).

Each takes ``auth``: keyword arguments for ``nats.connect`` (``{"user": u, "password": p}``, ``{"token": t}``).
"""
from __future__ import annotations

import asyncio
import socket
from typing import Any, Awaitable, Callable



def free_port() -> int:
    """A loopback port nothing listens on (for the unreachable-server tests)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def js_call(url: str, body: Callable[[Any], Awaitable[Any]], auth: dict[str, Any] | None = None) -> Any:
    """Run ``body(js)`` on a fresh connection to ``url`` and return its result."""
    import nats

    async def main() -> Any:
        nc = await nats.connect(url, connect_timeout=5, max_reconnect_attempts=20, reconnect_time_wait=0.2,
                                **(auth or {}))
        try:
            return await body(nc.jetstream())
        finally:
            await nc.close()

    return asyncio.run(main())


def add_stream(url: str, name: str, subjects: list[str], *, auth: dict[str, Any] | None = None,
               **config: Any) -> None:
    async def body(js: Any) -> None:
        await js.add_stream(name=name, subjects=subjects, **config)

    js_call(url, body, auth)


def stream_count(url: str, name: str, auth: dict[str, Any] | None = None) -> int:
    async def body(js: Any) -> int:
        return (await js.stream_info(name)).state.messages

    return js_call(url, body, auth)


def stream_source_seqs(url: str, name: str, auth: dict[str, Any] | None = None) -> list[int]:
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

    return js_call(url, body, auth)
