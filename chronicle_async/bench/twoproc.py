"""Two-process peers: a writer process sends, a reader process receives; one-way latency and msgs/s.

Each message carries its send time (``CLOCK_MONOTONIC``, shared by all processes on a host).
A round has two phases: a blast of ``n`` messages as fast as the writer can (msgs/s, from the
first send to the last receive), then ``n`` messages paced ``PACE_S`` apart (latency: receive
time minus send time, so queueing behind a blast does not count).
"""
from __future__ import annotations

import importlib.util
import multiprocessing
import os
import struct
import tempfile
import time
from typing import Any, Callable

import numpy as np

from .stats import Row, percentiles_ns

PACE_S = 20e-6
_FRAME = struct.Struct("<qq")  # send time (ns), index
_TIMEOUT_S = 60.0


def _spin_until(t_ns: int) -> None:
    """Spin to ``t_ns``, yielding the GIL each turn (a peer's own helper thread, like
    ``multiprocessing.Queue``'s feeder, must be able to run meanwhile)."""
    while time.perf_counter_ns() < t_ns:
        time.sleep(0)


def _send_all(send: Callable[[bytes], object], n: int, drained: Any) -> None:
    clock = time.perf_counter_ns
    for i in range(n):
        send(_FRAME.pack(clock(), i))
    drained.wait(_TIMEOUT_S)
    pace = int(PACE_S * 1e9)
    nxt = clock()
    for i in range(n):
        nxt += pace
        _spin_until(nxt)
        send(_FRAME.pack(clock(), i))


def _receive_all(recv: Callable[[], bytes], n: int, drained: Any) -> tuple[float, np.ndarray]:
    clock = time.perf_counter_ns
    first_sent = last = 0
    for i in range(n):
        sent, _i = _FRAME.unpack(recv())
        if i == 0:
            first_sent = sent
    last = clock()
    drained.set()
    lat = np.empty(n, dtype=np.int64)
    for i in range(n):
        sent, _i = _FRAME.unpack(recv())
        lat[i] = clock() - sent
    return n / max(last - first_sent, 1) * 1e9, lat


# -- transports: (sender, receiver) halves run in the child processes ----------------------------


def _chronicle_sender(path: str, n: int, ready: Any, drained: Any) -> None:
    from .. import Queue

    with Queue.open_publisher(path) as w:
        ready.wait(_TIMEOUT_S)
        _send_all(lambda b: w.append(1, b), n, drained)


def _chronicle_receiver(path: str, n: int, ready: Any, drained: Any, out: Any) -> None:
    from .. import Queue

    with Queue.open_subscriber(path, None, "earliest", wait_strategy="busy_spin") as r:
        nxt = r.next

        def recv() -> bytes:
            while True:
                m = nxt()
                if m is not None:
                    return bytes(m.payload)

        ready.set()
        out.put(_receive_all(recv, n, drained))


def _mpq_sender(q: Any, n: int, ready: Any, drained: Any) -> None:
    ready.wait(_TIMEOUT_S)
    _send_all(q.put, n, drained)


def _mpq_receiver(q: Any, n: int, ready: Any, drained: Any, out: Any) -> None:
    ready.set()
    out.put(_receive_all(q.get, n, drained))


def _pipe_sender(conn: Any, n: int, ready: Any, drained: Any) -> None:
    fd = conn.fileno()
    ready.wait(_TIMEOUT_S)
    _send_all(lambda b: os.write(fd, b), n, drained)


def _pipe_receiver(conn: Any, n: int, ready: Any, drained: Any, out: Any) -> None:
    fd = conn.fileno()
    buf = bytearray()
    size = _FRAME.size

    def recv() -> bytes:
        while len(buf) < size:
            buf.extend(os.read(fd, 1 << 16))
        frame = bytes(buf[:size])
        del buf[:size]
        return frame

    ready.set()
    out.put(_receive_all(recv, n, drained))


def _zmq_sender(address: str, n: int, ready: Any, drained: Any) -> None:
    import zmq

    ctx = zmq.Context()
    s = ctx.socket(zmq.PUSH)
    s.connect(address)
    ready.wait(_TIMEOUT_S)
    _send_all(s.send, n, drained)
    s.close(linger=1000)
    ctx.term()


def _zmq_receiver(address: str, n: int, ready: Any, drained: Any, out: Any) -> None:
    import zmq

    ctx = zmq.Context()
    s = ctx.socket(zmq.PULL)
    s.bind(address)
    ready.set()
    out.put(_receive_all(s.recv, n, drained))
    s.close()
    ctx.term()


def _pair(peer: str, sender: Callable[..., None], receiver: Callable[..., None], args: tuple[Any, Any], n: int,
          ctx: Any) -> Row:
    """Run ``sender(args[0], ...)`` and ``receiver(args[1], ...)`` in two spawned processes."""
    ready, drained, out = ctx.Event(), ctx.Event(), ctx.SimpleQueue()
    r = ctx.Process(target=receiver, args=(args[1], n, ready, drained, out), daemon=True)
    w = ctx.Process(target=sender, args=(args[0], n, ready, drained), daemon=True)
    r.start()
    w.start()
    deadline = time.monotonic() + _TIMEOUT_S
    while out.empty():
        if time.monotonic() > deadline or (not r.is_alive() and out.empty()):
            for p in (w, r):
                p.kill()
            raise RuntimeError(f"bench: the {peer} reader process gave no result (exit code {r.exitcode})")
        time.sleep(0.01)
    rate, lat = out.get()
    w.join(_TIMEOUT_S)
    r.join(_TIMEOUT_S)
    return Row(peer, rate, **percentiles_ns(lat), n=n)


def chronicle_pair(n: int, ctx: Any) -> Row:
    """A chronicle queue in a temporary folder (``/dev/shm`` when there is one)."""
    from .. import Queue, WriterConfig

    with tempfile.TemporaryDirectory(prefix="chronicle-bench-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None) as d:
        path = os.path.join(d, "q")
        Queue.open_publisher(path, WriterConfig(segment_size=64 << 20)).close()
        return _pair("chronicle", _chronicle_sender, _chronicle_receiver, (path, path), n, ctx)


def mp_queue_pair(n: int, ctx: Any) -> Row:
    q = ctx.Queue()
    return _pair("multiprocessing.Queue", _mpq_sender, _mpq_receiver, (q, q), n, ctx)


def pipe_pair(n: int, ctx: Any) -> Row:
    """A kernel pipe (``os.pipe``, as ``multiprocessing.Pipe(duplex=False)`` makes it), raw os.read/os.write."""
    recv_end, send_end = ctx.Pipe(duplex=False)
    try:
        return _pair("os.pipe", _pipe_sender, _pipe_receiver, (send_end, recv_end), n, ctx)
    finally:
        recv_end.close()
        send_end.close()


def zmq_pair(n: int, ctx: Any) -> Row:
    with tempfile.TemporaryDirectory(prefix="chronicle-bench-") as d:
        return _pair("pyzmq ipc", _zmq_sender, _zmq_receiver, (f"ipc://{d}/sock",) * 2, n, ctx)


def peers() -> dict[str, Callable[[int, Any], Row]]:
    """The two-process peers available here (pyzmq only when importable)."""
    found: dict[str, Callable[[int, Any], Row]] = {
        "chronicle": chronicle_pair, "multiprocessing.Queue": mp_queue_pair, "os.pipe": pipe_pair,
    }
    if importlib.util.find_spec("zmq") is not None:
        found["pyzmq ipc"] = zmq_pair
    return found


def spawn_context() -> Any:
    """The ``spawn`` multiprocessing context (never ``fork``: the parent may hold threads and mappings)."""
    return multiprocessing.get_context("spawn")
