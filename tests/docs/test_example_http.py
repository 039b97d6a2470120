"""examples/http_stream.py: the script end to end, and its server in-process (SSE over a bus folder)."""
from __future__ import annotations

import ast
import asyncio
import base64
import importlib.util
import json
import os
import re
import subprocess
import sys
import threading
import time

import pytest

from chronicle_async import Queue, WriterConfig
from chronicle_async.queue import waits as _waits

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "http_stream.py")


def load_example():
    spec = importlib.util.spec_from_file_location("http_stream_example", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


ex = load_example()


async def eventually(cond, timeout: float = 10.0, what: str = "condition") -> None:
    """Poll ``cond()`` on the loop until true; generous deadline, no timing assertion."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def waker_threads() -> int:
    return sum(t.name == _waits.WAKER_THREAD_NAME for t in threading.enumerate())


def test_script_streams_two_clients_in_order_and_leaks_nothing(tmp_path):
    proc = subprocess.run([sys.executable, EXAMPLE, str(tmp_path / "bus")],
                          check=False, capture_output=True, text=True, timeout=120)
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    queues = json.loads(re.search(r"^queues: (.*)$", out, re.MULTILINE).group(1))
    assert [q["name"] for q in queues] == ["ticks"] and queues[0]["next_seq"] >= 100, out
    assert queues[0]["writer"]["alive"] and queues[0]["writer"]["state"] == "open", out
    m = re.search(r"client from=0: (\d+) events, seqs (\d+)\.\.(\d+), in order and complete", out)
    assert m and int(m.group(1)) == ex.N_EVENTS and int(m.group(2)) == 0 and int(m.group(3)) == ex.N_EVENTS - 1, out
    m = re.search(r"client live: (\d+) events, seqs (\d+)\.\.(\d+), in order and complete", out)
    assert m and int(m.group(1)) == ex.N_EVENTS and int(m.group(3)) - int(m.group(2)) == ex.N_EVENTS - 1, out
    assert re.search(r"p50 append->SSE latency \(live client\): [\d.]+ ms", out), out
    health = json.loads(re.search(r"^health: (.*)$", out, re.MULTILINE).group(1))
    assert health["status"] == "ok" and health["streams"] == 0 and health["registered_waits"] == 0, out
    assert health["loop_lag_ms"] >= 0, out
    m = re.search(r"threads: (\d+) (\[.*\]); open streams after disconnect: (\d+); "
                  r"registered waits after disconnect: (\d+)", out)
    assert m and m.group(3) == "0" and m.group(4) == "0", out
    names = ast.literal_eval(m.group(2))  # the printed list of thread names
    # no thread per client: the main thread, the one waker, the one file thread
    assert names.count(_waits.WAKER_THREAD_NAME) == 1 and int(m.group(1)) == len(names) <= 4, out


@pytest.fixture
def bus(tmp_path):
    d = tmp_path / "bus"
    d.mkdir()
    (d / "not-a-queue").mkdir()  # ignored by /queues
    return d


async def test_server_lists_streams_and_rejects(bus):
    with Queue.open_publisher(str(bus / "ticks"), WriterConfig(segment_size=64 * 1024)) as w:
        for i in range(100):
            w.append(1, json.dumps({"i": i}).encode())
        w.append(7, b"\xff\x00binary")  # seq 100: not JSON, sent as base64
        async with ex.StreamService(str(bus)) as svc:
            status, body = await asyncio.wait_for(ex.http_get(svc.port, "/queues"), 30)
            assert status == 200
            (q,) = json.loads(body)
            assert q["name"] == "ticks" and q["next_seq"] == 101
            assert q["writer"]["state"] == "open" and q["writer"]["pid"] == os.getpid()

            # from a given seq: 40..100 in order, then the client disconnects while the stream waits at the tail
            events = await asyncio.wait_for(ex.read_events(svc.port, "/stream/ticks?from=40", 61), 30)
            assert [s for s, _d, _t in events] == list(range(40, 101))
            assert all(d["seq"] == s and d["json"] == {"i": s} and d["type_id"] == 1 for s, d, _t in events[:-1])
            assert events[-1][1]["type_id"] == 7 and base64.b64decode(events[-1][1]["b64"]) == b"\xff\x00binary"
            await eventually(lambda: svc.streams == 0, what="the stream to end")
            assert _waits.registered_waits() == 0  # the pump was cancelled (and awaited) before the count dropped

            for target, code in [("/stream/nope", 404), ("/stream/..%2Fbus%2Fticks", 404), ("/stream/not-a-queue", 404),
                                 ("/stream/ticks?from=abc", 400), ("/stream/ticks?from=-1", 400), ("/nope", 404)]:
                status, body = await asyncio.wait_for(ex.http_get(svc.port, target), 30)
                assert status == code, (target, body)
                assert "error" in json.loads(body)
            assert svc.streams == 0

            status, body = await asyncio.wait_for(ex.http_get(svc.port, "/health"), 30)
            health = json.loads(body)
            assert status == 200 and health["status"] == "ok" and health["loop_lag_ms"] >= 0


async def test_many_live_clients_share_one_waker_and_disconnects_leave_no_waits(bus):
    with Queue.open_publisher(str(bus / "ticks"), WriterConfig(segment_size=64 * 1024)) as w:
        w.append(1, b'{"i": 0}')
        async with ex.StreamService(str(bus)) as svc:
            # ten live clients park; each is one registration with the single waker thread
            clients = [asyncio.create_task(ex.read_events(svc.port, "/stream/ticks", 3)) for _ in range(10)]
            await eventually(lambda: svc.streams == 10 and _waits.registered_waits() == 10, what="10 parked streams")
            assert waker_threads() == 1
            for i in range(1, 4):
                w.append(1, json.dumps({"i": i}).encode())
            for events in await asyncio.wait_for(asyncio.gather(*clients), 30):
                assert [(s, d["json"]) for s, d, _t in events] == [(i, {"i": i}) for i in range(1, 4)]
            await eventually(lambda: svc.streams == 0 and _waits.registered_waits() == 0, what="10 streams to end")

            # a client that goes while its stream is parked (no message ever comes)
            r, cw = await asyncio.open_connection("127.0.0.1", svc.port)
            cw.write(b"GET /stream/ticks HTTP/1.1\r\nHost: x\r\n\r\n")
            assert b" 200 " in await asyncio.wait_for(r.readline(), 30)
            await eventually(lambda: _waits.registered_waits() == 1, what="the idle stream to park")
            cw.close()
            await eventually(lambda: svc.streams == 0, what="the idle stream to end")
            assert _waits.registered_waits() == 0

            # a stream still open when the service closes is cancelled and its wait removed
            r, cw = await asyncio.open_connection("127.0.0.1", svc.port)
            cw.write(b"GET /stream/ticks?from=0 HTTP/1.1\r\nHost: x\r\n\r\n")
            await eventually(lambda: svc.streams == 1 and _waits.registered_waits() == 1, what="a parked stream")
        assert _waits.registered_waits() == 0
        assert await asyncio.wait_for(r.read(), 30)  # headers and events, then the server's close
        cw.close()
