"""``chronicle monitor`` drawn with rich: fits the terminal, sorts, one writer verdict; real console script."""
from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import signal
import struct
import subprocess
import termios
import time

from chronicle_async import Queue, WriterConfig
from tests.cli.console import CHRONICLE, chronicle
from tests.writer_process import WriterProcess

TINY = WriterConfig(segment_size=16 * 1024)
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


def _queue(path, n: int, reader: str | None = None, read: int = 0) -> None:
    with Queue.open_publisher(path, TINY) as w:
        for i in range(n):
            w.append(1, b"m %d" % i)
    if reader:
        with Queue.open_subscriber(path, reader, "earliest") as r:
            for _ in range(read):
                r.next()
            r.commit()


def _on_a_terminal(args: list[str], columns: int, interrupt_when: str | None = None, times: int = 1) -> tuple[int, str]:
    """Run ``chronicle ARGS`` with its output on a pseudo-terminal ``columns`` wide; (exit status, screen text).

    With ``interrupt_when``, Ctrl-C (SIGINT) is sent once that text has been drawn ``times`` times.
    """
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env["TERM"] = "xterm-256color"
    proc = subprocess.Popen([CHRONICLE, *args], stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, env=env)
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + 60
    interrupted = False
    while True:
        drawn = b"".join(chunks).decode(errors="replace")
        if interrupt_when is not None and not interrupted and drawn.count(interrupt_when) >= times:
            proc.send_signal(signal.SIGINT)
            interrupted = True
        if time.monotonic() > deadline:
            proc.kill()
        ready, _, _ = select.select([master], [], [], 0.1)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:  # the other end closed
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    os.close(master)
    rc = proc.wait(timeout=30)
    return rc, ANSI.sub("", b"".join(chunks).decode(errors="replace")).replace("\r", "")


def test_monitor_fits_a_60_column_terminal_one_line_per_queue_with_ellipsis(tmp_path):
    long_name = "the-order-book-of-every-euro-dollar-trade-today"
    _queue(tmp_path / long_name, 3, reader="risk", read=1)
    _queue(tmp_path / "fills", 2)
    rc, screen = _on_a_terminal(["monitor", str(tmp_path), "--once"], columns=60)
    assert rc == 0, screen
    lines = [line for line in screen.splitlines() if line.strip()]
    assert all(len(line) <= 60 for line in lines), "\n".join(lines)
    assert lines[1].startswith("QUEUE")
    rows = lines[2:4]
    assert rows[0].startswith("fills") and rows[1].startswith("the-order")
    assert "…" in rows[1]  # the long name is cut, not wrapped onto a second line
    assert any(line.startswith("    reader risk: dead, lag 2 msgs") for line in lines[4:]), "\n".join(lines)


def test_live_monitor_on_a_terminal_redraws_until_ctrl_c(tmp_path):
    _queue(tmp_path / "orders", 5)
    rc, screen = _on_a_terminal(["monitor", str(tmp_path), "--interval", "0.2"], columns=100,
                                interrupt_when="writer_closed", times=3)
    assert rc == 130, screen
    rows = [line for line in screen.splitlines() if line.startswith("orders")]
    assert len(rows) >= 2, screen  # drawn again at each refresh
    assert all(r.split()[1] == "closed" and "writer_closed" in r for r in rows)


def test_monitor_sort_lag_puts_the_queue_with_the_most_lagging_reader_first(tmp_path):
    _queue(tmp_path / "a", 10, reader="risk", read=9)  # lag 1
    _queue(tmp_path / "b", 10, reader="risk", read=2)  # lag 8
    _queue(tmp_path / "c", 10)  # no readers: lag 0

    def order(*extra: str) -> list[str]:
        p = chronicle("monitor", tmp_path, "--once", *extra)
        assert p.returncode == 0, p.stderr
        return [line.split()[0] for line in p.stdout.splitlines() if line[:2] in ("a ", "b ", "c ")]

    assert order() == ["a", "b", "c"]
    assert order("--sort", "lag") == ["b", "a", "c"]
    p = chronicle("monitor", tmp_path, "--once", "--sort", "bogus")
    assert p.returncode == 2 and "invalid choice: 'bogus'" in p.stderr


def test_a_killed_writer_is_dead_in_the_writer_and_status_columns(tmp_path):
    with WriterProcess(tmp_path / "prices", 4) as wp:
        p = chronicle("monitor", tmp_path, "--once")
        assert p.returncode == 0, p.stderr
        row = next(line for line in p.stdout.splitlines() if line.startswith("prices"))
        assert row.split()[1:3] == ["open", str(wp.pid)] and row.endswith("alive")
        wp.kill()
        p = chronicle("monitor", tmp_path, "--once")
    row = next(line for line in p.stdout.splitlines() if line.startswith("prices"))
    assert row.split()[1:3] == ["dead", str(wp.pid)] and row.endswith("writer_died")


def test_monitor_once_on_a_typo_root_exits_1_naming_it(tmp_path):
    p = chronicle("monitor", tmp_path / "typo", "--once")
    assert p.returncode == 1 and p.stdout == ""
    assert p.stderr.startswith(f"chronicle: QueueNotFoundError: bus root {tmp_path / 'typo'} does not exist")


def test_monitor_prometheus_with_once_is_a_usage_error(tmp_path):
    p = chronicle("monitor", tmp_path, "--once", "--prometheus", "0")
    assert p.returncode == 2 and "drop --once" in p.stderr
