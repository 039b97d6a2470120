"""The NATS JetStream bridge over loopback, beside a plain nats-py client in the same run.

Rows, each a median of ``--rounds`` rounds (100-byte messages, one ``nats-server -js`` with a file store):

throughput (a backlog of ``--messages`` messages):
- ``nats-py publish_async -> stream``: a bare publish loop, 2,000 acks in flight, a Nats-Msg-Id each
  (the client's ceiling; the baseline of the ratios);
- ``bridge out: queue -> stream``: :class:`BridgeOut` in this process, until the stream holds them all;
- ``bridge in: stream -> queue``: :class:`BridgeIn` in this process, until the queue holds them all;
- ``chronicle bridge out + in (2 processes): queue -> stream -> queue``: the two commands as a user
  runs them, timed from the first message at the destination to the last (start-up excluded).

latency (a writer process paced at ``--rate`` msgs/s, after a warm-up of ``--warmup`` messages):
- ``nats-py publish -> JetStream -> push consumer``: what JetStream itself adds (publish time carried
  in the payload, read by a push subscriber in the same process);
- ``chronicle bridge out + in (2 processes)``: the source message's timestamp to the moment a reader
  of the destination queue has it, through both bridge processes and the server.

``nats-server`` has no benchmark tool of its own (``nats bench`` is in the separate ``nats`` CLI, not on
PyPI); the report says whether it was found.

Run:  python -m benchmarks.bridge [--rounds 3] [--messages N] [--rate MSGS_PER_S] [--quick]
      (also: python -m benchmarks.run --bridge)
"""
from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict

import numpy as np

from chronicle_async import Queue
from chronicle_async.bridge import BridgeIn, BridgeOut, LocalNatsServer
from chronicle_async.control import run

from ._harness import Result, format_table, machine_info, median_of, percentiles_ns

SIZE = 100
BASELINE = "nats-py publish_async -> stream"

#: A paced writer process: ``python -c PACED_WRITER QUEUE N RATE`` creates QUEUE, then appends N messages
#: of SIZE bytes at RATE msgs/s once a line comes on its stdin.
PACED_WRITER = f"""
import sys, time
from chronicle_async import Queue
path, n, rate = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
body = b"x" * {SIZE}
with Queue.open_publisher(path) as w:
    sys.stdin.readline()  # go: the bridges are up
    t0 = time.perf_counter()
    for i in range(n):
        ahead = i / rate - (time.perf_counter() - t0)
        if ahead > 0:
            time.sleep(ahead)  # sleeps, never spins: the 2 bridges and the server need the cores
        w.append(1, body)
"""


async def _js(url: str):  # -> (nc, js)
    import nats

    nc = await nats.connect(url)
    return nc, nc.jetstream(publish_async_max_pending=4000)


async def _add_stream(url: str, name: str, subject: str) -> None:
    nc, js = await _js(url)
    await js.add_stream(name=name, subjects=[subject])
    await nc.close()


async def _stream_count(url: str, name: str) -> int:
    nc, js = await _js(url)
    try:
        return (await js.stream_info(name)).state.messages
    finally:
        await nc.close()


async def plain_publish_async(url: str, tag: str, n: int) -> Result:
    """A bare nats-py publish_async loop into a fresh stream, 2,000 acks in flight."""
    await _add_stream(url, f"PLAIN{tag}", f"plain.{tag}")
    nc, js = await _js(url)
    body = b"x" * SIZE
    t0 = time.perf_counter()
    futs = []
    for i in range(n):
        futs.append(await js.publish_async(f"plain.{tag}", body, headers={"Nats-Msg-Id": f"p-{i}"}))
        if len(futs) >= 2000:
            await asyncio.gather(*futs)
            futs = []
    await asyncio.gather(*futs)
    dt = time.perf_counter() - t0
    await nc.close()
    return Result(BASELINE, "throughput", msgs_per_s=n / dt, n=n)


async def _until(task: asyncio.Task, done, what: str, timeout: float = 300.0) -> float:
    """Seconds until ``done()`` is true; the task is cancelled afterwards (its failure is raised)."""
    t0 = time.perf_counter()
    try:
        while not done():
            if task.done():
                task.result()
                raise RuntimeError(f"{what} stopped early")
            if time.perf_counter() - t0 > timeout:
                raise TimeoutError(f"{what}: not done within {timeout:g} s")
            await asyncio.sleep(0.002)
        return time.perf_counter() - t0
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def one_way(url: str, folder: str, tag: str, n: int) -> list[Result]:
    """BridgeOut draining a backlog into the stream, then BridgeIn draining the stream into a queue."""
    stream, subject = f"ONE{tag}", f"one.{tag}"
    await _add_stream(url, stream, subject)
    src, dst = os.path.join(folder, f"one-src{tag}"), os.path.join(folder, f"one-dst{tag}")
    body = b"x" * SIZE
    with Queue.open_publisher(src) as w:
        w.append_batch(np.ones(n, np.int32), [body] * n)
    out = BridgeOut(src, server=url, stream=stream, subject=subject)
    dt_out = await _until(asyncio.ensure_future(out.run()), lambda: out.stats.published >= n, "bridge out")
    inb = BridgeIn(dst, server=url, stream=stream, subject=subject, durable=f"one{tag}")
    dt_in = await _until(asyncio.ensure_future(inb.run()), lambda: inb.stats.appended >= n, "bridge in")
    return [
        Result("bridge out: queue -> stream", "throughput", msgs_per_s=n / dt_out, n=n,
               note="BridgeOut in the benchmark process, from its start (connect included)"),
        Result("bridge in: stream -> queue", "throughput", msgs_per_s=n / dt_in, n=n,
               note="BridgeIn in the benchmark process, from its start (connect and consumer included)"),
    ]


def _chronicle(*args: str, log: str) -> subprocess.Popen:
    """``chronicle ARGS`` in its own process, as a user runs it."""
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "chronicle_async.cli", *args], stdout=out, stderr=out)


def _stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


async def _bridges_ready(url: str, stream: str, durable: str, src: str) -> bool:
    """True once ``bridge out`` reads ``src`` live and ``bridge in``'s consumer ``durable`` is pushing."""
    if not Queue.exists(src) or not any(r.name == "bridge-out" and r.live for r in Queue.inspect(src).readers or ()):
        return False
    import nats.js.errors as jse

    nc, js = await _js(url)
    try:
        info = await js.consumer_info(stream, durable)
        return bool(info.push_bound)
    except jse.NotFoundError:
        return False
    finally:
        await nc.close()


async def two_processes(url: str, folder: str, tag: str, n: int, rate: float, warmup: int) -> Result:
    """``chronicle bridge out`` and ``chronicle bridge in`` as two processes, queue -> stream -> queue.

    With ``rate`` 0: the source holds ``n`` messages before the bridges start; msgs/s from the first
    message at the destination to the last. Else a writer process appends ``warmup + n`` messages at
    ``rate`` msgs/s and the latency of the last ``n`` is the destination read time minus the source
    timestamp."""
    stream, subject = f"TWO{tag}", f"two.{tag}"
    await _add_stream(url, stream, subject)
    src, dst = os.path.join(folder, f"two-src{tag}"), os.path.join(folder, f"two-dst{tag}")
    log = os.path.join(folder, "procs.log")
    body = b"x" * SIZE
    procs: list[subprocess.Popen] = []
    total = n if not rate else warmup + n
    if not rate:
        with Queue.open_publisher(src) as w:
            w.append_batch(np.ones(n, np.int32), [body] * n)
    else:
        procs.append(subprocess.Popen([sys.executable, "-c", PACED_WRITER, src, str(total), str(rate)],
                                      stdin=subprocess.PIPE))
        while not Queue.exists(src):
            await asyncio.sleep(0.005)
    try:
        procs.append(_chronicle("bridge", "out", src, "--server", url, "--stream", stream, "--subject", subject,
                                log=log))
        procs.append(_chronicle("bridge", "in", "--server", url, "--stream", stream, "--subject", subject,
                                "--durable", f"two{tag}", dst, log=log))
        deadline = time.monotonic() + 60
        while not await _bridges_ready(url, stream, f"two{tag}", src):
            if time.monotonic() > deadline or any(p.poll() not in (None, 0) for p in procs):
                raise RuntimeError(f"the bridge processes did not start: see {log}")
            await asyncio.sleep(0.02)
        if rate:
            procs[0].stdin.write(b"go\n")
            procs[0].stdin.close()
        lat = np.empty(n, np.int64)
        got = 0
        t_first = t_last = 0.0
        with Queue.open_subscriber(dst, None, "earliest") as r:
            while got < total:
                m = await r.next_async(timeout=30.0)
                if m is None:
                    raise TimeoutError(f"no message at the destination for 30 s after {got}: see {log}")
                now_ns = time.time_ns()
                if got == 0:
                    t_first = time.perf_counter()
                if got >= total - n:
                    lat[got - (total - n)] = now_ns - m.timestamp_ns
                got += 1
            t_last = time.perf_counter()
    finally:
        _stop(procs)
    name = "chronicle bridge out + in (2 processes)"
    if not rate:
        return Result(f"{name}: queue -> stream -> queue", "throughput", msgs_per_s=(n - 1) / (t_last - t_first),
                      n=n, note="first message at the destination to the last (process start-up excluded)")
    return Result(f"{name}, writer at {rate:,.0f} msgs/s", "latency", n=n, **percentiles_ns(lat),
                  note=f"source timestamp to a reader of the destination queue, after {warmup} warm-up messages")


async def plain_latency(url: str, tag: str, n: int, rate: float, warmup: int) -> Result:
    """nats-py publish (acked asynchronously) -> JetStream -> a push subscriber, paced at ``rate``."""
    import nats.js.api as api

    stream, subject = f"PL{tag}", f"pl.{tag}"
    await _add_stream(url, stream, subject)
    nc, js = await _js(url)
    total = warmup + n
    lat = np.empty(n, np.int64)
    got = 0
    done = asyncio.get_running_loop().create_future()

    async def on_msg(msg) -> None:
        nonlocal got
        now = time.time_ns()
        if got >= warmup:
            lat[got - warmup] = now - int.from_bytes(msg.data[:8], "little")
        got += 1
        if got % 500 == 0 or got == total:
            await msg.ack()
        if got == total and not done.done():
            done.set_result(None)

    await js.subscribe(subject, stream=stream, cb=on_msg, manual_ack=True,
                       config=api.ConsumerConfig(ack_policy=api.AckPolicy.ALL, max_ack_pending=4000))
    pad = b"x" * (SIZE - 8)
    t0 = time.perf_counter()
    acks = []
    for i in range(total):
        ahead = i / rate - (time.perf_counter() - t0)
        if ahead > 0:
            await asyncio.sleep(ahead)
        acks.append(await js.publish_async(subject, time.time_ns().to_bytes(8, "little") + pad))
    await asyncio.wait_for(done, 60)
    await asyncio.gather(*acks)
    await nc.close()
    return Result("nats-py publish -> JetStream -> push consumer", "latency", n=n, **percentiles_ns(lat),
                  note=f"paced at {rate:,.0f} msgs/s in one process, after {warmup} warm-up messages")


async def one_round(url: str, folder: str, tag: str, n: int, rate: float, warmup: int, lat_n: int) -> list[Result]:
    rows = [await plain_publish_async(url, tag, n)]
    rows += await one_way(url, folder, tag, n)
    rows.append(await two_processes(url, folder, f"T{tag}", n, 0.0, 0))
    rows.append(await plain_latency(url, tag, lat_n, rate, warmup))
    rows.append(await two_processes(url, folder, f"L{tag}", lat_n, rate, warmup))
    return rows


async def run_rounds(rounds: int, n: int, rate: float, warmup: int, lat_n: int) -> list[Result]:
    """``rounds`` rounds of every row against one loopback server; the medians, in row order."""
    folder = tempfile.mkdtemp(prefix="bridge-bench-")
    by_name: dict[str, list[Result]] = defaultdict(list)
    try:
        with LocalNatsServer(os.path.join(folder, "js"), log_path=os.path.join(folder, "nats-server.log")) as server:
            for i in range(rounds):
                print(f"bridge round {i + 1}/{rounds} ...", file=sys.stderr, flush=True)
                for r in await one_round(server.url, folder, str(i), n, rate, warmup, lat_n):
                    by_name[r.name].append(r)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return [median_of(v) for v in by_name.values()]


def report(medians: list[Result], rounds: int, command: str, seconds: float) -> str:
    lines = [
        f"Machine: {machine_info()}",
        f"Command: {command}",
        f"Medians of {rounds} rounds; {seconds:.0f} s in all; {SIZE}-byte messages over loopback.",
        "",
        format_table([r for r in medians if r.kind == "throughput"], baseline=BASELINE),
        "",
        format_table([r for r in medians if r.kind == "latency"],
                     baseline="nats-py publish -> JetStream -> push consumer"),
        "",
        "Notes per row:",
        *[f"- {r.name}: {r.note}" for r in medians if r.note],
        "",
        ("`nats bench` found on PATH: run it beside these figures." if shutil.which("nats") else
         "nats-server has no benchmark tool of its own; `nats bench` (the separate `nats` CLI, not on PyPI) "
         "is not installed here."),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bridge", description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--messages", type=int, default=100_000, help="backlog per throughput row")
    ap.add_argument("--rate", type=float, default=5_000.0, help="writer rate of the latency rows, msgs/s")
    ap.add_argument("--latency-messages", type=int, default=20_000, help="measured messages per latency row")
    ap.add_argument("--warmup", type=int, default=2_000, help="messages before the latency rows start measuring")
    ap.add_argument("--quick", action="store_true", help="a tenth of the messages (a smoke run)")
    ap.add_argument("--out", help="write the markdown report here too")
    a = ap.parse_args(argv)
    div = 10 if a.quick else 1
    t0 = time.time()
    medians = run(run_rounds(a.rounds, a.messages // div, a.rate, a.warmup, a.latency_messages // div))
    command = "python -m benchmarks.bridge " + " ".join(argv if argv is not None else sys.argv[1:])
    text = report(medians, a.rounds, command.strip(), time.time() - t0)
    print(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
