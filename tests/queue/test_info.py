"""The inspect API (``inspect_queue``, ``list_queues``): read-only snapshots of real queues."""
from __future__ import annotations

import dataclasses
import os

import pytest

from chronicle_async import NotAQueueError, Queue, QueueNotFoundError, WriterConfig

inspect_queue = Queue.inspect
list_queues = Queue.list_queues
from tests.writer_process import WriterProcess

TINY = WriterConfig(segment_size=16 * 1024)


def _files(d) -> dict[str, tuple[int, int]]:
    out = {}
    for root, _dirs, files in os.walk(d):
        for f in files:
            st = os.stat(os.path.join(root, f))
            out[os.path.relpath(os.path.join(root, f), d)] = (st.st_size, st.st_mtime_ns)
    return out


def test_inspect_queue_reports_segments_writer_messages_and_a_readers_lag(tmp_path):
    q = tmp_path / "orders"
    with Queue.open_publisher(q, TINY) as w:
        for i in range(10):
            w.append(1, b"order %d" % i)
        with Queue.open_subscriber(q, "risk", "earliest") as r:
            for _ in range(3):
                r.next()
            r.commit()
            info = inspect_queue(q)
        assert info.next_seq == 10 and info.path == str(q) and info.segment_size == TINY.segment_size
        assert info.writer.alive and info.writer.status == "open" and info.writer.liveness == "alive"
        assert info.writer.pid == os.getpid() and info.writer.lock_held
        assert info.messages.first_seq == 0 and info.messages.last_seq == 9 and info.messages.count_estimate == 10
        assert info.segments.count >= 1 and info.segments.head_id == 0 and info.segments.bytes_on_disk > 0
        (risk,) = info.readers
        assert risk.name == "risk" and risk.live and risk.committed
        assert risk.next_seq == 3 and risk.lag_messages == 7 and risk.lag_bytes > 0
        assert risk.commit_age is not None and 0 <= risk.commit_age < 10
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.next_seq = 0  # type: ignore[misc]


def test_a_killed_writer_process_is_dead_in_the_one_writer_verdict(tmp_path):
    q = tmp_path / "prices"
    with WriterProcess(q, 5) as wp:
        assert inspect_queue(q).writer.status == "open"
        wp.kill()
        w = inspect_queue(q).writer
    assert w.state == "open"  # the word the writer left behind
    assert w.status == "dead" and w.liveness == "writer_died" and not w.alive and not w.lock_held
    assert w.pid == wp.pid


def test_inspect_queue_creates_nothing_and_changes_nothing(tmp_path):
    q = tmp_path / "orders"
    with Queue.open_publisher(q, TINY) as w:
        w.append(1, b"x")
    with Queue.open_subscriber(q, "risk", "earliest") as r:
        r.next()
        r.commit()
    before = _files(q)
    info = inspect_queue(q)
    list_queues(tmp_path)
    assert _files(q) == before
    assert info.writer.status == "closed" and info.readers[0].live is False


def test_inspect_queue_on_a_folder_without_a_queue_raises(tmp_path):
    with pytest.raises((QueueNotFoundError, NotAQueueError)):
        inspect_queue(tmp_path)


def test_list_queues_lists_the_subfolders_holding_a_queue_by_name(tmp_path):
    for name, n in (("b", 3), ("a", 2)):
        with Queue.open_publisher(tmp_path / name, TINY) as w:
            for _ in range(n):
                w.append(1, b"m")
    (tmp_path / "empty").mkdir()
    (tmp_path / "file.txt").write_text("not a queue")
    qs = list_queues(tmp_path)
    assert [q.name for q in qs] == ["a", "b"]
    assert [q.next_seq for q in qs] == [2, 3]
    assert all(q.writer == "closed" and q.readers == 0 and q.error is None and q.segments >= 1 for q in qs)


def test_list_queues_on_a_file_raises_not_a_queue_error_naming_it(tmp_path):
    f = tmp_path / "file.txt"
    f.write_text("x")
    with pytest.raises(NotAQueueError, match="file.txt is not a folder"):
        list_queues(f)
