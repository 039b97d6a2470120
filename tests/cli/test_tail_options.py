"""``chronicle tail`` -F, --count, --until, --dtype, --format, and ``chronicle completion``: the
installed console script against real queues."""
from __future__ import annotations

import json
import pathlib
import queue
import re
import shlex
import shutil
import signal
import subprocess
import threading
from typing import Self

import numpy as np
import pytest

from chronicle_async import Queue, WriterConfig

from .console import CHRONICLE, chronicle

TINY = WriterConfig(segment_size=16 * 1024)
T0 = 1_700_000_000_000_000_000  # 2023-11-14T22:13:20Z
DOCS = pathlib.Path(__file__).resolve().parents[2] / "docs" / "cli.md"
QUOTE = np.dtype([("ts", "<i8"), ("px", "<f8"), ("qty", "<i4")])


def fill(path, n: int, payload_of=lambda i: b"m%d" % i) -> None:
    with Queue.open_publisher(path, TINY) as w:
        for i in range(n):
            w.append(1, payload_of(i), timestamp_ns=T0 + i * 1_000_000)


def lines(*args: object) -> list[str]:
    p = chronicle("tail", *args)
    assert p.returncode == 0, p.stderr
    return p.stdout.splitlines()


class Tail:
    """A ``chronicle tail`` child whose stdout lines a test waits for, one by one, with a timeout."""

    def __init__(self, *args: object):
        self.proc = subprocess.Popen([CHRONICLE, "tail", *map(str, args)], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self._lines: queue.Queue = queue.Queue()
        self._stderr: queue.Queue = queue.Queue()
        threading.Thread(target=self._pump, args=(self.proc.stdout, self._lines), daemon=True).start()
        threading.Thread(target=self._pump, args=(self.proc.stderr, self._stderr), daemon=True).start()

    @staticmethod
    def _pump(stream, q: queue.Queue) -> None:
        for line in stream:
            q.put(line.rstrip("\n"))
        q.put(None)

    def next(self, timeout: float = 30) -> str | None:
        return self._lines.get(timeout=timeout)

    def next_err(self, timeout: float = 30) -> str | None:
        return self._stderr.get(timeout=timeout)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


# -- --count and --until -------------------------------------------------------------------------


def test_tail_count_exits_0_after_n_messages(tmp_path):
    q = tmp_path / "q"
    fill(q, 20)
    assert [ln.split()[0] for ln in lines(q, "--from", 0, "--count", 3)] == ["0", "1", "2"]
    assert [ln.split()[-1] for ln in lines(q, "-f", "--from", 5, "--count", 2)] == ["m5", "m6"]


def test_tail_follow_with_count_waits_for_new_messages_then_exits_0(tmp_path):
    q = tmp_path / "q"
    with Queue.open_publisher(q, TINY) as w:
        w.append(1, b"old")
        with Tail(q, "-f", "--from", 1, "--count", 2) as t:  # seq 1 onwards: whenever tail is up
            w.append(1, b"new1")
            assert t.next().endswith("new1")
            w.append(1, b"new2")
            assert t.next().endswith("new2")
            assert t.proc.wait(timeout=30) == 0


def test_tail_until_stops_before_the_first_message_at_that_seq_or_time(tmp_path):
    q = tmp_path / "q"
    fill(q, 20)
    assert [ln.split()[0] for ln in lines(q, "--from", 3, "--until", 6)] == ["3", "4", "5"]
    # message i is at T0 + i ms
    assert [ln.split()[0] for ln in lines(q, "--from", 0, "--until-time", "2023-11-14T22:13:20.002Z")] == ["0", "1"]
    assert [ln.split()[0] for ln in lines(q, "--from", 0, "--until-time", T0 + 1_000_000)] == ["0"]


def test_tail_until_with_follow_exits_0_when_that_seq_arrives(tmp_path):
    q = tmp_path / "q"
    with Queue.open_publisher(q, TINY) as w:
        with Tail(q, "-f", "--from", 0, "--until", 2) as t:
            for i in range(4):
                w.append(1, b"m%d" % i)
            assert t.next().endswith("m0") and t.next().endswith("m1")
            assert t.next() is None  # seq 2 ended it: not printed
            assert t.proc.wait(timeout=30) == 0


def test_tail_until_with_a_committing_reader_leaves_its_position_at_the_until_message(tmp_path):
    q = tmp_path / "q"
    fill(q, 10)
    assert [ln.split()[0] for ln in lines(q, "--name", "audit", "--commit", "--until", 4)] == ["0", "1", "2", "3"]
    assert [ln.split()[0] for ln in lines(q, "--name", "audit", "--commit", "--count", 2)] == ["4", "5"]
    assert [ln.split()[0] for ln in lines(q, "--name", "audit")] == ["6", "7", "8", "9"]


# -- --dtype and --format ------------------------------------------------------------------------


def quotes(path, n: int) -> None:
    rec = np.zeros(1, QUOTE)
    with Queue.open_publisher(path, TINY) as w:
        for i in range(n):
            rec["ts"], rec["px"], rec["qty"] = T0 + i, 100.25 + i, 10 * i
            w.append(1, rec.tobytes(), timestamp_ns=T0 + i)
        w.append(2, b"not a quote", timestamp_ns=T0 + n)


def test_tail_dtype_prints_fields_by_name_and_hex_with_a_note_for_other_sizes(tmp_path):
    q = tmp_path / "q"
    quotes(q, 3)
    out = lines(q, "--from", 1, "--dtype", "ts:<i8,px:<f8,qty:<i4")
    assert out[0].endswith(f"type=1  len=20  ts={T0 + 1} px=101.25 qty=10")
    assert out[1].endswith(f"ts={T0 + 2} px=102.25 qty=20")
    assert out[2].endswith(f"len=11  hex:{b'not a quote'.hex()} (11 bytes, not the --dtype itemsize 20)")


def test_tail_dtype_accepts_a_numpy_dtype_string(tmp_path):
    q = tmp_path / "q"
    quotes(q, 1)
    out = lines(q, "--from", 0, "--count", 1, "--dtype", "<i8,<f8,<i4")
    assert out[0].endswith(f"f0={T0} f1=100.25 f2=0")


def test_tail_dtype_json_gives_an_object_of_fields(tmp_path):
    q = tmp_path / "q"
    quotes(q, 2)
    recs = [json.loads(ln) for ln in lines(q, "--from", 1, "--dtype", "ts:<i8,px:<f8,qty:<i4", "--json")]
    assert recs[0]["encoding"] == "dtype"
    assert recs[0]["payload"] == {"ts": T0 + 1, "px": 101.25, "qty": 10}
    assert recs[1]["encoding"] == "hex" and recs[1]["payload"] == b"not a quote".hex()
    assert recs[1]["note"] == "11 bytes, not the --dtype itemsize 20"


def test_tail_format_fills_the_message_and_dtype_fields(tmp_path):
    q = tmp_path / "q"
    quotes(q, 2)
    out = lines(q, "--from", 0, "--dtype", "ts:<i8,px:<f8,qty:<i4", "--format", "{seq}|{type}|{len}|{px:.1f}|{qty:>3}")
    assert out == ["0|1|20|100.2|  0", "1|1|20|101.2| 10", "2|2|11|-|-"]
    q2 = tmp_path / "q2"
    fill(q2, 2)
    assert lines(q2, "--from", 0, "--format", "{seq} {payload} {time} {time_ns}") == [
        "0 m0 2023-11-14T22:13:20.000000000Z 1700000000000000000",
        "1 m1 2023-11-14T22:13:20.001000000Z 1700000000001000000",
    ]


def test_tail_format_naming_an_unknown_field_or_a_bad_dtype_is_a_usage_error(tmp_path):
    q = tmp_path / "q"
    fill(q, 1)
    p = chronicle("tail", q, "--format", "{seq} {price}")
    assert p.returncode == 2 and "uses {price}, which is not a field" in p.stderr
    p = chronicle("tail", q, "--dtype", "px:<nonsense")
    assert p.returncode == 2 and "is not a numpy dtype" in p.stderr
    p = chronicle("tail", q, "--format", "{seq}", "--json")
    assert p.returncode == 2


def test_the_documented_demo_command_prints_ticks_decoded(tmp_path):
    command = next(ln for ln in DOCS.read_text().splitlines() if ln.startswith("chronicle tail .demo-bus/ticks"))
    bus = tmp_path / ".demo-bus" / "ticks"
    demo = chronicle("demo", bus, "-n", 5000, "--segment-size", 256 * 1024, timeout=120)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    args = [str(bus) if a == ".demo-bus/ticks" else a for a in shlex.split(command)[2:]]
    out = lines(*args)
    assert len(out) == 10  # the last 10 ticks (heartbeats are type 2)
    for ln in out:
        m = re.match(r"(\d+)  \S+  type=1  len=64  symbol=ACME price=(\S+) qty=(\d+) sent_ns=\d+ pad=\"\"$", ln)
        assert m, ln
        seq = int(m.group(1))
        assert float(m.group(2)) == pytest.approx(100.0 + (seq % 1000) * 0.01)
        assert int(m.group(3)) == seq % 100 + 1
    assert out[-1].startswith("4999 ")


# -- -F ------------------------------------------------------------------------------------------


def test_tail_F_waits_for_the_queue_then_follows_it_across_deletion_and_recreation(tmp_path):
    q = tmp_path / "bus" / "q"
    with Tail(q, "-F", "--count", 3) as t:
        assert "waiting for queue" in t.next_err()
        with Queue.open_publisher(q, TINY) as w:
            w.append(1, b"first")
            assert t.next().endswith("first")
        shutil.rmtree(q)
        assert t.next_err() == f"chronicle: tail: {q} was deleted; waiting for it to be created again"
        with Queue.open_publisher(q, TINY) as w:
            w.append(1, b"again0")
            w.append(1, b"again1")
            assert t.next_err() == f"chronicle: tail: {q} was recreated; following the new queue from seq 0"
            assert t.next().startswith("0  ") and t.next().startswith("1  ")
        assert t.proc.wait(timeout=30) == 0


def test_tail_F_on_an_existing_queue_starts_with_the_last_messages_and_exits_130_on_ctrl_c(tmp_path):
    q = tmp_path / "q"
    fill(q, 15)
    with Tail(q, "-F", "-n", 2) as t:
        assert [t.next().split()[-1], t.next().split()[-1]] == ["m13", "m14"]
        t.proc.send_signal(signal.SIGINT)
        assert t.proc.wait(timeout=30) == 130


def test_tail_F_with_until_closed_is_a_usage_error(tmp_path):
    p = chronicle("tail", tmp_path / "q", "-F", "--until-closed")
    assert p.returncode == 2 and "pick one" in p.stderr


# -- completion ----------------------------------------------------------------------------------


def test_completion_bash_prints_a_script_naming_every_command(tmp_path):
    p = chronicle("completion", "bash")
    assert p.returncode == 0, p.stderr
    for command in ("publish", "rm", "purge", "tail", "inspect", "completion"):
        assert command in p.stdout
    assert "--dtype" in p.stdout
    if shutil.which("bash"):
        script = tmp_path / "chronicle.bash"
        script.write_text(p.stdout)
        check = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, check=False)
        assert check.returncode == 0, check.stderr


@pytest.mark.parametrize("shell", ["zsh", "tcsh"])
def test_completion_zsh_and_tcsh_print_a_script(shell):
    p = chronicle("completion", shell)
    assert p.returncode == 0, p.stderr
    assert "purge" in p.stdout and "publish" in p.stdout
