"""Mistakes that used to pass silently or blame the wrong thing now raise a typed error that
names the culprit (the value, the item and its index, the process) and says what to do."""
from __future__ import annotations

import os

import numpy as np
import pytest

import chronicle_async as ca
from chronicle_async import Queue, WriterConfig

TINY = WriterConfig(segment_size=16 * 1024)


@pytest.fixture
def q(queue_dir):
    with Queue.open_publisher(queue_dir, TINY) as w:
        for i in range(3):
            w.append(1, b"m%d" % i)
    return queue_dir


@pytest.mark.parametrize("seq", [-1, -(2**40), np.int64(-3)])
def test_seek_to_a_negative_seq_is_an_invalid_argument_naming_it_and_keeps_the_position(q, seq):
    with Queue.open_subscriber(q) as r:
        assert r.next().seq == 0
        with pytest.raises(ca.InvalidArgumentError) as ei:
            r.seek(seq)
        assert isinstance(ei.value, ValueError)
        assert f"seq {int(seq)} is negative" in str(ei.value) and "pass 0" in str(ei.value)
        assert r.next().seq == 1, "the position is kept"
        assert r.seek(0) and r.next().seq == 0  # seq 0 is still a valid target


def test_opening_one_reader_name_twice_in_one_process_says_it_is_this_process(q):
    with Queue.open_subscriber(q, "risk") as first:
        with pytest.raises(ca.ReaderLockedError) as ei:
            Queue.open_subscriber(q, "risk")
        msg = str(ei.value)
        assert "already open in this process" in msg and "another process" not in msg
        assert "'risk'" in msg and str(q) in msg
        assert "close the other QueueReader first" in msg and "use another name" in msg
        assert ei.value.pid == os.getpid()
        assert first.next().seq == 0, "the first reader is unaffected"
    with Queue.open_subscriber(q, "risk") as again:  # free once the first one is closed
        assert again.next().seq == 0


@pytest.mark.parametrize(
    "items, index, cls, words",
    [
        pytest.param(["a", "b"], 0, ca.ArgumentTypeError, ("item 0 is a str", "encode"), id="str"),
        pytest.param([b"a", "b"], 1, ca.ArgumentTypeError, ("item 1 is a str", "encode"), id="str-second"),
        pytest.param([b"a", b"b", 7], 2, ca.ArgumentTypeError, ("item 2", "not int"), id="int"),
        pytest.param([b"a", np.zeros((4, 4), np.uint8)[:, 1]], 1, ca.InvalidArgumentError,
                     ("item 1", "C-contiguous"), id="strided-array"),
    ],
)
def test_append_batch_names_the_index_and_type_of_a_bad_item_and_appends_nothing(queue_dir, items, index, cls, words):
    with Queue.open_publisher(queue_dir, TINY) as w:
        with pytest.raises(cls) as ei:
            w.append_batch(0, items)
        msg = str(ei.value)
        assert msg.startswith(f"append_batch: item {index}"), msg
        for word in words:
            assert word in msg, msg
        assert "list" not in msg, "the items are wrong, not the list"
        assert w.next_seq == 0, "nothing was appended"
        assert w.append_batch(0, [b"a", bytearray(b"b"), memoryview(b"c")]) == 0  # the writer is still usable


def test_append_batch_of_something_that_is_not_a_sequence_still_names_the_container(queue_dir):
    with Queue.open_publisher(queue_dir, TINY) as w:
        with pytest.raises(ca.ArgumentTypeError) as ei:
            w.append_batch(0, 42)
        assert "payloads must be an array or a sequence of bytes-like, not int" in str(ei.value)
        assert w.append_batch(0, (p for p in (b"x", b"y"))) == 0  # any iterable of bytes-like works
