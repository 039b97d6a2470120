"""``chronicle ls BUS_ROOT`` and ``chronicle inspect BUS_ROOT``, run as the installed console script."""
from __future__ import annotations

from chronicle_async import Queue, WriterConfig
from tests.cli.console import chronicle, chronicle_json
from tests.writer_process import WriterProcess

TINY = WriterConfig(segment_size=16 * 1024)


def _closed_queue(path, n: int, reader: str | None = None) -> None:
    with Queue.open_publisher(path, TINY) as w:
        for i in range(n):
            w.append(1, b"m %d" % i)
    if reader:
        with Queue.open_subscriber(path, reader, "earliest") as r:
            r.next()
            r.commit()


def test_ls_lists_each_queue_with_writer_state_next_seq_segments_and_readers(tmp_path):
    _closed_queue(tmp_path / "orders", 4, reader="risk")
    (tmp_path / "not-a-queue").mkdir()
    with WriterProcess(tmp_path / "prices", 7):
        p = chronicle("ls", tmp_path)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].split() == ["QUEUE", "WRITER", "NEXT_SEQ", "SEGS", "DISK", "READERS"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert set(rows) == {"orders", "prices"}
    assert rows["orders"][1:3] == ["closed", "4"] and rows["orders"][-3:] == ["1", "(0", "live)"]
    assert rows["prices"][1:3] == ["open", "7"] and rows["prices"][-3:] == ["0", "(0", "live)"]


def test_ls_json_gives_one_object_per_queue_and_a_killed_writer_is_dead(tmp_path):
    with WriterProcess(tmp_path / "prices", 3) as wp:
        wp.kill()
        qs = chronicle_json("ls", tmp_path)
    assert [(q["name"], q["writer"], q["next_seq"], q["readers"], q["error"]) for q in qs] == [
        ("prices", "dead", 3, 0, None)]
    assert qs[0]["segments"] >= 1 and qs[0]["bytes_on_disk"] > 0


def test_inspect_on_a_bus_root_says_it_is_one_and_lists_its_queues(tmp_path):
    _closed_queue(tmp_path / "orders", 2)
    _closed_queue(tmp_path / "fills", 1)
    p = chronicle("inspect", tmp_path)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines()[0] == f"{tmp_path} is a bus root (not a queue); its queues:"
    assert [line.split()[0] for line in p.stdout.splitlines()[2:]] == ["fills", "orders"]
    j = chronicle_json("inspect", tmp_path)
    assert j["bus_root"] and [q["name"] for q in j["queues"]] == ["fills", "orders"]


def test_inspect_on_an_empty_folder_still_says_the_control_file_is_missing(tmp_path):
    p = chronicle("inspect", tmp_path)
    assert p.returncode == 1 and "control.cq" in p.stderr, p.stderr


def test_ls_on_a_missing_root_fails_naming_it(tmp_path):
    p = chronicle("ls", tmp_path / "typo")
    assert p.returncode == 1
    assert p.stderr.startswith("chronicle: NotAQueueError: ") and f"{tmp_path / 'typo'} is not a folder" in p.stderr


def test_ls_on_a_root_without_queues_says_so(tmp_path):
    p = chronicle("ls", tmp_path)
    assert p.returncode == 0 and p.stdout.strip() == f"no queues under {tmp_path}"


def test_inspect_of_a_killed_writer_leads_with_dead_whatever_state_word_it_left(tmp_path):
    with WriterProcess(tmp_path / "prices", 3) as wp:
        wp.kill()
        p = chronicle("inspect", tmp_path / "prices")
    assert p.returncode == 0, p.stderr
    writer = next(line for line in p.stdout.splitlines() if line.startswith("writer "))
    assert writer.split(None, 1)[1] == f"dead (pid {wp.pid}, epoch 1, state open, lock free)"
    assert "liveness   writer_died" in p.stdout
