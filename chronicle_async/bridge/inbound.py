"""BridgeIn: a durable JetStream pull consumer appended into a local queue exactly once."""
from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from typing import Any

from ..queue.queue import Queue
from ..queue.writer import QueueWriter
from . import ids
from .nats_link import StopAware, check_stream, close, connect, log, until_cancelled


@dataclass
class InStats:
    """What a BridgeIn did since it started."""

    appended: int = 0
    skipped: int = 0
    outages: int = 0
    last_stream_seq: int = 0


def last_stream_seq(writer: QueueWriter) -> int:
    """The stream seq of the last message appended to the writer's queue by a bridge in (0: none)."""
    if writer.next_seq == 0:
        return 0
    with Queue.open_subscriber(writer.path, None, "earliest") as r:
        r.seek(writer.next_seq - 1)
        m = r.next(0.0)
        return 0 if m is None else ids.unpack(m).stream_seq


async def _unsubscribe(sub: Any) -> None:
    import nats.errors

    try:
        await sub.unsubscribe()
    except nats.errors.Error:  # the connection is down: the subscription is gone anyway
        pass


class BridgeIn:
    """Append the messages of ``stream`` (optionally only ``subject``) to local queue ``path``.

    Exactly once into the queue: on start it reads the stream seq of the queue's last message (each
    appended message starts with :data:`ids.PREFIX`) and places durable consumer ``durable`` just
    after it; it places it there again after every outage or reconnection (so messages the consumer
    delivered but the bridge never received are not skipped), skips any redelivered message at or
    below it, and acks only after the local append. Each local message keeps the source type_id and timestamp_ns; use
    :func:`ids.unpack` for the source seq and the payload. Run it with ``await bridge.run()`` or as a
    ControlPlane worker.
    """

    def __init__(self, path: str | os.PathLike, *, server: str, stream: str, subject: str | None = None,
                 durable: str = "chronicle-bridge-in", batch: int = 1000, connect_timeout: float = 5.0,
                 fetch_wait: float = 0.5):
        self.path = os.fspath(path)
        self.server, self.stream, self.subject, self.durable = server, stream, subject, durable
        self.batch, self.connect_timeout, self.fetch_wait = int(batch), float(connect_timeout), float(fetch_wait)
        self.stats = InStats()
        self._replace = True

    async def run(self) -> None:
        """Connect, check the stream, then append forever (cancel it to stop)."""
        nc = await connect(self.server, connect_timeout=self.connect_timeout, name=f"chronicle-in-{self.durable}",
                           on_reconnect=self._must_replace)
        try:
            js = StopAware(nc.jetstream())
            await check_stream(js, self.server, self.stream, self.subject)
            with Queue.open_publisher(self.path) as writer:
                self.stats.last_stream_seq = last_stream_seq(writer)
                await until_cancelled(self._serve(js, writer))
        finally:
            await close(nc)

    def _must_replace(self) -> None:
        self._replace = True

    async def _place_consumer(self, js: Any) -> Any:
        """(Re)create the durable consumer just after the queue's last appended stream seq; bind to it."""
        import nats.js.api as api
        import nats.js.errors as jse

        self._replace = False
        last = self.stats.last_stream_seq
        try:
            await js.delete_consumer(self.stream, self.durable)
        except jse.NotFoundError:
            pass
        await js.add_consumer(self.stream, api.ConsumerConfig(
            durable_name=self.durable, ack_policy=api.AckPolicy.ALL,
            deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=last + 1,
            filter_subject=self.subject, max_ack_pending=self.batch * 4, ack_wait=30.0,
        ))
        return await js.pull_subscribe_bind(durable=self.durable, stream=self.stream)

    async def _serve(self, js: Any, writer: QueueWriter) -> None:
        import nats.errors

        sub = None
        while True:
            try:
                if self._replace or sub is None:
                    old, sub = sub, None
                    if old is not None:
                        await _unsubscribe(old)
                    sub = await self._place_consumer(js)
                msgs = await sub.fetch(self.batch, timeout=self.fetch_wait)
            except nats.errors.TimeoutError:
                continue
            except (nats.errors.Error, asyncio.TimeoutError) as e:  # the client raises both under load
                self._replace = True
                self.stats.outages += 1
                log.warning("bridge in %s: %s: %s; retrying", self.durable, type(e).__name__, e)
                await asyncio.sleep(0.2)
                continue
            if not msgs:  # a fetch can end with nothing but a status
                continue
            self._append(writer, msgs)
            try:
                await msgs[-1].ack()  # AckPolicy.ALL: acks the whole batch, after the appends
            except nats.errors.Error as e:  # redelivered later, and skipped by stream seq
                log.warning("bridge in %s: ack failed (%s); the batch will be redelivered and skipped", self.durable, e)

    def _append(self, writer: QueueWriter, msgs: list[Any]) -> None:
        last = self.stats.last_stream_seq
        for msg in msgs:
            sseq = msg.metadata.sequence.stream
            if sseq <= last:
                self.stats.skipped += 1
                continue
            h = msg.headers or {}
            prefix = ids.PREFIX.pack(sseq, int(h.get(ids.H_SEQ, 0)))
            ts = h.get(ids.H_TIMESTAMP)
            writer.append(int(h.get(ids.H_TYPE_ID, 0)), prefix + msg.data, timestamp_ns=int(ts) if ts else None)
            last = sseq
            self.stats.appended += 1
        self.stats.last_stream_seq = last
