"""The retention worker (control/retention.py) and plan_cleanup (retention.py) beside live writers and readers.

Real queue folders under tmp_path; a writer thread appending flat out with small
segments; named readers that are live (their position file locked, in a thread of
this process) or dead (a position file whose lock nobody holds). Payloads are a pure
function of the seq, so the lagging reader checks every byte and every seq. Every
await is bounded, so a bug fails instead of hanging.
"""
from __future__ import annotations

import asyncio
import itertools
import logging
import os
import struct
import subprocess
import time
from collections.abc import Callable, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chronicle_async import ControlPlane, Queue, QueueReader, QueueWriter, WriterConfig
from chronicle_async.queue import files as F
from chronicle_async.hot import layout as L
from chronicle_async.queue.position import read_reader_position
from chronicle_async.queue.retention import live_reader_segments, plan_cleanup

TINY = 16 * 1024  # the smallest segment_size allowed
BOUND = 10.0  # generous limit on any single wait in these tests


# -- helpers --------------------------------------------------------------------------------------


def payload(seq: int, max_size: int = 400) -> bytes:
    n = (seq * 2654435761) % (max_size + 1)
    return (struct.pack("<q", seq) * (n // 8 + 1))[:n]


def type_id(seq: int) -> int:
    return seq % 1000


def append_range(w: QueueWriter, count: int) -> None:
    for _ in range(count):
        seq = w.next_seq
        w.append(type_id(seq), payload(seq))


def one_per_segment(w: QueueWriter, n: int) -> None:
    """Append one message and roll, ``n`` times: message k sits alone in segment k (from an empty queue)."""
    for _ in range(n):
        append_range(w, 1)
        w.roll()


def data_segments(w: QueueWriter) -> list[int]:
    """Segment files up to the head (what the caps count; prepared ones ahead come on top)."""
    return [i for i in F.list_segments(w.path) if i <= w.segment_id]


def mapped_segments(folder: os.PathLike | str) -> list[int]:
    root = os.path.realpath(folder) + os.sep
    out = []
    with open("/proc/self/maps") as f:
        for line in f:
            parts = line.split(None, 5)
            if len(parts) == 6 and parts[5].startswith(root):
                sid = L.parse_segment_file_name(parts[5].rstrip("\n")[len(root):].removesuffix(" (deleted)"))
                if sid is not None:
                    out.append(sid)
    return sorted(out)


async def wait_until(pred: Callable[[], bool], what: str, timeout: float = BOUND) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for: {what}")
        await asyncio.sleep(0.005)


def make_dead_reader(path: os.PathLike | str, name: str, read: int) -> None:
    """A named reader that read ``read`` messages, committed, and went away (its file stays, unlocked)."""
    with Queue.open_subscriber(path, name, "earliest") as r:
        for _ in range(read):
            assert r.next() is not None
        r.commit()


@pytest.fixture
def opened() -> Iterator[Callable]:
    """Writers and readers opened by a test; closed at teardown (readers first)."""
    made: list = []

    def keep(obj):
        made.append(obj)
        return obj

    yield keep
    for obj in sorted(made, key=lambda o: not isinstance(o, QueueReader)):
        obj.close()


# -- racing a live writer and a lagging reader ---------------------------------------------------


CAPS = [
    pytest.param({"max_segments": 4}, id="max_segments"),
    pytest.param({"max_bytes": 4 * TINY + TINY // 2}, id="max_bytes"),
]


@pytest.mark.parametrize("caps", CAPS)
async def test_retention_racing_a_writer_keeps_all_a_lagging_live_reader_needs_and_the_head_and_then_honours_the_cap(
        tmp_path, opened, caplog, caps) -> None:
    caplog.set_level(logging.WARNING, logger="chronicle_async")
    q = tmp_path / "q"
    w = opened(Queue.open_publisher(q, WriterConfig(segment_size=TINY)))  # no caps of its own: the plane's
    append_range(w, 30)
    make_dead_reader(q, "dead", 5)  # committed in segment 0, then gone
    slow = opened(Queue.open_subscriber(q, "slow", "earliest"))  # live; never committed yet: holds everything
    total = 20_000

    # Each runs on a thread of its own; a failed check raises, and reaches the test through its future.
    def write() -> None:
        seen = -1
        for i in range(30, total):
            w.append(type_id(i), payload(i))
            if w.segment_id != seen or i % 100 == 0:  # this thread is the writer: the head cannot move under it
                seen = w.segment_id
                assert os.path.exists(F.segment_path(w.path, seen)), f"the head segment {seen} was deleted"
            if i % 300 == 0:
                time.sleep(0)

    def read() -> None:
        expected = 0
        deadline = time.monotonic() + 60
        while expected < total:
            m = slow.next()
            if m is None:
                assert time.monotonic() < deadline, f"the reader is stuck at seq {expected}"
                slow.wait(0.01)
                continue
            assert m.seq == expected, f"the reader expected seq {expected}, got {m.seq}"
            assert m.type_id == type_id(expected) and bytes(m.payload) == payload(expected), f"message {expected} differs"
            expected += 1
            if expected % 50 == 0:
                slow.commit()
                committed = slow.position[0]
                head = w.segment_id  # read before listing: a smaller head is still a valid bound
                present = set(F.list_segments(str(q)))
                missing = [s for s in range(committed, head + 1) if s not in present]
                assert not missing, f"segments {missing} deleted while the live reader had committed {committed}"
                time.sleep(0.002)  # lag behind the writer
        slow.commit()

    async def scenario() -> None:
        async with ControlPlane(retention_interval=0.02, retention_batch=2) as plane:
            plane.manage_writer(w, **caps)
            writing = asyncio.ensure_future(asyncio.to_thread(write))
            reading = asyncio.ensure_future(asyncio.to_thread(read))
            deleted_while_lagging = 0
            while not reading.done():
                if writing.done() and writing.exception() is not None:
                    break  # the gather below raises it
                deleted_while_lagging = plane.retention.deleted
                await asyncio.sleep(0.01)
            await asyncio.wait_for(asyncio.gather(writing, reading), 60)
            assert w.segment_id > 100  # hundreds of rolls
            assert deleted_while_lagging > 0  # the dead reader did not hold data back
            # the live reader has moved on to the head: now the cap holds
            await wait_until(lambda: len(data_segments(w)) <= 4, "the data segments down to the cap")
            assert data_segments(w) == list(range(w.segment_id - 3, w.segment_id + 1))
            assert plane.failures == []
            assert read_reader_position(os.path.join(q, "readers", "dead.pos"))[0] == 0  # it holds segment 0...
            assert 0 not in F.list_segments(str(q))  # ...which is gone all the same

    await asyncio.wait_for(scenario(), 90)
    assert not [r for r in caplog.records if "missing" in r.getMessage()]  # no reader ever skipped a segment


async def test_a_live_reader_holds_segments_past_the_cap_and_a_dead_one_holds_nothing(tmp_path, opened) -> None:
    q = tmp_path / "q"
    w = opened(Queue.open_publisher(q, WriterConfig(segment_size=TINY)))
    one_per_segment(w, 10)  # messages 0..9 in segments 0..9, head 10
    make_dead_reader(q, "gone", 1)  # committed in segment 0... (after message 0, still in segment 0)
    live = opened(Queue.open_subscriber(q, "live", "earliest"))
    for _ in range(4):
        live.next()
    live.commit()  # in segment 3
    assert live_reader_segments(str(q)) == {"live": 3}  # the dead reader is not live

    async def scenario() -> None:
        async with ControlPlane(retention_interval=0.02) as plane:
            plane.manage_writer(w, prealloc=False, max_segments=3)
            await wait_until(lambda: data_segments(w)[0] == 3, "segments 0..2 deleted")
            passes = plane.retention.passes
            await wait_until(lambda: plane.retention.passes >= passes + 3, "three more passes")
            assert data_segments(w) == list(range(3, 11))  # 8 > 3: the live reader wins over the cap
            live.close()  # now it is a dead reader too
            # the files go before the counter moves (it counts a batch once its thread returns)
            await wait_until(lambda: len(data_segments(w)) == 3 and plane.retention.deleted >= 8, "down to the cap")
            assert data_segments(w) == [8, 9, 10]
            assert plane.retention.deleted == 8

    await asyncio.wait_for(scenario(), BOUND * 2)
    with Queue.open_subscriber(q, None, "earliest") as r:
        assert [m.seq for m in r] == [8, 9]


# -- batches and a responsive loop -----------------------------------------------------------------


async def test_a_long_pass_deletes_in_batches_off_the_loop_which_keeps_ticking(tmp_path, opened) -> None:
    q = tmp_path / "q"
    w = opened(Queue.open_publisher(q, WriterConfig(segment_size=TINY)))
    one_per_segment(w, 300)  # 301 segment files
    samples: list[tuple[float, int]] = []

    async def ticker() -> None:
        while True:
            samples.append((time.monotonic(), len(F.list_segments(str(q)))))
            await asyncio.sleep(0.001)

    async def scenario() -> None:
        async with ControlPlane(retention_batch=1, retention_interval=30.0) as plane:
            tick = asyncio.get_running_loop().create_task(ticker())
            try:
                await asyncio.sleep(0.01)
                plane.manage_writer(w, prealloc=False, max_segments=2)  # one pass: 299 files, one per executor call
                await wait_until(lambda: plane.retention.deleted == 299, "the pass finishing")
                await asyncio.sleep(0.01)
            finally:
                tick.cancel()
            assert data_segments(w) == [299, 300]
            assert plane.retention.passes == 1

    await asyncio.wait_for(scenario(), BOUND * 2)
    counts = [c for _t, c in samples]
    during = sorted({c for c in counts if 2 < c < 301})
    assert len(during) >= 3, f"the loop ran only {len(during)} times during the pass: {counts[:5]}...{counts[-5:]}"
    times = [t for t, c in samples if 2 < c < 301]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert max(gaps, default=0) < 0.5  # never blocked for long (a generous bound)


# -- orphaned temp files ---------------------------------------------------------------------------


def dead_pid() -> int:
    if not os.path.exists("/proc/999999"):
        return 999999
    p = subprocess.Popen(["true"])  # a process that has exited and been reaped
    p.wait()
    assert not os.path.exists(f"/proc/{p.pid}")
    return p.pid


def start_sleeper() -> subprocess.Popen:
    return subprocess.Popen(["sleep", "30"])


async def test_orphaned_temp_files_of_a_dead_process_are_removed_and_those_of_a_live_one_kept(tmp_path, opened) -> None:
    q = tmp_path / "q"
    w = opened(Queue.open_publisher(q, WriterConfig(segment_size=TINY)))  # no caps: temp files are still cleaned
    pid = dead_pid()
    orphan = q / f"000000000099{L.SEGMENT_TEMP_SUFFIX}-{pid}-abcd"
    orphan_ctl = q / f"{L.CONTROL_FILE_NAME}.tmp-{pid}"
    mine = q / f"000000000098{L.SEGMENT_TEMP_SUFFIX}-{os.getpid()}-beef"
    sleeper = start_sleeper()
    theirs = q / f"000000000097{L.SEGMENT_TEMP_SUFFIX}-{sleeper.pid}-cafe"
    try:
        for p in (orphan, orphan_ctl, mine, theirs):
            p.write_bytes(b"\0" * 4096)

        async def scenario() -> None:
            async with ControlPlane(retention_interval=0.02) as plane:
                plane.manage_writer(w)
                await wait_until(lambda: not orphan.exists(), "the dead process's temp file removed")
                passes = plane.retention.passes
                await wait_until(lambda: plane.retention.passes >= passes + 2, "two more passes")
                assert not orphan_ctl.exists()
                assert mine.exists() and theirs.exists()  # their processes are alive: maybe still writing
                assert 99 not in F.list_segments(str(q)) and 98 not in F.list_segments(str(q))  # never segments

        await asyncio.wait_for(scenario(), BOUND * 2)
    finally:
        sleeper.kill()
        sleeper.wait()
    mine.unlink()
    theirs.unlink()
    append_range(w, 3)


# -- plan_cleanup with a stale head -------------------------------------------------------------------


def test_plan_cleanup_with_a_stale_head_never_deletes_more_than_with_the_real_head(tmp_path, opened) -> None:
    q = tmp_path / "q"
    n = 12
    w = opened(Queue.open_publisher(q, WriterConfig(segment_size=TINY, prepare_ahead=0)))  # exactly segments 0..11
    one_per_segment(w, n - 1)  # message k alone in segment k, segments 0..11
    append_range(w, 1)
    w.close()  # plan_cleanup needs no writer; its head comes from the caller
    readers = [opened(Queue.open_subscriber(q, f"live{i}", "earliest")) for i in range(3)]
    make_dead_reader(q, "dead", 1)
    qs = str(q)
    assert F.list_segments(qs) == list(range(n))

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(
        real=st.integers(0, n - 1),
        back=st.integers(0, n - 1),
        positions=st.lists(st.one_of(st.none(), st.integers(0, n - 1)), min_size=3, max_size=3),
        max_segments=st.one_of(st.none(), st.integers(1, n + 1)),
        max_bytes=st.one_of(st.none(), st.integers(1, (n + 1) * TINY)),
    )
    def check(real: int, back: int, positions: list[int | None], max_segments: int | None, max_bytes: int | None) -> None:
        stale = max(0, real - back)
        for r, seg in zip(readers, positions):
            if seg is not None:  # else this one keeps its previous commit (or none yet)
                assert r.seek(seg)
                r.commit()
        live = live_reader_segments(qs)
        assert set(live) == {"live0", "live1", "live2"}  # the dead reader never counts
        floor = min(max(s, 0) for s in live.values())  # never committed: holds from the oldest
        capped = max_segments is not None or max_bytes is not None
        with_real = plan_cleanup(qs, real, TINY, max_bytes=max_bytes, max_segments=max_segments)
        with_stale = plan_cleanup(qs, stale, TINY, max_bytes=max_bytes, max_segments=max_segments)
        assert set(with_stale) <= set(with_real)
        assert with_stale == with_real[: len(with_stale)]  # the same oldest-first prefix
        for plan, head in ((with_real, real), (with_stale, stale)):
            assert plan == sorted(plan)
            candidates = [s for s in range(n) if s < head and s < floor]
            assert set(plan) <= set(candidates)  # never the head or newer, never what a live reader needs
            if not capped:
                assert plan == candidates  # without caps: everything no live reader needs
                continue
            held = sum(1 for s in range(n) if s <= head)  # the caps count segments up to the head

            def over(count: int) -> bool:
                return (max_segments is not None and count > max_segments) or (
                    max_bytes is not None and count * TINY > max_bytes)

            if plan:
                assert over(held - len(plan) + 1)  # each deletion was needed...
            if over(held - len(plan)):
                assert plan == candidates  # ...and it stops early only when nothing more may go
        assert F.list_segments(qs) == list(range(n))  # planning deletes nothing

    check()


# -- package bugs ----------------------------------------------------------------------------------


async def test_a_writer_managed_for_retention_only_unmaps_the_segments_it_rolls_away_from(tmp_path, opened) -> None:
    q = tmp_path / "q"
    # prepare_ahead=0: inline rolls, each unmapping the segment it leaves (tests/queue/test_supply.py
    # checks the same bound with the writer's own supplier, which unmaps them on its thread)
    w = opened(Queue.open_publisher(q, WriterConfig(segment_size=TINY, prepare_ahead=0)))

    async def scenario() -> None:
        async with ControlPlane(retention_interval=0.02) as plane:
            plane.manage_writer(w, prealloc=False, max_segments=3)
            for _ in range(30):
                one_per_segment(w, 1)
                await asyncio.sleep(0.002)
            await wait_until(lambda: len(data_segments(w)) == 3, "retention down to the cap")
            await asyncio.sleep(0.1)
            mapped = mapped_segments(q)
            gone = sum(s not in data_segments(w) for s in mapped)
            assert len(mapped) <= 3, f"{len(mapped)} segment mappings kept, {gone} of them of deleted files"

    await asyncio.wait_for(scenario(), BOUND * 2)


@pytest.mark.parametrize("how", ["unmanaged", "plane-exited"])
async def test_a_writer_leaving_the_plane_applies_its_own_caps_again(tmp_path, opened, how) -> None:
    q = tmp_path / "q"
    w = opened(Queue.open_publisher(q, WriterConfig(segment_size=TINY, max_segments=3)))

    async def scenario() -> None:
        async with ControlPlane() as plane:
            plane.manage_writer(w)
            if how == "unmanaged":
                plane.unmanage_writer(w)
                await leave_and_write()
        if how == "plane-exited":
            await leave_and_write()

    async def leave_and_write() -> None:
        one_per_segment(w, 20)
        await wait_until(lambda: len(data_segments(w)) <= 3, "the writer's own housekeeping applying max_segments=3",
                         timeout=1.0)

    await asyncio.wait_for(scenario(), BOUND * 2)


async def test_a_broken_queue_does_not_stop_retention_for_the_other_managed_writers(tmp_path, opened) -> None:
    broken = opened(Queue.open_publisher(tmp_path / "broken", WriterConfig(segment_size=TINY)))
    healthy = opened(Queue.open_publisher(tmp_path / "healthy", WriterConfig(segment_size=TINY)))
    (tmp_path / "broken" / "readers").write_text("not a folder")  # os.listdir raises NotADirectoryError
    one_per_segment(healthy, 10)

    async def scenario() -> None:
        async with ControlPlane(retention_interval=0.02, restart_backoff=0.01, max_restart_backoff=0.05) as plane:
            plane.manage_writer(broken, prealloc=False, max_segments=2)
            plane.manage_writer(healthy, prealloc=False, max_segments=2)
            await wait_until(lambda: len(plane.failures) >= 3, "the broken queue failing")
            await wait_until(lambda: len(data_segments(healthy)) <= 2, "the healthy queue's cap applied", timeout=1.0)

    await asyncio.wait_for(scenario(), BOUND * 2)
