"""Model-based test: random sequences of queue operations against the pure-Python reference model."""
from __future__ import annotations

import os
import pathlib
import shutil
import sys
import tempfile

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

import chronicle_async as ca
from chronicle_async import Queue, WriterConfig

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
import reference as ref  # noqa: E402  (tests/reference.py)

TINY = WriterConfig(segment_size=16 * 1024)
READERS = ("a", "b", "anon")  # two named readers and one anonymous reader
START = {ref.COMMITTED: ca.Start.COMMITTED, ref.EARLIEST: ca.Start.EARLIEST, ref.LATEST: ca.Start.LATEST}


def make_payload(size: int, seed: int) -> bytes:
    return ((np.arange(size, dtype=np.int64) * 7 + seed) % 256).astype(np.uint8).tobytes()


def as_tuple(m) -> tuple | None:
    if m is None:
        return None
    return (m.seq, m.timestamp_ns, m.type_id, bytes(m.payload))


# -- the reference model on its own ------------------------------------------------------------


def test_reference_seqs_are_contiguous_and_batches_return_the_first():
    q = ref.ReferenceQueue()
    assert q.append(1, b"a", 10) == 0
    assert q.append_batch([2, 3], [b"b", b"c"], [11, 12]) == 1
    assert q.next_seq == 3
    assert [m.seq for m in q.messages] == [0, 1, 2]


def test_reference_named_reader_resumes_at_its_commit_and_redelivers_the_rest():
    q = ref.ReferenceQueue()
    for i in range(4):
        q.append(0, b"%d" % i, i)
    r = q.open_reader("n")
    assert r.next().seq == 0
    r.commit()
    assert r.next().seq == 1
    again = q.open_reader("n")
    assert [m.seq for m in again.drain()] == [1, 2, 3]
    assert q.open_reader("n", ref.LATEST).next().seq == 1, "a name that committed resumes, whatever its start"
    assert q.open_reader("n", ref.EARLIEST).next().seq == 1
    assert q.open_reader("new", ref.LATEST).next() is None


def test_reference_anonymous_reader_cannot_commit_and_starts_per_mode():
    q = ref.ReferenceQueue()
    q.append(0, b"x", 1)
    r = q.open_reader(None)
    with pytest.raises(ref.AnonymousCommit):
        r.commit()
    assert r.next().seq == 0
    assert q.open_reader(None, ref.LATEST).next() is None


def test_reference_seek_and_seek_timestamp():
    q = ref.ReferenceQueue()
    for i in range(5):
        q.append(0, b"", 100 + 10 * i)
    r = q.open_reader(None)
    assert r.seek(3) and r.next().seq == 3
    assert not r.seek(9) and r.next() is None
    with pytest.raises(ValueError):
        r.seek(-1)
    assert r.seek(0) and r.next().seq == 0
    assert r.seek_timestamp(115) and r.next().seq == 2
    assert r.seek_timestamp(0) and r.next().seq == 0
    assert not r.seek_timestamp(1000) and r.next() is None


# -- the state machine -------------------------------------------------------------------------

sizes = st.integers(min_value=0, max_value=3000)
readers = st.sampled_from(READERS)


class QueueMachine(RuleBasedStateMachine):
    """Random append / append_batch / next / commit / reopen / seek against the reference model,
    on a queue with 16 KiB segments so that rolls happen every few messages."""

    def __init__(self):
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="chronicle-model-")
        self.path = os.path.join(self.dir, "q")
        self.model = ref.ReferenceQueue()
        self.writer = Queue.open_publisher(self.path, TINY)
        assert self.writer.epoch == self.model.open_writer()
        self.clock = 1_000  # non-decreasing timestamps, with repeats (also across calls and segments)
        self.real: dict[str, ca.QueueReader] = {}
        self.refs: dict[str, ref.ReferenceReader] = {}
        for key in READERS:
            self._open_reader(key, ref.COMMITTED)

    def _name(self, key: str) -> str | None:
        return None if key == "anon" else key

    def _open_reader(self, key: str, start: str) -> None:
        self.real[key] = Queue.open_subscriber(self.path, self._name(key), START[start])
        self.refs[key] = self.model.open_reader(self._name(key), start)

    def _stamps(self, n: int) -> list[int]:
        # pairs share a timestamp, and an odd-sized call leaves its last timestamp for the next call
        out = [self.clock + 3 * (i // 2) for i in range(n)]
        self.clock += 3 * (n // 2)
        return out

    # -- writing --

    @rule(type_id=st.integers(0, 1000), size=sizes, seed=st.integers(0, 255))
    def append(self, type_id, size, seed):
        payload = make_payload(size, seed)
        ts = self._stamps(1)[0]
        assert self.writer.append(type_id, payload, ts) == self.model.append(type_id, payload, ts)

    @rule(
        batch=st.lists(st.tuples(sizes, st.integers(0, 255)), max_size=6),
        type_id=st.integers(0, 9),
        as_rows=st.booleans(),
    )
    def append_batch(self, batch, type_id, as_rows):
        if as_rows and batch:  # a 2-D array: every row the same size
            size = batch[0][0]
            payloads = [make_payload(size, seed) for _size, seed in batch]
            arg = np.frombuffer(b"".join(payloads), np.uint8).reshape(len(payloads), size)
        else:
            payloads = [make_payload(size, seed) for size, seed in batch]
            arg = payloads
        tids = [(type_id + i) % 10 for i in range(len(payloads))]
        stamps = self._stamps(len(payloads))
        first = self.writer.append_batch(tids, arg, timestamps_ns=np.array(stamps, np.int64))
        assert first == self.model.append_batch(tids, payloads, stamps)

    # Rolling an empty segment is allowed too: a reader opened EARLIEST on a queue whose oldest segment
    # holds no message must still report the right next_seq.
    @rule()
    def roll(self):
        self.writer.roll()

    @rule()
    def reopen_writer(self):
        epoch = self.writer.epoch
        self.writer.close()
        self.writer = Queue.open_publisher(self.path, TINY)
        assert self.writer.epoch == epoch + 1 == self.model.open_writer()
        assert self.writer.next_seq == self.model.next_seq

    # -- reading --

    @rule(key=readers, k=st.integers(1, 6))
    def read(self, key, k):
        for _ in range(k):
            assert as_tuple(self.real[key].next()) == as_tuple(self.refs[key].next())

    @rule(key=readers)
    def drain(self, key):
        assert [as_tuple(m) for m in self.real[key]] == [as_tuple(m) for m in self.refs[key].drain()]

    @rule(key=readers, durable=st.booleans())
    def commit(self, key, durable):
        if key == "anon":
            with pytest.raises(ca.InvalidArgumentError):
                self.real[key].commit(durable)
            with pytest.raises(ref.AnonymousCommit):
                self.refs[key].commit()
        else:
            self.real[key].commit(durable)
            self.refs[key].commit()

    @rule(key=readers, start=st.sampled_from(sorted(START)))
    def reopen_reader(self, key, start):
        self.real[key].close()
        self._open_reader(key, start)

    @rule(key=readers, data=st.data())
    def seek(self, key, data):
        target = data.draw(st.integers(-2, self.model.next_seq + 2), label="seq")
        if target < 0:  # an error on both, and the position is kept
            with pytest.raises(ca.InvalidArgumentError):
                self.real[key].seek(target)
            with pytest.raises(ValueError):
                self.refs[key].seek(target)
            return
        assert self.real[key].seek(target) == self.refs[key].seek(target)

    @rule(key=readers, data=st.data())
    def seek_timestamp(self, key, data):
        stamps = [m.timestamp_ns for m in self.model.messages]
        choices = [st.just(0), st.just(self.clock + 10)]
        if stamps:
            choices.append(st.sampled_from(stamps))
            choices.append(st.sampled_from(stamps).map(lambda t: t + 1))
        target = data.draw(st.one_of(*choices), label="timestamp")
        assert self.real[key].seek_timestamp(target) == self.refs[key].seek_timestamp(target)

    # -- invariants --

    @invariant()
    def seqs_and_positions_agree(self):
        assert self.writer.next_seq == self.model.next_seq
        for key in READERS:
            assert self.real[key].next_seq == self.refs[key].next_seq, key

    def teardown(self):
        for r in self.real.values():
            r.close()
        self.writer.close()
        shutil.rmtree(self.dir, ignore_errors=True)


QueueMachine.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
TestQueueAgainstReferenceModel = QueueMachine.TestCase
