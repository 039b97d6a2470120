"""More wrong arguments, each a typed error naming the argument and the fix, with nothing written.

The Python face: append and append_batch refuse what they cannot persist meaningfully (object
pointers, a batch with one too large message) before writing a byte; seeks and paths out of
any range a queue can hold; one reader handed to two hot loops.
"""
from __future__ import annotations

import numba
import numpy as np
import pytest

import chronicle_async as ca
from chronicle_async import HotLoop, Queue, WriterConfig

TINY = WriterConfig(segment_size=16 * 1024)


# -- append / append_batch ----------------------------------------------------------------------


@pytest.mark.parametrize("payload", [
    np.array([object()]),
    np.array([(1, None)], dtype=[("a", "i8"), ("b", "O")]),
], ids=["object-array", "struct-with-object-field"])
def test_append_refuses_an_array_of_python_objects_and_writes_nothing(queue_dir, payload):
    with Queue.open_publisher(queue_dir, TINY) as w:
        with pytest.raises(ca.ArgumentTypeError, match="Python objects"):
            w.append(1, payload)
        assert w.next_seq == 0


def test_append_batch_refuses_a_2d_array_of_python_objects(queue_dir):
    with Queue.open_publisher(queue_dir, TINY) as w:
        with pytest.raises(ca.ArgumentTypeError, match="Python objects"):
            w.append_batch(0, np.array([[object()], [object()]]))
        with pytest.raises(ca.ArgumentTypeError, match="item 1"):
            w.append_batch(0, [b"a", np.array([object()])])
        assert w.next_seq == 0


def test_append_still_takes_plain_numeric_and_structured_arrays(queue_dir):
    with Queue.open_publisher(queue_dir, TINY) as w:
        assert w.append(1, np.arange(4, dtype=np.float64)) == 0
        assert w.append(1, np.zeros(2, dtype=[("px", "f8"), ("qty", "i4")])) == 1


def test_a_batch_with_a_too_large_message_in_the_middle_appends_nothing(queue_dir):
    with Queue.open_publisher(queue_dir, TINY) as w, Queue.open_subscriber(queue_dir) as r:
        with pytest.raises(ca.PayloadTooLargeError) as ei:
            w.append_batch(0, [b"a", b"x" * (w.max_payload + 1), b"c"])
        assert ei.value.appended == 0
        assert "message 1" in str(ei.value) and "nothing of the batch was appended" in str(ei.value)
        assert r.next() is None and w.next_seq == 0


def test_a_bad_type_id_in_a_batch_appends_nothing(queue_dir):
    with Queue.open_publisher(queue_dir, TINY) as w:
        with pytest.raises(ca.InvalidArgumentError, match="nothing was appended"):
            w.append_batch([1, -1], [b"a", b"b"])
        assert w.next_seq == 0


# -- seeks out of range -------------------------------------------------------------------------


@pytest.mark.parametrize("seq", [2**63, 2**64, np.uint64(2**63)])
def test_seek_past_64_bits_is_an_invalid_argument_and_the_position_is_kept(queue_dir, seq):
    with Queue.open_publisher(queue_dir, TINY) as w, Queue.open_subscriber(queue_dir, start="earliest") as r:
        w.append(0, b"a")
        with pytest.raises(ca.InvalidArgumentError, match="64 bits"):
            r.seek(seq)
        assert r.next().seq == 0


@pytest.mark.parametrize("ts", [2**63, 2**64, -(2**63) - 1])
def test_seek_timestamp_past_64_bits_is_an_invalid_argument(queue_dir, ts):
    with Queue.open_publisher(queue_dir, TINY) as w, Queue.open_subscriber(queue_dir, start="earliest") as r:
        w.append(0, b"a")
        with pytest.raises(ca.InvalidArgumentError, match="64 bits"):
            r.seek_timestamp(ts)
        assert r.next().seq == 0


# -- paths --------------------------------------------------------------------------------------


@pytest.mark.parametrize("opener", ["publisher", "subscriber"])
def test_a_nul_in_a_path_is_an_invalid_argument_naming_it(tmp_path, opener):
    bad = str(tmp_path / "q\0x")
    with pytest.raises(ca.InvalidArgumentError, match="NUL"):
        if opener == "publisher":
            Queue.open_publisher(bad, TINY)
        else:
            Queue.open_subscriber(bad)


# -- hot loops ----------------------------------------------------------------------------------


@numba.njit(cache=False)
def _ignore(state, ctx, source, type_id, seq, timestamp_ns, payload):
    state[0] += 1
    return 0


def test_a_reader_owned_by_one_hot_loop_is_refused_by_another_and_both_close(queue_dir):
    with Queue.open_publisher(queue_dir, TINY) as w:
        w.append(0, b"a")
        r = Queue.open_subscriber(queue_dir, "svc", "earliest")
        a, b = HotLoop(_ignore, np.zeros(1, np.int64)), HotLoop(_ignore, np.zeros(1, np.int64))
        try:
            a.add_reader(r)
            with pytest.raises(ca.InvalidArgumentError, match="another HotLoop"):
                b.add_reader(r)
        finally:
            b.close()
            a.close()
        assert r.closed
