"""Worker processes of the stress tests, and the test side's handle on them.

Child side: ``python -m tests.stress._workers <command> '<json kwargs>'`` (working directory
the repository root). A worker talks to the test over pipes, one JSON object per line:
events on stdout (``{"event": ...}``), commands on stdin for scripted workers. A worker that
finds a problem emits ``{"event": "result", "ok": false, "error": ...}`` and exits with 1.

Test side: :class:`Worker` starts a command with ``subprocess.Popen`` (fork + exec, never a
bare fork), collects its events on a thread, and keeps its stderr in a temp file for
failure messages.

Payloads are a pure function of the seq (:func:`expected`), so every reader checks every
byte, the type id and seq contiguity without being told what was written.
"""
from __future__ import annotations

import json
import os
import pathlib
import queue
import random
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

REPO = pathlib.Path(__file__).resolve().parents[2]

# -- deterministic payloads ---------------------------------------------------------------------

_M64 = (1 << 64) - 1
_BLOCK = struct.Struct("<QQ")


def mix64(x: int) -> int:
    """splitmix64's finaliser: a well-spread 64-bit hash of ``x``."""
    x = (x + 0x9E3779B97F4A7C15) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


def payload_size(seq: int, max_size: int) -> int:
    """The size of message ``seq``: pseudo-random in 0..max_size."""
    return mix64(seq) % (max_size + 1)


def type_id_of(seq: int) -> int:
    return mix64(seq ^ 0x5A5A5A5A) & 0xFFFF


def payload(seq: int, size: int) -> bytes:
    """``size`` bytes derived from ``seq``: the seq and a hash of it, repeated."""
    block = _BLOCK.pack(seq, mix64(~seq & _M64))
    return (block * (size // 16 + 1))[:size]


def expected(seq: int, max_size: int) -> tuple[int, bytes]:
    """``(type_id, payload)`` of message ``seq`` in a queue written with ``max_size``."""
    return type_id_of(seq), payload(seq, payload_size(seq, max_size))


def check_message(m: Any, seq: int, max_size: int) -> str | None:
    """Why message ``m`` is not message ``seq``, or None if every field and byte is right."""
    if m.seq != seq:
        kind = "a duplicate or backwards seq" if m.seq < seq else "a gap"
        return f"expected seq {seq}, got seq {m.seq} ({kind})"
    tid, want = expected(seq, max_size)
    if m.type_id != tid:
        return f"seq {seq}: type_id {m.type_id}, expected {tid}"
    got = bytes(m.payload)
    if got != want:
        if len(got) != len(want):
            return f"seq {seq}: payload of {len(got)} bytes, expected {len(want)}"
        i = next(i for i in range(len(got)) if got[i] != want[i])
        return f"seq {seq}: payload byte {i} is {got[i]:#x}, expected {want[i]:#x}"
    return None


def read_control_i64(queue_dir: str | os.PathLike, offset: int) -> int:
    """One i64 word of ``control.cq`` read through the file (the page cache the mappings share)."""
    from chronicle_async.hot import layout as L

    with open(os.path.join(os.fspath(queue_dir), L.CONTROL_FILE_NAME), "rb") as f:
        f.seek(offset)
        return struct.unpack("<q", f.read(8))[0]


def read_control_i32(queue_dir: str | os.PathLike, offset: int) -> int:
    from chronicle_async.hot import layout as L

    with open(os.path.join(os.fspath(queue_dir), L.CONTROL_FILE_NAME), "rb") as f:
        f.seek(offset)
        return struct.unpack("<i", f.read(4))[0]


# -- child side -----------------------------------------------------------------------------------


def emit(event: str, **fields: Any) -> None:
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


class WorkerFailure(Exception):
    """A check failed inside a worker: reported as a failed result."""


def fail(error: str, **fields: Any) -> None:
    raise WorkerFailure(json.dumps({"error": error, **fields}))


def _parent_gone(ppid: int) -> bool:
    return os.getppid() != ppid


def _open_subscriber(path: str, name: str | None, start: str, strategy: str, deadline: float) -> Any:
    """Open a reader, polling while the queue does not exist yet."""
    from chronicle_async import Queue, QueueNotFoundError

    while True:
        try:
            return Queue.open_subscriber(path, name, start, wait_strategy=strategy)
        except QueueNotFoundError:
            if time.monotonic() > deadline:
                fail(f"no queue appeared at {path}")
            time.sleep(0.005)


def cmd_writer(path: str, count: int | None, segment_size: int, max_size: int, batch: int = 0) -> None:
    """Append seqs next_seq..count-1 (one by one, or with append_batch in batches of 1..batch), close.

    ``count=None`` only opens (running recovery) and closes.
    """
    from chronicle_async import Queue, WriterConfig

    w = Queue.open_publisher(path, WriterConfig(segment_size=segment_size))
    emit("opened", epoch=w.epoch, next_seq=w.next_seq)
    seq = w.next_seq
    if count is None:
        count = seq
    batches = 0
    while seq < count:
        if batch:
            k = min(1 + mix64(seq ^ 0xBA7C) % batch, count - seq)
            seqs = range(seq, seq + k)
            first = w.append_batch([type_id_of(s) for s in seqs], [payload(s, payload_size(s, max_size)) for s in seqs])
            if first != seq:
                fail(f"append_batch returned first seq {first}, expected {seq}")
            seq += k
            batches += 1
        else:
            got = w.append(type_id_of(seq), payload(seq, payload_size(seq, max_size)))
            if got != seq:
                fail(f"append returned seq {got}, expected {seq}")
            seq += 1
    if w.next_seq != count:
        fail(f"writer.next_seq is {w.next_seq} after appending up to {count}")
    emit("result", ok=True, next_seq=w.next_seq, segment_id=w.segment_id, batches=batches)
    w.close()


def cmd_reader(
    path: str,
    name: str | None,
    max_size: int,
    count: int | None = None,
    target_file: str | None = None,
    start: str = "earliest",
    strategy: str = "spin_then_park",
    wait_timeout: float = 0.2,
    deadline: float = 120.0,
    commit_every: int = 5000,
    from_first: bool = False,
) -> None:
    """Read and verify seqs 0.. until ``count`` (or the count written to ``target_file``) are read.

    Then check nothing more is there. Reports how many waits returned False. With ``from_first``,
    the seqs start at the first message found (retention deleted the older ones) and ``count`` is
    the seq to read up to; the result's ``first`` says where it started.
    """
    from chronicle_async import CorruptQueueError

    t_end = time.monotonic() + deadline
    ppid = os.getppid()
    r = _open_subscriber(path, name, start, strategy, t_end)
    emit("opened", position=list(r.position))
    seq = 0
    first = None
    idle_waits = 0
    target = count
    try:
        while target is None or seq < target:
            m = r.next()
            if m is None:
                if target_file is not None and target is None and os.path.exists(target_file):
                    with open(target_file) as f:
                        target = int(f.read())
                    continue
                if time.monotonic() > t_end or _parent_gone(ppid):
                    fail(f"timed out after reading {seq} messages (target {target})", position=list(r.position))
                if not r.wait(timeout=wait_timeout):
                    idle_waits += 1
                continue
            if first is None:
                first = seq = m.seq if from_first else 0
            err = check_message(m, seq, max_size)
            if err:
                fail(err, position=list(r.position))
            seq += 1
            if name is not None and seq % commit_every == 0:
                r.commit()
        extra = r.next()
        if extra is not None:
            fail(f"read {seq} messages as expected, then found one more: seq {extra.seq}")
    except CorruptQueueError as e:
        fail(f"{type(e).__name__} after {seq} good messages: {e}")
    if name is not None:
        r.commit()
    emit("result", ok=True, count=seq, first=first, idle_waits=idle_waits, position=list(r.position))
    r.close()


def cmd_appender(path: str, segment_size: int, max_size: int, batch: int = 0, max_segments: int | None = None,
                 announce_recycled: int = 0) -> None:
    """Open the writer (recovering whatever a killed predecessor left) and append until killed.

    With ``batch``, appends with ``append_batch`` in batches of 1..batch messages. With
    ``max_segments``, the writer's caps retire segments and its supplier recycles them; with
    ``announce_recycled``, a ``recycled`` event says when that many rolls took a recycled segment.
    """
    from chronicle_async import Queue, WriterConfig

    ppid = os.getppid()
    w = Queue.open_publisher(path, WriterConfig(segment_size=segment_size, max_segments=max_segments))
    seq = w.next_seq
    emit("opened", epoch=w.epoch, next_seq=seq, segment_id=w.segment_id, pid=os.getpid())
    calls = 0
    announce = announce_recycled
    while True:
        if batch:
            seqs = range(seq, seq + 1 + mix64(seq ^ 0xBA7C) % batch)
            got = w.append_batch([type_id_of(s) for s in seqs], [payload(s, payload_size(s, max_size)) for s in seqs])
            n = len(seqs)
        else:
            got = w.append(type_id_of(seq), payload(seq, payload_size(seq, max_size)))
            n = 1
        if got != seq:
            fail(f"append returned seq {got}, expected {seq}")
        seq += n
        calls += 1
        if announce and w.roll_counts.recycled >= announce:
            emit("recycled", counts=list(w.roll_counts), seq=seq)
            announce = 0
        if not calls & 255 and _parent_gone(ppid):  # never outlive a test that died
            os._exit(2)


def cmd_recycle_crash(path: str, segment_size: int, max_size: int, stage: str) -> None:
    """Fill a capped queue, then SIGKILL this process inside a recycling, at ``stage``:

    - ``locked``: the victim renamed out of the queue and locked, nothing zeroed yet;
    - ``zeroing``: half the victim's records zeroed;
    - ``linked``: the zeroed segment linked in as the next one, before the writer was offered it.

    The writer has no supplier thread and retention checks hourly, so this process's own call of
    ``recycle_segment`` is the only one; the kill is real (``SIGKILL``), at the chosen point.
    """
    import signal

    from chronicle_async import Queue, WriterConfig
    from chronicle_async.queue import files as F

    w = Queue.open_publisher(path, WriterConfig(segment_size=segment_size, max_segments=2, prepare_ahead=0,
                                                retention_check_interval=3600.0))
    seq = w.next_seq
    while w.segment_id < 4:
        w.append(type_id_of(seq), payload(seq, payload_size(seq, max_size)))
        seq += 1
    victim, target = F.list_segments(path)[0], w.segment_id + 1
    memset = F._memset

    def die() -> None:
        emit("dying", stage=stage, victim=victim, target=target, next_seq=seq)
        sys.stdout.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    def zero(address: int, n: int) -> None:
        if stage == "locked":
            die()
        memset(address, n // 2)
        die()

    F._memset = zero
    if stage == "linked":
        F.Mapping.retarget = lambda self, p: die()  # called right after the link
        F._memset = memset
    F.recycle_segment(path, victim, target, segment_size, w.queue_id, None)
    fail("recycle_segment returned: the crash point was never reached")


def cmd_fill(path: str, count: int, segment_size: int, max_size: int, close: bool = False,
             roll_before_last: bool = False, prepare_ahead: int | None = None) -> None:
    """Append ``count`` messages, report, then close cleanly (``close``) or block until killed.

    ``roll_before_last`` rolls before the last message, so it is the first record of its segment.
    """
    from chronicle_async import Queue, WriterConfig

    w = Queue.open_publisher(path, WriterConfig(segment_size=segment_size, prepare_ahead=prepare_ahead))
    for seq in range(count):
        if roll_before_last and seq == count - 1:
            w.roll()
        w.append(type_id_of(seq), payload(seq, payload_size(seq, max_size)))
    emit("filled", next_seq=w.next_seq, segment_id=w.segment_id, epoch=w.epoch)
    if close:
        w.close()
        emit("result", ok=True)
        return
    sys.stdin.readline()  # EOF when the test ends; normally the test kills us first


_jit_append = None


def _jitted_append() -> Any:
    """A user ``@numba.njit`` function appending through ``chronicle_async.hot.append.append``."""
    global _jit_append
    if _jit_append is None:
        import numba

        from chronicle_async.hot.append import append

        @numba.njit(cache=False)
        def jit_append(seg: Any, ctl: Any, type_id: int, data: Any, timestamp_ns: int) -> int:
            return append(seg, ctl, type_id, data, timestamp_ns)

        _jit_append = jit_append
    return _jit_append


def warm_jitted_append() -> None:
    """Compile the user njit function now, with the argument types of a real call (creating the
    dispatcher compiles nothing: the first call would, inside a timed window)."""
    import numpy as np

    from chronicle_async.hot import layout as L
    from chronicle_async.hot import status as S

    seg = np.zeros(L.MIN_SEGMENT_SIZE, np.uint8)
    seg[L.SEG_ID_OFFSET] = 1  # another segment than the control file names: STALE_HANDLE, nothing written
    ctl = np.zeros(L.CONTROL_FILE_LENGTH, np.uint8)
    for data in (np.frombuffer(b"x", np.uint8), np.zeros(0, np.uint8)):  # read-only and writable payloads
        got = _jitted_append()(seg, ctl, 0, data, time.time_ns())
        assert got == S.STALE_HANDLE, got


def jit_append_one(w: Any, seq: int, size: int) -> int:
    """Append message ``seq`` (``size`` bytes) from jitted code; roll in Python on SEGMENT_FULL.

    Returns the seq, or another (negative) status for the caller to report.
    """
    import numpy as np

    from chronicle_async.hot import status as S

    fn = _jitted_append()
    data = payload(seq, size)
    arr = np.frombuffer(data, np.uint8) if size else np.zeros(0, np.uint8)
    while True:
        h = w.hot_handle()
        got = fn(h.seg, h.ctl, type_id_of(seq), arr, time.time_ns())
        if got == S.SEGMENT_FULL:
            w.roll()
        elif got != S.STALE_HANDLE:  # stale: nothing written, take a new handle
            return got


def cmd_scripted_writer(path: str, segment_size: int, max_size: int) -> None:
    """A writer driven by commands on stdin (one JSON object per line).

    ops: ``append`` (count; jit: through a user njit function; batch: one append_batch),
    ``warm_jit`` (compile that function), ``fill_segment`` (append until the segment has no room left),
    ``close``, ``exit``. Each op answers with an event; ``t0`` is ``time.monotonic()`` just
    before the first byte of the op is written (CLOCK_MONOTONIC is system-wide).
    """
    from chronicle_async import Queue, WriterConfig
    from chronicle_async.hot import layout as L

    w = Queue.open_publisher(path, WriterConfig(segment_size=segment_size))
    emit("opened", epoch=w.epoch, next_seq=w.next_seq, segment_id=w.segment_id)
    data_end = L.segment_data_end(w.segment_size)

    def write_offset() -> int:
        return struct.unpack_from("<q", w.hot_handle().ctl, L.CTL_WRITE_OFFSET_OFFSET)[0]

    def append_one(seq: int, size: int, jit: bool) -> int:
        if not jit:
            return w.append(type_id_of(seq), payload(seq, size))
        return jit_append_one(w, seq, size)

    for line in sys.stdin:
        cmd = json.loads(line)
        op = cmd["op"]
        if op == "warm_jit":
            warm_jitted_append()
            emit("warmed")
        elif op == "append" and cmd.get("batch"):
            seq = w.next_seq
            seqs = range(seq, seq + cmd.get("count", 1))
            sizes = [payload_size(s, max_size) for s in seqs]
            data = [payload(s, n) for s, n in zip(seqs, sizes)]
            t0 = time.monotonic()
            first = w.append_batch([type_id_of(s) for s in seqs], data)
            if first != seq:
                fail(f"append_batch returned first seq {first}, expected {seq}")
            emit("appended", t0=t0, written=[[s, n] for s, n in zip(seqs, sizes)], segment_id=w.segment_id)
        elif op == "append":
            seq = w.next_seq
            written = []
            t0 = time.monotonic()
            for _ in range(cmd.get("count", 1)):
                size = payload_size(seq, max_size)
                got = append_one(seq, size, cmd.get("jit", False))
                if got != seq:
                    fail(f"append returned {got}, expected seq {seq}")
                written.append([seq, size])
                seq += 1
            emit("appended", t0=t0, written=written, segment_id=w.segment_id)
        elif op == "fill_segment":
            written = []
            seg = w.segment_id
            while True:
                room = data_end - write_offset()
                if room < L.RECORD_ALIGNMENT:
                    break
                seq = w.next_seq
                size = min(payload_size(seq, max_size), room - L.RECORD_HEADER_LENGTH)
                got = append_one(seq, size, False)
                if got != seq or w.segment_id != seg:
                    fail(f"fill_segment: append gave seq {got} in segment {w.segment_id}, expected {seq} in {seg}")
                written.append([seq, size])
            emit("filled", written=written, segment_id=seg, write_offset=write_offset())
        elif op == "close":
            t0 = time.monotonic()
            w.close()
            emit("closed", t0=t0)
        elif op == "exit":
            break
    if not w.closed:
        w.close()


def cmd_parker(
    path: str,
    name: str | None,
    strategy: str,
    skip: int = 0,
    wait_timeout: float | None = None,
    want: int = 1,
    ttl: float = 1.0,
) -> None:
    """Read (and check) ``skip`` messages, then park in ``wait(wait_timeout)`` once.

    Emits ``parked`` (position) just before waiting, then ``woke``: what ``wait`` returned,
    ``t_wake = time.monotonic()`` right after it returned, ``t1`` when ``want`` messages had
    been read (a wake-up may come from the roll's end marker a moment before the message
    itself, so it keeps reading for up to 5 s), the messages (seq, size, content matches the
    seq), the position, and ``detect_disconnect``.
    """
    deadline = time.monotonic() + 60
    r = _open_subscriber(path, name, "earliest", strategy, deadline)
    got = 0
    while got < skip:
        m = r.next()
        if m is None:
            if time.monotonic() > deadline:
                fail(f"only {got} of the {skip} messages to skip arrived")
            r.wait(timeout=0.1)
            continue
        if bytes(m.payload) != payload(m.seq, len(m.payload)) or m.seq != got:
            fail(f"message {got} before parking is wrong: seq {m.seq}")
        got += 1
    if r.next() is not None:
        fail("a message beyond the ones to skip was already there before parking")
    emit("parked", position=list(r.position), next_seq=r.next_seq)
    ret = r.wait(timeout=wait_timeout)
    t_wake = time.monotonic()
    msgs: list[list] = []
    more_until = t_wake + 5.0
    while True:
        for m in r:
            ok = bytes(m.payload) == payload(m.seq, len(m.payload)) and m.type_id == type_id_of(m.seq)
            msgs.append([m.seq, len(m.payload), ok])
        if len(msgs) >= want or time.monotonic() > more_until:
            break
        r.wait(timeout=0.1)
    t1 = time.monotonic() if want else t_wake
    reason = r.detect_disconnect(ttl=ttl)
    emit("woke", t_wake=t_wake, t1=t1, returned=ret, messages=msgs, position=list(r.position),
         disconnect=None if reason is None else reason.name)
    r.close()


def cmd_pingpong(out_path: str, in_path: str, rounds: int, strategy: str, segment_size: int, max_size: int,
                 serve_first: bool, jit: bool = False) -> None:
    """One side of a ping-pong over two queues: append message i, then park until the peer's message i.

    Every wait is ``wait(timeout=None)``: a single lost wake-up hangs both sides. With ``jit``
    the appends go through a user njit function (``hot.append.append``).
    """
    from chronicle_async import Queue, WriterConfig

    w = Queue.open_publisher(out_path, WriterConfig(segment_size=segment_size))
    if jit:
        warm_jitted_append()  # compiled before the first timed send

    def send(i: int) -> None:
        size = payload_size(i, max_size)
        got = jit_append_one(w, i, size) if jit else w.append(type_id_of(i), payload(i, size))
        if got != i:
            fail(f"append returned {got}, expected seq {i}")

    r = _open_subscriber(in_path, None, "earliest", strategy, time.monotonic() + 60)
    emit("ready")
    parks = 0
    for i in range(rounds):
        if serve_first:
            send(i)
        while True:
            m = r.next()
            if m is not None:
                break
            parks += 1
            if not r.wait(timeout=None):
                fail(f"wait(timeout=None) returned False in round {i}")
        err = check_message(m, i, max_size)
        if err:
            fail(f"round {i}: {err}")
        if not serve_first:
            send(i)
    emit("result", ok=True, rounds=rounds, parks=parks, segment_id=w.segment_id)
    w.close()
    r.close()


def _compiled_wake_kernels() -> list[int]:
    from chronicle_async.queue import warm as _warm

    return [len(k.overloads) for k in _warm.WRITER_KERNELS]


def cmd_paced_writer(paths: list[str], count: int, gap_us: float, segment_size: int) -> None:
    """Append ``count`` rounds to every queue in ``paths``, one round every ``gap_us`` µs (+-50 %
    jitter), each payload the seq as 8 bytes; report how many wake kernels were compiled after
    open and at the end (a wake must never compile one)."""
    from chronicle_async import Queue, WriterConfig

    writers = [Queue.open_publisher(p, WriterConfig(segment_size=segment_size)) for p in paths]
    at_open = _compiled_wake_kernels()
    emit("opened", compiled=at_open)
    go = sys.stdin.readline()  # the consumers are ready
    if not go.strip():
        return
    step = gap_us * 1e3
    nxt = time.monotonic_ns()
    rng = random.Random(1)
    for seq in range(count):
        nxt += int(step * (0.5 + rng.random()))
        ahead = nxt - time.monotonic_ns()
        if ahead > 200_000:
            time.sleep((ahead - 150_000) / 1e9)
        while time.monotonic_ns() < nxt:
            pass
        body = seq.to_bytes(8, "little")
        for w in writers:
            w.append(1, body)
    emit("result", ok=True, compiled_at_open=at_open, compiled_at_end=_compiled_wake_kernels())
    for w in writers:
        w.close()


def cmd_hog(seconds: float) -> None:
    """Burn one CPU in Python for ``seconds`` (load beside a test)."""
    emit("started")
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


COMMANDS = {
    "recycle_crash": cmd_recycle_crash,
    "paced_writer": cmd_paced_writer,
    "hog": cmd_hog,
    "writer": cmd_writer,
    "reader": cmd_reader,
    "appender": cmd_appender,
    "fill": cmd_fill,
    "scripted_writer": cmd_scripted_writer,
    "parker": cmd_parker,
    "pingpong": cmd_pingpong,
}


def main(argv: list[str]) -> int:
    command, kwargs = argv[0], json.loads(argv[1]) if len(argv) > 1 else {}
    try:
        COMMANDS[command](**kwargs)
    except WorkerFailure as e:
        emit("result", ok=False, **json.loads(str(e)))
        return 1
    except Exception as e:  # an unexpected exception is a failed result, with its type
        import traceback

        traceback.print_exc()
        emit("result", ok=False, error=f"{type(e).__name__}: {e}")
        return 1
    return 0


# -- test side --------------------------------------------------------------------------------------


class Worker:
    """A worker process started with ``subprocess.Popen`` and its event stream."""

    def __init__(self, command: str, **kwargs: Any):
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
        self.command = command
        self._stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.stress._workers", command, json.dumps(kwargs)],
            cwd=REPO, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,
        )
        self.pid = self.proc.pid
        self._events: "queue.Queue[dict | None]" = queue.Queue()
        self.events: list[dict] = []
        self._reader = threading.Thread(target=self._pump, daemon=True)
        self._reader.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            try:
                ev = json.loads(raw)
            except ValueError:
                continue
            self._events.put(ev)
        self._events.put(None)

    def describe(self) -> str:
        self._stderr.seek(0)
        err = self._stderr.read().decode(errors="replace")
        return f"worker {self.command} pid {self.pid} rc={self.proc.poll()} events={self.events[-5:]} stderr:\n{err[-3000:]}"

    def send(self, **cmd: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(cmd) + "\n").encode())
        self.proc.stdin.flush()

    def expect(self, event: str, timeout: float) -> dict:
        """The next event named ``event``; AssertionError on timeout, exit, or a failed result."""
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            try:
                ev = self._events.get(timeout=max(left, 0.0))
            except queue.Empty:
                raise AssertionError(f"no {event!r} event within {timeout} s from {self.describe()}") from None
            if ev is None:
                self._events.put(None)
                raise AssertionError(f"worker ended before a {event!r} event: {self.describe()}")
            self.events.append(ev)
            if ev["event"] == event:
                return ev
            if ev["event"] == "result" and not ev.get("ok"):
                raise AssertionError(f"worker failed: {ev.get('error')} ({self.describe()})")

    def result(self, timeout: float) -> dict:
        """The final result of a worker that must succeed (exit code 0, ok result)."""
        ev = self.expect("result", timeout)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"worker did not exit after its result: {self.describe()}") from None
        assert ev.get("ok") and rc == 0, f"worker failed: {ev} {self.describe()}"
        return ev

    def kill9(self) -> int:
        """SIGKILL the worker and reap it; returns its exit status (-SIGKILL unless it had died)."""
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return self.proc.wait(timeout=30)

    def stop(self) -> None:
        """Kill (if still running) and release the pipes: used at teardown."""
        if self.proc.poll() is None:
            self.kill9()
        self._reader.join(timeout=5)  # EOF follows the exit; then the pipe can be closed
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                if f is not None:
                    f.close()
            except OSError:
                pass
        self._stderr.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
