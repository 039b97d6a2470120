"""Embedding chronicle_async in an asyncio HTTP service, standard library only (asyncio streams).

- GET /queues: the queues under a bus root, with their next seq and writer status (JSON);
- GET /stream/<queue>?from=<seq>: Server-Sent Events (id: seq, data: the payload as JSON, else
  base64) from ``seq`` or the latest, read by an anonymous reader (never commits) with
  ``async for``; a client's disconnect cancels the wait (its registration goes) and closes the reader;
- GET /health: 200 with the event loop's lag.

Idle streams all park in chronicle_async's one waker thread (no thread per client); file work
(opening readers, listing) runs on one file thread. A slow client only falls behind in the
persisted queue. The HTTP is minimal: GET only, ``Connection: close``, no keep-alive.

Run:  python examples/http_stream.py [bus-folder]   (a writer process ticks; two SSE clients check it)
"""
from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import json
import logging
import multiprocessing as mp
import os
import sys
import tempfile
import threading
import time
import urllib.parse
from typing import Self

from chronicle_async import ChronicleError, Message, Queue, QueueReader, WriterConfig
from chronicle_async.control import aio, run

N_EVENTS, LAG_PROBE_S = 500, 0.05
log = logging.getLogger("http_stream")


def list_queues(bus: str) -> list[dict]:
    """Every queue (a sub-folder with a control file) under ``bus``: next seq, writer status."""
    out = []
    for name in sorted(os.listdir(bus)):
        if not Queue.exists(path := os.path.join(bus, name)):
            continue
        try:
            with Queue.open_subscriber(path, None, "latest") as r:  # anonymous: no lock, no file
                st = r.writer_status(ttl=1.0)
                out.append({"name": name, "next_seq": r.next_seq, "writer": {
                    "alive": st.alive, "state": st.state, "pid": st.pid, "epoch": st.epoch}})
        except ChronicleError as e:  # deleted or half-created meanwhile
            out.append({"name": name, "error": str(e)})
    return out


def open_stream_reader(path: str, from_seq: int | None) -> QueueReader:
    r = Queue.open_subscriber(path, None, "latest" if from_seq is None else "earliest")
    if from_seq is not None:
        r.seek(from_seq)  # that seq, else the first one after it (or the tail)
    return r


def sse_event(msg: Message) -> bytes:
    data = {"seq": msg.seq, "timestamp_ns": msg.timestamp_ns, "type_id": msg.type_id}
    raw = bytes(msg.payload)  # copied out of the mapping
    try:
        data["json"] = json.loads(raw)
    except ValueError:  # not UTF-8 JSON (UnicodeDecodeError is a ValueError too)
        data["b64"] = base64.b64encode(raw).decode()
    return b"id: %d\ndata: %s\n\n" % (msg.seq, json.dumps(data, separators=(",", ":")).encode())


def respond(w: asyncio.StreamWriter, status: str, obj: object) -> None:
    body = json.dumps(obj).encode()
    w.write(f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n".encode() + body)


class StreamService:
    """The server factory: ``async with StreamService(bus) as svc:`` serves on ``svc.port``."""

    def __init__(self, bus: str, host: str = "127.0.0.1", port: int = 0):
        self.bus, self.host, self.port = bus, host, port
        self.streams = 0  # SSE responses open now
        self.lag = self.max_lag = 0.0
        self._conns: set[asyncio.Task] = set()

    async def __aenter__(self) -> Self:
        self._files = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="http-files")
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        self._lag_task = asyncio.create_task(self._watch_lag())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()  # stops accepting; Python 3.11 leaves open connections: cancel them
        tasks = [self._lag_task, *self._conns]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._server.wait_closed()
        self._files.shutdown()

    async def _watch_lag(self) -> None:
        while True:  # how late a timer fires = how long callbacks held the loop
            t = time.monotonic()  # (uvloop's loop.time() counts whole ms)
            await asyncio.sleep(LAG_PROBE_S)
            self.lag = max(0.0, time.monotonic() - t - LAG_PROBE_S)
            self.max_lag = max(self.max_lag, self.lag)

    def _off_loop(self, fn, *args):  # file work on the one file thread
        return asyncio.get_running_loop().run_in_executor(self._files, fn, *args)

    async def _handle(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        self._conns.add(task := asyncio.current_task())
        try:
            method, target, _ = (await asyncio.wait_for(r.readline(), 10)).decode("latin-1").split(" ", 2)
            for _ in range(100):  # the headers: read and ignored
                if await asyncio.wait_for(r.readline(), 10) in (b"\r\n", b"\n", b""):
                    break
            url = urllib.parse.urlsplit(target)
            path, query = urllib.parse.unquote(url.path), urllib.parse.parse_qs(url.query)
            if method != "GET":
                respond(w, "405 Method Not Allowed", {"error": "GET only"})
            elif path == "/health":
                respond(w, "200 OK", {"status": "ok", "loop_lag_ms": round(self.lag * 1e3, 3),
                                      "max_loop_lag_ms": round(self.max_lag * 1e3, 3), "streams": self.streams,
                                      "registered_waits": aio.registered_waits(),
                                      "threads": threading.active_count()})
            elif path == "/queues":
                respond(w, "200 OK", await self._off_loop(list_queues, self.bus))
            elif path.startswith("/stream/"):
                await self._stream(r, w, path[len("/stream/"):], query.get("from", [None])[0])
            else:
                respond(w, "404 Not Found", {"error": f"no route {path}"})
        except (TimeoutError, ValueError, ConnectionError):
            pass  # a malformed request, a silent or a vanished client: just close
        finally:
            self._conns.discard(task)
            w.close()

    async def _stream(self, r, w, name: str, start: str | None) -> None:
        qpath = os.path.join(self.bus, name)
        if not name or "/" in name or name.startswith(".") or not Queue.exists(qpath):
            return respond(w, "404 Not Found", {"error": f"no queue {name!r}"})
        if start is not None and not (start.isascii() and start.isdigit()):
            return respond(w, "400 Bad Request", {"error": "from must be a seq (a non-negative int)"})
        try:
            reader = await self._off_loop(open_stream_reader, qpath, None if start is None else int(start))
        except ChronicleError as e:  # deleted between the check and the open
            return respond(w, "404 Not Found", {"error": str(e)})
        w.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
                b"Connection: close\r\n\r\n")
        self.streams += 1
        pump, eof = asyncio.create_task(pump_events(reader, w)), asyncio.create_task(until_eof(r))
        try:  # the stream ends when the client goes (EOF) or a write fails (the pump ends)
            await asyncio.wait({pump, eof}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in (pump, eof):
                t.cancel()  # cancelling a pump parked in the waker removes its registration
            await asyncio.gather(pump, eof, return_exceptions=True)
            if not pump.cancelled() and not isinstance(pump.exception(), (ConnectionError, type(None))):
                log.error("stream of %s failed", qpath, exc_info=pump.exception())  # e.g. a corrupt segment
            reader.close()
            self.streams -= 1


async def pump_events(reader: QueueReader, w: asyncio.StreamWriter) -> None:
    async for msg in reader:  # waits in the shared waker thread; never ends on its own
        w.write(sse_event(msg))
        await w.drain()  # back-pressure from this client only


async def until_eof(r: asyncio.StreamReader) -> None:
    while await r.read(4096):  # a client sends nothing after its request; b"" is its close
        pass


# -- clients, with asyncio streams (used by main and by the tests) --------------------------------


async def http_get(port: int, target: str) -> tuple[int, bytes]:
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    head, _, body = (await r.read()).partition(b"\r\n\r\n")  # Connection: close ends the body
    w.close()
    return int(head.split()[1]), body


async def read_events(port: int, target: str, n: int) -> list[tuple[int, dict, int]]:
    """The first ``n`` SSE events of ``target`` as (id, data, receipt time ns); then disconnects."""
    r, w = await asyncio.open_connection("127.0.0.1", port)
    try:
        w.write(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n".encode())
        if b" 200 " not in (status := await r.readline()):
            raise RuntimeError(f"{target}: {status!r}")
        while await r.readline() not in (b"\r\n", b""):
            pass
        events, seq = [], None
        while len(events) < n:
            if not (line := await r.readline()):
                raise ConnectionError(f"{target}: the stream ended after {len(events)} events")
            if line.startswith(b"id: "):
                seq = int(line[4:])
            elif line.startswith(b"data: "):
                data = json.loads(line[6:])
            elif line == b"\n" and seq is not None:  # a blank line ends an event
                events.append((seq, data, time.time_ns()))
                seq = None
        return events
    finally:
        w.close()  # the disconnect the server must notice


# -- the demo ------------------------------------------------------------------------------------


def ticker(path: str, stop) -> None:
    """The writer process: a JSON tick every ~1 ms until told to stop (30 s at most)."""
    with Queue.open_publisher(path, WriterConfig(segment_size=1 << 20)) as w:
        end = time.monotonic() + 30
        while not stop.is_set() and time.monotonic() < end:
            w.append(1, json.dumps({"seq": w.next_seq, "price": 100 + w.next_seq % 7}).encode())
            time.sleep(0.001)


def check(events: list, label: str) -> str:
    seqs = [s for s, _d, _t in events]
    if seqs != list(range(seqs[0], seqs[0] + len(seqs))) or any(d["json"]["seq"] != s for s, d, _t in events):
        raise SystemExit(f"client {label}: events out of order, missing or wrong")
    return f"client {label}: {len(events)} events, seqs {seqs[0]}..{seqs[-1]}, in order and complete"


async def main(bus: str) -> None:
    ctx = mp.get_context("spawn")
    stop = ctx.Event()
    proc = ctx.Process(target=ticker, args=(os.path.join(bus, "ticks"), stop))
    proc.start()
    try:
        async with StreamService(bus) as svc:
            deadline = time.monotonic() + 10
            while not any(q.get("writer", {}).get("alive") and q["next_seq"] >= 100  # the writer is starting
                          for q in json.loads((await http_get(svc.port, "/queues"))[1])):
                if time.monotonic() > deadline or not proc.is_alive():
                    raise SystemExit("the writer did not start")
                await asyncio.sleep(0.02)
            print("queues:", (await http_get(svc.port, "/queues"))[1].decode())
            old, live = await asyncio.wait_for(asyncio.gather(  # both at once, on one waker thread
                read_events(svc.port, "/stream/ticks?from=0", N_EVENTS),
                read_events(svc.port, "/stream/ticks", N_EVENTS)), 10)
            print(check(old, "from=0"))
            print(check(live, "live"))
            lat = sorted(t - d["timestamp_ns"] for _s, d, t in live)
            print(f"p50 append->SSE latency (live client): {lat[len(lat) // 2] / 1e6:.3f} ms")
            deadline = time.monotonic() + 5
            while (svc.streams or aio.registered_waits()) and time.monotonic() < deadline:
                await asyncio.sleep(0.01)  # the server notices both disconnects
            print("health:", (await http_get(svc.port, "/health"))[1].decode())
            names = sorted(t.name for t in threading.enumerate())
            print(f"threads: {len(names)} {names}; open streams after disconnect: {svc.streams}; "
                  f"registered waits after disconnect: {aio.registered_waits()}")
            if old[0][0] != 0 or svc.streams or aio.registered_waits():
                raise SystemExit("the from=0 client did not start at 0, or a stream or a wait leaked")
    finally:
        stop.set()
        proc.join(10)


if __name__ == "__main__":
    if len(sys.argv) > 1:
        os.makedirs(sys.argv[1], exist_ok=True)
        run(main(sys.argv[1]))
    else:
        with tempfile.TemporaryDirectory(prefix="http-stream-") as d:
            run(main(d))
