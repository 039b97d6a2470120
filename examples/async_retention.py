"""Async retention: the writer has no limits; the control plane deletes old segments.

The writer is opened with no ``max_bytes`` / ``max_segments``: it never deletes
anything itself. The control plane's retention worker applies the policy
(``manage_writer(w, max_bytes=...)``) in small batches on an executor thread,
never blocking the writer or the event loop, and never deleting a segment that
a live named reader still needs. Here a slow reader holds data back until it
catches up; then the cap is honoured: the files left are the segments the cap
keeps (up to the head, the one being written) plus the empty segments the
control plane prepared ahead of the writer's next rolls (``prepare_ahead``).

Run:  python examples/async_retention.py [queue-folder]
"""
from __future__ import annotations

import asyncio
import os
import sys
import tempfile

from chronicle_async import ControlPlane, Queue, WriterConfig
from chronicle_async.control import run

SEG = 64 * 1024
CAP = 8  # segments of data kept on disk: the retention policy below


def segments(folder: str, w) -> str:
    """The segment files on disk, split into the data segments and those prepared ahead of the writer."""
    files = len([f for f in os.listdir(folder) if f.endswith(".seg")])
    ahead = len(w.prepared_segments)
    return f"{files} segments on disk ({files - ahead} of data + {ahead} prepared ahead, empty)"


async def main(folder: str) -> None:
    with Queue.open_publisher(folder, WriterConfig(segment_size=SEG)) as w:  # no limits here
        slow = Queue.open_subscriber(folder, "slow-reader", "earliest")
        async with ControlPlane(retention_interval=0.05) as plane:
            plane.manage_writer(w, max_bytes=CAP * SEG)  # the policy: 8 segments of data
            print(f"retention cap: {CAP} segments of data ({CAP * SEG // 1024} KiB); the control plane also "
                  f"prepares up to {w.prepare_ahead} empty segments ahead of the writer")
            for i in range(20_000):  # ~40 segments of 100-byte messages
                w.append(1, i.to_bytes(4, "little") * 25)
            await asyncio.sleep(0.3)
            print(f"while 'slow-reader' is at seq {slow.next_seq}: {segments(folder, w)}: "
                  "a live reader's data is never deleted")
            n = 0
            for msg in slow:  # the reader catches up and commits
                assert int.from_bytes(msg.payload[:4], "little") == msg.seq  # nothing lost, no gap
                n += 1
            slow.commit()
            plane.retention.poke()
            await asyncio.sleep(0.3)
            print(f"after it read {n} messages and committed: {segments(folder, w)}; "
                  f"{plane.retention.deleted} deleted by the control plane, in batches")
        slow.close()


if __name__ == "__main__":
    if len(sys.argv) > 1:
        run(main(sys.argv[1]))
    else:
        with tempfile.TemporaryDirectory(prefix="retention-") as d:
            run(main(os.path.join(d, "q")))
