"""BridgeOut: a named reader of a local queue, published to a JetStream stream exactly once."""
from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from typing import Any

from ..queue.queue import Queue
from ..queue.reader import QueueReader
from . import ids
from .nats_link import StopAware, check_auth, check_stream, close, connect, log, until_cancelled


@dataclass
class OutStats:
    """What a BridgeOut did since it started."""

    published: int = 0
    duplicates: int = 0
    outages: int = 0
    committed_seq: int = 0


class BridgeOut:
    """Tail queue ``path`` as named reader ``name`` and publish each message to ``subject`` of ``stream``.

    Exactly once into the stream: each message is published with ``Nats-Msg-Id = <queue id>-<seq>``
    (a re-send inside the stream's duplicate window is dropped by the server), the reader commits only
    after JetStream acknowledged every message of a window, and on every (re)start the bridge reads the
    stream's last message on ``subject`` and skips past the seq it carries, which keeps it correct
    beyond the duplicate window. Use one subject per source queue.

    Up to ``window`` publishes are in flight (asynchronous acks, not one round trip per message). An
    outage pauses it: acks not in within ``ack_timeout`` seconds make it go back to its committed
    position and re-send once the server answers again. Run it with ``await bridge.run()`` or as a
    ControlPlane worker: ``plane.start_worker("bridge-out", bridge.run)``.
    """

    def __init__(self, path: str | os.PathLike, *, server: str, stream: str, subject: str,
                 name: str = "bridge-out", window: int = 2000, ack_timeout: float = 5.0,
                 connect_timeout: float = 5.0, idle_wait: float = 0.5, user: str | None = None,
                 password: str | None = None, token: str | None = None, creds: str | os.PathLike | None = None):
        """Credentials, if the server wants them: ``user`` and ``password``, or ``token``, or ``creds`` (a
        NATS ``.creds`` file). Mixing kinds raises ``ValueError``; a refusal raises BridgeAuthError from run()."""
        self.path = os.fspath(path)
        self.server, self.stream, self.subject, self.name = server, stream, subject, name
        self.window, self.ack_timeout = int(window), float(ack_timeout)
        self.connect_timeout, self.idle_wait = float(connect_timeout), float(idle_wait)
        check_auth(user, password, token, creds)
        self.user, self.creds = user, (os.fspath(creds) if creds is not None else None)
        self._password, self._token = password, token  # kept out of stats and logs
        self.stats = OutStats()

    async def run(self) -> None:
        """Connect, check the stream, then publish forever (cancel it to stop). Raises typed errors
        for a bad URL, an unreachable server, a missing stream or a subject the stream does not capture."""
        nc = await connect(self.server, connect_timeout=self.connect_timeout, name=f"chronicle-out-{self.name}",
                           user=self.user, password=self._password, token=self._token, creds=self.creds)
        try:
            js = StopAware(nc.jetstream(publish_async_max_pending=self.window * 4))
            await check_stream(js, self.server, self.stream, self.subject)
            with Queue.open_subscriber(self.path, self.name) as reader:
                await until_cancelled(self._serve(js, reader))
        finally:
            await close(nc)

    async def _serve(self, js: Any, reader: QueueReader) -> None:
        import nats.errors

        queue_id = reader.cursor.queue_id
        self.stats.committed_seq = reader.next_seq
        while True:
            try:
                await self._skip_published(js, reader, queue_id)
                await self._pump(js, reader, queue_id)
            except (nats.errors.Error, asyncio.TimeoutError) as e:
                self.stats.outages += 1
                log.warning("bridge out %s: %s: %s; resending from seq %d when the server answers",
                            self.name, type(e).__name__, e, self.stats.committed_seq)
                reader.seek(self.stats.committed_seq)
                await asyncio.sleep(0.2)

    async def _skip_published(self, js: Any, reader: QueueReader, queue_id: int) -> None:
        """Move past what the stream already holds from this queue (beyond the duplicate window)."""
        import nats.js.errors as jse

        try:
            last = await js.get_last_msg(self.stream, self.subject)
        except jse.NotFoundError:
            return
        h = last.headers or {}
        if h.get(ids.H_QUEUE_ID) != f"{queue_id:x}":
            return
        after = int(h[ids.H_SEQ]) + 1
        if after > reader.next_seq:
            log.info("bridge out %s: the stream holds up to seq %d; resuming at %d", self.name, after - 1, after)
            reader.seek(after)
            reader.commit()
            self.stats.committed_seq = reader.next_seq

    async def _pump(self, js: Any, reader: QueueReader, queue_id: int) -> None:
        while True:
            m = reader.next(0.0)
            if m is None:
                m = await reader.next_async(timeout=self.idle_wait)
                if m is None:
                    continue
            acks: list[asyncio.Future] = []
            try:
                while True:
                    acks.append(await js.publish_async(self.subject, m.payload, headers=ids.out_headers(queue_id, m)))
                    if len(acks) >= self.window:
                        break
                    m = reader.next(0.0)
                    if m is None:
                        break
                done = await asyncio.wait_for(asyncio.gather(*acks), self.ack_timeout)
            except BaseException:  # an outage, or a stop: nothing of this window is committed
                for a in acks:
                    a.cancel()
                raise
            self.stats.duplicates += sum(1 for a in done if a.duplicate)
            reader.commit()
            self.stats.published += len(done)
            self.stats.committed_seq = reader.next_seq
