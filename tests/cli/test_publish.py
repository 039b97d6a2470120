"""``chronicle publish``, run as the installed console script against real queues in tmp_path."""
from __future__ import annotations

import struct

from chronicle_async import Queue

from .console import chronicle, chronicle_json

SMALL = 16 * 1024  # the smallest segment size: max payload just under 16 KiB


def read_all(path) -> list[tuple[int, int, bytes]]:
    with Queue.open_subscriber(path, None, "earliest") as r:
        out = []
        while (m := r.next()) is not None:
            out.append((m.seq, m.type_id, bytes(m.payload)))
        return out


def test_publish_sends_each_argument_as_one_utf8_message_and_creates_the_queue(tmp_path):
    q = tmp_path / "bus" / "q"
    p = chronicle("publish", q, "héllo", '{"px": 1}', "--type", 7)
    assert p.returncode == 0, p.stderr
    assert f"created queue {q}" in p.stderr
    assert "2 message(s)" in p.stderr and "seq 0..1" in p.stderr
    assert read_all(q) == [(0, 7, "héllo".encode()), (1, 7, b'{"px": 1}')]


def test_publish_reads_one_message_per_line_from_stdin(tmp_path):
    q = tmp_path / "q"
    assert chronicle("publish", q, "first").returncode == 0
    out = chronicle_json("publish", q, input="a\nbb\n\nccc")  # no newline at the end: still a message
    assert out == {"queue": str(q), "count": 4, "first_seq": 1, "last_seq": 4}
    assert [m[2] for m in read_all(q)] == [b"first", b"a", b"bb", b"", b"ccc"]


def test_publish_skip_empty_drops_empty_lines(tmp_path):
    q = tmp_path / "q"
    out = chronicle_json("publish", q, "--skip-empty", input="a\n\n\nb\n")
    assert out["count"] == 2
    assert [m[2] for m in read_all(q)] == [b"a", b"b"]


def test_publish_batches_a_large_stdin_across_segments_in_order(tmp_path):
    q = tmp_path / "q"
    n = 20_000
    out = chronicle_json("publish", q, "--segment-size", SMALL, input="".join(f"{i}\n" for i in range(n)))
    assert out == {"queue": str(q), "count": n, "first_seq": 0, "last_seq": n - 1}
    got = read_all(q)
    assert [m[2] for m in got] == [str(i).encode() for i in range(n)]
    assert [m[0] for m in got] == list(range(n))


def test_publish_length_prefixed_reads_binary_records(tmp_path):
    q = tmp_path / "q"
    records = [b"\x00\x01\xff", b"", b"line\nbreak", bytes(range(256))]
    data = b"".join(struct.pack("<I", len(r)) + r for r in records)
    p = chronicle("publish", q, "--length-prefixed", "--type", 2, input=data)
    assert p.returncode == 0, p.stderr
    assert read_all(q) == [(i, 2, r) for i, r in enumerate(records)]


def test_publish_length_prefixed_refuses_a_truncated_record(tmp_path):
    q = tmp_path / "q"
    data = struct.pack("<I", 3) + b"abc" + struct.pack("<I", 10) + b"short"
    p = chronicle("publish", q, "--length-prefixed", input=data)
    assert p.returncode == 1
    err = p.stderr.decode()
    assert "InvalidArgumentError" in err and "record 1 announces 10 bytes" in err
    assert [m[2] for m in read_all(q)] == [b"abc"]


def test_publish_an_oversized_line_is_refused_whole_naming_its_size_and_the_limit(tmp_path):
    q = tmp_path / "q"
    big = "x" * 20_000
    p = chronicle("publish", q, "--segment-size", SMALL, input=f"ok\n{big}\nnever\n", timeout=60)
    assert p.returncode == 1
    assert "PayloadTooLargeError" in p.stderr
    assert "message 1 is 20,000 bytes" in p.stderr and "16,384" in p.stderr
    assert "the 1 before it were (seqs 0..0)" in p.stderr
    assert [m[2] for m in read_all(q)] == [b"ok"]  # nothing torn, nothing after it


def test_publish_beside_a_live_writer_fails_with_writer_locked(tmp_path):
    q = tmp_path / "q"
    with Queue.open_publisher(q) as w:
        w.append(0, b"mine")
        p = chronicle("publish", q, "intruder")
    assert p.returncode == 1
    assert p.stderr.startswith("chronicle: WriterLockedError:")
    assert [m[2] for m in read_all(q)] == [b"mine"]


def test_publish_into_a_folder_of_other_files_is_not_a_queue(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    p = chronicle("publish", tmp_path, "x")
    assert p.returncode == 1
    assert "NotAQueueError" in p.stderr
    assert sorted(x.name for x in tmp_path.iterdir()) == ["notes.txt"]


def test_help_lists_publish_rm_purge_and_completion():
    p = chronicle("--help")
    assert p.returncode == 0
    for command in ("publish", "rm", "purge", "completion"):
        assert f"    {command} " in p.stdout or f"    {command}\n" in p.stdout, command
        assert chronicle(command, "--help").stdout.startswith(f"usage: chronicle {command}")
