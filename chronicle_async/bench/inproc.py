"""In-process peers: one thread appends a message and reads it back, ``n`` times; each round trip timed."""
from __future__ import annotations

import collections
import os
import queue
import tempfile
import time
from typing import Callable

import numpy as np

from .stats import Row, percentiles_ns

_PAYLOAD = b"x" * 16


def _timed(peer: str, n: int, one: Callable[[], object]) -> Row:
    lat = np.empty(n, dtype=np.int64)
    clock = time.perf_counter_ns
    start = clock()
    for i in range(n):
        t = clock()
        one()
        lat[i] = clock() - t
    total = clock() - start
    return Row(peer, n / (total / 1e9), **percentiles_ns(lat), n=n)


def chronicle_round_trip(n: int) -> Row:
    """``QueueWriter.append`` then ``QueueReader.next`` on a fresh queue in a temporary folder."""
    from .. import Queue, WriterConfig

    with tempfile.TemporaryDirectory(prefix="chronicle-bench-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None) as d:
        with Queue.open_publisher(os.path.join(d, "q"), WriterConfig(segment_size=16 << 20)) as w, \
                Queue.open_subscriber(os.path.join(d, "q"), None, "earliest") as r:
            append, read = w.append, r.next
            for _ in range(min(n, 1000)):  # warm up the jitted paths
                append(1, _PAYLOAD)
                read()
            return _timed("chronicle", n, lambda: (append(1, _PAYLOAD), read()))


def simple_queue_round_trip(n: int) -> Row:
    q: queue.SimpleQueue[bytes] = queue.SimpleQueue()
    put, get = q.put, q.get
    return _timed("queue.SimpleQueue", n, lambda: (put(_PAYLOAD), get()))


def deque_round_trip(n: int) -> Row:
    dq: collections.deque[bytes] = collections.deque()
    put, get = dq.append, dq.popleft
    return _timed("collections.deque", n, lambda: (put(_PAYLOAD), get()))


PEERS: dict[str, Callable[[int], Row]] = {
    "chronicle": chronicle_round_trip,
    "queue.SimpleQueue": simple_queue_round_trip,
    "collections.deque": deque_round_trip,
}
