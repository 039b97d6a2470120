"""The lock-free single-producer single-consumer ring: its Python face (``SpscRing``), its
header layout, its shared-file form, and its kernels called from user ``@numba.njit`` code.

Cross-thread and cross-process traffic is in ``tests/stress/test_ring_stress.py``.
"""
from __future__ import annotations

import collections
import itertools
import os
import pathlib
import struct
import time

import numba
import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from chronicle_async._errors import (
    ArgumentTypeError,
    ChronicleError,
    CorruptQueueError,
    InvalidArgumentError,
    QueueClosedError,
    UnsupportedVersionError,
)
from chronicle_async.queue.ring import SpscRing
from chronicle_async.hot import layout as L
from chronicle_async.hot import ring as RG
from chronicle_async.hot.atomics import (
    address_of,
    load_plain_i64_at,
    store_plain_i64_at,
)

LINE = 128  # the "cache line pair" the layout separates the two sides by


# -- helpers -----------------------------------------------------------------------------------


def word(ring: SpscRing, offset: int) -> int:
    """One i64 of the ring header, read from Python."""
    return struct.unpack_from("<q", ring.buffer, offset)[0]


def msg(i: int, size: int) -> bytes:
    """``size`` bytes that depend on ``i`` (so a reordering or a stale slot shows)."""
    return bytes((i * 31 + j * 7 + 1) % 256 for j in range(size))


def padded(data: bytes, slot_size: int) -> bytes:
    return data + bytes(slot_size - len(data))


def drain(ring: SpscRing) -> list[bytes]:
    out = []
    while (m := ring.try_pop()) is not None:
        out.append(m)
    return out


@pytest.fixture
def ring():
    with SpscRing(capacity=4, slot_size=16) as r:
        yield r


# -- FIFO order, full and empty ----------------------------------------------------------------


def test_pops_return_pushed_messages_in_fifo_order(ring):
    sent = [msg(i, 1 + i * 3) for i in range(4)]
    for m in sent:
        assert ring.try_push(m) is True
    assert [ring.try_pop() for _ in sent] == [padded(m, 16) for m in sent]


def test_push_reports_full_instead_of_blocking(ring):
    for i in range(4):
        assert ring.try_push(msg(i, 16))
    t0 = time.monotonic()
    results = [ring.try_push(b"overflow") for _ in range(1000)]
    assert time.monotonic() - t0 < 2.0, "pushing to a full ring should return at once"
    assert results == [False] * 1000
    assert len(ring) == 4
    assert drain(ring) == [msg(i, 16) for i in range(4)], "a refused push must not overwrite a slot"


def test_pop_reports_empty_with_none_instead_of_blocking(ring):
    t0 = time.monotonic()
    assert [ring.try_pop() for _ in range(1000)] == [None] * 1000
    assert time.monotonic() - t0 < 2.0
    assert len(ring) == 0


def test_try_pop_into_reports_empty_with_false_and_leaves_the_array_alone(ring):
    out = np.full(16, 0xAB, np.uint8)
    assert ring.try_pop_into(out) is False
    assert (out == 0xAB).all()


def test_a_pop_frees_exactly_one_slot_for_the_next_push(ring):
    for i in range(4):
        ring.try_push(msg(i, 8))
    assert not ring.try_push(b"x")
    assert ring.try_pop() == padded(msg(0, 8), 16)
    assert ring.try_push(msg(4, 8))
    assert not ring.try_push(b"y")
    assert drain(ring) == [padded(msg(i, 8), 16) for i in range(1, 5)]


def test_len_counts_slots_in_use(ring):
    assert len(ring) == 0
    for i in range(4):
        ring.try_push(b"a")
        assert len(ring) == i + 1
    ring.try_push(b"refused")
    assert len(ring) == 4
    for i in range(4):
        ring.try_pop()
        assert len(ring) == 3 - i


def test_a_ring_of_capacity_one_holds_exactly_one_message():
    with SpscRing(1, 8) as r:
        assert r.try_push(b"first")
        assert not r.try_push(b"second")
        assert r.try_pop() == padded(b"first", 8)
        assert r.try_pop() is None
        assert r.try_push(b"second")
        assert r.try_pop() == padded(b"second", 8)


def test_a_popped_slot_is_zero_padded_even_where_an_older_message_was_longer():
    with SpscRing(1, 16) as r:  # capacity 1: every message reuses the same slot
        r.try_push(b"\xff" * 16)
        assert r.try_pop() == b"\xff" * 16
        r.try_push(b"ab")
        assert r.try_pop() == b"ab" + bytes(14)
        r.try_push(b"")
        assert r.try_pop() == bytes(16)


def test_push_accepts_any_bytes_like_up_to_one_slot(ring):
    sources = [
        b"bytes",
        bytearray(b"bytearray"),
        memoryview(b"memoryview"),
        np.frombuffer(b"uint8 array", np.uint8),
        np.array([1, 2], dtype=np.int64),  # its 16 bytes
        b"",
    ]
    expected = [padded(b"bytes", 16), padded(b"bytearray", 16), padded(b"memoryview", 16),
                padded(b"uint8 array", 16), np.array([1, 2], np.int64).tobytes(), bytes(16)]
    for s, e in zip(sources, expected):
        assert ring.try_push(s)
        assert ring.try_pop() == e


def test_push_without_wake_delivers_the_same_message(ring):
    assert ring.try_push(b"quiet", wake=False)
    assert ring.try_pop() == padded(b"quiet", 16)


def test_try_pop_into_fills_only_the_first_bytes_of_a_short_array(ring):
    ring.try_push(msg(1, 16))
    out = np.full(5, 0xEE, np.uint8)
    assert ring.try_pop_into(out) is True
    assert out.tobytes() == msg(1, 16)[:5]
    assert ring.try_pop() is None, "the whole slot is consumed even when only part is copied out"


def test_try_pop_into_copies_at_most_one_slot_into_a_long_array(ring):
    ring.try_push(msg(2, 10))
    out = np.full(40, 0xEE, np.uint8)
    assert ring.try_pop_into(out)
    assert out[:16].tobytes() == padded(msg(2, 10), 16)
    assert (out[16:] == 0xEE).all()


def test_capacity_and_slot_size_report_the_shape(ring):
    assert (ring.capacity, ring.slot_size, ring.dropped, ring.path) == (4, 16, 0, None)
    assert "capacity=4" in repr(ring) and "slot_size=16" in repr(ring)


# -- wrap-around -------------------------------------------------------------------------------


@pytest.mark.parametrize("capacity", [1, 2, 4, 8])
def test_messages_survive_wrapping_around_the_ring_thousands_of_times(capacity):
    total = 1000 * capacity + capacity // 2 + 1  # a thousand laps and a bit: not a multiple of capacity
    with SpscRing(capacity, 24) as r:
        sent = popped = 0
        step = 0
        while popped < total:
            # push a varying number (1..capacity), then pop a varying number: the ring goes
            # through every fill level and every slot index, many times over
            for _ in range(1 + step % capacity):
                if sent < total and r.try_push(msg(sent, sent % 25)):
                    sent += 1
            for _ in range(1 + (step * 7) % capacity):
                m = r.try_pop()
                if m is None:
                    break
                assert m == padded(msg(popped, popped % 25), 24), f"message {popped} garbled or out of order"
                popped += 1
            step += 1
        assert r.try_pop() is None
        # head and tail count every slot ever used: they never wrap, only the slot index does
        assert word(r, L.RING_TAIL_OFFSET) == total
        assert word(r, L.RING_HEAD_OFFSET) == total
        assert total // capacity >= 1000


# -- layout ------------------------------------------------------------------------------------


def test_head_and_tail_live_on_separate_128_byte_lines():
    assert L.CACHE_LINE_PAIR == LINE
    assert L.RING_HEAD_OFFSET % LINE == 0 and L.RING_TAIL_OFFSET % LINE == 0
    assert L.RING_HEAD_OFFSET // LINE != L.RING_TAIL_OFFSET // LINE


def test_each_sides_private_words_share_a_line_only_with_that_side():
    def line(off: int) -> int:
        return off // LINE

    consumer = {line(L.RING_HEAD_OFFSET), line(L.RING_TAIL_CACHE_OFFSET)}
    producer = {line(L.RING_TAIL_OFFSET), line(L.RING_HEAD_CACHE_OFFSET), line(L.RING_DROPPED_OFFSET)}
    doorbell = {line(L.RING_DOORBELL_OFFSET), line(L.RING_PARKED_OFFSET)}
    identity = {line(L.RING_MAGIC_OFFSET), line(L.RING_VERSION_OFFSET), line(L.RING_CAPACITY_OFFSET),
                line(L.RING_SLOT_SIZE_OFFSET + 7)}
    for group in (consumer, producer, doorbell, identity):
        assert len(group) == 1, "a side's words must sit on one line"
    lines = [consumer, producer, doorbell, identity]
    assert len(set().union(*lines)) == 4, "the identity, consumer, producer and doorbell lines must differ"
    assert line(L.RING_SLOTS_OFFSET - 1) < line(L.RING_SLOTS_OFFSET), "slots must not share the header's last line"


def test_header_words_are_naturally_aligned_and_do_not_overlap():
    words = {
        "magic": (L.RING_MAGIC_OFFSET, 4), "version": (L.RING_VERSION_OFFSET, 4),
        "capacity": (L.RING_CAPACITY_OFFSET, 8), "slot_size": (L.RING_SLOT_SIZE_OFFSET, 8),
        "head": (L.RING_HEAD_OFFSET, 8), "tail_cache": (L.RING_TAIL_CACHE_OFFSET, 8),
        "tail": (L.RING_TAIL_OFFSET, 8), "head_cache": (L.RING_HEAD_CACHE_OFFSET, 8),
        "dropped": (L.RING_DROPPED_OFFSET, 8), "doorbell": (L.RING_DOORBELL_OFFSET, 4),
        "parked": (L.RING_PARKED_OFFSET, 4),
    }
    spans = sorted((off, off + n, name) for name, (off, n) in words.items())
    for off, end, name in spans:
        assert off % (end - off) == 0, f"{name} is not naturally aligned"
        assert end <= L.RING_SLOTS_OFFSET
    for (_, end, a), (start, _, b) in itertools.pairwise(spans):
        assert end <= start, f"{a} overlaps {b}"


def test_the_header_is_512_bytes_and_slots_follow_it():
    assert L.RING_SLOTS_OFFSET == 512
    assert L.ring_length(1, 8) == 512 + 8
    assert L.ring_length(1024, 64) == 512 + 1024 * 64
    assert L.RING_SLOT_ALIGNMENT == 8


def test_ring_memory_starts_on_a_line_boundary_so_the_lines_are_real(tmp_path):
    with SpscRing(8, 8) as a, SpscRing.create(tmp_path / "r", 8, 8) as b:
        for r in (a, b):
            assert r.buffer.ctypes.data % LINE == 0
            assert r.buffer.shape[0] == L.ring_length(8, 8)


def test_push_advances_the_tail_word_and_pop_advances_the_head_word(ring):
    assert (word(ring, L.RING_HEAD_OFFSET), word(ring, L.RING_TAIL_OFFSET)) == (0, 0)
    ring.try_push(b"one")
    ring.try_push(b"two")
    assert (word(ring, L.RING_HEAD_OFFSET), word(ring, L.RING_TAIL_OFFSET)) == (0, 2)
    ring.try_pop()
    assert (word(ring, L.RING_HEAD_OFFSET), word(ring, L.RING_TAIL_OFFSET)) == (1, 2)
    # and the identity line says what the ring is
    magic, version, cap, slot = struct.unpack_from("<IIqq", ring.buffer, L.RING_MAGIC_OFFSET)
    assert (magic, version, cap, slot) == (L.RING_MAGIC, L.RING_VERSION, 4, 16)


def test_slot_i_lives_at_header_plus_i_times_slot_size(ring):
    for i in range(4):
        ring.try_push(msg(i, 16))
    for i in range(4):
        start = L.RING_SLOTS_OFFSET + i * 16
        assert ring.buffer[start:start + 16].tobytes() == msg(i, 16)


# -- bad arguments -----------------------------------------------------------------------------


@pytest.mark.parametrize("capacity", [0, -1, 3, 6, 1000, L.RING_MAX_CAPACITY * 2])
def test_a_capacity_that_is_not_a_power_of_two_in_range_is_an_invalid_argument(capacity):
    with pytest.raises(InvalidArgumentError, match=rf"capacity must be a power of two.*got {capacity}$") as e:
        SpscRing(capacity, 8)
    assert isinstance(e.value, ValueError) and isinstance(e.value, ChronicleError)


@pytest.mark.parametrize("slot_size", [0, -8, 4, 12, 65, L.RING_MAX_SLOT_SIZE + 8])
def test_a_slot_size_that_is_not_a_multiple_of_8_in_range_is_an_invalid_argument(slot_size):
    with pytest.raises(InvalidArgumentError, match=rf"slot_size must be a multiple of 8.*got {slot_size}$"):
        SpscRing(4, slot_size)


@pytest.mark.parametrize("capacity, slot_size, name, typename", [
    (4.0, 8, "capacity", "float"), ("4", 8, "capacity", "str"), (True, 8, "capacity", "bool"),
    (None, 8, "capacity", "NoneType"), (4, 8.0, "slot_size", "float"), (4, False, "slot_size", "bool"),
])
def test_a_non_integer_shape_is_an_argument_type_error_naming_the_argument(capacity, slot_size, name, typename):
    with pytest.raises(ArgumentTypeError, match=f"{name} must be an int, got {typename}") as e:
        SpscRing(capacity, slot_size)
    assert isinstance(e.value, TypeError)


def test_the_largest_and_smallest_legal_shapes_are_accepted():
    with SpscRing(1, 8) as r:
        assert (r.capacity, r.slot_size) == (1, 8)
    with SpscRing(2, L.RING_MAX_SLOT_SIZE) as r:
        assert r.try_push(b"x" * L.RING_MAX_SLOT_SIZE)
        assert r.try_pop() == b"x" * L.RING_MAX_SLOT_SIZE
    with SpscRing(np.int64(4), np.int32(8)) as r:  # numpy integers are ints
        assert (r.capacity, r.slot_size) == (4, 8)


def test_pushing_more_than_a_slot_is_an_invalid_argument_and_changes_nothing(ring):
    with pytest.raises(InvalidArgumentError, match="17 bytes do not fit a slot of 16 bytes"):
        ring.try_push(b"x" * 17)
    assert len(ring) == 0 and ring.try_pop() is None


@pytest.mark.parametrize("data", ["text", 12, None, [1, 2, 3]])
def test_pushing_something_that_is_not_bytes_like_is_an_argument_type_error(ring, data):
    with pytest.raises(ArgumentTypeError, match=f"try_push takes bytes-like data, not {type(data).__name__}"):
        ring.try_push(data)
    assert len(ring) == 0


def test_pushing_a_non_contiguous_buffer_is_an_invalid_argument(ring):
    with pytest.raises(InvalidArgumentError, match="C-contiguous"):
        ring.try_push(memoryview(b"abcdefgh")[::2])


@pytest.mark.parametrize("out", [
    np.zeros(8, np.int8), np.zeros((2, 8), np.uint8), np.zeros(1, np.int64), bytearray(8), [0] * 8,
])
def test_try_pop_into_rejects_anything_but_a_writable_1d_uint8_array(ring, out):
    ring.try_push(b"keep me")
    with pytest.raises(ArgumentTypeError, match=r"writable 1-d numpy uint8 array"):
        ring.try_pop_into(out)
    assert len(ring) == 1, "a rejected pop must not consume the message"


def test_try_pop_into_rejects_a_read_only_array(ring):
    out = np.zeros(8, np.uint8)
    out.flags.writeable = False
    ring.try_push(b"keep me")
    with pytest.raises(ArgumentTypeError):
        ring.try_pop_into(out)
    assert len(ring) == 1


def test_try_pop_into_a_strided_view_fills_the_view_or_refuses(ring):
    ring.try_push(b"12345678")
    base = np.zeros(16, np.uint8)
    view = base[::2]
    try:
        ok = ring.try_pop_into(view)
    except (ArgumentTypeError, InvalidArgumentError):
        assert len(ring) == 1, "a refused pop must not consume the message"
        return
    assert ok and view.tobytes() == b"12345678"


def test_push_after_close_raises_queue_closed(ring):
    ring.close()
    with pytest.raises(QueueClosedError, match="closed"):
        ring.try_push(b"x")
    with pytest.raises(QueueClosedError):
        ring.buffer  # noqa: B018


def test_close_is_idempotent_and_repr_says_closed():
    r = SpscRing(2, 8)
    r.close()
    r.close()
    assert "closed" in repr(r)


def test_the_context_manager_closes_the_ring():
    with SpscRing(2, 8) as r:
        r.try_push(b"x")
    with pytest.raises(QueueClosedError):
        r.try_push(b"y")


@pytest.mark.parametrize("op", ["try_pop", "try_pop_into", "len", "dropped"])
def test_consumer_side_calls_after_close_raise_queue_closed(op):
    r = SpscRing(2, 8)
    r.try_push(b"x")
    r.close()
    with pytest.raises(QueueClosedError):
        {"try_pop": lambda: r.try_pop(), "try_pop_into": lambda: r.try_pop_into(np.zeros(8, np.uint8)),
         "len": lambda: len(r), "dropped": lambda: r.dropped}[op]()


# -- shared file: create / open ----------------------------------------------------------------


def test_create_and_open_map_one_ring_that_both_see(tmp_path):
    path = tmp_path / "ring"
    with SpscRing.create(path, 8, 32) as producer, SpscRing.open(path) as consumer:
        assert (consumer.capacity, consumer.slot_size) == (8, 32), "open reads the shape from the file"
        assert producer.path == consumer.path == str(path)
        assert os.path.getsize(path) == L.ring_length(8, 32)
        for i in range(8):
            assert producer.try_push(msg(i, 20))
        assert not producer.try_push(b"full")
        assert len(consumer) == 8
        assert consumer.try_pop() == padded(msg(0, 20), 32)
        assert producer.try_push(msg(8, 20)), "the consumer's pop must free a slot the producer sees"
        assert drain(consumer) == [padded(msg(i, 20), 32) for i in range(1, 9)]
        assert len(producer) == 0


def test_a_ring_file_keeps_its_messages_after_every_mapping_closes(tmp_path):
    path = str(tmp_path / "ring")
    with SpscRing.create(path, 4, 8) as r:
        r.try_push(b"kept")
    with SpscRing.open(pathlib.Path(path)) as r:
        assert len(r) == 1
        assert r.try_pop() == padded(b"kept", 8)


def test_create_refuses_an_existing_file_and_leaves_it_alone(tmp_path):
    path = tmp_path / "ring"
    path.write_bytes(b"precious")
    with pytest.raises(InvalidArgumentError, match=rf"ring file {path} already exists"):
        SpscRing.create(path, 4, 8)
    assert path.read_bytes() == b"precious"


def test_create_with_a_bad_shape_raises_before_making_a_file(tmp_path):
    path = tmp_path / "ring"
    with pytest.raises(InvalidArgumentError, match="capacity"):
        SpscRing.create(path, 3, 8)
    with pytest.raises(ArgumentTypeError, match="slot_size"):
        SpscRing.create(path, 4, "8")
    assert not path.exists()


def test_create_and_open_reject_a_path_that_is_not_a_path(tmp_path):
    with pytest.raises(ArgumentTypeError):
        SpscRing.create(12, 4, 8)
    with pytest.raises(ArgumentTypeError):
        SpscRing.open(None)


def test_opening_a_missing_file_raises_file_not_found_naming_it(tmp_path):
    path = tmp_path / "absent"
    with pytest.raises(FileNotFoundError, match="absent"):
        SpscRing.open(path)


def _with_identity(magic=L.RING_MAGIC, version=L.RING_VERSION, capacity=4, slot_size=8, length=None) -> bytes:
    """A would-be ring file: an identity line (valid unless told otherwise), zeros after it."""
    b = bytearray(length if length is not None else L.ring_length(4, 8))
    struct.pack_into("<IIqq", b, 0, magic, version, capacity, slot_size)
    return bytes(b)


CORRUPT_FILES = {
    "empty": b"",
    "shorter than a header": b"\x00" * 100,
    "one byte short of a header": _with_identity(length=L.RING_SLOTS_OFFSET - 1),
    "all zeros": bytes(L.ring_length(4, 8)),
    "wrong magic": _with_identity(magic=0x12345678),
    "capacity not a power of two": _with_identity(capacity=3),
    "capacity zero": _with_identity(capacity=0),
    "slot size not a multiple of 8": _with_identity(slot_size=12),
    "negative slot size": _with_identity(slot_size=-8),
    "slots cut short": _with_identity(length=L.ring_length(4, 8) - 1),
    "header only": _with_identity(length=L.RING_SLOTS_OFFSET),
    "random junk": bytes((i * 131 + 7) % 256 for i in range(4096)),
}


@pytest.mark.parametrize("content", CORRUPT_FILES.values(), ids=CORRUPT_FILES.keys())
def test_opening_a_corrupt_or_short_file_raises_corrupt_queue_error_naming_the_path(tmp_path, content):
    path = tmp_path / "bad-ring"
    path.write_bytes(content)
    with pytest.raises(CorruptQueueError) as e:
        SpscRing.open(path)
    assert str(path) in str(e.value)
    assert "SpscRing.create" in str(e.value), "the message should say what to do"
    assert path.read_bytes() == content, "open must not repair or touch a bad file"


def test_opening_a_ring_of_another_format_version_raises_naming_the_path(tmp_path):
    path = tmp_path / "future-ring"
    path.write_bytes(_with_identity(version=L.RING_VERSION + 1))
    with pytest.raises((CorruptQueueError, UnsupportedVersionError)) as e:
        SpscRing.open(path)
    assert str(path) in str(e.value)


def test_a_file_longer_than_its_ring_still_opens(tmp_path):
    path = tmp_path / "ring"
    path.write_bytes(_with_identity(length=L.ring_length(4, 8) + 4096))
    with SpscRing.open(path) as r:
        assert (r.capacity, r.slot_size) == (4, 8)
        assert r.try_push(b"ok") and r.try_pop() == padded(b"ok", 8)


# -- model-based: the ring against a bounded deque ---------------------------------------------


class RingAgainstBoundedDeque(RuleBasedStateMachine):
    """Random push / pop / pop_into sequences; the model is a deque bounded by ``capacity``."""

    def __init__(self):
        super().__init__()
        self.ring: SpscRing | None = None
        self.model: collections.deque[bytes] = collections.deque(maxlen=None)
        self.pushed = 0

    @initialize(capacity=st.sampled_from([1, 2, 4, 8]), slot_size=st.sampled_from([8, 16, 24, 64]))
    def make(self, capacity, slot_size):
        self.ring = SpscRing(capacity, slot_size)
        self.capacity, self.slot_size = capacity, slot_size

    @rule(data=st.data(), wake=st.booleans())
    def push(self, data, wake):
        payload = data.draw(st.binary(max_size=self.slot_size), label="payload")
        ok = self.ring.try_push(payload, wake=wake)
        assert ok == (len(self.model) < self.capacity), "push must refuse exactly when the ring is full"
        if ok:
            self.model.append(payload)

    @rule(n=st.integers(1, 3))
    def push_distinct(self, n):
        for _ in range(n):
            payload = msg(self.pushed, self.pushed % (self.slot_size + 1))
            self.pushed += 1
            ok = self.ring.try_push(payload)
            assert ok == (len(self.model) < self.capacity)
            if ok:
                self.model.append(payload)

    @rule(extra=st.integers(1, 8))
    def push_oversized(self, extra):
        with pytest.raises(InvalidArgumentError):
            self.ring.try_push(bytes(self.slot_size + extra))

    @rule()
    def pop(self):
        got = self.ring.try_pop()
        if not self.model:
            assert got is None
        else:
            assert got == padded(self.model.popleft(), self.slot_size)

    @rule(length=st.integers(0, 80))
    def pop_into(self, length):
        out = np.full(length, 0xA5, np.uint8)
        ok = self.ring.try_pop_into(out)
        assert ok == bool(self.model)
        if ok:
            want = padded(self.model.popleft(), self.slot_size)
            n = min(length, self.slot_size)
            assert out[:n].tobytes() == want[:n]
            assert (out[n:] == 0xA5).all()
        else:
            assert (out == 0xA5).all()

    @precondition(lambda self: self.ring is not None)
    @invariant()
    def size_matches(self):
        assert len(self.ring) == len(self.model)
        assert 0 <= len(self.ring) <= self.capacity
        assert self.ring.dropped == 0

    def teardown(self):
        if self.ring is not None:
            self.ring.close()


TestRingBehavesLikeABoundedDeque = RingAgainstBoundedDeque.TestCase
TestRingBehavesLikeABoundedDeque.settings = settings(
    max_examples=150, stateful_step_count=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


# -- the kernels from user @numba.njit code ----------------------------------------------------


@numba.njit
def _push_sequence(ring, values, slot_bytes):
    """Push ``values`` as little-endian i64s in ``slot_bytes``-byte messages with the array form."""
    src = np.zeros(slot_bytes, np.uint8)
    pushed = 0
    for v in values:
        store_plain_i64_at(address_of(src, 0), v)
        if not RG.try_push(ring, src):
            break
        pushed += 1
    return pushed


@numba.njit
def _pop_all(ring, out):
    """Pop with the array form until empty; the first i64 of each message into ``out``."""
    dst = np.zeros(8, np.uint8)
    n = 0
    while n < out.shape[0] and RG.try_pop(ring, dst):
        out[n] = load_plain_i64_at(address_of(dst, 0))
        n += 1
    return n


@numba.njit
def _push_or_drop_many(ring, count):
    """``push_or_drop_at`` ``count`` i64 messages 0..count-1; how many went in."""
    r = address_of(ring, 0)
    src = np.zeros(8, np.uint8)
    accepted = 0
    for i in range(count):
        store_plain_i64_at(address_of(src, 0), i)
        if RG.push_or_drop_at(r, address_of(src, 0), 8):
            accepted += 1
    return accepted


@numba.njit
def _claim_publish(ring, values):
    """The zero-copy producer API: claim a slot, write it in place, publish."""
    r = address_of(ring, 0)
    n = 0
    for v in values:
        slot = RG.claim_at(r)
        if slot == 0:
            break
        store_plain_i64_at(slot, v)
        RG.publish_at(r)
        n += 1
    return n


@numba.njit
def _peek_consume(ring, out):
    """The zero-copy consumer API: peek the oldest slot, read it in place, consume."""
    r = address_of(ring, 0)
    n = 0
    while n < out.shape[0]:
        slot = RG.peek_at(r)
        if slot == 0:
            break
        out[n] = load_plain_i64_at(slot)
        RG.consume_at(r)
        n += 1
    return n


def test_user_njit_code_pushes_and_pops_with_the_array_forms():
    with SpscRing(8, 16) as r:
        values = np.arange(100, 112, dtype=np.int64)
        assert _push_sequence(r.buffer, values, 16) == 8, "the array try_push must report full (False)"
        out = np.zeros(20, np.int64)
        assert _pop_all(r.buffer, out) == 8, "the array try_pop must report empty (False)"
        assert out[:8].tolist() == list(range(100, 108))
        assert len(r) == 0


def test_python_and_jitted_sides_interoperate_on_one_ring():
    with SpscRing(4, 8) as r:
        assert _push_sequence(r.buffer, np.array([7, 8], np.int64), 8) == 2
        assert r.try_pop() == struct.pack("<q", 7)
        r.try_push(struct.pack("<q", 9))
        out = np.zeros(4, np.int64)
        assert _pop_all(r.buffer, out) == 2
        assert out[:2].tolist() == [8, 9]


def test_push_or_drop_counts_a_drop_for_every_push_to_a_full_ring():
    with SpscRing(4, 8) as r:
        assert _push_or_drop_many(r.buffer, 10) == 4
        assert r.dropped == 6
        assert word(r, L.RING_DROPPED_OFFSET) == 6
        assert len(r) == 4
        assert drain(r) == [struct.pack("<q", i) for i in range(4)], "drops must not overwrite queued messages"
        assert _push_or_drop_many(r.buffer, 3) == 3
        assert r.dropped == 6, "pushes that fit are not drops"
        assert _push_or_drop_many(r.buffer, 5) == 1
        assert r.dropped == 10


def test_claim_publish_and_peek_consume_move_messages_without_copies():
    with SpscRing(4, 8) as r:
        assert _claim_publish(r.buffer, np.arange(1, 7, dtype=np.int64)) == 4
        out = np.zeros(8, np.int64)
        assert _peek_consume(r.buffer, out) == 4
        assert out[:4].tolist() == [1, 2, 3, 4]
        for lap in range(50):  # round the ring many times through the zero-copy API
            vals = np.arange(lap * 3, lap * 3 + 3, dtype=np.int64)
            assert _claim_publish(r.buffer, vals) == 3
            assert _peek_consume(r.buffer, out) == 3
            assert out[:3].tolist() == vals.tolist()


def test_jitted_try_push_leaves_the_rest_of_the_slot_as_it_was():
    # documented: the array form copies len(src) bytes; only the Python face zero-fills
    with SpscRing(1, 16) as r:
        r.try_push(b"\xff" * 16)
        r.try_pop()
        assert _push_sequence(r.buffer, np.array([0x0102], np.int64), 8) == 1
        assert r.try_pop() == struct.pack("<q", 0x0102) + b"\xff" * 8
