"""Worker processes of the soak, power-cut and fuzz tests (same protocol as ``_workers``).

Child side: ``python -m tests.stress._soak_workers <command> '<json kwargs>'``: JSON events on
stdout, commands on stdin. Test side: :func:`start` returns a :class:`_workers.Worker` running
a command of this module.

- ``cut_writer``: appends in random bursts and, between bursts, copies the queue folder in
  process (a consistent page-cache state: it is the only appender) as the "synced" state A and,
  some bursts later, the "latest" state B of a power-cut round (test_power_cut.py).
- ``live_appender``: appends until killed; after every ``flush()`` it publishes the
  acknowledged count to a file (``os.replace``), for the live-copy power cut.
- ``judge``: recovers and reads queue copies, one per line on stdin, and reports what it read.
- ``fuzz_server``: imports and warms the library once, then runs each fuzz case in a forked
  child (its own process) under a timeout, and reports the child's exit status and outcomes.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import random
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from typing import Any

from . import _workers as W
from ._workers import check_message, emit, expected, fail, payload, payload_size


def start(command: str, **kwargs: Any) -> W.Worker:
    """A :class:`_workers.Worker` running ``command`` of this module (``Worker`` runs ``_workers``)."""
    w = W.Worker.__new__(W.Worker)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(W.REPO)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    w.command = command
    w._stderr = tempfile.TemporaryFile()
    w.proc = subprocess.Popen(
        [sys.executable, "-m", "tests.stress._soak_workers", command, json.dumps(kwargs)],
        cwd=W.REPO, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=w._stderr,
    )
    w.pid = w.proc.pid
    import queue as _queue

    w._events = _queue.Queue()
    w.events = []
    w._reader = threading.Thread(target=w._pump, daemon=True)
    w._reader.start()
    return w


def snapshot(src: str, dst: str) -> None:
    """Copy the regular files of queue folder ``src`` (and ``readers/``) to ``dst``."""
    os.makedirs(dst)
    for name in os.listdir(src):
        p = os.path.join(src, name)
        if os.path.isfile(p) and ".tmp" not in name:
            shutil.copyfile(p, os.path.join(dst, name))


# -- power cut ------------------------------------------------------------------------------------


def cmd_cut_writer(path: str, snaps: str, durability: str, segment_size: int, max_size: int,
                   rounds: int, seed: int) -> None:
    """Per round: append a burst, (flush if SYNC), copy as A; append 0..3 bursts more, copy as B."""
    from chronicle_async import Durability, Queue, WriterConfig

    rng = random.Random(seed)
    mode = Durability(durability)
    w = Queue.open_publisher(path, WriterConfig(segment_size=segment_size, durability=mode, flush_interval=0.002))

    def burst() -> None:
        for _ in range(rng.choice([1, 3, 40, 300, 1500])):
            seq = w.next_seq
            tid, data = expected(seq, max_size)
            if w.append(tid, data) != seq:
                fail(f"append did not return seq {seq}")
            if mode is Durability.ASYNC and rng.random() < 0.002:
                time.sleep(0.003)  # let the background flusher run between appends now and then

    for r in range(rounds):
        burst()
        acked = None
        if mode is Durability.SYNC:
            w.flush()  # the durability point: everything appended so far is on disk
            acked = w.next_seq
        a = os.path.join(snaps, f"r{r}", "A")
        snapshot(path, a)
        for _ in range(rng.randrange(4)):
            burst()
        b = os.path.join(snaps, f"r{r}", "B")
        snapshot(path, b)
        emit("round", round=r, A=a, B=b, acked=acked, next_seq=w.next_seq, segment_id=w.segment_id)
    w.close()
    emit("result", ok=True)


def cmd_live_appender(path: str, acked_file: str, durability: str, segment_size: int, max_size: int) -> None:
    """Append bursts of 1..200 until killed; after each ``flush()`` publish next_seq to ``acked_file``."""
    from chronicle_async import Durability, Queue, WriterConfig

    ppid = os.getppid()
    mode = Durability(durability)
    w = Queue.open_publisher(path, WriterConfig(segment_size=segment_size, durability=mode, flush_interval=0.005))
    emit("opened", pid=os.getpid())
    rng = random.Random(os.getpid())
    tmp = acked_file + ".tmp"
    while True:
        for _ in range(1 + rng.randrange(200)):
            seq = w.next_seq
            tid, data = expected(seq, max_size)
            w.append(tid, data)
        if mode is Durability.SYNC:
            w.flush()
            with open(tmp, "w") as f:
                f.write(str(w.next_seq))
            os.replace(tmp, acked_file)
        time.sleep(0.002)  # a few tens of thousands of messages a second: copies stay small
        if _ppid_gone(ppid):
            os._exit(2)


def _ppid_gone(ppid: int) -> bool:
    return os.getppid() != ppid


def judge_copy(path: str, max_size: int, acked: int | None) -> dict:
    """Recover ``path`` (``repair=True`` after a CorruptRecordError), append, read everything back.

    Returns what was read; ``problems`` lists every torn message, non-increasing seq, acknowledged
    seq missing, or error.
    """
    from chronicle_async import ChronicleError, CorruptRecordError, DamagedRecordError, Queue

    out: dict[str, Any] = {"path": path, "problems": [], "repaired": False}
    try:
        try:
            w = Queue.open_publisher(path)
        except CorruptRecordError as e:
            out["repaired"] = True
            out["hole"] = [e.segment, e.offset, e.seq, e.next_seq]
            w = Queue.open_publisher(path, repair=True)
        rec = w.recovery
        out["recovery"] = {"clean": rec.clean, "skipped_seq": rec.skipped_seq, "torn_tail": repr(rec.torn_tail),
                           "holes": repr(getattr(rec, "holes", None))}
        first_new = w.next_seq
        out["next_seq"] = first_new
        for seq in range(first_new, first_new + 3):  # the recovered queue takes new messages
            tid, data = expected(seq, max_size)
            if w.append(tid, data) != seq:
                out["problems"].append(f"append after recovery did not return seq {seq}")
        w.close()
        seqs = []
        damaged = []
        with Queue.open_subscriber(path, None, "earliest", verify=True) as r:  # the first read after a crash
            while True:
                try:
                    m = r.next()
                except DamagedRecordError as e:  # lost in the cut: skipped, never delivered
                    damaged.append((e.expected_seq, e.reason))
                    continue
                if m is None:
                    break
                err = check_message(m, m.seq, max_size)
                if err:
                    out["problems"].append(f"torn message: {err}")
                if seqs and m.seq <= seqs[-1]:
                    out["problems"].append(f"seq {m.seq} after seq {seqs[-1]}")
                seqs.append(m.seq)
                if len(out["problems"]) > 5:
                    break
        out["damaged"] = damaged[:5]
        out["count"] = len(seqs)
        out["last"] = seqs[-1] if seqs else None
        gaps = [(a, b) for a, b in zip(seqs, seqs[1:]) if b != a + 1]
        out["gaps"] = gaps[:5]
        if seqs[-3:] != list(range(first_new, first_new + 3)):
            out["problems"].append(f"the 3 messages appended after recovery are not the last read: {seqs[-5:]}")
        if acked is not None:
            have = set(seqs)
            missing = [s for s in range(acked) if s not in have]
            if missing:
                out["problems"].append(f"{len(missing)} acknowledged (flushed) seqs lost, first {missing[:5]}")
    except ChronicleError as e:
        out["problems"].append(f"{type(e).__name__}: {e}")
    except Exception as e:  # noqa: BLE001 - an untyped error is a finding
        out["problems"].append(f"untyped {type(e).__name__}: {e}\n{traceback.format_exc()}")
    return out


def cmd_judge(max_size: int) -> None:
    """For each ``{"path", "acked"}`` line on stdin: emit ``judged`` with :func:`judge_copy`'s verdict."""
    for line in sys.stdin:
        req = json.loads(line)
        if req.get("op") == "exit":
            break
        emit("judged", **judge_copy(req["path"], max_size, req.get("acked")))


# -- fuzz -------------------------------------------------------------------------------------------


def _outcome(fn: Any) -> dict:
    from chronicle_async import ChronicleError

    try:
        detail = fn()
        return {"ok": True, "detail": detail}
    except BaseException as e:  # noqa: BLE001
        return {"ok": False, "type": type(e).__name__, "typed": isinstance(e, ChronicleError),
                "msg": str(e)[:300], "tb": "" if isinstance(e, ChronicleError) else traceback.format_exc()[-2000:]}


def run_fuzz_case(path: str, reader_name: str) -> list[dict]:
    """Every way in, on a damaged copy: read it (anonymous and named), inspect it, recover and write it."""
    from chronicle_async import ChronicleError, CorruptRecordError, Queue
    from chronicle_async import cli

    limit = 100_000

    def read(name: str | None, start: str) -> int:
        n = 0
        with Queue.open_subscriber(path, name, start) as r:
            while n < limit:
                m = r.next()
                if m is None:
                    break
                bytes(m.payload)
                n += 1
            if name is not None:
                r.commit()
        return n

    def inspect() -> int:
        err = io.StringIO()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            rc = cli.main(["inspect", path, "--json"])
        text = err.getvalue()
        if rc not in (0, 1):
            raise RuntimeError(f"inspect exited {rc}: {text[-300:]}")
        if rc == 1:  # the CLI prints "chronicle: <Type>: <message>": the type must be a typed error
            import chronicle_async

            name = text.split("chronicle: ", 1)[-1].split(":", 1)[0].strip()
            cls = getattr(chronicle_async, name, None)
            if not (isinstance(cls, type) and issubclass(cls, ChronicleError)):
                raise RuntimeError(f"inspect failed with an untyped error: {text.strip()[-300:]}")
        return rc

    def publish() -> int:
        try:
            w = Queue.open_publisher(path)
        except CorruptRecordError:
            w = Queue.open_publisher(path, repair=True)
        with w:
            return w.append(1, b"after fuzz")

    ops = [("read", lambda: read(None, "earliest")), ("read_named", lambda: read(reader_name, "committed")),
           ("inspect", inspect), ("publish", publish), ("read_after", lambda: read(None, "earliest"))]
    return [{"op": op, **_outcome(fn)} for op, fn in ops]


def _warm(tmp: str) -> None:
    from chronicle_async import Queue, WriterConfig

    p = os.path.join(tmp, "warm")
    with Queue.open_publisher(p, WriterConfig(segment_size=16 * 1024)) as w:
        for i in range(200):
            w.append(1, payload(i, payload_size(i, 300)))
    run_fuzz_case(p, "warm")


def cmd_fuzz_server(timeout: float, reader_name: str) -> None:
    """Fork a child per case (``{"id", "path"}`` on stdin); emit ``case`` with its exit and outcomes."""
    with tempfile.TemporaryDirectory() as tmp:
        _warm(tmp)
    emit("ready")
    for line in sys.stdin:
        req = json.loads(line)
        if req.get("op") == "exit":
            break
        rfd, wfd = os.pipe()
        pid = os.fork()
        if pid == 0:  # the case's own process
            os.close(rfd)
            try:
                res = run_fuzz_case(req["path"], reader_name)
                os.write(wfd, json.dumps(res).encode())
            finally:
                os._exit(0)
        os.close(wfd)
        chunks: list[bytes] = []
        end = time.monotonic() + timeout
        timed_out = False
        while True:
            left = end - time.monotonic()
            if left <= 0:
                timed_out = True
                os.kill(pid, signal.SIGKILL)
                break
            ready, _, _ = select.select([rfd], [], [], left)
            if ready:
                b = os.read(rfd, 1 << 16)
                if not b:
                    break
                chunks.append(b)
        os.close(rfd)
        _, status = os.waitpid(pid, 0)
        rc = os.waitstatus_to_exitcode(status)
        try:
            ops = json.loads(b"".join(chunks)) if chunks else None
        except ValueError:
            ops = None
        emit("case", id=req["id"], rc=rc, timed_out=timed_out, ops=ops)


COMMANDS = {
    "cut_writer": cmd_cut_writer,
    "live_appender": cmd_live_appender,
    "judge": cmd_judge,
    "fuzz_server": cmd_fuzz_server,
}


def main(argv: list[str]) -> int:
    command, kwargs = argv[0], json.loads(argv[1]) if len(argv) > 1 else {}
    try:
        COMMANDS[command](**kwargs)
    except W.WorkerFailure as e:
        emit("result", ok=False, **json.loads(str(e)))
        return 1
    except Exception as e:  # noqa: BLE001
        traceback.print_exc()
        emit("result", ok=False, error=f"{type(e).__name__}: {e}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
