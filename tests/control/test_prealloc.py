"""The prealloc worker (control/prealloc.py) and the writer's side of it (offer_prepared, roll).

Real queue folders under tmp_path, the plane's real prealloc thread, a writer thread
appending flat out, and a writer process (subprocess) killed with SIGKILL.
Mappings are observed from outside, in /proc/self/maps (address range and inode of
each mapped file), so "the roll took the prepared mapping" and "nothing leaked" are
facts of the process, not of private attributes. Payloads are a pure function of the
seq, so every read-back checks every byte. Every await is bounded.
"""
from __future__ import annotations

import asyncio
import inspect
import json
import logging
import os
import pathlib
import select
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import pytest

from chronicle_async import ControlPlane, Queue, QueueWriter, WriterConfig
from chronicle_async.queue import files as F
from chronicle_async.hot import layout as L

SEG = 64 * 1024
TINY = 16 * 1024  # the smallest segment_size allowed
BOUND = 10.0  # generous limit on any single wait in these tests
HEADER_PAD = 48  # inside the segment header's reserved bytes (the fields end at 40, data starts at 64)
MARK = b"PREPARED"
# prepare_ahead=0: these tests watch the plane's prealloc worker alone, not the writer's own supplier
DEFAULT = WriterConfig(segment_size=SEG, prepare_ahead=0)


# -- deterministic messages -----------------------------------------------------------------------


def payload(seq: int, max_size: int = 600) -> bytes:
    n = (seq * 2654435761) % (max_size + 1)
    return (struct.pack("<q", seq) * (n // 8 + 1))[:n]


def type_id(seq: int) -> int:
    return seq % 1000


def append_range(w: QueueWriter, count: int, max_size: int = 600) -> None:
    for _ in range(count):
        seq = w.next_seq
        assert w.append(type_id(seq), payload(seq, max_size)) == seq


def check_all(path: os.PathLike | str, count: int, max_size: int = 600) -> None:
    """Read the whole queue back: seqs 0..count-1 in order, every type id and byte as written."""
    with Queue.open_subscriber(path, None, "earliest") as r:
        seq = 0
        for m in r:
            assert m.seq == seq, f"expected seq {seq}, got {m.seq}"
            assert m.type_id == type_id(seq)
            assert bytes(m.payload) == payload(seq, max_size), f"payload of seq {seq} differs"
            seq += 1
        assert seq == count, f"read {seq} messages, expected {count}"


# -- observing mappings ------------------------------------------------------------------------


def mappings(folder: os.PathLike | str) -> list[tuple[str, int, str]]:
    """``(address range, inode, file name)`` of every mapping of a file in ``folder``."""
    root = os.path.realpath(folder) + os.sep
    out = []
    with open("/proc/self/maps") as f:
        for line in f:
            parts = line.split(None, 5)
            if len(parts) == 6 and parts[5].startswith(root):
                name = parts[5].rstrip("\n")[len(root):]
                out.append((parts[0], int(parts[4]), name.removesuffix(" (deleted)")))
    return out


def mapped_segments(folder: os.PathLike | str) -> list[int]:
    return sorted(sid for _a, _i, n in mappings(folder) if (sid := L.parse_segment_file_name(n)) is not None)


def mapping_of(folder: os.PathLike | str, sid: int) -> list[tuple[str, int]]:
    name = L.segment_file_name(sid)
    return [(a, ino) for a, ino, n in mappings(folder) if n == name]


def seg_path(w: QueueWriter, sid: int) -> str:
    return F.segment_path(w.path, sid)


def read_at(path: str, offset: int, n: int) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.pread(fd, n, offset)
    finally:
        os.close(fd)


async def wait_until(pred: Callable[[], bool], what: str, timeout: float = BOUND) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for: {what}")
        await asyncio.sleep(0.002)


def roll_by_appending(w: QueueWriter, to_segment: int, max_size: int = 600) -> None:
    """Append until the writer rolls into ``to_segment`` (rolls come from append, as in production)."""
    guard = 0
    while w.segment_id < to_segment:
        append_range(w, 1, max_size)
        guard += 1
        assert guard < 1_000_000


@pytest.fixture
def writers() -> Iterator[Callable[..., QueueWriter]]:
    made: list[QueueWriter] = []

    def make(path: pathlib.Path, config: WriterConfig = DEFAULT) -> QueueWriter:
        w = Queue.open_publisher(path, config)
        made.append(w)
        return w

    yield make
    for w in made:
        w.close()


# -- segments prepared ahead, taken by rolls ---------------------------------------------------


async def test_segments_are_prepared_ahead_and_rolls_take_the_prepared_file_and_mapping_as_they_are(tmp_path, writers) -> None:
    w = writers(tmp_path / "q")
    q = w.path

    async def scenario() -> None:
        async with ControlPlane() as plane:
            plane.manage_writer(w)  # 64 KiB segments: 8 kept ready by default
            await wait_until(lambda: w.prepared_segments == list(range(1, 9)), "segments 1..8 prepared")
            assert plane.prealloc.prepared >= 8
            before = {}
            for sid in range(1, 9):
                st = os.stat(seg_path(w, sid))  # the files exist before any roll, full size
                assert st.st_size == SEG and st.st_nlink == 1
                (addr, ino), = mapping_of(q, sid)  # mapped once (by the plane, in this process)
                assert ino == st.st_ino
                before[sid] = (addr, ino)
            for sid in (1, 2, 3):  # a marker in the reserved header bytes: gone if a file were rewritten
                fd = os.open(seg_path(w, sid), os.O_RDWR)
                try:
                    os.pwrite(fd, MARK, HEADER_PAD)
                finally:
                    os.close(fd)

            roll_by_appending(w, 3)
            append_range(w, 50)
            assert w.segment_id == 3
            for sid in (1, 2, 3):
                assert os.stat(seg_path(w, sid)).st_ino == before[sid][1]  # the same file
                assert read_at(seg_path(w, sid), HEADER_PAD, len(MARK)) == MARK  # never truncated or rewritten
            # the head is the very mapping the plane made (same address range, same inode), not a new one
            assert mapping_of(q, 3) == [before[3]]
            # 5 left of 8: no wake-up yet (the writer wakes the plane once half the stock is used)
            await asyncio.sleep(0.05)
            assert w.prepared_segments == [4, 5, 6, 7, 8]
            roll_by_appending(w, 4)  # 4 left: this roll wakes the plane
            await wait_until(lambda: w.prepared_segments == list(range(5, 13)), "the stock refilled up to 12")
            assert mapping_of(q, 4) == [before[4]]

    await asyncio.wait_for(scenario(), BOUND * 2)
    count = w.next_seq
    check_all(w.path, count)


async def test_under_a_high_roll_rate_every_message_is_intact_and_old_mappings_stay_bounded(tmp_path, writers) -> None:
    """Thousands of rolls of 16 KiB segments from a writer thread appending flat out."""
    w = writers(tmp_path / "q", WriterConfig(segment_size=TINY, prepare_ahead=0))
    q = w.path
    total = 60_000
    max_size = 900

    def write() -> None:  # on a thread of its own; an exception reaches the test through its future
        for i in range(total):
            w.append(type_id(i), payload(i, max_size))
            if i % 500 == 0:
                time.sleep(0)  # let the event loop in now and then, as a real producer's I/O would

    async def scenario() -> None:
        async with ControlPlane() as plane:
            plane.manage_writer(w)
            await wait_until(lambda: len(w.prepared_segments) == 8, "the first 8 segments prepared")
            await asyncio.wait_for(asyncio.to_thread(write), 60)
            assert w.segment_id >= 1500, w.segment_id  # thousands of rolls (about 1900)
            assert plane.prealloc.prepared >= 8
            assert plane.failures == []
            # once the plane has caught up, the old mappings it unmaps are few, not one per roll
            # (those of the last rolls wait for the next wake-up, which comes when half the stock is used)
            def behind() -> list[int]:
                return [s for s in mapped_segments(q) if s < w.segment_id]

            await wait_until(lambda: len(behind()) <= 8, "the old mappings released")
            await asyncio.sleep(0.1)
            assert len(behind()) <= 8, behind()
            assert [s for s in mapped_segments(q) if s > w.segment_id] == w.prepared_segments  # nothing else mapped
            assert w.prepared_segments == list(range(w.segment_id + 1, w.segment_id + 1 + len(w.prepared_segments)))

    await asyncio.wait_for(scenario(), 90)
    check_all(q, total, max_size)


# -- stale and mismatched offers -----------------------------------------------------------------


async def test_an_offer_for_a_segment_the_writer_is_past_or_holds_or_beyond_the_window_is_refused(tmp_path, writers) -> None:
    w = writers(tmp_path / "q")
    q = w.path
    roll_by_appending(w, 3)
    qid = w._queue_id
    m_old = F.open_segment(q, 1, SEG, qid, writable=True)
    m_head = F.open_segment(q, 3, SEG, qid, writable=True)

    async def scenario() -> None:
        async with ControlPlane() as plane:
            plane.manage_writer(w, prepare_ahead=2)
            await wait_until(lambda: w.prepared_segments == [4, 5], "segments 4 and 5 prepared")
            F.create_segment(q, 6, SEG, qid)
            m4 = F.open_segment(q, 4, SEG, qid, writable=True)
            m6 = F.open_segment(q, 6, SEG, qid, writable=True)
            try:
                assert w.offer_prepared(4, m4) is False  # already holds one
                assert w.offer_prepared(6, m6) is False  # beyond prepare_ahead
                assert w.offer_prepared(2, m_old) is False  # stale
            finally:
                m4.close()
                m6.close()
            assert w.prepared_segments == [4, 5]
            roll_by_appending(w, 6)  # through the plane's own offers
            await wait_until(lambda: w.prepared_segments == [7, 8], "segments 7 and 8 prepared")

    try:
        assert w.offer_prepared(1, m_old) is False  # rolled past it
        assert w.offer_prepared(3, m_head) is False  # the head itself
        assert m_old.mv is not None and m_head.mv is not None  # a refused mapping is left to the caller
        await asyncio.wait_for(scenario(), BOUND * 2)
        count = w.next_seq
        w.close()
        assert w.offer_prepared(9, m_old) is False  # a closed writer refuses everything
    finally:
        m_old.close()
        m_head.close()
    check_all(q, count)


def test_a_prepared_mapping_of_another_queue_is_discarded_by_the_roll_with_a_warning(tmp_path, writers, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="chronicle_async")
    w = writers(tmp_path / "a")
    other = writers(tmp_path / "b")
    append_range(w, 20)
    append_range(other, 5)
    target = w.segment_id + 1
    F.create_segment(other.path, target, SEG, other._queue_id)
    foreign = F.open_segment(other.path, target, SEG, other._queue_id, writable=True)
    w._prepare_ahead = 1  # what manage_writer sets; the offer below is the prealloc worker's hand-off, by hand
    assert w.offer_prepared(target, foreign) is True
    assert w.prepared_segments == [target]

    assert w.roll() == target
    assert w.prepared_segments == []
    assert any(f"discarding prepared segment {target}" in r.getMessage() for r in caplog.records)
    w.release_retired()  # what the prealloc thread does after a roll: unmap what the writer retired
    append_range(w, 20)
    # the writer made its own segment, in its own folder, with its own header
    own = F.open_segment(w.path, target, SEG, w._queue_id, writable=False)
    own.close()
    assert os.stat(seg_path(w, target)).st_ino != os.stat(F.segment_path(other.path, target)).st_ino
    # the foreign file got nothing: its data area is still zero
    with open(F.segment_path(other.path, target), "rb") as f:
        f.seek(L.SEGMENT_DATA_OFFSET)
        assert f.read(4096) == bytes(4096)
    assert L.segment_file_name(target) not in [n for _a, _i, n in mappings(other.path)]  # and it was unmapped
    check_all(w.path, 40)
    append_range(other, 5)
    check_all(other.path, 10)


# -- releasing mappings -------------------------------------------------------------------------


async def test_mappings_are_released_when_the_plane_exits_and_when_the_writer_closes(tmp_path, writers) -> None:
    w = writers(tmp_path / "q")
    q = w.path

    async def scenario() -> None:
        async with ControlPlane() as plane:
            plane.manage_writer(w, prepare_ahead=4)
            for target in range(1, 41):
                await wait_until(lambda t=target: t in w.prepared_segments, f"segment {target} prepared")
                roll_by_appending(w, target)
            # old mappings are unmapped by the plane at its next wake-up (when half the stock is used):
            # a few may wait, never one per roll
            await asyncio.sleep(0.05)
            assert len([s for s in mapped_segments(q) if s < w.segment_id]) <= 4
        # exited: every old mapping is gone; the head and the still-valid prepared ones remain
        head = w.segment_id
        assert mapped_segments(q) == [head] + w.prepared_segments
        assert sorted(n for _a, _i, n in mappings(q) if not n.endswith(L.SEGMENT_SUFFIX)) == [L.CONTROL_FILE_NAME]
        # the writer goes on alone: it uses the prepared ones, then creates its own, unmapping as it rolls
        roll_by_appending(w, head + 6)
        assert w.prepared_segments == []
        assert mapped_segments(q) == [w.segment_id]

    await asyncio.wait_for(scenario(), BOUND * 2)
    count = w.next_seq
    w.close()
    assert mappings(q) == []
    check_all(q, count)


async def test_closing_a_managed_writer_releases_its_prepared_and_old_mappings(tmp_path, writers) -> None:
    w = writers(tmp_path / "q")
    q = w.path

    async def scenario() -> None:
        async with ControlPlane() as plane:
            plane.manage_writer(w)
            await wait_until(lambda: len(w.prepared_segments) == 8, "8 segments prepared")
            roll_by_appending(w, 5)
            assert len(mapped_segments(q)) > 2
            count = w.next_seq
            w.close()  # while the plane still manages it
            # A preparation already in flight on the prealloc thread is refused by the closed writer
            # and unmapped by the thread itself, at once
            await wait_until(lambda: mappings(q) == [], "every mapping of the closed writer released")
            await asyncio.sleep(0.05)  # the plane notices nothing to do; it must not map anything again
            assert mappings(q) == []
            assert plane.failures == []
            return count

    count = await asyncio.wait_for(scenario(), BOUND * 2)
    assert mappings(q) == []
    check_all(q, count)


async def test_unmanage_writer_stops_preparation(tmp_path, writers) -> None:
    w = writers(tmp_path / "q")
    q = w.path

    async def scenario() -> None:
        async with ControlPlane() as plane:
            plane.manage_writer(w, prepare_ahead=2)
            await wait_until(lambda: w.prepared_segments == [1, 2], "segments 1 and 2 prepared")
            plane.unmanage_writer(w)
            prepared = plane.prealloc.prepared
            for target in range(1, 7):
                roll_by_appending(w, target)
                await asyncio.sleep(0.02)  # time for the plane to react, if it (wrongly) still did
            assert plane.prealloc.prepared == prepared
            assert w.prepared_segments == []
            assert max(F.list_segments(q)) == w.segment_id  # no file ahead of the head
            assert mapped_segments(q) == [w.segment_id]  # rolls unmap the old segment themselves again

    await asyncio.wait_for(scenario(), BOUND * 2)
    check_all(q, w.next_seq)


# -- a killed writer's prepared segments ---------------------------------------------------------


CHILD = """
import asyncio, json, struct, sys, time
from chronicle_async import ControlPlane, Queue, QueueWriter, WriterConfig
from chronicle_async.control import run

{helpers}

async def main(path: str) -> None:
    w = Queue.open_publisher(path, WriterConfig(segment_size={tiny}, prepare_ahead=0))
    async with ControlPlane() as plane:
        plane.manage_writer(w)
        append_range(w, 200)
        deadline = time.monotonic() + 10
        while len(w.prepared_segments) < 8 and time.monotonic() < deadline:
            await asyncio.sleep(0.002)
        print(json.dumps([w.next_seq, w.segment_id, w.prepared_segments]), flush=True)
        while True:  # keep writing (and rolling) until killed
            append_range(w, 20)
            await asyncio.sleep(0.005)

run(main(sys.argv[1]))
"""


def test_a_killed_writers_prepared_segments_are_adopted_by_the_next_writer_with_no_loss(tmp_path, caplog) -> None:
    """A writer process with its own ControlPlane is killed (SIGKILL) while writing; a new writer takes over."""
    caplog.set_level(logging.WARNING, logger="chronicle_async")
    q = tmp_path / "q"
    helpers = "\n\n".join(inspect.getsource(f) for f in (payload, type_id, append_range))
    code = CHILD.format(helpers=helpers, tiny=TINY)
    proc = subprocess.Popen([sys.executable, "-c", code, str(q)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        ready, _w, _x = select.select([proc.stdout], [], [], 30)
        assert ready, "the writer process did not get ready"
        line = proc.stdout.readline()
        assert line, f"the writer process exited: {proc.stderr.read().decode()[-2000:]}"
        ready_seq, _head, prepared = json.loads(line)
        assert len(prepared) == 8
        time.sleep(0.1)  # it goes on writing and rolling: the kill lands mid-flight
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(BOUND)
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL

    with open(os.path.join(q, L.CONTROL_FILE_NAME), "rb") as f:
        f.seek(L.CTL_WRITE_SEGMENT_OFFSET)
        dead_head = struct.unpack("<q", f.read(8))[0]
    ahead = [s for s in F.list_segments(str(q)) if s > dead_head]
    assert ahead, "the dead writer left no prepared segment ahead of its head"
    inodes = {s: os.stat(F.segment_path(str(q), s)).st_ino for s in ahead}

    w = Queue.open_publisher(q, WriterConfig(segment_size=TINY, prepare_ahead=0))
    try:
        assert w.next_seq >= ready_seq  # nothing committed was lost
        start = w.next_seq
        with Queue.open_subscriber(q, None, "earliest") as r:  # everything before the reopen is intact
            n = 0
            for m in r:
                assert m.seq == n and bytes(m.payload) == payload(n) and m.type_id == type_id(n)
                n += 1
            assert n == start
        roll_by_appending(w, max(ahead) + 1)  # through every adopted segment and one more
        append_range(w, 10)
        for s, ino in inodes.items():
            if os.path.exists(F.segment_path(str(q), s)):
                assert os.stat(F.segment_path(str(q), s)).st_ino == ino  # adopted as it was, not recreated
        count = w.next_seq
    finally:
        w.close()
    check_all(q, count)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not [n for n in os.listdir(q) if L.SEGMENT_TEMP_SUFFIX in n]  # no temp file of the dead pid left
