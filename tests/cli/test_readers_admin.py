"""``chronicle readers QUEUE reset|delete NAME``, through the installed console script."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from chronicle_async import Queue, WriterConfig

from .console import chronicle

TINY = WriterConfig(segment_size=16 * 1024)
T0 = 1_700_000_000_000_000_000  # 2023-11-14T22:13:20Z


@pytest.fixture
def ten(queue_dir):
    with Queue.open_publisher(queue_dir, TINY) as w:
        for i in range(10):
            w.append(1, b"m%d" % i, timestamp_ns=T0 + i * 1_000_000_000)
    with Queue.open_subscriber(queue_dir, "svc") as r:
        for _ in range(7):
            r.next()
        r.commit()
    return queue_dir


def next_seq_of(d, name="svc") -> int:
    with Queue.open_subscriber(d, name) as r:
        return r.next_seq


@pytest.mark.parametrize(("to", "expected"), [("earliest", 0), ("latest", 10), ("3", 3), ("2023-11-14T22:13:25Z", 5)])
def test_readers_reset_moves_the_named_reader(ten, to, expected):
    p = chronicle("readers", ten, "reset", "svc", "--to", to)
    assert p.returncode == 0, p.stderr
    assert f"now delivers seq {expected} next" in p.stdout
    assert next_seq_of(ten) == expected


def test_readers_reset_json_reports_the_next_seq(ten):
    p = chronicle("readers", ten, "reset", "svc", "--to", "latest", "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout) == {"path": str(ten), "reader": "svc", "next_seq": 10}


def test_readers_delete_drops_the_position_file(ten):
    p = chronicle("readers", ten, "delete", "svc")
    assert p.returncode == 0, p.stderr
    assert not (ten / "readers" / "svc.pos").exists()
    listing = chronicle("readers", ten, "--json")
    assert json.loads(listing.stdout)["readers"] == []


def test_readers_delete_of_an_unknown_name_exits_1_naming_the_readers(ten):
    p = chronicle("readers", ten, "delete", "nobody")
    assert p.returncode == 1
    assert "ReaderNotFoundError" in p.stderr and "svc" in p.stderr


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("reset", "svc"), "needs --to"),
        (("reset",), "needs a reader NAME"),
        (("delete", "svc", "--to", "earliest"), "--to goes with reset"),
        (("reset", "svc", "--to", "yesterday-ish"), "earliest, latest, a seq"),
    ],
)
def test_readers_usage_errors_exit_2_and_say_what_is_missing(ten, args, words):
    p = chronicle("readers", ten, *args)
    assert p.returncode == 2
    assert words in p.stderr
    assert next_seq_of(ten) == 7


HOLD = """
import sys
from chronicle_async import Queue
r = Queue.open_subscriber(sys.argv[1], "svc")
print("open", flush=True)
sys.stdin.read()
"""


def test_readers_reset_refuses_while_a_process_reads_as_that_name(ten):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(ten)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "open"
        p = chronicle("readers", ten, "reset", "svc", "--to", "earliest")
        assert p.returncode == 1
        assert "ReaderLockedError" in p.stderr and str(holder.pid) in p.stderr
    finally:
        holder.stdin.close()
        holder.wait(30)
    assert next_seq_of(ten) == 7
