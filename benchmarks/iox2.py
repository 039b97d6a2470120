"""iceoryx2 publish-subscribe, measured the same way as the peers in ``benchmarks.peers``.

iceoryx2 (PyPI ``iceoryx2``, 0.10.x) is a zero-copy shared-memory IPC: messages
live in shared memory only while some subscriber holds them; nothing is
persisted, so it is a transport peer like pyzmq, not a queue like
``chronicle_async``.

Set-up
    The parent process creates an ``ServiceType.Ipc`` publish-subscribe service
    (unique name per run) and keeps it open; one publisher process and ``k``
    subscriber processes, all started with the ``spawn`` context, open it.
    The publisher's thread is pinned to CPU 0, subscriber ``i`` to CPU
    ``1 + i % (nproc - 1)`` (see :func:`benchmarks._harness.pin`); with
    2 CPUs every subscriber shares CPU 1.

Payload and copy semantics
    A fixed-size 64-byte ctypes frame: ``int64`` send time, ``int64`` sequence
    number, 48 pad bytes.  The publisher *loans* a sample from shared memory,
    ``memmove``-s the 64 bytes into it and sends it (one copy, into shared
    memory; no copy after that).  A subscriber reads the 16-byte header in
    place, checks the sequence number and releases the sample; it never
    copies the pad (the peers hand the consumer a full ``bytes`` copy).
    Subscribers busy-poll ``Subscriber.receive`` (there is no blocking receive
    without an event service), calling ``os.sched_yield`` when it is empty.

Overflow
    The service is created with safe overflow *off*, a subscriber buffer of
    :data:`SUBSCRIBER_BUFFER` samples (about ZeroMQ's default high-water mark
    of 1000), and the publisher uses ``BackpressureStrategy.RetryUntilDelivered``:
    when a subscriber's buffer is full, ``send`` waits until it has room, so
    no message is dropped.  Drops are still checked, not assumed: every
    subscriber counts messages and sequence gaps, and the publisher counts
    sends that reached fewer than ``k`` subscribers; a throughput result's
    ``n`` is the fewest messages any subscriber received, and its note says
    ``lost 0`` (or how many were lost).  The buffer size is a parameter
    (``buffer``) and is in every note; on a 2-CPU VM, interleaved runs with
    64, 1024 and 65536 gave the same rate within noise.

Throughput / fan-out
    After a hand-shake message has reached every subscriber, the publisher
    reads ``CLOCK_MONOTONIC`` and sends ``n`` messages; each subscriber reads
    the clock when the last one (sequence ``n - 1``) arrives.
    ``msgs/s = k * n / (latest t_end - t_start)`` (``k = 1`` for the plain
    throughput row; the fan-out rows give the aggregate delivered rate).

One-way latency
    As in ``benchmarks.peers``: the publisher stamps ``CLOCK_MONOTONIC`` ns
    right before loaning and sending, pacing sends ``interval_s`` apart by
    spinning on the clock; the subscriber records ``receive_time - send_time``
    and the first 10 % are dropped as warm-up.

Run ``python -m benchmarks.iox2 [--quick] [--with-zmq]`` from the repository root.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import struct
import time
import uuid
from array import array
from dataclasses import dataclass
from multiprocessing.synchronize import Event
from typing import Any, Callable

import numpy as np

from ._harness import Result, format_table, machine_info, median_of, percentiles_ns, pin, spawn_ctx
from .peers import (
    LATENCY_INTERVAL_S,
    LATENCY_N,
    THROUGHPUT_N,
    WARMUP_FRACTION,
    PeerError,
    _collect,
    _default_timeout,
    _now_ns,
    _Peer,
    _reap,
    _start_peer,
)

__all__ = [
    "NAME",
    "available",
    "fanout_throughput",
    "iox2_latency",
    "iox2_throughput",
    "main",
    "run_all",
]

NAME = "iceoryx2 ipc"
PUBLISHER_CPU = 0
DEFAULT_SIZE = 64
SUBSCRIBER_BUFFER = 1024

_HDR = struct.Struct("<qq")  # send time (ns), sequence number
_HANDSHAKE_SEQ = -1


def available() -> bool:
    """True if the ``iceoryx2`` Python binding can be imported."""
    try:
        import iceoryx2  # noqa: F401
    except ImportError:
        return False
    return True


def _frame_type(size: int) -> type[ctypes.Structure]:
    """The ctypes payload: header (send time, sequence) plus padding to ``size`` bytes."""
    if size < _HDR.size:
        raise ValueError(f"size must be at least {_HDR.size} bytes")
    fields = [("sent_ns", ctypes.c_int64), ("seq", ctypes.c_int64), ("pad", ctypes.c_uint8 * (size - _HDR.size))]
    name = f"ChronicleBenchFrame{size}"
    return type(name, (ctypes.Structure,), {"_fields_": fields, "type_name": classmethod(lambda cls: name)})


def _node() -> Any:
    """A fresh IPC node that leaves signal handling to Python (so ``terminate`` works)."""
    import iceoryx2 as iox

    iox.set_log_level(iox.LogLevel.Error)
    return iox.NodeBuilder.new().signal_handling_mode(iox.SignalHandlingMode.Disabled).create(iox.ServiceType.Ipc)


@dataclass(frozen=True)
class _Spec:
    """What every process of one run must agree on (picklable)."""

    name: str  # unique service name
    size: int  # payload bytes
    k: int  # subscribers
    buffer: int  # samples each subscriber can hold before the publisher waits


def _service(node: Any, spec: _Spec, create: bool) -> Any:
    """Create (parent) or open (children) the lossless publish-subscribe service."""
    import iceoryx2 as iox

    builder = (
        node.service_builder(iox.ServiceName.new(spec.name))
        .publish_subscribe(_frame_type(spec.size))
        .enable_safe_overflow(False)
        .subscriber_max_buffer_size(spec.buffer)
        .history_size(0)
        .max_publishers(1)
        .max_subscribers(spec.k)
        .max_nodes(spec.k + 2)
    )
    return builder.create() if create else builder.open()


@dataclass
class _FanSync:
    """Hand-shake between one publisher and ``k`` subscribers (one event each)."""

    ready: list[Event]  # subscriber i has its port
    go: list[Event]  # subscriber i received the hand-shake message
    done: list[Event]  # subscriber i received every message
    timeout_s: float

    def wait_all(self, events: list[Event], what: str) -> None:
        """Wait for every event or raise ``TimeoutError`` naming ``what``."""
        deadline = time.monotonic() + self.timeout_s
        for ev in events:
            if not ev.wait(max(0.0, deadline - time.monotonic())):
                raise TimeoutError(f"timed out after {self.timeout_s:.0f}s waiting for {what}")


# --------------------------------------------------------------------------
# Child-process bodies
# --------------------------------------------------------------------------


def _open_publisher(spec: _Spec, sync: _FanSync) -> tuple[Any, Any, Any, Callable[..., int]]:
    """Pin, open the service and a blocking publisher, and pass the hand-shake to every subscriber.

    Returns ``(node, service, publisher, send)`` where ``send(sent_ns, seq)``
    loans a sample, writes the frame into it, sends it and returns how many
    subscribers it reached.
    """
    import iceoryx2 as iox

    pin(PUBLISHER_CPU)
    node = _node()
    service = _service(node, spec, create=False)
    publisher = service.publisher_builder().backpressure_strategy(iox.BackpressureStrategy.RetryUntilDelivered).create()
    size = spec.size
    loan, memmove, pack, pad = publisher.loan_uninit, ctypes.memmove, _HDR.pack, bytes(size - _HDR.size)

    def send(sent_ns: int, seq: int) -> int:
        sample = loan()
        memmove(sample.payload_ptr, pack(sent_ns, seq) + pad, size)
        return int(sample.assume_init().send())

    sync.wait_all(sync.ready, "every subscriber to connect")
    send(_now_ns(), _HANDSHAKE_SEQ)
    sync.wait_all(sync.go, "every subscriber to receive the hand-shake")
    return node, service, publisher, send


def _throughput_publisher(spec: _Spec, n: int, sync: _FanSync) -> dict[str, Any]:
    """Send ``n`` frames as fast as the subscribers take them."""
    node, service, publisher, send = _open_publisher(spec, sync)
    short, k = 0, spec.k
    t_start = _now_ns()
    for seq in range(n):
        if send(t_start, seq) != k:
            short += 1
    sync.wait_all(sync.done, "every subscriber to receive all messages")
    publisher.delete()
    del service, node
    return {"t_start": t_start, "short_sends": short}


def _latency_publisher(spec: _Spec, n: int, interval_ns: int, sync: _FanSync) -> dict[str, Any]:
    """Send ``n`` time-stamped frames, one every ``interval_ns`` (spin-paced, as in peers)."""
    node, service, publisher, send = _open_publisher(spec, sync)
    clock, mono, yield_cpu = time.clock_gettime_ns, time.CLOCK_MONOTONIC, os.sched_yield
    short = 0
    next_t = clock(mono)
    for seq in range(n):
        now = clock(mono)
        while now < next_t:
            yield_cpu()
            now = clock(mono)
        if send(now, seq) != 1:
            short += 1
        next_t = max(next_t, now) + interval_ns
    sync.wait_all(sync.done, "the subscriber to receive all messages")
    publisher.delete()
    del service, node
    return {"short_sends": short}


def _open_subscriber(spec: _Spec, idx: int, sync: _FanSync) -> tuple[Any, Any, Any, Callable[[], tuple[int, int]]]:
    """Pin, open the service and a subscriber, and take the hand-shake.

    Returns ``(node, service, subscriber, recv)`` where ``recv()`` busy-polls
    for the next sample and returns ``(sent_ns, seq)`` read in place.
    """
    ncpu = os.cpu_count() or 1
    pin(1 + idx % (ncpu - 1) if ncpu > 1 else None)
    node = _node()
    service = _service(node, spec, create=False)
    subscriber = service.subscriber_builder().buffer_size(spec.buffer).create()
    receive, string_at, unpack, yield_cpu = subscriber.receive, ctypes.string_at, _HDR.unpack, os.sched_yield
    hdr = _HDR.size

    def recv() -> tuple[int, int]:
        sample = receive()
        while sample is None:
            yield_cpu()
            sample = receive()
        sent_ns, seq = unpack(string_at(sample.payload_ptr, hdr))
        sample.delete()
        return sent_ns, seq

    sync.ready[idx].set()
    _, seq = recv()
    if seq != _HANDSHAKE_SEQ:
        raise AssertionError(f"expected the hand-shake frame, got sequence {seq}")
    sync.go[idx].set()
    return node, service, subscriber, recv


def _throughput_subscriber(spec: _Spec, n: int, idx: int, sync: _FanSync) -> dict[str, Any]:
    """Receive until sequence ``n - 1``; count messages, gaps and reordering."""
    node, service, subscriber, recv = _open_subscriber(spec, idx, sync)
    received = lost = disorder = 0
    expected, last = 0, n - 1
    while True:
        _, seq = recv()
        received += 1
        if seq != expected:
            if seq > expected:
                lost += seq - expected
            else:
                disorder += 1
        expected = seq + 1
        if seq >= last:
            break
    t_end = _now_ns()
    sync.done[idx].set()
    subscriber.delete()
    del service, node
    return {"t_end": t_end, "received": received, "lost": lost, "disorder": disorder}


def _latency_subscriber(spec: _Spec, n: int, sync: _FanSync) -> dict[str, Any]:
    """Receive ``n`` frames and return their one-way latencies (ns)."""
    node, service, subscriber, recv = _open_subscriber(spec, 0, sync)
    clock, mono = time.clock_gettime_ns, time.CLOCK_MONOTONIC
    lat = array("q", bytes(8 * n))
    for i in range(n):
        sent_ns, _ = recv()
        lat[i] = clock(mono) - sent_ns
    sync.done[0].set()
    subscriber.delete()
    del service, node
    samples = np.frombuffer(lat, dtype=np.int64)[int(n * WARMUP_FRACTION) :]
    return {"samples": samples.copy()}


# --------------------------------------------------------------------------
# Parent-side orchestration
# --------------------------------------------------------------------------


def _run(
    k: int,
    size: int,
    buffer: int,
    publisher: tuple[Callable[..., dict[str, Any]], tuple[Any, ...]],
    subscriber: tuple[Callable[..., dict[str, Any]], Callable[[int], tuple[Any, ...]]],
    timeout_s: float,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Create the service, run one publisher and ``k`` subscribers; return their reports.

    ``publisher`` is ``(body, args)``; ``subscriber`` is ``(body, args_for(i))``.
    Both get ``(spec, *args, sync)``.
    """
    ctx = spawn_ctx()
    sync = _FanSync(
        ready=[ctx.Event() for _ in range(k)],
        go=[ctx.Event() for _ in range(k)],
        done=[ctx.Event() for _ in range(k)],
        timeout_s=timeout_s,
    )
    if buffer < 1:
        raise ValueError("buffer must be at least 1")
    spec = _Spec(f"chronicle-bench/iox2/{os.getpid()}/{uuid.uuid4().hex}", size, k, buffer)
    node = _node()
    service = _service(node, spec, create=True)
    peers: list[_Peer] = []
    try:
        sub_body, sub_args = subscriber
        for i in range(k):
            peers.append(_start_peer(f"subscriber {i}", sub_body, (spec, *sub_args(i), sync)))
        pub_body, pub_args = publisher
        peers.append(_start_peer("publisher", pub_body, (spec, *pub_args, sync)))
        _collect(peers, f"{NAME} (k={k})", timeout_s)
    finally:
        _reap(peers)
        del service
        node.try_cleanup_dead_nodes()  # stale resources of any child that was killed
    reports = [p.report for p in peers]
    assert all(r is not None for r in reports)
    return reports[-1], reports[:-1]  # type: ignore[return-value]


def fanout_throughput(
    k: int,
    n: int = THROUGHPUT_N,
    size: int = DEFAULT_SIZE,
    timeout_s: float | None = None,
    name: str | None = None,
    buffer: int = SUBSCRIBER_BUFFER,
) -> Result:
    """Aggregate delivered msgs/s from one publisher to ``k`` subscribers, ``n`` messages each."""
    if n <= 0 or k <= 0:
        raise ValueError("n and k must be positive")
    timeout = timeout_s if timeout_s is not None else _default_timeout(k * n / 50_000)
    pub, subs = _run(
        k, size, buffer,
        (_throughput_publisher, (n,)),
        (_throughput_subscriber, lambda i: (n, i)),
        timeout,
    )
    elapsed_ns = max(s["t_end"] for s in subs) - pub["t_start"]
    if elapsed_ns <= 0:
        raise PeerError(f"{NAME}: non-positive elapsed time {elapsed_ns} ns")
    received = min(s["received"] for s in subs)
    lost = sum(s["lost"] for s in subs)
    disorder = sum(s["disorder"] for s in subs)
    note = (
        f"{size} B payload, {k} subscriber(s), buffer {buffer}, "
        f"lost {lost}, reordered {disorder}, short sends {pub['short_sends']}"
    )
    return Result(
        name=name or f"{NAME} fan-out k={k}",
        kind="throughput",
        msgs_per_s=sum(s["received"] for s in subs) / (elapsed_ns / 1e9),
        n=received,
        note=note,
    )


def iox2_throughput(
    n: int = THROUGHPUT_N, size: int = DEFAULT_SIZE, timeout_s: float | None = None, buffer: int = SUBSCRIBER_BUFFER
) -> Result:
    """Throughput of iceoryx2 publish-subscribe, one publisher to one subscriber."""
    return fanout_throughput(1, n, size, timeout_s, name=NAME, buffer=buffer)


def iox2_latency(
    n: int = LATENCY_N,
    interval_s: float = LATENCY_INTERVAL_S,
    size: int = DEFAULT_SIZE,
    timeout_s: float | None = None,
    buffer: int = SUBSCRIBER_BUFFER,
) -> Result:
    """One-way latency of iceoryx2 publish-subscribe at one message every ``interval_s``."""
    if n < 10:
        raise ValueError("n must be at least 10")
    interval_ns = int(round(interval_s * 1e9))
    timeout = timeout_s if timeout_s is not None else _default_timeout(n * max(interval_s, 20e-6))
    pub, (sub,) = _run(
        1, size, buffer,
        (_latency_publisher, (n, interval_ns)),
        (_latency_subscriber, lambda i: (n,)),
        timeout,
    )
    samples: np.ndarray = sub["samples"]
    return Result(
        name=NAME,
        kind="latency",
        n=int(samples.size),
        note=f"{size} B payload, 1 msg / {interval_s * 1e6:g} µs, short sends {pub['short_sends']}",
        **percentiles_ns(samples),
    )


def fanout_ks() -> list[int]:
    """Subscriber counts for the fan-out rows: 1 .. nproc-1, and at least 1, 2."""
    return list(range(1, max(2, (os.cpu_count() or 1) - 1) + 1))


def run_all(quick: bool = False, repeats: int = 1) -> list[Result]:
    """Run every iceoryx2 benchmark (``quick``: n divided by 10); ``[]`` if iceoryx2 is missing.

    With ``repeats > 1`` each benchmark is run that many times and the
    field-wise median (:func:`benchmarks._harness.median_of`) is reported.
    """
    if not available():
        print("iceoryx2 is not installed: skipping the iceoryx2 benchmarks (pip install 'iceoryx2>=0.10,<0.11')")
        return []
    if repeats < 1:
        raise ValueError("repeats must be >= 1")
    div = 10 if quick else 1
    tp_n, lat_n = THROUGHPUT_N // div, LATENCY_N // div
    runs: list[Callable[[], Result]] = [lambda: iox2_throughput(n=tp_n), lambda: iox2_latency(n=lat_n)]
    runs += [lambda k=k: fanout_throughput(k, n=tp_n) for k in fanout_ks()]  # type: ignore[misc]
    return [median_of([run() for _ in range(repeats)]) for run in runs]


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point: print the results as a markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="divide every n by 10")
    parser.add_argument("--repeats", type=int, default=1, help="report the median of N runs")
    parser.add_argument("--with-zmq", action="store_true", help="also measure pyzmq ipc (the baseline) in this run")
    args = parser.parse_args(argv)
    print("<!-- " + ", ".join(f"{k}: {v}" for k, v in machine_info().items()) + " -->")
    results = run_all(quick=args.quick, repeats=args.repeats)
    baseline = None
    if args.with_zmq and results:
        from . import peers

        div = 10 if args.quick else 1
        results += [
            median_of([peers.zmq_ipc_throughput(n=THROUGHPUT_N // div) for _ in range(args.repeats)]),
            median_of([peers.zmq_ipc_latency(n=LATENCY_N // div) for _ in range(args.repeats)]),
        ]
        baseline = peers.BASELINE
    if results:
        print(format_table(results, baseline=baseline))
        for r in results:
            print(f"- {r.name} [{r.kind}]: {r.note}")


if __name__ == "__main__":
    main()
