"""Peer IPC transports, measured the same way as ``chronicle_async``.

Every benchmark runs a producer and a consumer in two real processes started
with the ``spawn`` context; the producer's thread is pinned to CPU 0 and the
consumer's to CPU 1 (see :func:`benchmarks._harness.pin`).  Helper threads a
transport starts after pinning (the ``multiprocessing.Queue`` feeder thread,
the ZeroMQ I/O thread) inherit that pinning.

Throughput
    The producer sends one hand-shake message, waits until the consumer has
    received it, then reads ``CLOCK_MONOTONIC`` right before sending the first
    of ``n`` messages.  The consumer reads the clock right after receiving the
    last one.  ``msgs/s = n / (t_end - t_start)``; ``CLOCK_MONOTONIC`` is
    system-wide on Linux, so the two stamps are comparable across processes.

One-way latency
    The producer stamps ``CLOCK_MONOTONIC`` ns into the first 8 bytes
    (``struct '<q'``) of each payload right before sending it, pacing sends
    ``interval_s`` apart by spinning on the clock (never ``time.sleep``).
    If a send overruns its slot the next one is scheduled one interval after
    it (no catch-up bursts).  The consumer records ``recv_time - send_time``
    for every message and the first 10 % are dropped as warm-up.

Run ``python -m benchmarks.peers [--quick]`` from the repository root.
"""

from __future__ import annotations

import argparse
import os
import shutil
import struct
import tempfile
import time
import traceback
from array import array
from dataclasses import dataclass, field
from multiprocessing import reduction
from multiprocessing.connection import Connection, wait
from multiprocessing.synchronize import Event
from typing import Any, Callable, Protocol

import numpy as np

from ._harness import (
    Result,
    format_table,
    machine_info,
    median_of,
    percentiles_ns,
    pin,
    spawn_ctx,
)

__all__ = [
    "PeerError",
    "faster_fifo_latency",
    "faster_fifo_throughput",
    "mp_queue_latency",
    "mp_queue_throughput",
    "os_pipe_latency",
    "os_pipe_throughput",
    "run_all",
    "zmq_ipc_latency",
    "zmq_ipc_throughput",
]

PRODUCER_CPU = 0
CONSUMER_CPU = 1
DEFAULT_SIZE = 64
THROUGHPUT_N = 200_000
LATENCY_N = 20_000
LATENCY_INTERVAL_S = 10e-6
WARMUP_FRACTION = 0.10
BASELINE = "pyzmq ipc"

_TS = struct.Struct("<q")
_JOIN_GRACE_S = 5.0
_FASTER_FIFO_BYTES = 16 * 1024 * 1024

SendFn = Callable[[bytes], object]
RecvFn = Callable[[], bytes]


class PeerError(RuntimeError):
    """A benchmark peer process failed, crashed or timed out."""


def _now_ns() -> int:
    """Current ``CLOCK_MONOTONIC`` time in ns (system-wide on Linux)."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


# --------------------------------------------------------------------------
# Transport endpoints (picklable; opened inside the child process)
# --------------------------------------------------------------------------


class _SenderEnd(Protocol):
    """Producer side of a transport."""

    def open(self) -> SendFn: ...

    def close(self) -> None: ...


class _ReceiverEnd(Protocol):
    """Consumer side of a transport."""

    def open(self) -> RecvFn: ...

    def close(self) -> None: ...


class _InheritedFd:
    """A raw file descriptor that is duplicated into a spawned child.

    Pickling is only valid while ``Process.start()`` runs: the descriptor is
    then handed to the child via ``pass_fds`` (``multiprocessing.reduction``).
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __reduce__(self) -> tuple[Callable[..., _InheritedFd], tuple[Any]]:
        return _rebuild_fd, (reduction.DupFd(self.fd),)


def _rebuild_fd(dup: Any) -> _InheritedFd:
    """Unpickle an :class:`_InheritedFd` in the child."""
    return _InheritedFd(dup.detach())


class _QueueSender:
    """``put`` side of a ``multiprocessing.Queue`` or ``faster_fifo.Queue``."""

    def __init__(self, queue: Any) -> None:
        self.queue = queue

    def open(self) -> SendFn:
        return self.queue.put

    def close(self) -> None:
        self.queue.close()


class _QueueReceiver:
    """``get`` side of a ``multiprocessing.Queue`` or ``faster_fifo.Queue``."""

    def __init__(self, queue: Any) -> None:
        self.queue = queue

    def open(self) -> RecvFn:
        return self.queue.get

    def close(self) -> None:
        self.queue.close()


class _PipeSender:
    """Writes fixed-size frames to the write end of an ``os.pipe``."""

    def __init__(self, fd: _InheritedFd) -> None:
        self.fd = fd

    def open(self) -> SendFn:
        fd = self.fd.fd
        write = os.write

        def send(data: bytes) -> None:
            written = write(fd, data)
            if written != len(data):
                _write_rest(fd, data, written)

        return send

    def close(self) -> None:
        os.close(self.fd.fd)


def _write_rest(fd: int, data: bytes, written: int) -> None:
    """Finish a short ``os.write``."""
    view = memoryview(data)
    while written < len(data):
        written += os.write(fd, view[written:])


class _PipeReceiver:
    """Reads exactly ``size`` bytes per message from an ``os.pipe``."""

    def __init__(self, fd: _InheritedFd, size: int) -> None:
        self.fd = fd
        self.size = size

    def open(self) -> RecvFn:
        fd, size = self.fd.fd, self.size
        read = os.read

        def recv() -> bytes:
            data = read(fd, size)
            if len(data) == size:
                return data
            return _read_rest(fd, data, size)

        return recv

    def close(self) -> None:
        os.close(self.fd.fd)


def _read_rest(fd: int, first: bytes, size: int) -> bytes:
    """Finish a short ``os.read`` so that exactly ``size`` bytes are returned."""
    buf = bytearray(first)
    while len(buf) < size:
        chunk = os.read(fd, size - len(buf))
        if not chunk:
            raise EOFError(f"pipe closed after {len(buf)} of {size} bytes")
        buf += chunk
    return bytes(buf)


class _ZmqSender:
    """pyzmq PUSH socket connecting to ``address``."""

    def __init__(self, address: str) -> None:
        self.address = address
        self._ctx: Any = None
        self._sock: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {"address": self.address, "_ctx": None, "_sock": None}

    def open(self) -> SendFn:
        import zmq

        self._ctx = zmq.Context()
        self._sock = self._ctx.socket(zmq.PUSH)
        self._sock.connect(self.address)
        return self._sock.send

    def close(self) -> None:
        # Only called once the consumer confirmed receipt of everything.
        self._sock.close(linger=0)
        self._ctx.term()


class _ZmqReceiver:
    """pyzmq PULL socket bound to ``address``."""

    def __init__(self, address: str) -> None:
        self.address = address
        self._ctx: Any = None
        self._sock: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {"address": self.address, "_ctx": None, "_sock": None}

    def open(self) -> RecvFn:
        import zmq

        self._ctx = zmq.Context()
        self._sock = self._ctx.socket(zmq.PULL)
        self._sock.bind(self.address)
        return self._sock.recv

    def close(self) -> None:
        self._sock.close(linger=0)
        self._ctx.term()


def _noop() -> None:
    """Default hook that does nothing."""


@dataclass
class _Channel:
    """A transport instance as seen from the parent process."""

    name: str
    sender: _SenderEnd
    receiver: _ReceiverEnd
    after_start: Callable[[], None] = _noop  # drop parent copies of child resources
    cleanup: Callable[[], None] = _noop  # always called at the end


def _mp_queue_channel(size: int) -> _Channel:
    """``multiprocessing.Queue`` from the spawn context."""
    q = spawn_ctx().Queue()
    return _Channel("mp.Queue", _QueueSender(q), _QueueReceiver(q), cleanup=q.close)


def _os_pipe_channel(size: int) -> _Channel:
    """Anonymous ``os.pipe`` carrying fixed-size frames."""
    r, w = os.pipe()
    state = {"closed": False}

    def close_parent_fds() -> None:
        if not state["closed"]:
            state["closed"] = True
            os.close(r)
            os.close(w)

    return _Channel(
        "os.pipe",
        _PipeSender(_InheritedFd(w)),
        _PipeReceiver(_InheritedFd(r), size),
        after_start=close_parent_fds,
        cleanup=close_parent_fds,
    )


def _zmq_ipc_channel(size: int) -> _Channel:
    """pyzmq PUSH/PULL over ``ipc://`` in a fresh temporary directory."""
    tmpdir = tempfile.mkdtemp(prefix="chronicle-bench-zmq-")
    address = f"ipc://{os.path.join(tmpdir, 'sock')}"
    return _Channel(
        "pyzmq ipc",
        _ZmqSender(address),
        _ZmqReceiver(address),
        cleanup=lambda: shutil.rmtree(tmpdir, ignore_errors=True),
    )


def _faster_fifo_channel(size: int) -> _Channel:
    """``faster_fifo.Queue`` (shared-memory circular buffer)."""
    import faster_fifo

    q = faster_fifo.Queue(max_size_bytes=_FASTER_FIFO_BYTES)
    return _Channel("faster-fifo", _QueueSender(q), _QueueReceiver(q))


def _have_faster_fifo() -> bool:
    """True if ``faster_fifo`` can be imported."""
    try:
        import faster_fifo  # noqa: F401
    except ImportError:
        return False
    return True


# --------------------------------------------------------------------------
# Child-process bodies
# --------------------------------------------------------------------------


@dataclass
class _Sync:
    """Cross-process hand-shake between producer and consumer."""

    go: Event  # consumer has received the hand-shake message
    done: Event  # consumer has received every message
    timeout_s: float

    def wait(self, event: Event, what: str) -> None:
        """Wait for ``event`` or raise ``TimeoutError`` naming ``what``."""
        if not event.wait(self.timeout_s):
            raise TimeoutError(f"timed out after {self.timeout_s:.0f}s waiting for {what}")


def _throughput_producer(end: _SenderEnd, n: int, size: int, sync: _Sync) -> dict[str, Any]:
    """Send ``n`` messages of ``size`` bytes as fast as possible."""
    pin(PRODUCER_CPU)
    send = end.open()
    payload = bytes(size)
    send(payload)  # hand-shake
    sync.wait(sync.go, "the consumer to receive the hand-shake")
    t_start = _now_ns()
    for _ in range(n):
        send(payload)
    sync.wait(sync.done, "the consumer to receive all messages")
    end.close()
    return {"t_start": t_start}


def _throughput_consumer(end: _ReceiverEnd, n: int, size: int, sync: _Sync) -> dict[str, Any]:
    """Receive ``n`` messages and stamp the arrival of the last one."""
    pin(CONSUMER_CPU)
    recv = end.open()
    recv()  # hand-shake
    sync.go.set()
    msg = b""
    for _ in range(n):
        msg = recv()
    t_end = _now_ns()
    sync.done.set()
    if len(msg) != size:
        raise AssertionError(f"last message has {len(msg)} bytes, expected {size}")
    end.close()
    return {"t_end": t_end}


def _latency_producer(
    end: _SenderEnd, n: int, size: int, interval_ns: int, sync: _Sync
) -> dict[str, Any]:
    """Send ``n`` time-stamped messages, one every ``interval_ns`` (spin-paced)."""
    pin(PRODUCER_CPU)
    send = end.open()
    pack = _TS.pack
    pad = bytes(size - _TS.size)
    clock, mono = time.clock_gettime_ns, time.CLOCK_MONOTONIC
    yield_cpu = os.sched_yield
    send(pack(clock(mono)) + pad)  # hand-shake
    sync.wait(sync.go, "the consumer to receive the hand-shake")
    next_t = clock(mono)
    for _ in range(n):
        now = clock(mono)
        while now < next_t:
            # Releases the GIL and the CPU each turn so that transport helper
            # threads (mp.Queue feeder, ZeroMQ I/O thread) are not starved.
            yield_cpu()
            now = clock(mono)
        send(pack(now) + pad)
        next_t = max(next_t, now) + interval_ns
    sync.wait(sync.done, "the consumer to receive all messages")
    end.close()
    return {}


def _latency_consumer(end: _ReceiverEnd, n: int, size: int, sync: _Sync) -> dict[str, Any]:
    """Receive ``n`` messages and return their one-way latencies (ns)."""
    pin(CONSUMER_CPU)
    recv = end.open()
    unpack_from = _TS.unpack_from
    clock, mono = time.clock_gettime_ns, time.CLOCK_MONOTONIC
    recv()  # hand-shake
    sync.go.set()
    lat = array("q", bytes(8 * n))
    for i in range(n):
        msg = recv()
        t = clock(mono)
        lat[i] = t - unpack_from(msg)[0]
    sync.done.set()
    end.close()
    samples = np.frombuffer(lat, dtype=np.int64)[int(n * WARMUP_FRACTION) :]
    return {"samples": samples.copy()}


def _child_main(role: str, report: Connection, body: Callable[..., dict[str, Any]], *args: Any) -> None:
    """Process entry point: run ``body`` and send its outcome to the parent."""
    try:
        out = body(*args)
    except BaseException:  # noqa: BLE001 - everything must reach the parent
        try:
            report.send({"ok": False, "error": traceback.format_exc()})
        finally:
            report.close()
        raise SystemExit(1)
    report.send({"ok": True, **out})
    report.close()


# --------------------------------------------------------------------------
# Parent-side orchestration
# --------------------------------------------------------------------------


@dataclass
class _Peer:
    """A started child process and the read end of its report pipe."""

    role: str
    process: Any
    conn: Connection
    report: dict[str, Any] | None = field(default=None)


def _start_peer(role: str, body: Callable[..., dict[str, Any]], args: tuple[Any, ...]) -> _Peer:
    """Spawn a child running ``body(*args)``."""
    ctx = spawn_ctx()
    r, w = ctx.Pipe(duplex=False)
    proc = ctx.Process(
        target=_child_main, args=(role, w, body, *args), name=f"bench-{role}", daemon=True
    )
    try:
        proc.start()
    finally:
        w.close()
    return _Peer(role, proc, r)


def _collect(peers: list[_Peer], bench: str, timeout_s: float) -> None:
    """Wait for every peer's report; raise :class:`PeerError` on any failure."""
    deadline = time.monotonic() + timeout_s
    pending = {p.conn: p for p in peers}
    while pending:
        remaining = deadline - time.monotonic()
        ready = wait(list(pending), timeout=max(0.0, remaining)) if remaining > 0 else []
        if not ready:
            roles = ", ".join(p.role for p in pending.values())
            raise PeerError(f"{bench}: timed out after {timeout_s:.0f}s waiting for {roles}")
        for conn in ready:
            peer = pending.pop(conn)  # type: ignore[arg-type]
            try:
                report = peer.conn.recv()
            except EOFError:
                peer.process.join(1.0)
                raise PeerError(
                    f"{bench}: {peer.role} died without reporting "
                    f"(exit code {peer.process.exitcode})"
                ) from None
            if not report.get("ok"):
                raise PeerError(f"{bench}: {peer.role} failed:\n{report.get('error', '?')}")
            peer.report = report


def _reap(peers: list[_Peer]) -> None:
    """Join peers, terminating (then killing) any that do not exit in time."""
    for peer in peers:
        proc = peer.process
        proc.join(_JOIN_GRACE_S if peer.report is not None else 0.5)
        if proc.is_alive():
            proc.terminate()
            proc.join(2.0)
        if proc.is_alive():
            proc.kill()
            proc.join(2.0)
        peer.conn.close()


def _run_pair(
    channel: _Channel,
    producer: Callable[..., dict[str, Any]],
    producer_args: tuple[Any, ...],
    consumer: Callable[..., dict[str, Any]],
    consumer_args: tuple[Any, ...],
    timeout_s: float,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run producer and consumer in two spawned processes; return their reports."""
    ctx = spawn_ctx()
    sync = _Sync(ctx.Event(), ctx.Event(), timeout_s)
    peers: list[_Peer] = []
    try:
        peers.append(_start_peer("consumer", consumer, (channel.receiver, *consumer_args, sync)))
        peers.append(_start_peer("producer", producer, (channel.sender, *producer_args, sync)))
        channel.after_start()
        _collect(peers, channel.name, timeout_s)
    finally:
        _reap(peers)
        channel.cleanup()
    consumer_peer, producer_peer = peers
    assert producer_peer.report is not None and consumer_peer.report is not None
    return producer_peer.report, consumer_peer.report


def _default_timeout(expected_s: float) -> float:
    """Generous per-benchmark timeout: start-up slack plus 10x the expected run."""
    return 30.0 + 10.0 * expected_s


def _throughput(make: Callable[[int], _Channel], n: int, size: int, timeout_s: float | None) -> Result:
    """Generic throughput benchmark for one transport."""
    if n <= 0 or size <= 0:
        raise ValueError("n and size must be positive")
    channel = make(size)
    timeout = timeout_s if timeout_s is not None else _default_timeout(n / 50_000)
    prod, cons = _run_pair(
        channel, _throughput_producer, (n, size), _throughput_consumer, (n, size), timeout
    )
    elapsed_ns = cons["t_end"] - prod["t_start"]
    if elapsed_ns <= 0:
        raise PeerError(f"{channel.name}: non-positive elapsed time {elapsed_ns} ns")
    return Result(
        name=channel.name,
        kind="throughput",
        msgs_per_s=n / (elapsed_ns / 1e9),
        n=n,
        note=f"{size} B payload",
    )


def _latency(
    make: Callable[[int], _Channel],
    n: int,
    size: int,
    interval_s: float,
    timeout_s: float | None,
) -> Result:
    """Generic one-way latency benchmark for one transport."""
    if size < _TS.size:
        raise ValueError(f"size must be at least {_TS.size} bytes to carry a timestamp")
    if n < 10:
        raise ValueError("n must be at least 10")
    channel = make(size)
    interval_ns = int(round(interval_s * 1e9))
    timeout = timeout_s if timeout_s is not None else _default_timeout(n * max(interval_s, 20e-6))
    _, cons = _run_pair(
        channel,
        _latency_producer,
        (n, size, interval_ns),
        _latency_consumer,
        (n, size),
        timeout,
    )
    samples: np.ndarray = cons["samples"]
    return Result(
        name=channel.name,
        kind="latency",
        n=int(samples.size),
        note=f"{size} B payload, 1 msg / {interval_s * 1e6:g} µs",
        **percentiles_ns(samples),
    )


# --------------------------------------------------------------------------
# Public benchmarks
# --------------------------------------------------------------------------


def mp_queue_throughput(
    n: int = THROUGHPUT_N, size: int = DEFAULT_SIZE, timeout_s: float | None = None
) -> Result:
    """Throughput of ``multiprocessing.Queue`` (spawn context)."""
    return _throughput(_mp_queue_channel, n, size, timeout_s)


def os_pipe_throughput(
    n: int = THROUGHPUT_N, size: int = DEFAULT_SIZE, timeout_s: float | None = None
) -> Result:
    """Throughput of fixed-size frames over ``os.pipe`` (one syscall per frame each side)."""
    return _throughput(_os_pipe_channel, n, size, timeout_s)


def zmq_ipc_throughput(
    n: int = THROUGHPUT_N, size: int = DEFAULT_SIZE, timeout_s: float | None = None
) -> Result:
    """Throughput of pyzmq PUSH/PULL over ``ipc://``."""
    return _throughput(_zmq_ipc_channel, n, size, timeout_s)


def faster_fifo_throughput(
    n: int = THROUGHPUT_N, size: int = DEFAULT_SIZE, timeout_s: float | None = None
) -> Result | None:
    """Throughput of ``faster_fifo.Queue``; ``None`` if faster_fifo is not installed."""
    if not _have_faster_fifo():
        return None
    return _throughput(_faster_fifo_channel, n, size, timeout_s)


def mp_queue_latency(
    n: int = LATENCY_N,
    interval_s: float = LATENCY_INTERVAL_S,
    size: int = DEFAULT_SIZE,
    timeout_s: float | None = None,
) -> Result:
    """One-way latency of ``multiprocessing.Queue``."""
    return _latency(_mp_queue_channel, n, size, interval_s, timeout_s)


def os_pipe_latency(
    n: int = LATENCY_N,
    interval_s: float = LATENCY_INTERVAL_S,
    size: int = DEFAULT_SIZE,
    timeout_s: float | None = None,
) -> Result:
    """One-way latency of fixed-size frames over ``os.pipe``."""
    return _latency(_os_pipe_channel, n, size, interval_s, timeout_s)


def zmq_ipc_latency(
    n: int = LATENCY_N,
    interval_s: float = LATENCY_INTERVAL_S,
    size: int = DEFAULT_SIZE,
    timeout_s: float | None = None,
) -> Result:
    """One-way latency of pyzmq PUSH/PULL over ``ipc://``."""
    return _latency(_zmq_ipc_channel, n, size, interval_s, timeout_s)


def faster_fifo_latency(
    n: int = LATENCY_N,
    interval_s: float = LATENCY_INTERVAL_S,
    size: int = DEFAULT_SIZE,
    timeout_s: float | None = None,
) -> Result | None:
    """One-way latency of ``faster_fifo.Queue``; ``None`` if not installed."""
    if not _have_faster_fifo():
        return None
    return _latency(_faster_fifo_channel, n, size, interval_s, timeout_s)


def run_all(quick: bool = False, repeats: int = 1) -> list[Result]:
    """Run every peer benchmark (``quick``: n divided by 10).

    With ``repeats > 1`` each benchmark is run that many times and the
    field-wise median (:func:`benchmarks._harness.median_of`) is reported.
    """
    if repeats < 1:
        raise ValueError("repeats must be >= 1")
    div = 10 if quick else 1
    tp_n, lat_n = THROUGHPUT_N // div, LATENCY_N // div
    runs: list[Callable[[], Result | None]] = [
        lambda: mp_queue_throughput(n=tp_n),
        lambda: os_pipe_throughput(n=tp_n),
        lambda: zmq_ipc_throughput(n=tp_n),
        lambda: faster_fifo_throughput(n=tp_n),
        lambda: mp_queue_latency(n=lat_n),
        lambda: os_pipe_latency(n=lat_n),
        lambda: zmq_ipc_latency(n=lat_n),
        lambda: faster_fifo_latency(n=lat_n),
    ]
    results: list[Result] = []
    for run in runs:
        measured = [r for r in (run() for _ in range(repeats)) if r is not None]
        if measured:
            results.append(median_of(measured))
    return results


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point: print the results as a markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="divide every n by 10")
    parser.add_argument("--repeats", type=int, default=1, help="report the median of N runs")
    parser.add_argument("--baseline", default=BASELINE, help="name of the baseline row")
    args = parser.parse_args(argv)
    info = machine_info()
    print("<!-- " + ", ".join(f"{k}: {v}" for k, v in info.items()) + " -->")
    print(format_table(run_all(quick=args.quick, repeats=args.repeats), baseline=args.baseline))


if __name__ == "__main__":
    main()
