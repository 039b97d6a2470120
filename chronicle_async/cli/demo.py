"""The end-to-end demo: a feed process writes market ticks, a strategy process reads them.

Both are real processes (spawned) sharing nothing but the queue folder. The
reader starts first and waits for the queue to appear; the writer publishes
ticks with a numba batch append; the reader checks every seq and price, commits
its position, and both print what they did. The writer warms its kernels up (numba
compile or cache load) on a scratch queue in a temporary folder first, so the
user's queue holds only real ticks from seq 0 and the rate printed excludes warm-up.

The demo deletes only a folder it made itself (one holding its marker file,
``.chronicle-demo``), to start afresh; any other existing path (a real queue, a
folder with other files, a file) is refused, and an empty folder is used as it
is. A process that fails sends its error back at once and the demo exits with it.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import shutil
import stat
import struct
import tempfile
import time
import traceback
from multiprocessing.connection import Connection, wait
from typing import Any, Callable

import numpy as np

from .._errors import ChronicleError, InvalidArgumentError
from ..queue.lock import is_locked
from ..hot.layout import CONTROL_FILE_NAME, WRITER_LOCK_NAME

#: One tick: 64 bytes, decoded zero-copy with ``Message.as_array(TICK)``.
TICK = np.dtype([("symbol", "S8"), ("price", "<f8"), ("qty", "<i8"), ("sent_ns", "<i8"), ("pad", "S32")])
TICK_TYPE = 1
_PRICE_OFFSET = TICK.fields["price"][1]
_unpack_price = struct.Struct("<d").unpack_from
BATCH = 4096
#: The file that marks a folder as made by the demo (so a later run may delete it).
MARKER = ".chronicle-demo"
#: Give up when neither process reports for this long.
SILENCE_S = 300.0


def _price(seq: np.ndarray | int) -> np.ndarray | float:
    return 100.0 + (np.asarray(seq) % 1000) * 0.01


def _warm_up() -> float:
    """Compile (or load from the cache) the append kernels on a scratch queue; returns the seconds it took."""
    from chronicle_async import Queue, WriterConfig

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="chronicle-demo-warmup-") as scratch:
        with Queue.open_publisher(os.path.join(scratch, "q"), WriterConfig(segment_size=1 << 20)) as w:
            w.append_batch(TICK_TYPE, np.zeros(1, TICK))
            w.append(2, b"warm-up")
    return time.perf_counter() - t0


def _writer(path: str, n: int, segment_size: int) -> tuple:
    from chronicle_async import Queue, WriterConfig

    warm_s = _warm_up()  # nothing of it reaches the user's queue
    with Queue.open_publisher(path, WriterConfig(segment_size=segment_size)) as w:
        _mark(path)
        ticks = np.zeros(BATCH, TICK)
        ticks["symbol"] = b"ACME"
        t0 = time.perf_counter()
        sent = 0
        while sent < n:
            k = min(BATCH, n - sent)
            seqs = np.arange(sent, sent + k)
            ticks["price"][:k] = _price(seqs)
            ticks["qty"][:k] = seqs % 100 + 1
            ticks["sent_ns"][:k] = time.time_ns()
            w.append_batch(TICK_TYPE, ticks[:k])
            sent += k
        dt = time.perf_counter() - t0
        single = 20_000
        t1 = time.perf_counter()
        for i in range(single):
            w.append(2, b"heartbeat %d" % i)
        dts = time.perf_counter() - t1
        return ("writer", n, dt, single, dts, w.segment_id, w.epoch, warm_s)


def _reader(path: str, n: int) -> tuple:
    from chronicle_async import Queue, QueueNotFoundError

    deadline = time.monotonic() + 60
    while True:
        try:
            r = Queue.open_subscriber(path, "demo-strategy", "earliest")
            break
        except QueueNotFoundError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)
    with r:
        expected = 0
        got = 0
        bad = 0
        first_t = None
        sample = []
        while got < n:
            m = r.next()
            if m is None:
                r.wait(timeout=1.0)
                continue
            if first_t is None:
                first_t = time.perf_counter()
            if m.seq != expected:
                bad += 1
            expected = m.seq + 1
            if m.type_id == TICK_TYPE:
                if _unpack_price(m.payload, _PRICE_OFFSET)[0] != 100.0 + (m.seq % 1000) * 0.01:
                    bad += 1
                if len(sample) < 3:  # decode a few ticks whole, zero-copy, as a structured array
                    tick = m.as_array(TICK)[0]
                    sample.append((m.seq, tick["symbol"].decode(), round(float(tick["price"]), 2), int(tick["qty"])))
            got += 1
        dt = time.perf_counter() - first_t
        r.commit()
        return ("reader", got, dt, bad, sample, r.next_seq)


def _child(conn: Connection, work: Callable[..., tuple], *args: Any) -> None:
    """Run one side of the demo in a spawned process; send ``("ok", result)`` or ``("error", exception)``."""
    try:
        result: tuple = ("ok", work(*args))
    except BaseException as e:  # noqa: BLE001 - every failure goes back to the parent, which exits with it
        if not isinstance(e, (ChronicleError, OSError, KeyboardInterrupt)):
            traceback.print_exc()
        try:
            pickle.loads(pickle.dumps(e))
            result = ("error", e)
        except Exception:  # noqa: BLE001 - an exception that does not survive pickling: send its text
            result = ("error", ChronicleError(f"{type(e).__name__}: {e}"))
    conn.send(result)
    conn.close()


def _mark(path: str) -> None:
    """Mark ``path`` as the demo's own, so that a later run may delete it."""
    with open(os.path.join(path, MARKER), "w") as f:
        f.write("made by `chronicle demo`; the next `chronicle demo` on this folder deletes it\n")


def prepare_path(path: str) -> None:
    """Make ``path`` ready for the demo: delete it only if the demo made it; refuse anything else.

    Absent or an empty folder: used as it is. A folder holding the demo's marker file:
    deleted, unless a demo still writes to it. Anything else (a queue the demo did not
    make, a folder with other files, a file, a link) is an InvalidArgumentError naming
    the path and what to do.
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    except NotADirectoryError:
        raise InvalidArgumentError(
            f"demo: {path} cannot be made: a folder on its way is a file; choose another path"
        ) from None
    if stat.S_ISDIR(st.st_mode):
        names = os.listdir(path)
        if not names:
            return
        if os.path.isfile(os.path.join(path, MARKER)):
            if is_locked(os.path.join(path, WRITER_LOCK_NAME)):
                raise InvalidArgumentError(
                    f"demo: {path} is the queue of a demo that is still running (its writer lock is held); "
                    "wait for it to finish, or choose another path"
                )
            shutil.rmtree(path)
            return
        if CONTROL_FILE_NAME in names:
            what = "a queue"
        else:
            what = f"other files ({', '.join(sorted(names)[:3])}{', ...' if len(names) > 3 else ''})"
        why = f"is a folder holding {what} that `chronicle demo` did not make"
    elif stat.S_ISLNK(st.st_mode):
        why = "is a symbolic link"
    else:
        why = "is a file"
    raise InvalidArgumentError(
        f"demo: {path} {why}; the demo deletes only folders it made itself (marked by a {MARKER} file): "
        f"choose another path (or an empty folder), or remove {path} yourself if you no longer need it"
    )


def _gather(procs: dict[Connection, Any]) -> dict[str, tuple]:
    """Each process's result, by role; the first error a process sends (or its death) is raised at once."""
    results: dict[str, tuple] = {}
    pending = list(procs)
    while pending:
        ready = wait(pending, timeout=SILENCE_S)
        if not ready:
            raise TimeoutError(f"demo: neither process reported for {SILENCE_S:.0f} s; "
                               "check the load of this machine, or run the demo with fewer messages (-n)")
        for c in ready:
            pending.remove(c)
            try:
                kind, value = c.recv()
            except EOFError:
                p = procs[c]
                p.join(timeout=1.0)
                raise ChronicleError(
                    f"demo: the {p.name} process (pid {p.pid}) ended without a result (exit code {p.exitcode}: "
                    "killed, out of memory, or it could not start); see its output above"
                ) from None
            if kind == "error":
                raise value
            results[value[0]] = value
    return results


def run_demo(path: str = ".demo-bus/ticks", messages: int = 1_000_000, segment_size: int = 16 * 1024 * 1024) -> int:
    """Run the demo and print the exchange; returns a process exit code."""
    path = os.path.abspath(path)
    prepare_path(path)
    print(f"chronicle_async demo: queue {path}")
    print("  (the first run compiles numba kernels into the cache; later runs start in about a second)")
    ctx = mp.get_context("spawn")
    procs, conns = [], []
    for name, work, args in (("demo-reader", _reader, (path, messages + 20_000)),
                             ("demo-writer", _writer, (path, messages, segment_size))):
        recv, send = ctx.Pipe(duplex=False)
        procs.append(ctx.Process(target=_child, args=(send, work, *args), name=name))
        conns.append((recv, send))
    reader, writer = procs
    t0 = time.perf_counter()
    results = {}
    try:
        for p, (_recv, send) in zip(procs, conns):
            p.start()
            send.close()  # the child holds the only send end: its exit reads as EOF here
        results = _gather({recv: p for p, (recv, _send) in zip(procs, conns)})
    finally:
        for p in procs:  # after a failure the other process may wait forever: stop it
            if p.pid is None:  # never started
                continue
            p.join(timeout=30 if len(results) == 2 else 0.5)
            if p.is_alive():
                p.kill()
                p.join()
    _, n, dt, single, dts, last_seg, epoch, warm_s = results["writer"]
    _, got, rdt, bad, sample, next_seq = results["reader"]
    segs = sorted(f for f in os.listdir(path) if f.endswith(".seg"))
    print(f"writer (pid {writer.pid}, epoch {epoch}): kernels warmed up on a scratch queue in {warm_s:.2f} s "
          "(not counted below)")
    print(f"  {n:,} ticks by batch append in {dt:.3f} s "
          f"= {n / dt / 1e6:.1f} M msg/s; {single:,} single append() calls = {single / dts / 1e6:.2f} M msg/s "
          f"({dts / single * 1e9:.0f} ns each)")
    print(f"reader (pid {reader.pid}): {got:,} messages in {rdt:.3f} s = {got / rdt / 1e6:.2f} M msg/s, "
          f"{'all seqs contiguous and prices correct' if bad == 0 else f'{bad} MISMATCHES'}; committed next_seq={next_seq:,}")
    for seq, sym, price, qty in sample:
        print(f"  seq {seq}: {sym} {qty} @ {price}")
    print(f"on disk: {len(segs)} segment files ({segs[0]} .. {segs[-1]}), control.cq, readers/demo-strategy.pos")
    print(f"total {time.perf_counter() - t0:.1f} s")
    return 0 if bad == 0 and got == n + single else 1
