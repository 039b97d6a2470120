"""A real writer in another process, for tests that inspect or scrape a queue from outside it."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

_SCRIPT = textwrap.dedent("""
    import sys
    from chronicle_async import Queue, WriterConfig
    path, n, seg = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    w = Queue.open_publisher(path, WriterConfig(segment_size=seg))
    for i in range(n):
        w.append(1, b"message %d" % i)
    print(w.next_seq, flush=True)
    if sys.stdin.readline().strip() == "close":
        w.close()
""")


class WriterProcess:
    """``with WriterProcess(path, n) as wp:``: a process that appends ``n`` messages, then waits.

    ``wp.next_seq`` is the writer's next seq as it reported it. ``close()`` asks it to close the
    queue; ``kill()`` SIGKILLs it (the queue is left open, its lock free: a dead writer).
    """

    def __init__(self, path: str | os.PathLike, n: int, segment_size: int = 16 * 1024):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _SCRIPT, os.fspath(path), str(n), str(segment_size)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        if not line.strip():
            self.proc.kill()
            raise RuntimeError(f"the writer process for {path} exited before writing (rc {self.proc.wait()})")
        self.next_seq = int(line)
        self.pid = self.proc.pid

    def close(self) -> None:
        if self.proc.poll() is None and self.proc.stdin:
            self.proc.stdin.write("close\n")
            self.proc.stdin.flush()
        self.proc.wait(timeout=30)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def __enter__(self) -> "WriterProcess":
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()
        for f in (self.proc.stdin, self.proc.stdout):
            if f:
                f.close()
