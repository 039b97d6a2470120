"""The README's main job, `chronicle demo`, runs end to end with real processes; it deletes
only what it made, and a failure ends it at once with the error."""
from __future__ import annotations

import os
import subprocess
import sys
import time

from chronicle_async import Queue, WriterConfig
from chronicle_async.cli.demo import MARKER, TICK, TICK_TYPE

#: A failing demo must end at once; generous for 2 busy cores (spawning two interpreters included).
PROMPT_S = 10.0


def run_demo(path, *args: object, timeout: float = 120) -> tuple[subprocess.CompletedProcess, float]:
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "chronicle_async.cli", "demo", str(path), *map(str, args)],
        capture_output=True, text=True, timeout=timeout,
    )
    return proc, time.monotonic() - t0


def read_all(path) -> list[bytes]:
    with Queue.open_subscriber(path, start="earliest") as r:
        return [bytes(m.payload) for m in r]


def test_demo_exchanges_every_message_between_two_processes(tmp_path):
    q = tmp_path / "bus" / "ticks"
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    proc = subprocess.run(
        [sys.executable, "-m", "chronicle_async.cli", "demo", str(q), "-n", "50000", "--segment-size", str(256 * 1024)],
        capture_output=True, text=True, timeout=240, env={**os.environ, "TMPDIR": str(scratch)},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "all seqs contiguous and prices correct" in proc.stdout
    assert "kernels warmed up on a scratch queue" in proc.stdout
    assert "  50,000 ticks by batch append" in proc.stdout  # the rate counts only the user's ticks
    assert "seq 0: ACME 1 @ 100.0" in proc.stdout
    assert len([f for f in os.listdir(q) if f.endswith(".seg")]) > 3  # it rolled
    assert list(scratch.iterdir()) == []  # the warm-up queue is gone


def test_demo_queue_starts_with_a_real_tick_not_a_warm_up_record(tmp_path):
    q = tmp_path / "ticks"
    proc, _ = run_demo(q, "-n", "5000")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with Queue.open_subscriber(q, start="earliest") as r:
        msgs = [(m.seq, m.type_id, m.as_array(TICK)[0].copy() if m.type_id == TICK_TYPE else None) for m in r]
    first_seq, first_type, first = msgs[0]
    assert (first_seq, first_type) == (0, TICK_TYPE)
    assert first["symbol"] == b"ACME" and first["price"] == 100.0 and first["qty"] == 1 and first["sent_ns"] > 0
    assert sum(1 for _, t, _ in msgs if t == TICK_TYPE) == 5000  # exactly the ticks asked for


def test_jitted_append_example_runs(tmp_path):
    ex = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "jitted_append.py")
    proc = subprocess.run([sys.executable, ex, str(tmp_path / "q")], capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    assert "read back 2,000,000 messages" in proc.stdout


def test_hot_loop_strategy_example_handles_every_tick_and_writes_orders(tmp_path):
    ex = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "hot_loop_strategy.py")
    proc = subprocess.run([sys.executable, ex, str(tmp_path)], capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "handled 600000 ticks from 3 feed processes" in proc.stdout
    assert "first order: instrument" in proc.stdout


def test_demo_reruns_on_its_own_folder_and_may_use_an_empty_one(tmp_path):
    q = tmp_path / "ticks"
    q.mkdir()  # an empty folder may be used
    for _ in range(2):  # the second run deletes the first run's queue (it holds the demo's marker)
        proc, _dt = run_demo(q, "-n", 1000, "--segment-size", 64 * 1024)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "all seqs contiguous and prices correct" in proc.stdout
        assert (q / MARKER).is_file()
        assert len(read_all(q)) == 1000 + 20_000, "a fresh queue each run, not one appended to"


def test_demo_refuses_to_delete_a_folder_it_did_not_create(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "data.txt").write_text("precious")
    proc, dt = run_demo(folder, "-n", 10)
    assert proc.returncode == 1 and dt < PROMPT_S
    assert proc.stderr.startswith(
        f"chronicle: InvalidArgumentError: demo: {folder} is a folder holding other files (data.txt)"
    )
    assert "choose another path" in proc.stderr and f"remove {folder} yourself" in proc.stderr
    assert os.listdir(folder) == ["data.txt"] and (folder / "data.txt").read_text() == "precious"


def test_demo_refuses_to_delete_a_queue_it_did_not_create(tmp_path):
    q = tmp_path / "prices"
    with Queue.open_publisher(q, WriterConfig(segment_size=16 * 1024)) as w:
        for i in range(50):
            w.append(1, b"tick %d" % i)
    proc, dt = run_demo(q, "-n", 10)
    assert proc.returncode == 1 and dt < PROMPT_S
    assert f"demo: {q} is a folder holding a queue that `chronicle demo` did not make" in proc.stderr
    assert read_all(q) == [b"tick %d" % i for i in range(50)], "the queue is untouched"


def test_demo_refuses_its_own_folder_while_a_demo_still_writes_to_it(tmp_path):
    q = tmp_path / "ticks"
    with Queue.open_publisher(q, WriterConfig(segment_size=16 * 1024)) as w:
        (q / MARKER).write_text("made by `chronicle demo`")
        w.append(1, b"live")
        proc, dt = run_demo(q, "-n", 10)
        assert proc.returncode == 1 and dt < PROMPT_S
        assert f"demo: {q} is the queue of a demo that is still running" in proc.stderr
        assert w.append(1, b"still writing") == 1
    assert read_all(q) == [b"live", b"still writing"]


def test_demo_on_a_file_exits_at_once_with_the_error(tmp_path):
    f = tmp_path / "notes.txt"
    f.write_text("not a queue")
    proc, dt = run_demo(f, "-n", 10)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert dt < PROMPT_S, f"took {dt:.1f} s"
    assert proc.stderr.startswith(f"chronicle: InvalidArgumentError: demo: {f} is a file")
    assert "Traceback" not in proc.stderr
    assert f.read_text() == "not a queue"


def test_demo_ends_at_once_with_the_error_of_a_process_that_fails(tmp_path):
    # the writer process rejects the segment size at once; the reader would wait 60 s for the queue
    q = tmp_path / "ticks"
    proc, dt = run_demo(q, "-n", 10, "--segment-size", 1000)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert dt < PROMPT_S, f"took {dt:.1f} s"
    assert "chronicle: InvalidArgumentError: WriterConfig: segment_size must be between" in proc.stderr
    assert "Traceback" not in proc.stderr and "Empty" not in proc.stderr
