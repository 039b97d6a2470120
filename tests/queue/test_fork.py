"""A writer, reader or HotLoop inherited through ``fork()`` refuses every use in the child, and the
child's ``close()`` leaves the queue and the parent alone (real ``os.fork``)."""
from __future__ import annotations

import os
import warnings

import numba
import numpy as np
import pytest

from chronicle_async import ForkError, HotLoop, Park, Queue, WriterConfig
from chronicle_async.hot import layout as L

SEG = 64 * 1024


def in_child(fn) -> int:
    """Run ``fn()`` in a forked child; its exit code: 0 if it returned True, 1 if False, 2 on an exception."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: fork with threads
        pid = os.fork()
    if pid == 0:
        code = 2
        try:
            code = 0 if fn() else 1
        except BaseException:  # noqa: BLE001
            code = 2
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def raises_fork_error(call) -> bool:
    try:
        call()
    except ForkError as e:
        return "fork" in str(e) and "open it again in the child" in str(e)
    return False


def test_an_inherited_writer_refuses_to_append_in_the_child_and_the_parent_keeps_writing(queue_dir):
    with Queue.open_publisher(queue_dir, WriterConfig(segment_size=SEG)) as w:
        for i in range(10):
            w.append(1, b"p%d" % i)

        def child() -> bool:
            ok = raises_fork_error(lambda: w.append(1, b"child"))
            ok &= raises_fork_error(lambda: w.append_batch(0, [b"a", b"b"]))
            ok &= raises_fork_error(w.hot_handle)
            w.close()  # a no-op: must not mark the queue closed under the parent
            return ok

        assert in_child(child) == 0
        state = np.fromfile(os.path.join(queue_dir, L.CONTROL_FILE_NAME), np.uint8)[
            L.CTL_WRITER_STATE_OFFSET:L.CTL_WRITER_STATE_OFFSET + 4].view(np.int32)[0]
        assert state == L.WRITER_STATE_OPEN, "the child's close() marked the parent's queue closed"
        for i in range(10, 20):
            assert w.append(1, b"p%d" % i) == i
    with Queue.open_subscriber(queue_dir, None, "earliest") as r:
        assert [m.seq for m in r] == list(range(20))


def test_an_inherited_named_reader_cannot_commit_in_the_child(queue_dir):
    with Queue.open_publisher(queue_dir, WriterConfig(segment_size=SEG)) as w:
        for i in range(120):
            w.append(1, b"m")
    r = Queue.open_subscriber(queue_dir, "svc", "earliest")
    for _ in range(10):
        r.next()
    r.commit()

    def child() -> bool:
        ok = raises_fork_error(r.next)
        ok &= raises_fork_error(r.commit)
        ok &= raises_fork_error(lambda: r.seek(0))
        r.close()
        return ok

    assert in_child(child) == 0
    r.close()
    with Queue.open_subscriber(queue_dir, "svc") as again:
        assert again.next_seq == 10, "the child moved the parent's committed position"


@numba.njit(cache=False)
def _count(state, ctx, source, type_id, seq, timestamp_ns, payload):
    state[0] += 1
    return 0


def test_an_inherited_hot_loop_is_off_in_the_child_and_its_close_commits_nothing(queue_dir):
    with Queue.open_publisher(queue_dir, WriterConfig(segment_size=SEG)) as w:
        for i in range(50):
            w.append(1, b"m")
    state = np.zeros(1, np.int64)
    loop = HotLoop(_count, state, idle=Park())
    loop.add_reader(Queue.open_subscriber(queue_dir, "hot", "earliest"), source=0)
    loop.run_once()

    def child() -> bool:
        ok = raises_fork_error(lambda: loop.add_reader(Queue.open_subscriber(queue_dir, None, "earliest")))
        loop.close()  # must not commit "hot" from the child
        return ok and not loop.running

    assert in_child(child) == 0
    loop.close()
    with Queue.open_subscriber(queue_dir, "hot") as r:
        assert r.next_seq == 50


def test_objects_opened_in_the_child_work_there(queue_dir):
    def child() -> bool:
        with Queue.open_publisher(queue_dir, WriterConfig(segment_size=SEG)) as w:
            w.append(1, b"from the child")
        with Queue.open_subscriber(queue_dir, None, "earliest") as r:
            return bytes(r.next().payload) == b"from the child"

    assert in_child(child) == 0


@pytest.mark.parametrize("kind", ["writer", "reader"])
def test_a_closed_object_still_says_closed_not_forked(queue_dir, kind):
    from chronicle_async import QueueClosedError

    w = Queue.open_publisher(queue_dir, WriterConfig(segment_size=SEG))
    obj = w if kind == "writer" else Queue.open_subscriber(queue_dir, None, "earliest")
    obj.close()
    with pytest.raises(QueueClosedError):
        obj.next() if kind == "reader" else obj.append(1, b"x")
    w.close()
