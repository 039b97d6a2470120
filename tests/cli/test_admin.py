"""``chronicle rm`` and ``chronicle purge``, run as the installed console script against real queues."""
from __future__ import annotations

import json
import os
import pty
import shutil
import subprocess
import sys
import tempfile

import pytest

from chronicle_async import Queue, WriterConfig

from .console import CHRONICLE, chronicle, chronicle_json

TINY = WriterConfig(segment_size=16 * 1024)
T0 = 1_700_000_000_000_000_000  # 2023-11-14T22:13:20Z
PER_SEGMENT = 14  # a 1000-byte payload takes 1088 bytes (header, 64-byte alignment): 14 fill a 16 KiB segment


def fill(path, n: int) -> None:
    """``n`` messages of 1000 bytes, one ms apart from T0, in 16 KiB segments; the writer closes."""
    with Queue.open_publisher(path, TINY) as w:
        for i in range(n):
            w.append(1, b"%04d" % i + b"." * 996, timestamp_ns=T0 + i * 1_000_000)


def segments(path) -> list[str]:
    return sorted(n for n in os.listdir(path) if n.endswith(".seg"))


def first_seq(path) -> int:
    with Queue.open_subscriber(path, None, "earliest") as r:
        return r.next().seq


def run_on_tty(*args: object, answer: bytes) -> tuple[int, str]:
    """Run ``chronicle ARGS`` with stdin a terminal, type ``answer``; returns (exit code, stderr)."""
    master, slave = pty.openpty()
    try:
        p = subprocess.Popen([CHRONICLE, *map(str, args)], stdin=slave, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        os.write(master, answer)
        _out, err = p.communicate(timeout=60)
    finally:
        os.close(master)
        os.close(slave)
    return p.returncode, err


# -- rm ----------------------------------------------------------------------------------------


def test_rm_yes_deletes_every_file_the_queue_made_and_its_folder(tmp_path):
    q = tmp_path / "q"
    fill(q, 40)
    with Queue.open_subscriber(q, "audit") as r:
        r.next()
        r.commit()
    out = chronicle_json("rm", q, "--yes")
    assert not q.exists()
    assert str(q / "control.cq") == out["deleted"][0]  # the control file first: readers see it gone at once
    assert str(q / "readers" / "audit.pos") in out["deleted"]
    assert out["deleted"][-1] == str(q)
    assert list(tmp_path.iterdir()) == []


def test_rm_refuses_a_queue_holding_foreign_files_and_lists_them(tmp_path):
    q = tmp_path / "q"
    fill(q, 3)
    (q / "notes.txt").write_text("keep me")
    (q / "readers").mkdir(exist_ok=True)
    (q / "readers" / "old.bak").write_text("keep me too")
    before = sorted(p.name for p in q.rglob("*"))
    p = chronicle("rm", q, "--yes")
    assert p.returncode == 1
    assert p.stderr.startswith("chronicle: NotAQueueError:")
    assert str(q / "notes.txt") in p.stderr and str(q / "readers" / "old.bak") in p.stderr
    assert sorted(p.name for p in q.rglob("*")) == before


def test_rm_refuses_while_a_writer_is_live_unless_force(tmp_path):
    q = tmp_path / "q"
    with Queue.open_publisher(q, TINY) as w:
        w.append(0, b"x")
        p = chronicle("rm", q, "--yes")
        assert p.returncode == 1
        assert p.stderr.startswith("chronicle: WriterLockedError:") and f"pid {os.getpid()}" in p.stderr
        assert (q / "control.cq").exists()
        p = chronicle("rm", q, "--yes", "--force")
        assert p.returncode == 0, p.stderr
        assert not q.exists()


def test_rm_without_yes_and_stdin_not_a_terminal_refuses(tmp_path):
    q = tmp_path / "q"
    fill(q, 3)
    p = chronicle("rm", q, input="y\n")
    assert p.returncode == 1
    assert "stdin is not a terminal" in p.stderr and "--yes" in p.stderr
    assert (q / "control.cq").exists()


def test_rm_on_a_terminal_asks_and_deletes_only_on_yes(tmp_path):
    q = tmp_path / "q"
    fill(q, 40)
    code, err = run_on_tty("rm", q, answer=b"n\n")
    assert code == 1 and "not confirmed" in err
    assert f"Delete queue {q} (" in err and "segments" in err and "[y/N]" in err
    assert q.exists()
    code, err = run_on_tty("rm", q, answer=b"y\n")
    assert code == 0, err
    assert not q.exists()


def test_rm_of_a_missing_path_is_queue_not_found(tmp_path):
    p = chronicle("rm", tmp_path / "nope", "--yes")
    assert p.returncode == 1 and p.stderr.startswith("chronicle: QueueNotFoundError:")


def test_rm_of_a_folder_that_is_not_a_queue_is_not_a_queue_error(tmp_path):
    (tmp_path / "data.csv").write_text("1,2\n")
    p = chronicle("rm", tmp_path, "--yes")
    assert p.returncode == 1 and p.stderr.startswith("chronicle: NotAQueueError:")
    assert (tmp_path / "data.csv").exists()


def as_another_user() -> list[str]:
    """The command prefix that runs the console script as a user who does not own the queue
    (root: uid 65534 through setpriv; anyone else: themselves, on a folder made read-only)."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("root needs setpriv to run the command as another user")
    return [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"]


@pytest.fixture
def read_only_queue():
    """A queue (3 segments' worth) in a folder its owner keeps and others may only read."""
    d = tempfile.mkdtemp(prefix="chronicle-perm-")  # under /tmp: another user may enter it
    os.chmod(d, 0o755)
    q = os.path.join(d, "q")
    fill(q, 3 * PER_SEGMENT)
    if os.geteuid() != 0:
        os.chmod(q, 0o555)
    try:
        yield q
    finally:
        os.chmod(q, 0o755)
        shutil.rmtree(d)


def run_as_other(*args: object) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent"}
    env.update((k, os.environ[k]) for k in ("PYTHONPATH", "LD_LIBRARY_PATH") if k in os.environ)
    prefix = as_another_user()
    probe = subprocess.run(prefix + [sys.executable, "-c", "import chronicle_async"], env=env, cwd="/",
                           capture_output=True, text=True, timeout=60, check=False)
    if probe.returncode != 0:
        pytest.skip(f"this interpreter cannot run as another user here: {probe.stderr.strip()[-200:]}")
    return subprocess.run(prefix + [CHRONICLE, *map(str, args)], env=env, cwd="/",
                          capture_output=True, text=True, timeout=60, check=False)


def test_rm_without_write_permission_is_a_permission_error_and_deletes_nothing(read_only_queue):
    before = sorted(os.listdir(read_only_queue))
    p = run_as_other("rm", read_only_queue, "--yes")
    assert p.returncode == 1 and p.stderr.startswith("chronicle: QueuePermissionError:"), p.stderr
    assert "nothing was deleted" in p.stderr
    assert sorted(os.listdir(read_only_queue)) == before


def test_purge_without_write_permission_is_a_permission_error_and_deletes_nothing(read_only_queue):
    before = sorted(os.listdir(read_only_queue))
    p = run_as_other("purge", read_only_queue, "--before-seq", PER_SEGMENT, "--yes")
    assert p.returncode == 1 and p.stderr.startswith("chronicle: QueuePermissionError:"), p.stderr
    assert sorted(os.listdir(read_only_queue)) == before


# -- purge -------------------------------------------------------------------------------------


def test_purge_before_seq_deletes_only_sealed_segments_entirely_before_it(tmp_path):
    q = tmp_path / "q"
    fill(q, 5 * PER_SEGMENT + 3)  # segments 0..4 full, the head (5) holds 3
    out = chronicle_json("purge", q, "--before-seq", 2 * PER_SEGMENT + 5, "--yes")
    assert out["deleted"] == [0, 1]  # segment 2 still holds seqs >= 2 * PER_SEGMENT + 5
    assert out["segments"][0] == {"segment": 0, "first_seq": 0, "last_seq": PER_SEGMENT - 1,
                                  "bytes_on_disk": out["segments"][0]["bytes_on_disk"]}
    assert segments(q)[0] == "000000000002.seg"
    assert first_seq(q) == 2 * PER_SEGMENT


def test_purge_never_deletes_the_segment_being_written(tmp_path):
    q = tmp_path / "q"
    fill(q, 2 * PER_SEGMENT + 3)
    out = chronicle_json("purge", q, "--before-seq", 10**9, "--yes")
    assert out["deleted"] == [0, 1]
    assert "000000000002.seg" in segments(q)
    assert first_seq(q) == 2 * PER_SEGMENT


def test_purge_before_time_takes_iso_8601_and_ns(tmp_path):
    q = tmp_path / "q"
    fill(q, 4 * PER_SEGMENT)
    # message i is at T0 + i ms: before T0 + 20 ms holds all of segment 0 and part of segment 1
    out = chronicle_json("purge", q, "--before-time", "2023-11-14T22:13:20.020Z", "--yes")
    assert out["deleted"] == [0]
    out = chronicle_json("purge", q, "--before-time", T0 + 2 * PER_SEGMENT * 1_000_000, "--yes")
    assert out["deleted"] == [1]
    assert first_seq(q) == 2 * PER_SEGMENT


def test_purge_dry_run_deletes_nothing_and_says_what_it_would(tmp_path):
    q = tmp_path / "q"
    fill(q, 3 * PER_SEGMENT + 1)
    before = segments(q)
    p = chronicle("purge", q, "--before-seq", 2 * PER_SEGMENT, "--dry-run")
    assert p.returncode == 0, p.stderr
    assert f"would delete 2 segment(s) 0..1, seqs 0..{2 * PER_SEGMENT - 1}" in p.stderr
    assert segments(q) == before


def test_purge_refuses_when_a_named_reader_is_in_a_doomed_segment_naming_it_unless_force(tmp_path):
    q = tmp_path / "q"
    fill(q, 3 * PER_SEGMENT + 1)
    with Queue.open_subscriber(q, "risk", "earliest") as r:
        for _ in range(3):
            r.next()
        r.commit()  # committed in segment 0, at seq 3
    before = segments(q)
    p = chronicle("purge", q, "--before-seq", 2 * PER_SEGMENT, "--yes")
    assert p.returncode == 1
    assert "reader 'risk' (not live) is at seq 3 in segment 0" in p.stderr and "--force" in p.stderr
    assert segments(q) == before
    out = chronicle_json("purge", q, "--before-seq", 2 * PER_SEGMENT, "--yes", "--force")
    assert out["deleted"] == [0, 1]
    assert [r["name"] for r in out["readers"]] == ["risk"]
    with Queue.open_subscriber(q, "risk") as r:
        assert r.next().seq == 2 * PER_SEGMENT  # it resumes at the oldest message left


def test_purge_beside_a_live_writer_and_reader_keeps_them_working(tmp_path):
    q = tmp_path / "q"
    with Queue.open_publisher(q, TINY) as w:
        for i in range(3 * PER_SEGMENT):
            w.append(1, b"%04d" % i + b"." * 996)
        with Queue.open_subscriber(q, None, "earliest") as r:
            assert r.next().seq == 0  # it maps segment 0
            out = chronicle_json("purge", q, "--before-seq", PER_SEGMENT, "--yes")
            assert out["deleted"] == [0]
            assert [r.next().seq for _ in range(PER_SEGMENT)] == list(range(1, PER_SEGMENT + 1))
        seq = w.append(1, b"after")
    assert seq == 3 * PER_SEGMENT
    assert first_seq(q) == PER_SEGMENT


def test_purge_without_yes_and_stdin_not_a_terminal_refuses(tmp_path):
    q = tmp_path / "q"
    fill(q, 2 * PER_SEGMENT + 1)
    p = chronicle("purge", q, "--before-seq", PER_SEGMENT)
    assert p.returncode == 1 and "stdin is not a terminal" in p.stderr
    assert "000000000000.seg" in segments(q)


def test_purge_with_nothing_to_delete_says_so_and_exits_0(tmp_path):
    q = tmp_path / "q"
    fill(q, 2 * PER_SEGMENT + 1)
    p = chronicle("purge", q, "--before-seq", 3, "--yes")
    assert p.returncode == 0, p.stderr
    assert "nothing to delete" in p.stderr and "segment 0 holds messages at or after seq 3" in p.stderr


def test_purge_json_output_is_one_object(tmp_path):
    q = tmp_path / "q"
    fill(q, 2 * PER_SEGMENT + 1)
    p = chronicle("purge", q, "--before-seq", PER_SEGMENT, "--dry-run", "--json")
    rec = json.loads(p.stdout)
    assert rec["dry_run"] is True and rec["deleted"] == [] and [s["segment"] for s in rec["segments"]] == [0]
