"""`chronicle bridge out` and `bridge in` as separate processes against a real nats-server: every message once, in order."""
from __future__ import annotations

import pathlib
import random
import re
import time

import pytest

from chronicle_async.bridge import LocalNatsServer
from tests.bridge.conftest import Procs
from tests.bridge.feed import WRITER, read_bridged, write
from tests.cli.console import chronicle_json
from tests.bridge.natsserver import add_stream, stream_count, stream_source_seqs


def _out(procs: Procs, src: pathlib.Path, server: LocalNatsServer, **kw: object):
    extra = [a for k, v in kw.items() for a in (f"--{k.replace('_', '-')}", v)]
    return procs.chronicle("bridge", "out", src, "--server", server.url, "--stream", "S", "--subject", "bus.src",
                           "--ack-timeout", "1", *extra)


def _in(procs: Procs, dst: pathlib.Path, server: LocalNatsServer):
    return procs.chronicle("bridge", "in", "--server", server.url, "--stream", "S", "--subject", "bus.src", dst)


def _assert_running(*ps) -> None:
    for p in ps:
        assert p.poll() is None, f"a bridge exited ({p.returncode}): {open(p.log_path).read()[-3000:]}"


def _wait_exists(path: pathlib.Path) -> None:
    from chronicle_async import Queue

    deadline = time.monotonic() + 30
    while not Queue.exists(path):
        assert time.monotonic() < deadline, f"the writer never created {path}"
        time.sleep(0.02)


def _wait_count(server: LocalNatsServer, n: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while (c := stream_count(server.url, "S")) < n and time.monotonic() < deadline:
        time.sleep(0.05)
    return c


def _assert_stream_holds_each_once(server: LocalNatsServer, n: int) -> None:
    seqs = stream_source_seqs(server.url, "S")
    assert len(seqs) == n, f"stream holds {len(seqs)} messages, expected {n}"
    assert seqs == list(range(n)), "the stream has a duplicate or a hole"


@pytest.mark.slow
def test_round_trip_of_100k_random_size_messages_through_separate_processes_arrives_once_in_order(
    tmp_path: pathlib.Path, nats_server: LocalNatsServer, procs: Procs
) -> None:
    n = 100_000
    add_stream(nats_server.url, "S", ["bus.>"])
    src, dst = tmp_path / "src", tmp_path / "dst"
    writer = procs.python(WRITER, src, n, 0)
    _wait_exists(src)
    bridges = _out(procs, src, nats_server), _in(procs, dst, nats_server)
    seen = read_bridged(str(dst), n, timeout=150)
    _assert_running(*bridges)
    assert writer.wait(60) == 0
    assert len(seen) == n
    assert [s for _, s in seen] == sorted({s for _, s in seen})
    _assert_stream_holds_each_once(nats_server, n)


@pytest.mark.slow
def test_bridge_out_killed_9_at_random_moments_loses_nothing_and_duplicates_nothing_in_the_stream(
    tmp_path: pathlib.Path, nats_server: LocalNatsServer, procs: Procs
) -> None:
    n, rounds = 50_000, 10
    add_stream(nats_server.url, "S", ["bus.>"])
    src = tmp_path / "src"
    write(str(src), n)
    rnd = random.Random(14)
    counts = []
    for r in range(rounds):
        p = _out(procs, src, nats_server)
        _wait_count(nats_server, rnd.randint(r * n // (rounds + 2), (r + 1) * n // (rounds + 2)), 30)
        time.sleep(rnd.uniform(0, 0.05))  # kill -9 at a random moment while it publishes
        p.kill()
        p.wait()
        counts.append(stream_count(nats_server.url, "S"))
    assert sum(0 < c < n for c in counts) >= rounds // 2, f"too few kills landed mid-stream: {counts}"
    last = _out(procs, src, nats_server)
    assert _wait_count(nats_server, n, 60) == n
    time.sleep(0.5)
    last.terminate()
    assert last.wait(60) == 143
    stats = re.search(r"published=(\d+), duplicates=(\d+)", open(last.log_path).read())
    assert stats, open(last.log_path).read()
    published, duplicates = map(int, stats.groups())
    assert published - duplicates == n - counts[-1], "the acks' duplicate flags do not account for the re-sends"
    _assert_stream_holds_each_once(nats_server, n)


def test_bridge_out_restarted_after_the_duplicate_window_with_its_commit_lost_republishes_nothing(
    tmp_path: pathlib.Path, nats_server: LocalNatsServer, procs: Procs
) -> None:
    from chronicle_async import Queue

    add_stream(nats_server.url, "S", ["bus.>"], duplicate_window=0.5)
    src = tmp_path / "src"
    write(str(src), 2_000)
    p = _out(procs, src, nats_server)
    assert _wait_count(nats_server, 2_000, 30) == 2_000
    p.terminate()
    assert p.wait(60) == 143  # under load it may still be starting (numba) when the signal lands
    Queue.delete_reader(src, "bridge-out")  # as if the commit never reached the disk
    time.sleep(1.0)  # past the duplicate window: Nats-Msg-Id alone would no longer catch a re-send
    p = _out(procs, src, nats_server)
    deadline = time.monotonic() + 60
    while not any(e["name"] == "bridge-out" and e["live"] for e in chronicle_json("readers", src)["readers"]):
        assert time.monotonic() < deadline and p.poll() is None, open(p.log_path).read()
        time.sleep(0.1)
    time.sleep(1.0)  # it has read the stream's last message and would be publishing now
    p.terminate()
    assert p.wait(60) == 143  # under load it may still be starting (numba) when the signal lands
    assert "published=0," in open(p.log_path).read()  # it read the stream's last message and skipped to its end
    _assert_stream_holds_each_once(nats_server, 2_000)


@pytest.mark.slow
def test_nats_server_killed_9_and_restarted_on_its_store_mid_stream_the_bridges_resume_with_no_loss_or_duplicate(
    tmp_path: pathlib.Path, nats_server: LocalNatsServer, procs: Procs
) -> None:
    n = 30_000
    add_stream(nats_server.url, "S", ["bus.>"])
    src, dst = tmp_path / "src", tmp_path / "dst"
    writer = procs.python(WRITER, src, n, 5_000)  # six seconds of feed
    _wait_exists(src)
    bridges = _out(procs, src, nats_server), _in(procs, dst, nats_server)
    for _ in range(2):
        time.sleep(1.5)
        nats_server.kill9()
        time.sleep(0.5)
        nats_server.start()
    seen = read_bridged(str(dst), n, timeout=90)
    _assert_running(*bridges)
    assert writer.wait(30) == 0
    assert len(seen) == n
    _assert_stream_holds_each_once(nats_server, n)


@pytest.mark.slow
def test_bridge_in_killed_9_at_random_moments_appends_every_message_once(
    tmp_path: pathlib.Path, nats_server: LocalNatsServer, procs: Procs
) -> None:
    n, rounds = 20_000, 6
    add_stream(nats_server.url, "S", ["bus.>"])
    src, dst = tmp_path / "src", tmp_path / "dst"
    write(str(src), n)
    _out(procs, src, nats_server)
    assert _wait_count(nats_server, n, 60) == n
    rnd = random.Random(41)
    for _ in range(rounds):
        p = _in(procs, dst, nats_server)
        time.sleep(rnd.uniform(0.6, 1.4))
        p.kill()
        p.wait()
    last = _in(procs, dst, nats_server)
    seen = read_bridged(str(dst), n, timeout=60)
    _assert_running(last)
    assert len(seen) == n
