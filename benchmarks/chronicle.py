"""chronicle_async's own figures (64-byte payloads unless said otherwise).

Queues live on /dev/shm (tmpfs) so the figures measure the queue, not the disk;
segments are pre-faulted. Writer processes are pinned to CPU 0 and readers to
CPU 1. Every cross-process figure uses real spawned processes.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time

import numba
import numpy as np

from ._harness import Result, percentiles_ns, pin, spawn_ctx

SHM = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
PAYLOAD = 64
BIG_SEGMENT = 1 << 30
# These figures are measured inside one segment (no roll): the writers prepare no next segment
# (prepare_ahead=0), so no supplier thread pre-faults a second GiB beside the measurement.


def _fresh_dir(tag: str) -> str:
    return tempfile.mkdtemp(prefix=f"chronicle-bench-{tag}-", dir=SHM)


# ---------------------------------------------------------------------------------------------
# jitted kernels used by the benchmarks (user-style code calling the public hot kernels)

from chronicle_async.hot.append import append as _append  # noqa: E402
from chronicle_async.hot.atomics import (  # noqa: E402
    cpu_relax,
    load_acquire_i64,
    load_plain_i64,
    store_plain_i64,
    store_release_i64,
)
from chronicle_async.hot.clock import rdtsc  # noqa: E402
from chronicle_async.hot.read import read_next  # noqa: E402
from chronicle_async.hot.status import NO_DATA  # noqa: E402


@numba.njit(nogil=True, cache=True)
def _jit_produce(seg, ctl, n, payload):
    for i in range(n):
        store_plain_i64(payload, 0, i)
        if _append(seg, ctl, 1, payload, i) < 0:
            return i
    return n


@numba.njit(nogil=True, cache=True)
def _spin_read(seg, off):
    """Busy-spin until the record at ``off`` is committed; ``read_next``'s tuple."""
    while True:
        res = read_next(seg, off)
        if res[0] != NO_DATA:
            return res
        cpu_relax()


@numba.njit(nogil=True, cache=True)
def _jit_consume(seg, off, n):
    got = 0
    bad = 0
    while got < n:
        code, nxt, seq, _ts, _t, _poff, _len = _spin_read(seg, off)
        if code != 0:
            return -1, bad
        if seq != got:
            bad += 1
        off = nxt
        got += 1
    return got, bad


@numba.njit(nogil=True, cache=True)
def _jit_paced_produce(seg, ctl, n, payload, interval_ticks):
    nxt = rdtsc()
    for i in range(n):
        while rdtsc() < nxt:
            cpu_relax()
        store_plain_i64(payload, 0, rdtsc())
        _append(seg, ctl, 1, payload, i)
        nxt += interval_ticks
    return n


@numba.njit(nogil=True, cache=True)
def _jit_latency_consume(seg, off, n, out):
    for got in range(n):
        code, nxt, _seq, _ts, _t, poff, _len = _spin_read(seg, off)
        if code != 0:
            return -1
        out[got] = rdtsc() - load_plain_i64(seg, poff)  # the writer's TSC stamp: payload bytes 0..7
        off = nxt
    return n


# ---------------------------------------------------------------------------------------------
# in-process figures


@contextlib.contextmanager
def _scratch_writer(tag: str):
    """A writer on a fresh queue with one pre-faulted 1 GiB segment, deleted afterwards."""
    from chronicle_async import Queue, WriterConfig

    d = _fresh_dir(tag)
    try:
        with Queue.open_publisher(d, WriterConfig(segment_size=BIG_SEGMENT, prepare_ahead=0)) as w:
            yield w
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _rate(name: str, count: int, dt_ns: int, unit: str) -> Result:
    return Result(name, "throughput", count / dt_ns * 1e9, None, None, None, None, count,
                  note=f"{dt_ns / count:.1f} ns/{unit}")


def jit_append_ns(n: int = 5_000_000) -> Result:
    """Append from a jitted loop into a pre-faulted segment, no reader; the payload changes every message."""
    with _scratch_writer("jitappend") as w:
        h = w.hot_handle()
        p = np.zeros(PAYLOAD, np.uint8)
        _jit_produce(h.seg, h.ctl, 10, p)
        t0 = time.perf_counter_ns()
        done = _jit_produce(h.seg, h.ctl, n, p)
        return _rate("chronicle jitted append (in-process)", done, time.perf_counter_ns() - t0, "msg")


def python_append_ns(n: int = 1_000_000) -> Result:
    with _scratch_writer("pyappend") as w:
        p = b"x" * PAYLOAD
        append = w.append
        for _ in range(1000):
            append(1, p)
        t0 = time.perf_counter_ns()
        for _ in range(n):
            append(1, p)
        return _rate("chronicle Python append() (in-process)", n, time.perf_counter_ns() - t0, "call")


def python_batch_append_ns(n: int = 5_000_000, batch: int = 10_000) -> Result:
    with _scratch_writer("batch") as w:
        rows = np.zeros((batch, PAYLOAD), np.uint8)
        w.append_batch(1, rows[:10])
        t0 = time.perf_counter_ns()
        for _ in range(n // batch):
            w.append_batch(1, rows)
        return _rate(f"chronicle Python append_batch ({batch}/call)", (n // batch) * batch,
                     time.perf_counter_ns() - t0, "msg")


def python_next_ns(n: int = 1_000_000) -> Result:
    from chronicle_async import Queue

    with _scratch_writer("next") as w:
        w.append_batch(1, np.zeros((n, PAYLOAD), np.uint8))
        with Queue.open_subscriber(w.path, None, "earliest") as r:
            nxt = r.next
            t0 = time.perf_counter_ns()
            for _ in range(n):
                nxt()
            return _rate("chronicle Python next() (in-process, zero-copy)", n, time.perf_counter_ns() - t0, "msg")


# ---------------------------------------------------------------------------------------------
# cross-process figures


def _open_reader_when_ready(d: str, wait_strategy: str = "busy_spin"):
    from chronicle_async import Queue, QueueNotFoundError

    deadline = time.monotonic() + 60
    while True:
        try:
            return Queue.open_subscriber(d, None, "earliest", wait_strategy=wait_strategy)
        except QueueNotFoundError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.001)


def _w_jit_stream(d: str, n: int, go, out) -> None:
    from chronicle_async import Queue, WriterConfig

    with Queue.open_publisher(d, WriterConfig(segment_size=BIG_SEGMENT, prepare_ahead=0)) as w:
        pin(0)  # after open: the housekeeping thread keeps its own CPUs, off the hot core
        h = w.hot_handle()
        p = np.zeros(PAYLOAD, np.uint8)
        _jit_produce(h.seg, h.ctl, 0, p)
        go.wait()
        t0 = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        _jit_produce(h.seg, h.ctl, n, p)
        out.put(("start", t0))
        time.sleep(0.5)


def _r_jit_stream(d: str, n: int, ready, out) -> None:
    pin(1)
    r = _open_reader_when_ready(d)
    _jit_consume(r.cursor.segment.arr, r.cursor.offset, 0)
    ready.set()
    got, bad = _jit_consume(r.cursor.segment.arr, r.cursor.offset, n)
    out.put(("end", time.clock_gettime_ns(time.CLOCK_MONOTONIC), got, bad))


def _run_pair(writer, wargs: tuple, reader, rargs: tuple, results: int) -> list:
    """Start a writer and a reader process (spawn), collect ``results`` items from their queue.

    Each target gets ``(*args, event, queue)``: the reader sets the event when it is
    ready, the writer waits for it. Both processes are joined, or killed if stuck.
    """
    ctx = spawn_ctx()
    out = ctx.Queue()
    go = ctx.Event()
    wp = ctx.Process(target=writer, args=(*wargs, go, out))
    rp = ctx.Process(target=reader, args=(*rargs, go, out))
    try:
        wp.start()
        rp.start()
        return [out.get(timeout=180) for _ in range(results)]
    finally:
        for p in (wp, rp):
            p.join(timeout=10)
            if p.is_alive():
                p.kill()


def _queue_dir(tag: str) -> str:
    """A path for a queue that does not exist yet (the writer process creates it)."""
    d = _fresh_dir(tag)
    os.rmdir(d)
    return d


def jit_stream_throughput(n: int = 5_000_000) -> Result:
    """Jitted writer process -> jitted reader process, one pre-faulted 1 GiB segment."""
    d = _queue_dir("jitstream")
    try:
        res = dict((item[0], item) for item in _run_pair(_w_jit_stream, (d, n), _r_jit_stream, (d, n), 2))
    finally:
        shutil.rmtree(d, ignore_errors=True)
    _, t_end, got, bad = res["end"]
    if got != n or bad:
        raise RuntimeError(f"jitted stream lost data: got {got}, bad {bad}")
    rate = n / (t_end - res["start"][1]) * 1e9
    return Result("chronicle jitted -> jitted (2 processes)", "throughput", rate, None, None, None, None, n)


def _w_py_stream(d: str, n: int, go, out) -> None:
    from chronicle_async import Queue, WriterConfig

    with Queue.open_publisher(d, WriterConfig(segment_size=BIG_SEGMENT, prepare_ahead=0)) as w:
        pin(0)  # after open: the housekeeping thread keeps its own CPUs, off the hot core
        p = b"x" * PAYLOAD
        append = w.append
        go.wait()
        t0 = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        for _ in range(n):
            append(1, p)
        out.put(("start", t0))
        time.sleep(0.5)


def _r_py_stream(d: str, n: int, ready, out) -> None:
    pin(1)
    r = _open_reader_when_ready(d)
    ready.set()
    nxt = r.next
    got = 0
    while got < n:
        if nxt() is not None:
            got += 1
    out.put(("end", time.clock_gettime_ns(time.CLOCK_MONOTONIC), got, 0))


def python_stream_throughput(n: int = 1_000_000) -> Result:
    """Python append() process -> Python next() process."""
    d = _queue_dir("pystream")
    try:
        res = dict((item[0], item) for item in _run_pair(_w_py_stream, (d, n), _r_py_stream, (d, n), 2))
    finally:
        shutil.rmtree(d, ignore_errors=True)
    rate = n / (res["end"][1] - res["start"][1]) * 1e9
    return Result("chronicle Python append -> next (2 processes)", "throughput", rate, None, None, None, None, n)


def _w_jit_latency(d: str, n: int, interval_ns: float, go, _out) -> None:
    from chronicle_async import Queue, WriterConfig
    from chronicle_async.hot.clock import tsc_per_ns

    with Queue.open_publisher(d, WriterConfig(segment_size=BIG_SEGMENT, prepare_ahead=0)) as w:
        pin(0)  # after open: the housekeeping thread keeps its own CPUs, off the hot core
        h = w.hot_handle()
        p = np.zeros(PAYLOAD, np.uint8)
        ticks = int(interval_ns * tsc_per_ns())
        _jit_paced_produce(h.seg, h.ctl, 0, p, ticks)
        go.wait()
        _jit_paced_produce(h.seg, h.ctl, n, p, ticks)
        time.sleep(0.5)


def _r_jit_latency(d: str, n: int, ready, out) -> None:
    from chronicle_async.hot.clock import tsc_per_ns

    pin(1)
    r = _open_reader_when_ready(d)
    lat = np.zeros(n, np.int64)
    _jit_latency_consume(r.cursor.segment.arr, r.cursor.offset, 0, lat)
    per_ns = tsc_per_ns()
    ready.set()
    got = _jit_latency_consume(r.cursor.segment.arr, r.cursor.offset, n, lat)
    out.put((got, (lat[n // 10 :] / per_ns).astype(np.int64)))


@numba.njit(nogil=True, cache=True)
def _jit_floor_send(buf, n, interval_ticks):
    nxt = rdtsc()
    for i in range(1, n + 1):
        while rdtsc() < nxt:
            cpu_relax()
        store_plain_i64(buf, 8, rdtsc())  # same cache line as the counter, as in a record
        store_release_i64(buf, 0, i)
        nxt += interval_ticks


@numba.njit(nogil=True, cache=True)
def _jit_floor_recv(buf, n, out):
    seen = 0
    while seen < n:
        cur = load_acquire_i64(buf, 0)
        if cur == seen:
            cpu_relax()
            continue
        out[seen] = rdtsc() - load_plain_i64(buf, 8)
        seen = cur
    return seen


def _floor_sender(path: str, n: int, interval_ns: float, go, _out) -> None:
    import mmap

    from chronicle_async.hot.clock import tsc_per_ns

    fd = os.open(path, os.O_RDWR)
    buf = np.frombuffer(mmap.mmap(fd, 4096), np.uint8)
    pin(0)
    ticks = int(interval_ns * tsc_per_ns())
    _jit_floor_send(buf, 0, ticks)
    go.wait()
    _jit_floor_send(buf, n, ticks)


def _floor_receiver(path: str, n: int, ready, out) -> None:
    import mmap

    from chronicle_async.hot.clock import tsc_per_ns

    fd = os.open(path, os.O_RDWR)
    buf = np.frombuffer(mmap.mmap(fd, 4096), np.uint8)
    pin(1)
    lat = np.zeros(n, np.int64)
    _jit_floor_recv(buf, 0, lat)
    per_ns = tsc_per_ns()
    ready.set()
    _jit_floor_recv(buf, n, lat)
    lat = lat[n // 10 :]
    out.put((n, (lat[lat > 0] / per_ns).astype(np.int64)))


def core_to_core_floor(n: int = 100_000, interval_s: float = 10e-6) -> Result:
    """Physical floor: one cache line (a stamp + a release-stored counter) between two processes, paced."""
    fd, path = tempfile.mkstemp(dir=SHM)
    os.ftruncate(fd, 4096)
    os.close(fd)
    try:
        [(got, lat)] = _run_pair(_floor_sender, (path, n, interval_s * 1e9), _floor_receiver, (path, n), 1)
    finally:
        os.unlink(path)
    return Result("floor: bare core-to-core one-way (jitted)", "latency", None, **percentiles_ns(lat), n=got)


def jit_latency(n: int = 100_000, interval_s: float = 10e-6) -> Result:
    """One-way latency, jitted writer -> jitted busy-spinning reader, paced sends (TSC timestamps)."""
    return _latency_pair(_w_jit_latency, _r_jit_latency, n, interval_s, "chronicle jitted -> jitted latency")


def _w_py_latency(d: str, n: int, interval_ns: float, go, _out) -> None:
    from chronicle_async import Queue, WriterConfig

    pack = struct.Struct("<q").pack
    pad = b"\0" * (PAYLOAD - 8)
    now = time.perf_counter_ns
    with Queue.open_publisher(d, WriterConfig(segment_size=BIG_SEGMENT, prepare_ahead=0)) as w:
        pin(0)  # after open: the housekeeping thread keeps its own CPUs, off the hot core
        go.wait()
        nxt = now()
        for _ in range(n):
            while now() < nxt:
                pass
            w.append(1, pack(now()) + pad)
            nxt += interval_ns
        time.sleep(0.5)


def _r_py_latency(d: str, n: int, ready, out) -> None:
    pin(1)
    unpack = struct.Struct("<q").unpack_from
    now = time.perf_counter_ns
    r = _open_reader_when_ready(d)
    lat = np.zeros(n, np.int64)
    ready.set()
    nxt = r.next
    got = 0
    while got < n:
        m = nxt()
        if m is None:
            continue
        lat[got] = now() - unpack(m.payload)[0]
        got += 1
    out.put((got, lat[n // 10 :]))


def python_latency(n: int = 50_000, interval_s: float = 10e-6) -> Result:
    """One-way latency, Python append() -> Python next() busy loop, paced sends."""
    return _latency_pair(_w_py_latency, _r_py_latency, n, interval_s, "chronicle Python -> Python latency")


def _latency_pair(wfn, rfn, n: int, interval_s: float, name: str) -> Result:
    d = _queue_dir("lat")
    try:
        [(got, lat)] = _run_pair(wfn, (d, n, interval_s * 1e9), rfn, (d, n), 1)
    finally:
        shutil.rmtree(d, ignore_errors=True)
    if got != n:
        raise RuntimeError(f"{name}: got {got} of {n}")
    return Result(name, "latency", None, **percentiles_ns(lat), n=n)


# ---------------------------------------------------------------------------------------------
# wake-ups: a parked reader against a bare futex, same period, same run


def _w_wake(d: str, n: int, period_s: float, go, _out) -> None:
    from chronicle_async import Queue, WriterConfig

    pack = struct.Struct("<q").pack
    pad = b"\0" * (PAYLOAD - 8)
    with Queue.open_publisher(d, WriterConfig(segment_size=BIG_SEGMENT, prepare_ahead=0)) as w:
        pin(0)  # after open: the housekeeping thread keeps its own CPUs, off the hot core
        go.wait()
        time.sleep(0.05)
        for _ in range(n):
            t_end = time.perf_counter() + period_s
            while time.perf_counter() < t_end:
                pass
            w.append(1, pack(time.perf_counter_ns()) + pad)
        time.sleep(0.3)


def _r_wake(d: str, n: int, ready, out) -> None:
    pin(1)
    unpack = struct.Struct("<q").unpack_from
    r = _open_reader_when_ready(d, "park")
    lat = np.zeros(n, np.int64)
    ready.set()
    got = 0
    while got < n:
        m = r.next()
        if m is None:
            r.wait(timeout=2.0)
            continue
        lat[got] = time.perf_counter_ns() - unpack(m.payload)[0]
        got += 1
    out.put((got, lat[n // 10 :]))


def _bare_futex_waker(path: str, n: int, period_s: float, go, _out) -> None:
    import mmap

    from chronicle_async.hot import layout as L
    from chronicle_async.hot.append import wake_waiters

    pin(0)
    fd = os.open(path, os.O_RDWR)
    mm = mmap.mmap(fd, 4096)
    arr = np.frombuffer(mm, np.uint8)
    stamp = memoryview(mm).cast("q")
    wake_waiters(arr)  # compile
    go.wait()
    time.sleep(0.05)
    for _ in range(n):
        t_end = time.perf_counter() + period_s
        while time.perf_counter() < t_end:
            pass
        stamp[L.CTL_NOTIFY_SEQ_OFFSET // 8 + 2] = time.perf_counter_ns()
        wake_waiters(arr)  # notify_seq += 1, futex_wake: the same call the writer makes
    time.sleep(0.3)


def _bare_futex_waiter(path: str, n: int, ready, out) -> None:
    import mmap

    from chronicle_async.hot import layout as L
    from chronicle_async.hot.wait import futex_wait, notify_word

    pin(1)
    fd = os.open(path, os.O_RDWR)
    mm = mmap.mmap(fd, 4096)
    arr = np.frombuffer(mm, np.uint8)
    stamp = memoryview(mm).cast("q")
    none = np.zeros(0, np.int64)
    futex_wait(arr, -1, none)
    lat = np.zeros(n, np.int64)
    ready.set()
    seen = notify_word(arr)
    got = 0
    while got < n:
        futex_wait(arr, seen, none)
        cur = notify_word(arr)
        if cur != seen:
            if cur - seen == 1:  # one wake, one stamp (coalesced wakes are counted, not timed)
                lat[got] = time.perf_counter_ns() - stamp[L.CTL_NOTIFY_SEQ_OFFSET // 8 + 2]
            got += cur - seen
            seen = cur
    lat = lat[n // 10 : got]
    out.put((got, lat[lat > 0]))


def wake_latency(n: int = 2_000, period_s: float = 200e-6) -> list[Result]:
    """Parked chronicle reader vs a bare futex wait/wake pair, same period, same run."""
    fd, path = tempfile.mkstemp(dir=SHM)
    os.ftruncate(fd, 4096)
    os.close(fd)
    d = _queue_dir("wake")
    try:
        [(got_f, lat_f)] = _run_pair(_bare_futex_waker, (path, n, period_s), _bare_futex_waiter, (path, n), 1)
        [(got_c, lat_c)] = _run_pair(_w_wake, (d, n, period_s), _r_wake, (d, n), 1)
    finally:
        os.unlink(path)
        shutil.rmtree(d, ignore_errors=True)
    return [
        Result("bare futex wake (jitted syscall)", "latency", None, **percentiles_ns(lat_f), n=got_f),
        Result("chronicle parked reader wake", "latency", None, **percentiles_ns(lat_c), n=got_c),
    ]


# ---------------------------------------------------------------------------------------------
# memory and start-up


def _rss_anon_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    return -1


def memory_flat(n: int = 10_000_000) -> Result:
    """RSS (anonymous) and tracemalloc before/after n Python append+next pairs over many rolls."""
    import tracemalloc

    from chronicle_async import Queue, WriterConfig

    d = _fresh_dir("mem")
    try:
        with Queue.open_publisher(d, WriterConfig(segment_size=64 << 20, max_segments=4)) as w, \
                Queue.open_subscriber(d, "mem", "earliest") as r:
            p = b"m" * PAYLOAD
            for _ in range(200_000):
                w.append(1, p)
                r.next()
            rss0 = _rss_anon_kib()
            tracemalloc.start()
            snap0 = tracemalloc.take_snapshot()
            t0 = time.perf_counter()
            for i in range(n):
                w.append(1, p)
                r.next()
                if i % 1_000_000 == 0:
                    r.commit()
            dt = time.perf_counter() - t0
            snap1 = tracemalloc.take_snapshot()
            tracemalloc.stop()
            grown = sum(s.size_diff for s in snap1.compare_to(snap0, "filename"))
            rss1 = _rss_anon_kib()
        return Result("memory over 10M append+next", "throughput", n / dt, None, None, None, None, n,
                      note=f"RssAnon {rss0} -> {rss1} KiB; tracemalloc growth {grown} B")
    finally:
        shutil.rmtree(d, ignore_errors=True)


def startup(fresh_cache: bool) -> Result:
    """``import chronicle_async`` + open + first append, in a new interpreter."""
    code = (
        "import time; t=time.perf_counter(); import chronicle_async as c, tempfile; "
        "w=c.Queue.open_publisher(tempfile.mkdtemp(dir='%s')); w.append(1, b'x'); "
        "print(time.perf_counter()-t)" % SHM
    )
    env = dict(os.environ)
    tmp = None
    if fresh_cache:
        tmp = tempfile.mkdtemp(prefix="numba-cache-")
        env["NUMBA_CACHE_DIR"] = tmp
    try:
        outp = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        secs = float(outp.stdout.strip().splitlines()[-1])
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    name = "import + open + first append, " + ("first-ever (cold numba cache)" if fresh_cache else "numba cache warm")
    return Result(name, "throughput", None, None, None, None, None, 1, note=f"{secs:.2f} s")


def run_all(quick: bool = False) -> list[Result]:
    k = 10 if quick else 1
    res = [
        jit_append_ns(5_000_000 // k),
        python_append_ns(1_000_000 // k),
        python_batch_append_ns(5_000_000 // k),
        python_next_ns(1_000_000 // k),
        jit_stream_throughput(5_000_000 // k),
        python_stream_throughput(1_000_000 // k),
        core_to_core_floor(100_000 // k),
        jit_latency(100_000 // k),
        python_latency(50_000 // k),
    ]
    res += wake_latency(2_000 // k)
    return res
