"""Named readers' start rule (like Kafka's auto.offset.reset) and the explicit reset and delete."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

import chronicle_async as ca
from chronicle_async import Queue, Start, WriterConfig

TINY = WriterConfig(segment_size=16 * 1024)
T0 = 1_700_000_000_000_000_000


@pytest.fixture
def ten(queue_dir):
    w = Queue.open_publisher(queue_dir, TINY)
    for i in range(10):
        w.append(1, b"m%d" % i, timestamp_ns=T0 + i * 1000)
    yield w, queue_dir
    w.close()


def seqs(d, name, start=Start.COMMITTED) -> list[int]:
    with Queue.open_subscriber(d, name, start) as r:
        return [m.seq for m in r]


def consume(d, name, n) -> None:
    with Queue.open_subscriber(d, name) as r:
        for _ in range(n):
            r.next()
        r.commit()


def test_a_consumer_written_from_the_docs_does_not_reprocess_after_a_restart_with_start_earliest(ten):
    w, d = ten
    consume(d, "svc", 7)
    assert seqs(d, "svc", Start.EARLIEST) == [7, 8, 9]


@pytest.mark.parametrize(("to", "expected"), [("earliest", 0), (Start.EARLIEST, 0), ("latest", 10), (4, 4), (99, 10)])
def test_reset_reader_moves_a_committed_name_and_returns_the_seq_it_delivers_next(ten, to, expected):
    w, d = ten
    consume(d, "svc", 7)
    assert Queue.reset_reader(d, "svc", to) == expected
    assert seqs(d, "svc") == list(range(expected, 10))


def test_reset_reader_by_time_goes_to_the_first_message_at_or_after_it(ten):
    w, d = ten
    consume(d, "svc", 2)
    assert Queue.reset_reader(d, "svc", timestamp_ns=T0 + 5500) == 6
    assert seqs(d, "svc") == [6, 7, 8, 9]


def test_reset_reader_gives_a_new_name_a_position(ten):
    w, d = ten
    assert Queue.reset_reader(d, "fresh", "latest") == 10
    w.append(1, b"after")
    assert seqs(d, "fresh", Start.EARLIEST) == [10]


def test_delete_reader_makes_the_name_start_afresh_as_its_start_says(ten):
    w, d = ten
    consume(d, "svc", 7)
    Queue.delete_reader(d, "svc")
    assert not (d / "readers" / "svc.pos").exists()
    assert seqs(d, "svc", Start.LATEST) == []
    Queue.delete_reader(d, "svc")  # the LATEST open above made a new (empty) position file
    assert seqs(d, "svc") == list(range(10))


def test_delete_reader_of_an_unknown_name_is_a_typed_error_listing_the_readers(ten):
    w, d = ten
    consume(d, "alpha", 1)
    with pytest.raises(ca.ReaderNotFoundError, match="no reader named 'beta'.*alpha"):
        Queue.delete_reader(d, "beta")


@pytest.mark.parametrize(
    ("kwargs", "cls"),
    [
        (dict(to="committed"), ca.InvalidArgumentError),
        (dict(to=-1), ca.InvalidArgumentError),
        (dict(to=1.5), ca.ArgumentTypeError),
        (dict(to="tomorrow"), ca.InvalidArgumentError),
        (dict(to=3, timestamp_ns=T0), ca.InvalidArgumentError),
    ],
)
def test_reset_reader_rejects_bad_targets_and_leaves_the_position(ten, kwargs, cls):
    w, d = ten
    consume(d, "svc", 7)
    with pytest.raises(cls):
        Queue.reset_reader(d, "svc", **kwargs)
    assert seqs(d, "svc") == [7, 8, 9]


def test_reset_and_delete_need_a_valid_name_and_an_existing_queue(tmp_path, ten):
    w, d = ten
    with pytest.raises(ca.InvalidArgumentError, match="anonymous"):
        Queue.reset_reader(d, None)
    with pytest.raises(ca.InvalidArgumentError, match="invalid"):
        Queue.delete_reader(d, "../x")
    with pytest.raises(ca.QueueNotFoundError):
        Queue.reset_reader(tmp_path / "nope", "svc")
    with pytest.raises(ca.QueueNotFoundError):
        Queue.delete_reader(tmp_path / "nope", "svc")


HOLD = """
import sys
from chronicle_async import Queue
r = Queue.open_subscriber(sys.argv[1], "svc")
print("open", flush=True)
sys.stdin.read()
"""


def test_reset_and_delete_refuse_while_another_process_reads_as_that_name(ten):
    w, d = ten
    consume(d, "svc", 7)
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(d)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "open"
        with pytest.raises(ca.ReaderLockedError, match=f"pid {p.pid}") as ei:
            Queue.reset_reader(d, "svc", "earliest")
        assert ei.value.pid == p.pid
        with pytest.raises(ca.ReaderLockedError, match=f"pid {p.pid}"):
            Queue.delete_reader(d, "svc")
    finally:
        p.stdin.close()
        p.wait(30)
    assert seqs(d, "svc") == [7, 8, 9], "the refused reset moved nothing"
