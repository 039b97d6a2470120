"""A named reader's position file belongs to one queue: a queue deleted and made again (with
``readers/`` left behind) refuses the old position instead of resuming at a stale byte offset."""
from __future__ import annotations

import os
import struct

import pytest

from chronicle_async import CorruptQueueError, Queue, WriterConfig
from chronicle_async.hot import layout as L

SEG = 16 * 1024


def _fill(q, n: int, start: int = 0) -> None:
    with Queue.open_publisher(q, WriterConfig(segment_size=SEG)) as w:
        for i in range(start, start + n):
            w.append(1, b"message %05d" % i + bytes(40))


def _recreate(q) -> None:
    """Delete the queue's data and control file but keep readers/, as a careless cleanup does."""
    for name in os.listdir(q):
        if name != L.READERS_DIR_NAME and os.path.isfile(os.path.join(q, name)):
            os.unlink(os.path.join(q, name))


def test_a_position_from_a_deleted_and_recreated_queue_is_refused_with_the_fix(queue_dir):
    _fill(queue_dir, 200)
    with Queue.open_subscriber(queue_dir, "svc", "earliest") as r:
        for _ in range(150):
            r.next()
        r.commit()
    _recreate(queue_dir)
    _fill(queue_dir, 300)  # a different queue at the same path
    pos = os.path.join(queue_dir, L.READERS_DIR_NAME, "svc" + L.READER_FILE_SUFFIX)
    with pytest.raises(CorruptQueueError, match="belongs to another queue") as e:
        Queue.open_subscriber(queue_dir, "svc")
    assert pos in str(e.value) and "Delete" in str(e.value)
    os.unlink(pos)
    with Queue.open_subscriber(queue_dir, "svc", "earliest") as r:
        assert r.next().seq == 0  # afresh, not at a byte offset of the old queue


def test_a_version_1_position_file_is_adopted_by_its_queue_and_then_checked(queue_dir):
    _fill(queue_dir, 50)
    with Queue.open_subscriber(queue_dir, "svc", "earliest") as r:
        for _ in range(20):
            r.next()
        r.commit()
    pos = os.path.join(queue_dir, L.READERS_DIR_NAME, "svc" + L.READER_FILE_SUFFIX)
    with open(pos, "r+b") as f:  # as version 1 wrote it: no queue id
        f.seek(L.RDR_VERSION_OFFSET)
        f.write(struct.pack("<I", 1))
        f.seek(L.RDR_QUEUE_ID_OFFSET)
        f.write(struct.pack("<q", 0))
    with Queue.open_subscriber(queue_dir, "svc") as r:
        assert r.next_seq == 20
    with open(pos, "rb") as f:
        magic, version, _pid, qid = struct.unpack(L.READER_HEADER_FORMAT, f.read(struct.calcsize(L.READER_HEADER_FORMAT)))
    assert version == L.READER_VERSION == 2 and qid != 0
    _recreate(queue_dir)
    _fill(queue_dir, 10)
    with pytest.raises(CorruptQueueError, match="belongs to another queue"):
        Queue.open_subscriber(queue_dir, "svc")
