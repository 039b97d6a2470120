"""A queue deleted (``shutil.rmtree``) or deleted and created again under open writers and readers.

A reader holds mappings of files that are gone; Linux keeps them valid, so what was written
stays readable. Where the deletion shows is a segment change (a reader at an end marker, a
writer's roll): there it is a disconnect (``QUEUE_DELETED``) for readers, a typed
``QueueDeletedError`` for the writer, and one retired source (the others go on) for a HotLoop
or a FanInReader. Never a bare ``FileNotFoundError``, never a hot spin.
"""
from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import time

import numba
import numpy as np
import pytest

from tests.fs import remove_queue

from chronicle_async import (
    DisconnectReason,
    FanInReader,
    HotLoop,
    Queue,
    QueueDeletedError,
    QueueNotFoundError,
    WriterConfig,
)

SMALL = WriterConfig(segment_size=64 * 1024)


_delete = remove_queue


PER_SEGMENT = 400  # messages of 100 bytes: more than one 64 KiB segment holds


def _fill(w, n: int = PER_SEGMENT, tag: bytes = b"x") -> None:
    for _ in range(n):
        w.append(1, tag * 100)


def _drain(r) -> int:
    n = 0
    while r.next() is not None:
        n += 1
    return n


def _reader_at_end_marker(queue_dir):
    """A writer and a reader that read everything, then a roll: the reader sits at an end marker."""
    w = Queue.open_publisher(queue_dir, SMALL)
    _fill(w)
    r = Queue.open_subscriber(queue_dir, "r", "earliest")
    assert _drain(r) == PER_SEGMENT
    w.roll()
    return w, r


# -- a reader --------------------------------------------------------------------------------


def test_a_reader_at_an_end_marker_of_a_deleted_queue_gets_no_message_and_a_queue_deleted_disconnect(queue_dir):
    w, r = _reader_at_end_marker(queue_dir)
    seq = r.next_seq
    _delete(queue_dir)
    assert r.next() is None  # was: FileNotFoundError from the segment listing
    assert r.next() is None
    assert not r.available()
    assert r.next_seq == seq  # the position stays after the last message delivered
    assert r.detect_disconnect(1.0) is DisconnectReason.QUEUE_DELETED
    st = r.writer_status(1.0)
    assert (st.state, st.alive, st.lock_held) == ("deleted", False, False)
    r.commit()  # harmless: the position file went with the queue
    r.close()
    w.close()


def test_wait_on_a_deleted_queue_returns_false_after_a_bounded_sleep_never_spinning(queue_dir):
    w, r = _reader_at_end_marker(queue_dir)
    _delete(queue_dir)
    r.wait(0.01)  # True at the end marker (a segment end is "something"), until next() looks
    assert r.next() is None  # finds the queue gone
    t = time.monotonic()
    calls = 0
    while time.monotonic() - t < 0.35:  # the usual consumer loop: must not spin hot
        calls += 1
        if r.wait():
            assert r.next() is None
    assert calls <= 10  # about 0.1 s per wait(None), not thousands of returns
    t = time.monotonic()
    assert r.wait(0.02) is False
    assert 0.015 <= time.monotonic() - t < 0.5
    r.close()
    w.close()


def test_wait_async_and_async_iteration_on_a_deleted_queue_keep_waiting_without_a_hot_loop(queue_dir):
    w, r = _reader_at_end_marker(queue_dir)
    _delete(queue_dir)
    calls = 0
    real_next = r.next

    def counting_next():
        nonlocal calls
        calls += 1
        return real_next()

    r.next = counting_next  # the async iterator calls reader.next()

    async def main():
        assert await r.wait_async(0.05) in (True, False)  # True at the end marker until next() looks
        assert r.next() is None
        assert await r.wait_async(0.05) is False
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.4):
                async for _m in r:
                    raise AssertionError("a deleted queue delivered a message")

    asyncio.run(main())
    assert calls < 30  # bounded sleeps between looks, not a busy event loop
    assert r.detect_disconnect() is DisconnectReason.QUEUE_DELETED
    r.close()
    w.close()


def test_a_queue_deleted_and_created_again_is_a_queue_deleted_disconnect_not_a_mix_of_two_queues(queue_dir):
    w, r = _reader_at_end_marker(queue_dir)
    w.close()
    _delete(queue_dir)
    with Queue.open_publisher(queue_dir, SMALL) as w2:
        _fill(w2, 3 * PER_SEGMENT, b"n")  # the new queue has segments 0..3: segment 1 is another queue's
        assert r.next() is None
        assert r.detect_disconnect() is DisconnectReason.QUEUE_DELETED
        assert r.writer_status().state == "deleted"
        with pytest.raises(QueueDeletedError, match=str(queue_dir)):
            r.seek(0)
    r.close()
    with Queue.open_subscriber(queue_dir, None, "earliest") as fresh:  # a new reader reads the new queue
        assert bytes(fresh.next().payload) == b"n" * 100


def test_seek_on_a_deleted_queue_is_a_typed_error_naming_the_path(queue_dir):
    w, r = _reader_at_end_marker(queue_dir)
    _delete(queue_dir)
    with pytest.raises(QueueDeletedError, match="deleted") as e:
        r.seek(0)
    assert str(queue_dir) in str(e.value)
    assert isinstance(e.value, QueueNotFoundError)
    r.close()
    w.close()


# -- the writer ------------------------------------------------------------------------------


@pytest.mark.parametrize("durability", ["none", "async", "sync"])
def test_the_writers_roll_after_the_queue_was_deleted_is_a_typed_error_naming_the_path_and_the_fix(queue_dir, durability):
    w = Queue.open_publisher(queue_dir, WriterConfig(segment_size=64 * 1024, durability=durability))
    _fill(w, 100)
    deadline = time.monotonic() + 10  # the writer's supplier thread settles (it would race the rmtree)
    while len(w.prepared_segments) < w.prepare_ahead and time.monotonic() < deadline:
        time.sleep(0.001)
    _delete(queue_dir)
    with pytest.raises(QueueDeletedError) as e:
        _fill(w)  # the next roll: was FileNotFoundError ...seg.tmp-...
    msg = str(e.value)
    assert str(queue_dir) in msg and "deleted" in msg and "open_publisher" in msg
    assert ".tmp" not in msg
    assert isinstance(e.value, QueueNotFoundError) and isinstance(e.value, FileNotFoundError)
    try:
        w.flush()  # msyncs the deleted files' mappings, or names the deletion: never a bare OSError
    except QueueDeletedError:
        pass
    w.close()  # closes without an error
    with Queue.open_publisher(queue_dir, SMALL) as again:  # reopening creates the queue anew
        assert again.append(1, b"a") == 0


def test_a_writer_process_gets_queue_deleted_error_when_its_queue_is_deleted_under_it(queue_dir):
    code = textwrap.dedent("""
        import sys, time
        from chronicle_async import Queue, WriterConfig, QueueDeletedError
        w = Queue.open_publisher(sys.argv[1], WriterConfig(segment_size=64 * 1024))
        print("ready", flush=True)
        try:
            while True:
                w.append(1, b"x" * 100)
                time.sleep(0.0002)
        except QueueDeletedError as e:
            print("QueueDeletedError", e, flush=True)
            w.close()
    """)
    p = subprocess.Popen([sys.executable, "-c", code, str(queue_dir)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "ready"
        r = Queue.open_subscriber(queue_dir, None, "earliest")
        time.sleep(0.2)
        _delete(queue_dir)
        out, err = p.communicate(timeout=60)
    finally:
        p.kill()
    assert p.returncode == 0, err
    assert out.startswith("QueueDeletedError") and str(queue_dir) in out
    assert "Traceback" not in err
    deadline = time.monotonic() + 10  # the reader drains what the writer wrote, then sees the deletion
    while r.detect_disconnect() is not DisconnectReason.QUEUE_DELETED and time.monotonic() < deadline:
        r.next()
    assert r.detect_disconnect() is DisconnectReason.QUEUE_DELETED
    while r.next() is not None:
        pass
    r.close()


# -- a HotLoop -------------------------------------------------------------------------------


def _two_queues(tmp_path):
    """Queue a (the reader at an end marker, then deleted) and queue b (alive): readers for both."""
    a, b = tmp_path / "a", tmp_path / "b"
    wa, wb = Queue.open_publisher(a, SMALL), Queue.open_publisher(b, SMALL)
    _fill(wa, 50)
    ra, rb = Queue.open_subscriber(a, "hot", "earliest"), Queue.open_subscriber(b, "hot", "earliest")
    wa.roll()
    _delete(a)
    return a, b, wa, wb, ra, rb


def test_a_hot_loop_retires_a_deleted_source_and_keeps_running_the_others(tmp_path):
    a, b, wa, wb, ra, rb = _two_queues(tmp_path)
    got = {0: 0, 1: 0}

    def handler(source, msg):
        got[source] += 1

    loop = HotLoop(handler)
    sa, sb = loop.add_reader(ra, 0), loop.add_reader(rb, 1)
    loop.start()
    try:
        deadline = time.monotonic() + 10
        while not loop.disconnected and time.monotonic() < deadline:
            time.sleep(0.005)
        assert loop.disconnected == {sa: DisconnectReason.QUEUE_DELETED}
        assert got[sa] == 50  # everything written before the deletion was delivered
        _fill(wb, 3 * PER_SEGMENT)  # b keeps flowing, across its own rolls
        while got[sb] < 3 * PER_SEGMENT and time.monotonic() < deadline:
            time.sleep(0.005)
        assert got[sb] == 3 * PER_SEGMENT
        assert loop.running and loop.error is None  # was: HandlerError ... raised FileNotFoundError
        events = [rec for rec in loop.drain_log() if rec.event == "source disconnected"]
        assert [(e.source, e.args[1]) for e in events] == [(sa, 50)]  # next_seq: after what was delivered
        back = loop.remove_reader(sa)
        assert back is ra and back.next_seq == 50
        assert back.detect_disconnect() is DisconnectReason.QUEUE_DELETED
        back.close()
        assert loop.disconnected == {}
    finally:
        loop.close()
        wa.close()
        wb.close()


def test_run_once_retires_a_deleted_source_without_committing_past_what_was_delivered(tmp_path):
    a, b, wa, wb, ra, rb = _two_queues(tmp_path)
    seen = []
    loop = HotLoop(lambda source, msg: seen.append((source, msg.seq)))
    sa, sb = loop.add_reader(ra, 7), loop.add_reader(rb, 8)
    _fill(wb, 5)
    for _ in range(5):
        loop.run_once()
    assert loop.disconnected == {sa: DisconnectReason.QUEUE_DELETED}
    assert [s for s, _ in seen].count(sa) == 50 and [s for s, _ in seen].count(sb) == 5
    assert loop.sources[sa] is ra  # still owned until remove_reader
    _fill(wb, 5)
    loop.run_once()
    assert [s for s, _ in seen].count(sb) == 10
    loop.close()  # retires and closes both readers, no error
    assert ra.closed and rb.closed
    wa.close()
    wb.close()


@numba.njit
def _count(state, ctx, source, type_id, seq, timestamp_ns, payload):
    state[source] += 1
    return 0


def test_a_jitted_hot_loop_retires_a_deleted_source_and_keeps_running_the_others(tmp_path):
    a, b, wa, wb, ra, rb = _two_queues(tmp_path)
    state = np.zeros(2, np.int64)
    loop = HotLoop(_count, state)
    sa, sb = loop.add_reader(ra, 0), loop.add_reader(rb, 1)
    with loop:
        deadline = time.monotonic() + 20
        while not loop.disconnected and time.monotonic() < deadline:
            time.sleep(0.005)
        assert loop.disconnected == {sa: DisconnectReason.QUEUE_DELETED}
        _fill(wb, 2 * PER_SEGMENT)
        while state[sb] < 2 * PER_SEGMENT and time.monotonic() < deadline:
            time.sleep(0.005)
        assert (state[sa], state[sb]) == (50, 2 * PER_SEGMENT)
        assert loop.running and loop.error is None
    wa.close()
    wb.close()


# -- a FanInReader ---------------------------------------------------------------------------


def test_a_fanin_drops_a_deleted_source_and_the_others_keep_flowing(tmp_path):
    a, b, wa, wb, ra, rb = _two_queues(tmp_path)
    fan = FanInReader([ra, rb], lateness=5.0)  # a long watermark: a dropped source must not hold it
    sa, sb = 0, 1
    counts = {sa: 0, sb: 0}
    _fill(wb, 20)
    deadline = time.monotonic() + 10
    while counts[sb] < 20 and time.monotonic() < deadline:
        if fan.wait(0.1):
            item = fan.next()
            if item is not None:
                counts[item[0]] += 1
    assert counts == {sa: 50, sb: 20}
    assert fan.disconnected == {sa: DisconnectReason.QUEUE_DELETED}
    assert set(fan.sources) == {sa, sb}
    fan.commit()  # covers the live source; no error for the dropped one
    assert fan.remove_reader(sa) is ra
    ra.close()
    fan.close()
    wa.close()
    wb.close()


# -- the command line ------------------------------------------------------------------------


def test_chronicle_tail_follow_on_a_deleted_queue_exits_with_a_typed_message_not_a_traceback(queue_dir):
    w = Queue.open_publisher(queue_dir, SMALL)
    _fill(w, 3)
    p = subprocess.Popen([sys.executable, "-m", "chronicle_async.cli", "tail", "-f", str(queue_dir)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        printed = [p.stdout.readline() for _ in range(3)]  # tail has printed what is on disk ('' if it died)
        _delete(queue_dir)
        out, err = p.communicate(timeout=30)
        out = "".join(printed) + out
    finally:
        p.kill()
        w.close()
    assert p.returncode == 1, err
    assert len(out.splitlines()) == 3
    assert "Traceback" not in err
    assert "QueueDeletedError" in err and str(queue_dir) in err
