"""PassiveDiscovery (control/passive.py): Waiting / Connected / Disconnected through a writer's life.

Real queue folders under tmp_path, real inotify, and writer processes (multiprocessing,
spawn) where a writer must die: they are killed with SIGKILL. Every wait is bounded
(``asyncio.wait_for``) so a bug fails instead of hanging.
"""
from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import pathlib
import signal
import time
from typing import Any

import pytest

from tests.fs import remove_queue

from chronicle_async import (
    ArgumentTypeError,
    DisconnectReason,
    InvalidArgumentError,
    Queue,
    QueueWriter,
    WriterConfig,
)
from chronicle_async.control import passive
from chronicle_async.control.passive import (
    Connected,
    Disconnected,
    PassiveDiscovery,
    Waiting,
)

TINY = WriterConfig(segment_size=16 * 1024, heartbeat_interval=0.05)
BOUND = 10.0  # generous limit on any single await in these tests


# -- the writer process (module level: spawn pickles it by name) ---------------------------------


def serve_writer(path: str, conn: Any) -> None:
    """Child: open a publisher and report ``("open", epoch, next_seq)``; then obey commands.

    An int ``n`` appends ``n`` messages (payload: their seq, as text) and replies
    ``("wrote", next_seq)``; ``"close"`` closes the writer and exits. Or be killed.
    """
    w = Queue.open_publisher(path, TINY)
    conn.send(("open", w.epoch, w.next_seq))
    while True:
        cmd = conn.recv()
        if cmd == "close":
            w.close()
            conn.send("closed")
            return
        for _ in range(cmd):
            w.append(1, str(w.next_seq).encode())
        conn.send(("wrote", w.next_seq))


class WriterProcess:
    """The test's handle on one ``serve_writer`` process."""

    def __init__(self, path: pathlib.Path):
        ctx = multiprocessing.get_context("spawn")
        self.conn, there = ctx.Pipe()
        self.proc = ctx.Process(target=serve_writer, args=(str(path), there), daemon=True)
        self.proc.start()

    async def reply(self) -> Any:
        assert await asyncio.to_thread(self.conn.poll, BOUND), "the writer process did not answer"
        return self.conn.recv()

    async def opened(self) -> int:
        """Wait until the writer is open; its epoch."""
        tag, epoch, _next = await self.reply()
        assert tag == "open"
        return epoch

    async def write(self, n: int) -> int:
        self.conn.send(n)
        tag, next_seq = await self.reply()
        assert tag == "wrote"
        return next_seq

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.join(BOUND)

    def stop(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(BOUND)


@pytest.fixture
def spawn():
    """Start writer processes; any still alive are killed at teardown."""
    made: list[WriterProcess] = []

    def start(path: pathlib.Path) -> WriterProcess:
        p = WriterProcess(path)
        made.append(p)
        return p

    yield start
    for p in made:
        p.stop()


@pytest.fixture
def writers():
    """Writers opened in this process, closed at teardown."""
    made: list[QueueWriter] = []

    def make(path: pathlib.Path) -> QueueWriter:
        w = Queue.open_publisher(path, TINY)
        made.append(w)
        return w

    yield make
    for w in made:
        if not w.closed:
            w.close()


async def next_event(events: PassiveDiscovery, timeout: float = BOUND) -> Any:
    return await asyncio.wait_for(events.__anext__(), timeout)


def payloads(reader: Any) -> list[tuple[int, bytes]]:
    return [(m.seq, bytes(m.payload)) for m in reader]


# -- waiting for the queue -------------------------------------------------------------------------


async def test_a_queue_created_after_start_is_reported_as_waiting_then_connected(tmp_path: pathlib.Path) -> None:
    """No folder yet: Waiting; a writer creates ``a/b/q``: Connected, found through inotify, messages untouched."""
    path = tmp_path / "a" / "b" / "q"
    async with PassiveDiscovery(path, "svc", poll_interval=0.1) as events:
        ev = await next_event(events)
        assert isinstance(ev, Waiting)
        assert ev.path == str(path) and "no queue" in ev.why
        await asyncio.sleep(0.1)
        t0 = time.monotonic()
        w = await asyncio.to_thread(Queue.open_publisher, path, TINY)
        try:
            w.append(1, b"hello")
            ev = await next_event(events)
            assert time.monotonic() - t0 < passive.SAFETY_RECHECK_S - 0.5  # an inotify event, not the re-check
            assert isinstance(ev, Connected)
            assert ev.reader is events.reader and ev.reader.name == "svc"
            assert payloads(ev.reader) == [(0, b"hello")]  # PassiveDiscovery never reads messages itself
            assert ev.reader.writer_epoch == w.epoch
        finally:
            w.close()
        reader = ev.reader
    assert reader.closed, "the context manager closes the reader it opened"
    assert events.closed


async def test_without_inotify_it_polls_for_the_queue_and_logs_a_warning(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """When the folder watch cannot be set up, a warning says so and polling every poll_interval finds the queue."""

    def no_inotify(*_a: Any, **_k: Any) -> Any:
        raise OSError(28, "inotify watch limit reached")

    monkeypatch.setattr(passive, "awatch", no_inotify)
    path = tmp_path / "q"
    with caplog.at_level(logging.WARNING, logger="chronicle_async"):
        async with PassiveDiscovery(path, None, poll_interval=0.05) as events:
            assert isinstance(await next_event(events), Waiting)
            assert any("polling every" in r.getMessage() and "inotify" in r.getMessage() for r in caplog.records)
            w = await asyncio.to_thread(Queue.open_publisher, path, TINY)
            try:
                t0 = time.monotonic()
                assert isinstance(await next_event(events), Connected)
                assert time.monotonic() - t0 < 1.0
            finally:
                w.close()


async def test_a_queue_whose_writer_already_closed_is_connected_then_reported_closed(queue_dir, writers) -> None:
    """A closed queue is still readable: Connected (with its messages), then at once Disconnected(WRITER_CLOSED)."""
    w = writers(queue_dir)
    w.append(1, b"old")
    w.close()
    async with PassiveDiscovery(queue_dir, "svc") as events:
        ev = await next_event(events)
        assert isinstance(ev, Connected)
        ev2 = await next_event(events, 2.0)
        assert ev2 == Disconnected(DisconnectReason.WRITER_CLOSED, ev.reader)
        assert payloads(ev.reader) == [(0, b"old")]


# -- the writer's life -----------------------------------------------------------------------------


async def test_a_writer_killed_with_sigkill_is_reported_as_writer_died_within_ttl_and_poll_bounds(
    queue_dir: pathlib.Path, spawn
) -> None:
    """kill -9 of the writer process: Disconnected(WRITER_DIED) within ttl + poll_interval (plus slack)."""
    ttl, poll = 0.5, 0.1
    proc = spawn(queue_dir)
    await proc.opened()
    async with PassiveDiscovery(queue_dir, "svc", ttl=ttl, poll_interval=poll) as events:
        ev = await next_event(events)
        assert isinstance(ev, Connected)
        await asyncio.sleep(2 * poll)  # a healthy writer: no event
        t0 = time.monotonic()
        await asyncio.to_thread(proc.kill)
        ev2 = await next_event(events, ttl + poll + 1.0)
        assert ev2 == Disconnected(DisconnectReason.WRITER_DIED, ev.reader)
        assert time.monotonic() - t0 < ttl + poll + 0.5
        assert not ev.reader.closed  # reporting only: the reader is still usable


async def test_a_restarted_writer_is_reported_as_epoch_changed_then_connected_with_seqs_continuing(
    queue_dir: pathlib.Path, spawn
) -> None:
    """Writer killed, new writer process: Disconnected(WRITER_DIED), Disconnected(EPOCH_CHANGED), Connected(same reader)."""
    first = spawn(queue_dir)
    await first.opened()
    assert await first.write(3) == 3
    async with PassiveDiscovery(queue_dir, "svc", ttl=0.5, poll_interval=0.05) as events:
        ev = await next_event(events)
        assert isinstance(ev, Connected)
        reader = ev.reader
        assert [s for s, _p in payloads(reader)] == [0, 1, 2]
        await asyncio.to_thread(first.kill)
        assert await next_event(events) == Disconnected(DisconnectReason.WRITER_DIED, reader)
        second = spawn(queue_dir)
        epoch = await second.opened()
        assert await second.write(2) == 5
        assert await next_event(events) == Disconnected(DisconnectReason.EPOCH_CHANGED, reader)
        assert await next_event(events) == Connected(reader)
        assert reader.writer_epoch == epoch
        assert payloads(reader) == [(3, b"3"), (4, b"4")]  # the same reader: its seqs simply continue
        second.conn.send("close")
        assert await second.reply() == "closed"
        assert await next_event(events) == Disconnected(DisconnectReason.WRITER_CLOSED, reader)


async def test_a_writer_closing_and_reopening_is_reported_as_closed_then_epoch_changed(queue_dir, writers) -> None:
    """In-process writer: close gives WRITER_CLOSED; a new writer session gives EPOCH_CHANGED, then Connected."""
    w = writers(queue_dir)
    async with PassiveDiscovery(queue_dir, "svc", poll_interval=0.05) as events:
        ev = await next_event(events)
        assert isinstance(ev, Connected)
        w.close()
        assert await next_event(events) == Disconnected(DisconnectReason.WRITER_CLOSED, ev.reader)
        w2 = await asyncio.to_thread(writers, queue_dir)
        assert await next_event(events) == Disconnected(DisconnectReason.EPOCH_CHANGED, ev.reader)
        assert await next_event(events) == Connected(ev.reader)
        assert ev.reader.writer_epoch == w2.epoch


async def test_a_deleted_queue_folder_is_reported_as_queue_deleted_then_waiting(queue_dir: pathlib.Path, writers) -> None:
    """rmtree of the queue: Disconnected(QUEUE_DELETED); the reader is closed; Waiting; a new queue: a new reader."""
    w = writers(queue_dir)
    w.append(1, b"before")
    async with PassiveDiscovery(queue_dir, "svc", poll_interval=0.05) as events:
        ev = await next_event(events)
        assert isinstance(ev, Connected)
        reader = ev.reader
        await asyncio.to_thread(remove_queue, queue_dir)
        seen = []
        while True:  # a check landing mid-rmtree may first see the lock file gone (WRITER_DIED)
            d = await next_event(events)
            assert isinstance(d, Disconnected) and d.reader is reader
            seen.append(d.reason)
            if d.reason is DisconnectReason.QUEUE_DELETED:
                break
        assert len(seen) <= 2
        assert payloads(reader) == [(0, b"before")]  # still readable until the next event is asked for
        waiting = await next_event(events)
        assert isinstance(waiting, Waiting)
        assert reader.closed and events.reader is None
        w.close()
        w2 = await asyncio.to_thread(writers, queue_dir)
        w2.append(1, b"after")
        again = await next_event(events)
        assert isinstance(again, Connected) and again.reader is not reader
        assert payloads(again.reader) == [(0, b"after")]


# -- arguments -------------------------------------------------------------------------------------


def test_bad_arguments_raise_typed_errors(tmp_path: pathlib.Path) -> None:
    """Each bad argument raises ArgumentTypeError or InvalidArgumentError naming it."""
    q = tmp_path / "q"
    with pytest.raises(ArgumentTypeError):
        PassiveDiscovery(123, "svc")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):
        PassiveDiscovery(q, "bad name!")
    with pytest.raises(InvalidArgumentError):
        PassiveDiscovery(q, "svc", start="sometime")
    with pytest.raises(InvalidArgumentError, match="ttl"):
        PassiveDiscovery(q, "svc", ttl=0)
    with pytest.raises(ArgumentTypeError, match="ttl"):
        PassiveDiscovery(q, "svc", ttl="1")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="poll_interval"):
        PassiveDiscovery(q, "svc", poll_interval=-1)
    with pytest.raises(ArgumentTypeError, match="poll_interval"):
        PassiveDiscovery(q, "svc", poll_interval=None)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="wait_strategy"):
        PassiveDiscovery(q, "svc", wait_strategy="nap")
