"""BridgeIn: a durable JetStream push consumer appended into a local queue exactly once."""
from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from typing import Any

from ..queue.queue import Queue
from ..queue.writer import QueueWriter
from . import ids
from .nats_link import StopAware, check_auth, check_stream, close, connect, log, until_cancelled


@dataclass
class InStats:
    """What a BridgeIn did since it started."""

    appended: int = 0
    skipped: int = 0
    outages: int = 0
    acks: int = 0
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
    after it; it places it there again after every reconnection (so messages the consumer delivered
    but the bridge never received are not skipped), skips any redelivered message at or below it,
    and acks only after the local append. Each local message keeps the source type_id and
    timestamp_ns; use :func:`ids.unpack` for the source seq and the payload.

    The consumer pushes each message as soon as the stream stores it, with up to ``4 * batch``
    unacknowledged; the bridge acks (``AckPolicy.ALL``) after every ``batch`` appends and whenever
    it has appended all it was sent, so a quiet stream adds no batching delay. Run it with
    ``await bridge.run()`` or as a ControlPlane worker. One event loop only.
    """

    def __init__(self, path: str | os.PathLike, *, server: str, stream: str, subject: str | None = None,
                 durable: str = "chronicle-bridge-in", batch: int = 1000, connect_timeout: float = 5.0,
                 check_interval: float = 5.0, user: str | None = None, password: str | None = None,
                 token: str | None = None, creds: str | os.PathLike | None = None):
        """Credentials, if the server wants them: ``user`` and ``password``, or ``token``, or ``creds`` (a
        NATS ``.creds`` file). Mixing kinds raises ``ValueError``; a refusal raises BridgeAuthError from run()."""
        self.path = os.fspath(path)
        self.server, self.stream, self.subject, self.durable = server, stream, subject, durable
        self.batch, self.connect_timeout, self.check_interval = int(batch), float(connect_timeout), float(check_interval)
        check_auth(user, password, token, creds)
        self.user, self.creds = user, (os.fspath(creds) if creds is not None else None)
        self._password, self._token = password, token  # kept out of stats and logs
        self.stats = InStats()
        self._replace = asyncio.Event()
        self._failed: BaseException | None = None
        self._generation = 0

    async def run(self) -> None:
        """Connect, check the stream, then append forever (cancel it to stop)."""
        self._replace.set()
        nc = await connect(self.server, connect_timeout=self.connect_timeout, name=f"chronicle-in-{self.durable}",
                           on_reconnect=self._replace.set, user=self.user, password=self._password,
                           token=self._token, creds=self.creds)
        try:
            js = StopAware(nc.jetstream())
            await check_stream(js, self.server, self.stream, self.subject)
            with Queue.open_publisher(self.path) as writer:
                self.stats.last_stream_seq = last_stream_seq(writer)
                await until_cancelled(self._serve(nc, js, writer))
        finally:
            await close(nc)

    async def _subscribe(self, nc: Any, js: Any, writer: QueueWriter) -> Any:
        """(Re)create the durable consumer just after the queue's last appended stream seq, pushing to a
        fresh inbox, and subscribe to it."""
        import nats.js.api as api
        import nats.js.errors as jse

        try:
            await js.delete_consumer(self.stream, self.durable)
        except jse.NotFoundError:
            pass
        config = api.ConsumerConfig(
            durable_name=self.durable, deliver_subject=nc.new_inbox(), ack_policy=api.AckPolicy.ALL,
            deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=self.stats.last_stream_seq + 1,
            filter_subject=self.subject, max_ack_pending=self.batch * 4, ack_wait=30.0,
        )
        await js.add_consumer(self.stream, config)
        self._generation += 1
        generation, unacked = self._generation, 0

        async def on_msg(msg: Any) -> None:
            nonlocal unacked
            if generation != self._generation or self._failed is not None:
                return  # a replaced consumer's leftovers, or a queue that refused an append
            meta = msg.metadata
            try:
                self._append(writer, msg, meta.sequence.stream)
            except BaseException as e:  # stop, leaving it unacknowledged
                self._failed = e
                self._replace.set()
                return
            unacked += 1
            if unacked >= self.batch or meta.num_pending == 0:  # a full batch, or all the stream has now
                unacked = 0
                self.stats.acks += 1
                try:
                    await msg.ack()  # AckPolicy.ALL: acks everything up to it, after the appends
                except Exception as e:  # redelivered later, and skipped by stream seq
                    log.warning("bridge in %s: ack failed (%s); redelivered messages will be skipped", self.durable, e)

        return await js.subscribe_bind(self.stream, config, self.durable, cb=on_msg, manual_ack=True,
                                       pending_msgs_limit=self.batch * 8)

    async def _serve(self, nc: Any, js: Any, writer: QueueWriter) -> None:
        import nats.errors
        import nats.js.errors as jse

        sub = None
        while True:
            try:
                await asyncio.wait_for(self._replace.wait(), self.check_interval)
            except asyncio.TimeoutError:  # quiet for a while: is the consumer still there?
                try:
                    await js.consumer_info(self.stream, self.durable)
                    continue
                except jse.NotFoundError:
                    log.warning("bridge in %s: the consumer is gone from the server; recreating it", self.durable)
                except (nats.errors.Error, asyncio.TimeoutError):
                    continue  # an outage: the reconnection replaces the consumer
            self._replace.clear()
            if self._failed is not None:
                raise self._failed
            if sub is not None:
                self._generation += 1  # what the old subscription still delivers is dropped, unacked
                await _unsubscribe(sub)
                self.stats.outages += 1
                sub = None
            while sub is None:
                try:
                    sub = await self._subscribe(nc, js, writer)
                except (nats.errors.Error, asyncio.TimeoutError) as e:  # the client raises both under load
                    log.warning("bridge in %s: %s: %s; retrying", self.durable, type(e).__name__, e)
                    await asyncio.sleep(0.2)

    def _append(self, writer: QueueWriter, msg: Any, sseq: int) -> None:
        if sseq <= self.stats.last_stream_seq:
            self.stats.skipped += 1
            return
        h = msg.headers or {}
        prefix = ids.PREFIX.pack(sseq, int(h.get(ids.H_SEQ, 0)))
        ts = h.get(ids.H_TIMESTAMP)
        writer.append(int(h.get(ids.H_TYPE_ID, 0)), prefix + msg.data, timestamp_ns=int(ts) if ts else None)
        self.stats.last_stream_seq = sseq
        self.stats.appended += 1
