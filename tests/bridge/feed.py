"""The source feed of the bridge tests: message i has type i % 7 and a random-size payload derived from i."""
from __future__ import annotations

import random
import sys
import time

WRITER = """
import sys
from tests.bridge.feed import write
write(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]))
"""


def payload(i: int) -> bytes:
    """Message i's payload: 8 bytes of i, then 0..600 random bytes seeded by i."""
    r = random.Random(i)
    return i.to_bytes(8, "little") + r.randbytes(r.randint(0, 600))


def write(path: str, n: int, rate: float = 0.0) -> None:
    """Append messages 0..n-1 to the queue at ``path`` (about ``rate`` per second; 0: as fast as it can)."""
    from chronicle_async import Queue

    t0 = time.monotonic()
    with Queue.open_publisher(path) as w:
        for i in range(n):
            w.append(i % 7, payload(i))
            if rate and i % 100 == 99:
                ahead = (i + 1) / rate - (time.monotonic() - t0)
                if ahead > 0:
                    time.sleep(ahead)


def read_bridged(path: str, n: int, timeout: float) -> list[tuple[int, int]]:
    """Read a ``bridge in`` queue until it holds ``n`` messages; check each one; return (source seq, stream seq)."""
    from chronicle_async import Queue
    from chronicle_async.bridge import unpack

    seen: list[tuple[int, int]] = []
    deadline = time.monotonic() + timeout
    while not Queue.exists(path):
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)
    with Queue.open_subscriber(path, None, "earliest") as r:
        while len(seen) < n + 1:
            m = r.next(timeout=max(0.0, min(0.5, deadline - time.monotonic())) if len(seen) < n else 1.0)
            if m is None:
                if len(seen) >= n or time.monotonic() >= deadline:
                    break
                continue
            b = unpack(m)
            assert b.source_seq == len(seen), f"local seq {m.seq}: source seq {b.source_seq}, expected {len(seen)}"
            assert bytes(b.payload) == payload(b.source_seq), f"source seq {b.source_seq}: payload differs"
            assert b.type_id == b.source_seq % 7
            seen.append((b.source_seq, b.stream_seq))
    return seen


if __name__ == "__main__":
    write(sys.argv[1], int(sys.argv[2]))
