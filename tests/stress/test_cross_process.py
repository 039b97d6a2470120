"""One writer process, two named reader processes, 200k messages across many segment rolls."""
from __future__ import annotations

import os

import pytest

from chronicle_async.hot import layout as L
from chronicle_async.queue.position import read_reader_position

from ._workers import read_control_i64

COUNT = 200_000
MAX_SIZE = 512
SEGMENT_SIZE = 1 << 20  # ~64 MB of records over 1 MiB segments: dozens of rolls


def segment_ids(d) -> list[int]:
    return sorted(i for i in (L.parse_segment_file_name(n) for n in os.listdir(d)) if i is not None)


def exchange(spawn, queue_dir, batch: int) -> None:
    path = str(queue_dir / "q")
    # Readers first: they poll until the writer has created the queue.
    readers = {
        name: spawn("reader", path=path, name=name, max_size=MAX_SIZE, count=COUNT,
                    start="committed", wait_timeout=0.2, deadline=150.0)
        for name in ("alpha", "beta")
    }
    writer = spawn("writer", path=path, count=COUNT, segment_size=SEGMENT_SIZE, max_size=MAX_SIZE, batch=batch)

    done = writer.result(timeout=150)
    assert done["next_seq"] == COUNT
    if batch:
        assert done["batches"] < COUNT  # really batched
    results = {name: r.result(timeout=150) for name, r in readers.items()}

    for name, res in results.items():
        assert res["count"] == COUNT, f"reader {name}: {res}"
        # the committed position is after the last message, in the file any process can read
        pos = read_reader_position(os.path.join(path, L.READERS_DIR_NAME, name + L.READER_FILE_SUFFIX))
        assert pos is not None and pos[2] == COUNT, f"reader {name} committed {pos}"
    ids = segment_ids(path)
    assert len(ids) >= 4, f"only {len(ids)} segment files: not enough rolls"
    assert ids == list(range(ids[0], ids[-1] + 1)) and ids[0] == 0
    assert read_control_i64(path, L.CTL_NEXT_SEQ_OFFSET) == COUNT
    assert not [n for n in os.listdir(path) if L.SEGMENT_TEMP_SUFFIX in n]


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_writer_and_two_readers_exchange_200k_messages_over_rolls(spawn, queue_dir):
    exchange(spawn, queue_dir, batch=0)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_batch_writer_and_two_readers_exchange_200k_messages_over_rolls(spawn, queue_dir):
    """The same exchange with ``append_batch`` (batches of 1..64, rolling inside batches)."""
    exchange(spawn, queue_dir, batch=64)
