"""pyzmq PUB/SUB fan-out, the peer row of ``benchmarks/scaling.py``.

One publisher process binds a PUB socket on ``ipc://`` and sends ``n`` messages of
``size`` bytes (the seq in bytes 0..7) to ``k`` subscriber processes, each a plain
Python ``recv()`` loop that counts the messages and checks that the seqs are
contiguous. ``SNDHWM`` and ``RCVHWM`` are 0 (no limit), so ZeroMQ queues rather than
drops; should a subscriber still miss messages (it hears nothing for
``idle_timeout_s``), it stops and reports what it got, and the figure shows the
drops instead of hiding them.

Before the timed stream the publisher repeats a 1-byte hello until every subscriber
has heard one (the slow-joiner problem of PUB/SUB); subscribers skip the hellos.
Times are ``CLOCK_MONOTONIC`` ns, system-wide on Linux, so the publisher's start and
the subscribers' last-message stamps compare across processes.

Processes are spawned and reaped with ``benchmarks.peers``' helpers.
"""
from __future__ import annotations

import os
import shutil
import struct
import tempfile
import time
from multiprocessing.synchronize import Event
from typing import Any

from ._harness import pin, spawn_ctx
from .peers import PeerError, _collect, _Peer, _reap, _start_peer

_SEQ = struct.Struct("<q")
_HELLO = b"h"


def _now_ns() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


def _publisher(address: str, n: int, size: int, cpu: int | None, heard: list[Event], go: Event, done: Event,
               timeout_s: float) -> dict[str, Any]:
    """Bind PUB, say hello until every subscriber heard it, wait for ``go``, send ``n`` messages."""
    import zmq

    pin(cpu)  # before the context: its I/O thread inherits the mask
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PUB)
    sock.setsockopt(zmq.SNDHWM, 0)
    sock.bind(address)
    try:
        deadline = time.monotonic() + timeout_s
        while not all(e.is_set() for e in heard):
            if time.monotonic() > deadline:
                raise TimeoutError(f"subscribers did not hear the hello within {timeout_s:.0f} s")
            sock.send(_HELLO)
            time.sleep(0.002)
        if not go.wait(timeout_s):
            raise TimeoutError("no go from the parent")
        buf = bytearray(size)
        pack_into, send = _SEQ.pack_into, sock.send
        t0 = _now_ns()
        for i in range(n):
            pack_into(buf, 0, i)
            send(buf)
        t1 = _now_ns()
        if not done.wait(timeout_s):  # keep the socket open until the subscribers are done
            raise TimeoutError("the subscribers did not finish")
    finally:
        sock.close(linger=0)
        ctx.term()
    return {"t0": t0, "t1": t1}


def _subscriber(address: str, n: int, size: int, cpu: int | None, heard: Event, idle_timeout_s: float,
                timeout_s: float) -> dict[str, Any]:
    """Connect SUB, signal the first hello, then count data messages and check seq contiguity."""
    import zmq

    pin(cpu)
    ctx = zmq.Context()
    sock = ctx.socket(zmq.SUB)
    sock.setsockopt(zmq.RCVHWM, 0)
    sock.setsockopt(zmq.SUBSCRIBE, b"")
    sock.connect(address)
    count = bad = 0
    t_end = 0
    try:
        sock.setsockopt(zmq.RCVTIMEO, int(timeout_s * 1000))
        msg = sock.recv()  # zmq.Again after timeout_s: reported as a failure by _child_main
        heard.set()
        sock.setsockopt(zmq.RCVTIMEO, int(idle_timeout_s * 1000))
        unpack_from, recv = _SEQ.unpack_from, sock.recv
        expected = 0
        while True:
            try:
                msg = recv()
            except zmq.Again:
                break  # nothing for idle_timeout_s: the rest was dropped
            if len(msg) != size:
                continue  # a late hello
            seq = unpack_from(msg)[0]
            if seq != expected:
                bad += 1
            expected = seq + 1
            count += 1
            t_end = _now_ns()
            if seq == n - 1:
                break
    finally:
        sock.close(linger=0)
        ctx.term()
    return {"count": count, "bad": bad, "t_end": t_end}


def zmq_fanout_once(k: int, n: int, size: int, pub_cpu: int | None, sub_cpus: list[int | None],
                    timeout_s: float, idle_timeout_s: float = 5.0) -> dict[str, Any]:
    """One round: 1 publisher -> ``k`` subscribers; per-subscriber counts and the three rates."""
    ctx = spawn_ctx()
    tmp = tempfile.mkdtemp(prefix="chronicle-scale-zmq-")
    address = f"ipc://{os.path.join(tmp, 'pub')}"
    heard = [ctx.Event() for _ in range(k)]
    go, done = ctx.Event(), ctx.Event()
    subs: list[_Peer] = []
    pub: list[_Peer] = []
    try:
        pub.append(_start_peer("zmq publisher", _publisher,
                               (address, n, size, pub_cpu, heard, go, done, timeout_s)))
        for i in range(k):
            subs.append(_start_peer(f"zmq subscriber {i}", _subscriber,
                                    (address, n, size, sub_cpus[i], heard[i], idle_timeout_s, timeout_s)))
        await_events(heard, pub + subs, timeout_s, "the zmq subscribers to hear the publisher")
        go.set()
        _collect(subs, f"zmq fan-out k={k}", timeout_s)
        done.set()
        _collect(pub, f"zmq fan-out k={k}", timeout_s)
    finally:
        done.set()
        _reap(pub + subs)
        shutil.rmtree(tmp, ignore_errors=True)
    t0, t1 = pub[0].report["t0"], pub[0].report["t1"]  # type: ignore[index]
    reports = [s.report for s in subs]
    counts = [int(r["count"]) for r in reports]  # type: ignore[index]
    ends = [int(r["t_end"]) for r in reports]  # type: ignore[index]
    span = max(ends) - t0
    return {
        "aggregate": sum(counts) / span * 1e9 if span > 0 else 0.0,
        "slowest": min(c / (e - t0) * 1e9 if e > t0 else 0.0 for c, e in zip(counts, ends)),
        "writer": n / (t1 - t0) * 1e9,
        "drops": k * n - sum(counts),
        "bad": sum(int(r["bad"]) for r in reports),  # type: ignore[index]
        "counts": counts,
    }


def await_events(events: list[Event], peers: list[_Peer], timeout_s: float, what: str) -> None:
    """Wait until every event is set; raise :class:`PeerError` if a peer dies first or time runs out."""
    deadline = time.monotonic() + timeout_s
    while not all(e.is_set() for e in events):
        for p in peers:
            if p.process.exitcode is not None and p.report is None:
                _collect([p], what, 2.0)  # raises with the child's traceback
                raise PeerError(f"{what}: {p.role} exited early (exit code {p.process.exitcode})")
        if time.monotonic() > deadline:
            raise PeerError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.005)
