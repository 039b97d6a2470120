"""The ``chronicle`` command, run as a subprocess against real queues made in tmp_path."""
from __future__ import annotations

import json
import os
import pathlib
import queue
import shutil
import signal
import subprocess
import sys
import threading
from typing import Self

import pytest

from chronicle_async import Queue, WriterConfig, cli

TINY = WriterConfig(segment_size=16 * 1024)
T0 = 1_700_000_000_000_000_000  # 2023-11-14T22:13:20Z, in ns
T0_ISO = "2023-11-14T22:13:20"


def run_cli(*args: object, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "chronicle_async.cli", *map(str, args)],
        capture_output=True, text=True, timeout=timeout, check=False,
    )


def run_json(*args: object) -> object:
    p = run_cli(*args, "--json")
    assert p.returncode == 0, p.stdout + p.stderr
    return json.loads(p.stdout)


def tail_lines(*args: object) -> list[str]:
    p = run_cli("tail", *args)
    assert p.returncode == 0, p.stdout + p.stderr
    return p.stdout.splitlines()


def tail_records(*args: object) -> list[dict]:
    return [json.loads(line) for line in tail_lines(*args, "--json")]


def snapshot_files(d) -> dict[str, bytes]:
    out = {}
    for root, _dirs, files in os.walk(d):
        for f in files:
            p = os.path.join(root, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, d)] = fh.read()
    return out


def fill(path, n: int, type_of=lambda i: 1, payload_of=lambda i: json.dumps({"i": i}).encode()) -> None:
    with Queue.open_publisher(path, TINY) as w:
        for i in range(n):
            w.append(type_of(i), payload_of(i), timestamp_ns=T0 + i * 1_000_000)


class Child:
    """A ``chronicle`` child process whose stdout lines a test waits for, one by one, with a timeout."""

    def __init__(self, *args: object):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "chronicle_async.cli", *map(str, args)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self._q: queue.Queue = queue.Queue()
        self._pump = threading.Thread(target=self._read, daemon=True)
        self._pump.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self._q.put(line.rstrip("\n"))
        self._q.put(None)

    def next(self, timeout: float = 30) -> str | None:
        return self._q.get(timeout=timeout)

    def wait(self, timeout: float = 30) -> int:
        return self.proc.wait(timeout=timeout)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self._pump.join(timeout=10)
        self.proc.stdout.close()
        self.proc.stderr.close()


# -- the command itself ------------------------------------------------------------------------


def test_help_lists_every_command():
    p = run_cli("--help")
    assert p.returncode == 0
    for command in ("demo", "inspect", "tail", "readers", "monitor", "bench"):
        assert f"    {command} " in p.stdout, command


@pytest.mark.parametrize("command", ["inspect", "tail", "readers", "monitor", "bench"])
def test_every_command_has_its_own_help(command, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main([command, "--help"])
    assert e.value.code == 0
    assert f"usage: chronicle {command}" in capsys.readouterr().out


def test_usage_errors_exit_2_with_a_chronicle_usage_error(tmp_path):
    p = run_cli("tail", tmp_path, "--commit")
    assert p.returncode == 2
    assert "chronicle: UsageError: tail: --commit needs --name" in p.stderr
    p = run_cli("tail", tmp_path, "--from", "3", "-n", "2")
    assert p.returncode == 2 and "not allowed with" in p.stderr


def test_a_bad_path_exits_1_naming_the_path(tmp_path):
    missing = tmp_path / "no-such-queue"
    for command in ("inspect", "tail", "readers"):
        p = run_cli(command, missing)
        assert p.returncode == 1, (command, p.stderr)
        assert p.stderr.startswith("chronicle: QueueNotFoundError:") and str(missing) in p.stderr
    a_file = tmp_path / "file"
    a_file.write_text("x")
    p = run_cli("inspect", a_file)
    assert p.returncode == 1 and p.stderr.startswith("chronicle: NotAQueueError:") and str(a_file) in p.stderr


# -- inspect -----------------------------------------------------------------------------------


def test_inspect_shows_a_fresh_queue_with_a_live_writer_then_closed(queue_dir):
    w = Queue.open_publisher(queue_dir, TINY)
    try:
        p = run_cli("inspect", queue_dir)
        assert p.returncode == 0, p.stderr
        out = p.stdout
        assert f"queue      {queue_dir}" in out
        assert "version 1, segment size 16.0 KiB" in out
        assert f"pid {os.getpid()}, epoch 1, state open, lock held (pid {os.getpid()})" in out
        assert "liveness   alive" in out
        assert "messages   none on disk" in out
        assert "readers    0 named (0 live)" in out
        s = run_json("inspect", queue_dir)
        assert s["writer"]["alive"] and s["writer"]["lock_held"] and s["writer"]["state"] == "open"
        assert s["writer"]["heartbeat_age"] < 1.0
        # the head, and the segments the writer's supplier thread prepared ahead of it
        assert s["segments"]["count"] == 1 + s["segments"]["prepared_ahead"] and s["messages"]["count_estimate"] == 0
        assert s["messages"]["first_seq"] is None
    finally:
        w.close()
    s = run_json("inspect", queue_dir)
    assert s["writer"]["state"] == "closed" and not s["writer"]["lock_held"]
    assert s["writer"]["liveness"] == "writer_closed" and not s["writer"]["alive"]


def test_inspect_after_a_roll_reports_segments_and_the_first_and_last_message(queue_dir):
    fill(queue_dir, 600)  # 64-byte records: about 255 per 16 KiB segment
    before = snapshot_files(queue_dir)
    s = run_json("inspect", queue_dir)
    assert snapshot_files(queue_dir) == before  # read-only: no byte changed, no file created
    seg = s["segments"]
    ahead = seg["prepared_ahead"]  # empty segments the writer's supplier thread prepared past the head
    assert seg["count"] == 3 + ahead and (seg["first_id"], seg["last_id"], seg["head_id"]) == (0, 2 + ahead, 2)
    assert seg["bytes_on_disk"] >= 3 * 16 * 1024
    m = s["messages"]
    assert (m["first_seq"], m["last_seq"], m["count_estimate"]) == (0, 599, 600)
    assert m["first_timestamp_ns"] == T0 and m["first_time"] == T0_ISO + ".000000000Z"
    assert m["last_time"] == "2023-11-14T22:13:20.599000000Z"
    assert s["head"]["next_seq"] == 600 and s["readers"]["count"] == 0
    text = run_cli("inspect", queue_dir).stdout
    assert f"{3 + ahead} on disk (ids 0..{2 + ahead}), head 2" in text and "seq 0 .. 599 (about 600 messages)" in text
    assert (f", {ahead} prepared ahead" in text) == (ahead > 0)
    assert "readers" not in os.listdir(queue_dir)


# -- tail --------------------------------------------------------------------------------------


def test_tail_decodes_payloads_as_json_then_utf8_then_hex(queue_dir):
    payloads = [b'{"price": 101.5, "sym": "ACME"}', "héllo wörld".encode(), bytes(range(256)), b"x" * 500, b""]
    fill(queue_dir, len(payloads), payload_of=lambda i: payloads[i])
    lines = tail_lines(queue_dir, "--from", 0, "--width", 40)
    assert lines[0] == f'0  {T0_ISO}.000000000Z  type=1  len=31  {{"price":101.5,"sym":"ACME"}}'
    assert lines[1].endswith("len=13  héllo wörld")
    assert lines[2].endswith("len=256  " + ("hex:" + bytes(range(256)).hex())[:40] + "... (256 bytes)")
    assert lines[3].endswith("  " + "x" * 40 + "... (500 bytes)")
    assert lines[4].endswith("type=1  len=0")
    recs = tail_records(queue_dir, "--from", 0)
    assert [r["encoding"] for r in recs] == ["json", "utf8", "hex", "utf8", "utf8"]
    assert recs[0]["payload"] == {"price": 101.5, "sym": "ACME"}
    assert recs[1]["payload"] == "héllo wörld" and bytes.fromhex(recs[2]["payload"]) == bytes(range(256))
    assert recs[3]["payload"] == "x" * 500  # --json does not truncate unless --width says so
    assert recs[0]["timestamp_ns"] == T0 and recs[0]["length"] == 31


def test_tail_starts_from_a_seq_or_a_time(queue_dir):
    fill(queue_dir, 20)
    assert [r["seq"] for r in tail_records(queue_dir, "--from", 15)] == [15, 16, 17, 18, 19]
    at_7 = tail_records(queue_dir, "--from-time", f"{T0_ISO}.007Z")
    assert [r["seq"] for r in at_7][:2] == [7, 8] and len(at_7) == 13
    between = tail_records(queue_dir, "--from-time", T0 + 12_500_000)  # ns: first at or after 12.5 ms
    assert between[0]["seq"] == 13


def test_tail_filters_by_type_and_shows_the_last_n(queue_dir):
    fill(queue_dir, 600, type_of=lambda i: i % 3)
    assert [r["seq"] for r in tail_records(queue_dir)] == list(range(590, 600))  # default: the last 10
    assert [r["seq"] for r in tail_records(queue_dir, "-n", 3)] == [597, 598, 599]
    assert [r["seq"] for r in tail_records(queue_dir, "-n", 3, "--type", 1)] == [592, 595, 598]
    picked = tail_records(queue_dir, "--from", 0, "--type", 0, "--type", 2)
    assert len(picked) == 400 and {r["type_id"] for r in picked} == {0, 2}
    assert tail_records(queue_dir, "-n", 0) == []


def test_tail_follow_prints_a_message_appended_after_it_started_and_exits_130_on_ctrl_c(queue_dir):
    w = Queue.open_publisher(queue_dir, TINY)
    try:
        w.append(1, b"before")
        with Child("tail", queue_dir, "-f", "-n", 1) as tail:
            assert tail.next().endswith("len=6  before")
            w.append(2, b'{"after": true}')
            assert tail.next().endswith('type=2  len=15  {"after":true}')
            tail.proc.send_signal(signal.SIGINT)
            assert tail.wait() == 130
    finally:
        w.close()
    assert "readers" not in os.listdir(queue_dir)  # an anonymous tail leaves nothing behind


def test_tail_until_closed_exits_0_when_the_writer_closes_and_sigterm_exits_143(queue_dir):
    w = Queue.open_publisher(queue_dir, TINY)
    try:
        with Child("tail", queue_dir, "--from", 0, "--until-closed") as until, \
                Child("tail", queue_dir, "--from", 0, "-f") as follow:
            w.append(3, b"one")
            assert until.next().endswith("one") and follow.next().endswith("one")
            w.append(3, b"two")
            w.close()
            assert until.wait() == 0
            assert until.next().endswith("two") and until.next() is None
            assert follow.next().endswith("two")
            follow.proc.terminate()
            assert follow.wait() == 143
    finally:
        w.close()


def test_tail_creates_a_reader_file_only_with_name_and_commit(queue_dir):
    fill(queue_dir, 30)
    tail_lines(queue_dir, "--from", 0)
    p = run_cli("tail", queue_dir, "--name", "ghost")
    assert p.returncode == 1 and "ghost" in p.stderr and p.stderr.startswith("chronicle: InvalidArgumentError:")
    assert "readers" not in os.listdir(queue_dir)
    # consume as "eater": it commits after printing, so the next run prints only what is new
    assert [r["seq"] for r in tail_records(queue_dir, "--name", "eater", "--commit", "--type", 1)] == list(range(30))
    assert os.listdir(queue_dir / "readers") == ["eater.pos"]
    with Queue.open_publisher(queue_dir, TINY) as w:
        w.append(1, b"new")
    before = snapshot_files(queue_dir)
    assert [r["seq"] for r in tail_records(queue_dir, "--name", "eater")] == [30]  # read-only peek
    assert snapshot_files(queue_dir) == before
    assert [r["seq"] for r in tail_records(queue_dir, "--name", "eater", "--commit")] == [30]
    assert tail_records(queue_dir, "--name", "eater", "--commit") == []


def test_tail_name_of_a_reader_that_does_not_exist_is_a_typed_error_listing_the_readers(queue_dir):
    fill(queue_dir, 3)
    for name in ("risk", "audit"):
        with Queue.open_subscriber(queue_dir, name) as r:
            r.commit()
    before = snapshot_files(queue_dir)
    p = run_cli("tail", queue_dir, "--name", "nosuch")
    assert p.returncode == 1 and p.stdout == ""
    assert p.stderr.startswith(f"chronicle: InvalidArgumentError: queue {queue_dir} has no reader named 'nosuch'")
    assert "its named readers are audit, risk" in p.stderr and "add --commit" in p.stderr
    assert "Traceback" not in p.stderr
    assert snapshot_files(queue_dir) == before, "nothing is created"


# -- readers -----------------------------------------------------------------------------------


def test_readers_lists_lag_live_and_dead_and_who_holds_retention(queue_dir):
    fill(queue_dir, 600)  # three segments: the head is segment 2
    with Queue.open_subscriber(queue_dir, "gone", "earliest") as r:
        for _ in range(550):
            r.next()
        r.commit()
    live = Queue.open_subscriber(queue_dir, "slow", "earliest")
    try:
        for _ in range(10):
            live.next()
        live.commit()
        rows = {e["name"]: e for e in run_json("readers", queue_dir)["readers"]}
        slow, gone = rows["slow"], rows["gone"]
        assert slow["live"] and not gone["live"]
        assert (slow["next_seq"], slow["lag_messages"], slow["segment"]) == (10, 590, 0)
        assert (gone["next_seq"], gone["lag_messages"], gone["segment"]) == (550, 50, 2)
        assert slow["lag_bytes"] > gone["lag_bytes"] > 0
        assert slow["holds_retention"] and slow["segments_held"] == 2 and not gone["holds_retention"]
        assert slow["commit_age"] < 30 and slow["owner_pid"] == os.getpid()
        text = run_cli("readers", queue_dir).stdout
        assert any(line.startswith("slow  live") and "holds 2 segment(s)" in line for line in text.splitlines())
        assert any(line.startswith("gone  dead") for line in text.splitlines())
    finally:
        live.close()
    assert not run_json("readers", queue_dir)["readers"][1]["live"]  # "slow" is dead once closed


# -- monitor -----------------------------------------------------------------------------------


def test_monitor_once_shows_every_queue_under_a_bus_root(tmp_path):
    root = tmp_path / "bus"
    fill(root / "orders", 5)
    w = Queue.open_publisher(root / "prices", TINY)
    try:
        w.append(1, b"tick")
        with Queue.open_subscriber(root / "prices", "risk", "earliest") as r:
            r.commit()
        (root / "pending").mkdir()  # a queue folder whose writer has not created the queue yet
        p = run_cli("monitor", root, "--once")
        assert p.returncode == 0, p.stderr
        lines = p.stdout.splitlines()
        assert lines[0].startswith(f"chronicle monitor {root}")
        row = {line.split()[0]: line for line in lines if line and line.split()[0] in ("orders", "prices", "pending")}
        assert "closed" in row["orders"] and row["orders"].endswith("writer_closed")
        assert f"open    {os.getpid()}" in row["prices"] and row["prices"].endswith("alive")
        assert "waiting for control.cq" in row["pending"]
        assert "    reader risk: dead, lag 1 msgs / 64 B" in p.stdout
        snap = run_json("monitor", root, "--once")
        qs = {q["name"]: q for q in snap["queues"]}
        assert qs["prices"]["next_seq"] == 1 and qs["orders"]["next_seq"] == 5 and not qs["pending"]["ready"]
        assert qs["prices"]["msgs_per_s"] == 0 and qs["orders"]["segments"] == 1
    finally:
        w.close()


def test_monitor_once_on_a_missing_root_fails_naming_it_and_an_empty_root_waits_for_queues(tmp_path):
    p = run_cli("monitor", tmp_path / "not" / "yet", "--once")
    assert p.returncode == 1, p.stdout
    assert f"bus root {tmp_path / 'not' / 'yet'} does not exist (nearest existing folder: {tmp_path})" in p.stderr
    assert "drop --once to wait" in p.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "waiting for queues under" in run_cli("monitor", empty, "--once").stdout


# -- bench -------------------------------------------------------------------------------------


def test_bench_runs_the_checkouts_suite_with_the_options_given(monkeypatch):
    from chronicle_async.cli import bench

    root = bench.find_benchmarks()
    assert root is not None and os.path.isfile(os.path.join(root, "benchmarks", "run.py"))
    calls = []
    monkeypatch.setattr(subprocess, "call", lambda cmd, cwd: calls.append((cmd, cwd)) or 0)
    assert cli.main(["bench", "--quick", "--hotcore", "--rounds", "2"]) == 0
    assert calls == [([sys.executable, "-m", "benchmarks.run", "--quick", "--hotcore", "--rounds", "2"], root)]


def test_full_bench_outside_a_checkout_fails_clearly(monkeypatch, capsys):
    from chronicle_async.cli import bench

    monkeypatch.setattr(bench, "find_benchmarks", lambda: None)
    assert cli.main(["bench", "--full"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("chronicle: bench: the benchmark suite is not installed with the package")
    assert "clone the repository and run `make bench` there" in err and "Error" not in err


def test_bench_from_an_installed_copy_of_the_package_says_to_run_it_in_a_clone(tmp_path):
    site = tmp_path / "site-packages"  # what `pip install .` leaves: the package, no benchmarks/
    shutil.copytree(pathlib.Path(cli.__file__).parent.parent, site / "chronicle_async",
                    ignore=shutil.ignore_patterns("__pycache__"))
    elsewhere = tmp_path / "work"
    elsewhere.mkdir()
    p = subprocess.run([sys.executable, "-m", "chronicle_async.cli", "bench", "--quick"], cwd=elsewhere,
                       env={**os.environ, "PYTHONPATH": str(site)}, capture_output=True, text=True, timeout=60)
    assert p.returncode == 1, p.stdout + p.stderr
    assert p.stderr.startswith("chronicle: bench: the benchmark suite is not installed with the package")
    assert str(site) in p.stderr and str(elsewhere) in p.stderr and "`make bench`" in p.stderr
    assert "Traceback" not in p.stderr and "FileNotFoundError" not in p.stderr
