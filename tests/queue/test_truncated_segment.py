"""A segment truncated by another process: what an mmap design can and cannot do.

A process whose mapping covers pages that a truncate removed gets SIGBUS when it touches
them; no library on mmap can stop another process from truncating a file it may write.
What the library does: every open (writer recovery, a new reader, a segment change) checks
the file's size against the queue's segment size and refuses a short one with a typed error
naming the file, so the damage is found at the next open instead of as a crash.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from chronicle_async import CorruptSegmentError, Queue, WriterConfig
from chronicle_async.hot import layout as L

SEG = 64 * 1024


def _fill(q, n=300):
    with Queue.open_publisher(q, WriterConfig(segment_size=SEG)) as w:
        for _ in range(n):
            w.append(1, b"x" * 100)


def test_a_truncated_segment_is_a_typed_error_for_the_writer_and_for_a_new_reader(queue_dir):
    _fill(queue_dir)
    seg = os.path.join(queue_dir, L.segment_file_name(0))
    os.truncate(seg, 4096)
    for open_ in (lambda: Queue.open_publisher(queue_dir), lambda: Queue.open_subscriber(queue_dir, None, "earliest")):
        with pytest.raises(CorruptSegmentError, match="truncated") as e:
            open_()
        assert seg in str(e.value)


def test_a_reader_crossing_into_a_truncated_segment_gets_a_typed_error(queue_dir):
    _fill(queue_dir, 1500)  # several segments
    with Queue.open_subscriber(queue_dir, None, "earliest") as r:
        os.truncate(os.path.join(queue_dir, L.segment_file_name(1)), 4096)
        with pytest.raises(CorruptSegmentError, match="truncated"):
            while r.next() is not None:
                pass


def test_a_live_mapping_of_a_truncated_segment_is_a_sigbus_as_documented(queue_dir):
    """The limit, shown rather than hidden: the reader process dies with SIGBUS."""
    _fill(queue_dir)
    code = (
        "import os, sys\n"
        "from chronicle_async import Queue\n"
        "r = Queue.open_subscriber(sys.argv[1], None, 'earliest')\n"
        "os.truncate(sys.argv[2], 0)\n"
        "for m in r: pass\n"
    )
    p = subprocess.run([sys.executable, "-c", code, str(queue_dir), os.path.join(queue_dir, L.segment_file_name(0))],
                       capture_output=True, timeout=120)
    assert p.returncode == -signal.SIGBUS
