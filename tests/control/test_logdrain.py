"""The control plane's log drain (control/logdrain.py): a HotLoop's log ring to a Logger or a file.

A real HotLoop thread runs ONE shared jitted handler (``note``, also used by
test_plane.py, so the duty cycle compiles once per process) that writes one
``hot.loop.log`` record per message; real queue folders under tmp_path feed it.
Every wait is bounded (``asyncio.wait_for`` or a polling deadline) so a bug fails
instead of hanging.
"""
from __future__ import annotations

import asyncio
import logging
import pathlib
import re
import time
from collections.abc import Callable, Iterator

import numba
import numpy as np
import pytest

from chronicle_async import ControlPlane, HotLoop, Queue, QueueWriter, WriterConfig
from chronicle_async.hot import loop as K
from chronicle_async.hot.loop import log

SMALL = WriterConfig(segment_size=64 * 1024)
BOUND = 10.0  # generous limit on any single wait in these tests
LOUD_TYPE = 9  # messages of this type_id are logged at WARNING, the others at INFO

# -- the one jitted handler (shared with test_plane.py) ------------------------------------------
# state[0] = messages handled, state[1] = seq of the last one.
# Each message logs (level, source, seq, type_id, payload length, messages handled so far).


@numba.njit(cache=False)
def note(state, ctx, source, type_id, seq, timestamp_ns, payload):
    state[0] += 1
    state[1] = seq
    level = K.LOG_WARNING if type_id == LOUD_TYPE else K.LOG_INFO
    log(ctx, level, source, seq, type_id, payload.shape[0], state[0])
    return 0


def new_state() -> np.ndarray:
    return np.zeros(4, np.int64)


# -- helpers --------------------------------------------------------------------------------------


async def wait_until(pred: Callable[[], bool], what: str, timeout: float = BOUND) -> None:
    """Poll ``pred`` on the event loop until it holds; fail (not hang) after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for: {what}")
        await asyncio.sleep(0.005)


def wait_sync(pred: Callable[[], bool], what: str, timeout: float = BOUND) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for: {what}")
        time.sleep(0.002)


def payload_of(seq: int) -> bytes:
    return seq.to_bytes(8, "little") * (1 + seq % 5)


def append_messages(w: QueueWriter, count: int, type_id: int = 1) -> list[int]:
    seqs = []
    for _ in range(count):
        seq = w.next_seq
        seqs.append(w.append(type_id, payload_of(seq)))
    return seqs


_REC = re.compile(r"^(\d+) (\w+) hot user source=(-?\d+) args=\((-?\d+), (-?\d+), (-?\d+), (-?\d+)\)$")


def parse(line: str) -> tuple[int, str, int, tuple[int, int, int, int]]:
    m = _REC.match(line)
    assert m, f"not a drained hot-loop record: {line!r}"
    ts, level, source, *args = m.groups()
    return int(ts), level, int(source), tuple(int(a) for a in args)  # type: ignore[return-value]


@pytest.fixture
def hot_queue(tmp_path: pathlib.Path) -> Iterator[Callable[..., tuple[HotLoop, np.ndarray, QueueWriter]]]:
    """A writer and a started HotLoop (``note``) reading its queue; everything closed at teardown."""
    made: list[object] = []

    def make(log_capacity: int = 1024, name: str = "q") -> tuple[HotLoop, np.ndarray, QueueWriter]:
        w = Queue.open_publisher(tmp_path / name, SMALL)
        made.append(w)
        state = new_state()
        hot = HotLoop(note, state, log_capacity=log_capacity, name="chronicle-hot-test")
        made.append(hot)
        # added before start: the loop logs no "reader added" event, so the ring holds only our records
        hot.add_reader(Queue.open_subscriber(tmp_path / name, None, "earliest"), source=3)
        hot.start()
        return hot, state, w

    yield make
    for obj in reversed(made):
        obj.close()  # the HotLoop first (it owns the reader), then the writer


# -- to a logging.Logger ------------------------------------------------------------------------


async def test_handler_log_records_are_drained_to_a_logger_in_order_with_their_levels(hot_queue, caplog) -> None:
    hot, state, w = hot_queue()
    logger = logging.getLogger("test.control.logdrain.hot")
    caplog.set_level(logging.DEBUG, logger=logger.name)

    async def scenario() -> None:
        async with ControlPlane(hot, log_target=logger, log_interval=0.005) as plane:
            assert "log-drain" in plane.workers
            seqs = append_messages(w, 40) + append_messages(w, 5, type_id=LOUD_TYPE)
            await wait_until(lambda: plane.log_drain.records == 45, "45 records drained")
            assert state[0] == 45
            mine = [r for r in caplog.records if r.name == logger.name]
            assert len(mine) == 45
            parsed = [parse(r.getMessage()) for r in mine]
            assert [p[3][0] for p in parsed] == seqs  # every record, once, in order
            for rec, (_ts, level, source, (seq, type_id, length, handled)) in zip(mine, parsed):
                assert source == 3
                assert length == len(payload_of(seq))
                want = logging.WARNING if type_id == LOUD_TYPE else logging.INFO
                assert rec.levelno == want and level == logging.getLevelName(want)
                assert handled == seq + 1  # the handler's own counter, as it was when it logged
            stamps = [p[0] for p in parsed]
            assert stamps == sorted(stamps)  # the hot loop's clock, never going backwards
            now = time.time_ns()
            assert now - 60e9 < stamps[0] <= now  # CLOCK_REALTIME, from the loop's calibration
            assert not any(r.levelno >= logging.WARNING and "dropped" in r.getMessage() for r in caplog.records)

    await asyncio.wait_for(scenario(), BOUND * 2)
    assert hot.running and hot.error is None


async def test_the_default_target_is_the_chronicle_async_hot_logger(hot_queue, caplog) -> None:
    hot, _state, w = hot_queue()
    caplog.set_level(logging.DEBUG, logger="chronicle_async.hot")

    async def scenario() -> None:
        async with ControlPlane(hot, log_interval=0.005) as plane:
            append_messages(w, 3)
            await wait_until(lambda: plane.log_drain.records == 3, "3 records drained")

    await asyncio.wait_for(scenario(), BOUND * 2)
    mine = [r for r in caplog.records if r.name == "chronicle_async.hot"]
    assert [parse(r.getMessage())[3][0] for r in mine] == [0, 1, 2]


# -- to a file (aiofiles) ----------------------------------------------------------------------


@pytest.mark.parametrize("as_str", [False, True], ids=["PathLike", "str"])
async def test_handler_log_records_are_appended_to_a_file_target(hot_queue, tmp_path, as_str) -> None:
    hot, _state, w = hot_queue()
    target = tmp_path / "logs" / "hot.log"
    target.parent.mkdir()
    target.write_text("an existing line\n")  # the drain appends, it never truncates

    async def scenario() -> None:
        async with ControlPlane(hot, log_target=str(target) if as_str else target, log_interval=0.005) as plane:
            seqs = append_messages(w, 30)
            await wait_until(lambda: plane.log_drain.records == 30, "30 records drained")
            # flushed as it goes: the file is complete while the plane still runs
            lines = target.read_text().splitlines()
            assert lines[0] == "an existing line"
            assert [parse(x)[3][0] for x in lines[1:]] == seqs
            seqs += append_messages(w, 10)
            await wait_until(lambda: plane.log_drain.records == 40, "40 records drained")
        return seqs

    seqs = await asyncio.wait_for(scenario(), BOUND * 2)
    lines = target.read_text().splitlines()
    assert lines[0] == "an existing line"
    parsed = [parse(x) for x in lines[1:]]
    assert [p[3][0] for p in parsed] == seqs
    assert {p[1] for p in parsed} == {"INFO"} and {p[2] for p in parsed} == {3}


async def test_records_logged_just_before_the_plane_exits_still_reach_a_file(hot_queue, tmp_path) -> None:
    """The drain runs every 10 s here, so only the final drain (on exit) can move these records."""
    hot, state, w = hot_queue()
    target = tmp_path / "tail.log"

    async def scenario() -> None:
        async with ControlPlane(hot, log_target=target, log_interval=10.0) as plane:
            await wait_until(lambda: target.exists(), "the log file opened")
            await asyncio.sleep(0.05)  # past the first drain
            append_messages(w, 7)
            await wait_until(lambda: state[0] == 7, "7 messages handled")
            assert plane.log_drain.records == 0

    await asyncio.wait_for(scenario(), BOUND * 2)
    assert [parse(x)[3][0] for x in target.read_text().splitlines()] == list(range(7))


async def test_records_logged_just_before_the_plane_exits_still_reach_a_logger(hot_queue, caplog) -> None:
    hot, state, w = hot_queue()
    logger = logging.getLogger("test.control.logdrain.tail")
    caplog.set_level(logging.DEBUG, logger=logger.name)

    async def scenario() -> None:
        async with ControlPlane(hot, log_target=logger, log_interval=10.0):
            await asyncio.sleep(0.05)  # past the first drain
            append_messages(w, 7)
            await wait_until(lambda: state[0] == 7, "7 messages handled")

    await asyncio.wait_for(scenario(), BOUND * 2)
    got = [parse(r.getMessage())[3][0] for r in caplog.records if r.name == logger.name]
    assert got == list(range(7))


# -- an overflowing ring --------------------------------------------------------------------------


def _dropped_counts(records: list[logging.LogRecord], logger_name: str) -> list[int]:
    counts = []
    for r in records:
        if r.name != logger_name:
            continue
        m = re.search(r"log ring was full: (\d+) records dropped", r.getMessage())
        if m:
            assert r.levelno == logging.WARNING
            counts.append(int(m.group(1)))
    return counts


async def test_an_overflowing_log_ring_is_one_warning_with_the_count_and_never_stalls_the_hot_loop(hot_queue, caplog) -> None:
    hot, state, w = hot_queue(log_capacity=4)
    logger = logging.getLogger("test.control.logdrain.overflow")
    caplog.set_level(logging.DEBUG, logger=logger.name)

    # Nobody drains yet: the hot loop must still handle every message, dropping all but 4 records.
    first = append_messages(w, 1000)
    wait_sync(lambda: state[0] == 1000, "1000 messages handled with a full log ring")
    assert hot.log_dropped == 996
    assert hot.running and hot.error is None

    async def scenario() -> None:
        async with ControlPlane(hot, log_target=logger, log_interval=0.005) as plane:
            await wait_until(lambda: _dropped_counts(caplog.records, logger.name), "the drop warning")
            await asyncio.sleep(0.05)  # a few more drains: the same drops are not reported again
            assert _dropped_counts(caplog.records, logger.name) == [996]
            infos = [parse(r.getMessage()) for r in caplog.records if r.name == logger.name and r.levelno == logging.INFO]
            assert [p[3][0] for p in infos] == first[:4]  # the ring kept the oldest four
            assert plane.log_drain.records == 4

            # Now overflow it while the plane drains: every record is drained or counted, none twice.
            more = append_messages(w, 3000)
            await wait_until(lambda: state[0] == 4000, "4000 messages handled")
            await wait_until(lambda: plane.log_drain.records + hot.log_dropped == 4000,
                             "every record drained or counted as dropped")
            await asyncio.sleep(0.05)
            counts = _dropped_counts(caplog.records, logger.name)
            assert sum(counts) == hot.log_dropped
            assert all(c > 0 for c in counts)
            infos = [parse(r.getMessage())[3][0] for r in caplog.records if r.name == logger.name and r.levelno == logging.INFO]
            assert len(infos) == plane.log_drain.records
            assert infos == sorted(infos) and len(set(infos)) == len(infos)  # in order, no duplicates
            assert set(infos) <= set(first) | set(more)

    await asyncio.wait_for(scenario(), BOUND * 2)
    assert hot.running and hot.error is None
