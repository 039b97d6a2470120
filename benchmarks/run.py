"""Run chronicle_async's benchmarks beside the peers, several rounds, and print medians.

    python -m benchmarks.run [--rounds 3] [--quick] [--out results.md] [--memory] [--startup]
    python -m benchmarks.run --hotcore [--rounds 3] [--quick] [--out results.md]
    python -m benchmarks.run --control [--rounds 3] [--quick] [--out results.md]
    python -m benchmarks.run --sustained [--rounds 3] [--quick]
    python -m benchmarks.run --scaling [--rounds 3] [--quick] [--out results.md]
    python -m benchmarks.run --bridge [--rounds 3] [--quick] [--out results.md]

Every round measures chronicle_async and the peers (multiprocessing.Queue,
os.pipe, pyzmq ipc, faster-fifo) in the same run on the same machine, so
ratios are meaningful even on a noisy VM.

``--hotcore`` runs only the hot-core figures (``benchmarks/hotcore.py``: the SPSC
ring, the HotLoop's hand-off, fan-in, handler latency, steady-state memory, and
asyncio lag beside it; about 2-3 minutes with 3 rounds). ``--with-hotcore`` adds
them after the transport rounds of the full run (``make bench`` leaves them out).

``--control`` runs only the control-plane figures (``benchmarks/control.py``: roll
latency with and without prealloc, a writer's latency while retention deletes
segments, discovery of a new queue, ``async for`` one-way latency; about a
minute with 3 rounds).

``--scaling`` runs only the scaling figures (``benchmarks/scaling.py``: fan-out to k
HotLoop reader processes beside pyzmq PUB/SUB, fan-in from w writer processes; k and w
from 1 to nproc - 1, at least 2).

``--bridge`` runs only the NATS JetStream bridge figures (``benchmarks/bridge.py``: bridge out,
bridge in, and the two commands as processes, beside a plain nats-py client on the same loopback
nats-server; needs the ``bridge`` extra; about 2 minutes with 3 rounds).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict

from . import chronicle, control, hotcore, iox2, peers, scaling, sustained
from ._harness import Result, format_table, machine_info, median_of


def _round(quick: bool) -> list[Result]:
    return chronicle.run_all(quick=quick) + peers.run_all(quick=quick) + iox2.run_all(quick=quick)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="a tenth of the messages (a smoke run)")
    ap.add_argument("--memory", action="store_true", help="also run the 10M-message memory check")
    ap.add_argument("--startup", action="store_true", help="also measure start-up (warm and cold numba cache)")
    ap.add_argument("--hotcore", action="store_true", help="run only the hot-core figures (benchmarks/hotcore.py)")
    ap.add_argument("--with-hotcore", action="store_true", help="also run the hot-core figures after the transport rounds")
    ap.add_argument("--control", action="store_true", help="run only the control-plane figures (benchmarks/control.py)")
    ap.add_argument("--sustained", action="store_true",
                    help="run only the sustained-rate figures across rolls (benchmarks/sustained.py)")
    ap.add_argument("--scaling", action="store_true",
                    help="run only the fan-out / fan-in scaling figures (benchmarks/scaling.py)")
    ap.add_argument("--bridge", action="store_true",
                    help="run only the NATS JetStream bridge figures (benchmarks/bridge.py; extra: bridge)")
    ap.add_argument("--out", help="write the markdown report here too")
    args = ap.parse_args(argv)
    if args.hotcore:
        return _hotcore_only(args)
    if args.control:
        return _control_only(args)
    if args.sustained:
        return sustained.main(["--rounds", str(args.rounds)] + (["--quick"] if args.quick else []))
    if args.bridge:
        from . import bridge  # imports nats-py: only when asked

        return bridge.main(["--rounds", str(args.rounds)] + (["--quick"] if args.quick else [])
                           + (["--out", args.out] if args.out else []))
    if args.scaling:
        return scaling.main(["--rounds", str(args.rounds)] + (["--quick"] if args.quick else [])
                            + (["--out", args.out] if args.out else []))
    by_name: dict[tuple[str, str], list[Result]] = defaultdict(list)
    order: list[tuple[str, str]] = []
    t0 = time.time()
    for i in range(args.rounds):
        print(f"round {i + 1}/{args.rounds} ...", file=sys.stderr, flush=True)
        for r in _round(args.quick):
            key = (r.name, r.kind)
            if key not in by_name:
                order.append(key)
            by_name[key].append(r)
        if args.out:  # keep finished rounds even if a later one fails
            with open(args.out + ".rounds.json", "w") as f:
                json.dump({f"{k[0]} [{k[1]}]": [vars(r) for r in v] for k, v in by_name.items()}, f)
    medians = [median_of(by_name[n]) for n in order]
    extra = []
    if args.memory:
        print("memory check (10M messages) ...", file=sys.stderr, flush=True)
        extra.append(chronicle.memory_flat(1_000_000 if args.quick else 10_000_000))
    if args.startup:
        extra.append(chronicle.startup(fresh_cache=False))
        extra.append(chronicle.startup(fresh_cache=True))
    hot = []
    if args.with_hotcore:
        hot = hotcore.run_all(args.rounds, args.quick)
    info = machine_info()
    lines = [
        f"Machine: {info}",
        (f"Command: python -m benchmarks.run --rounds {args.rounds}{' --quick' if args.quick else ''}"
         f"{' --memory' if args.memory else ''}{' --startup' if args.startup else ''}"
         f"{' --with-hotcore' if args.with_hotcore else ''}"),
        f"Medians of {args.rounds} rounds; {time.time() - t0:.0f} s in all.",
        "",
        format_table(medians, baseline="pyzmq ipc"),
        "",
        "Notes per row (median round):",
    ]
    lines += [f"- {r.name}: {r.note}" for r in medians if r.note]
    lines += [f"- {r.name}: {r.note}" for r in extra]
    if hot:
        lines += ["", "Hot core (medians of the rounds):", "", hotcore.format_report(hot)]
    lines += ["", "Raw rounds (JSON):", json.dumps({f"{k[0]} [{k[1]}]": [vars(r) for r in by_name[k]] for k in order})]
    if hot:
        lines += ["", "Hot-core figures (JSON):", json.dumps(hot)]
    report = "\n".join(lines)
    print(report)
    if args.out:
        with open(args.out, "w") as f:
            f.write(report + "\n")
    return 0


def _hotcore_only(args: argparse.Namespace) -> int:
    """``--hotcore``: the hot-core figures alone, ``--rounds`` rounds each."""
    t0 = time.time()
    figs = hotcore.run_all(args.rounds, args.quick)
    lines = [
        f"Machine: {machine_info()}",
        f"Command: python -m benchmarks.run --hotcore --rounds {args.rounds}{' --quick' if args.quick else ''}",
        f"Medians of {args.rounds} rounds; {time.time() - t0:.0f} s in all.",
        "",
        hotcore.format_report(figs),
        "",
        "Hot-core figures (JSON):",
        json.dumps(figs),
    ]
    report = "\n".join(lines)
    print(report)
    if args.out:
        with open(args.out, "w") as f:
            f.write(report + "\n")
    return 0


def _control_only(args: argparse.Namespace) -> int:
    """``--control``: the control-plane figures alone, ``--rounds`` rounds each."""
    t0 = time.time()
    figs = control.run_all(args.rounds, args.quick)
    lines = [
        f"Machine: {machine_info()}",
        f"Command: python -m benchmarks.run --control --rounds {args.rounds}{' --quick' if args.quick else ''}",
        f"Medians of {args.rounds} rounds; {time.time() - t0:.0f} s in all.",
        "",
        hotcore.format_report(figs),
        "",
        "Control-plane figures (JSON):",
        json.dumps(figs),
    ]
    report = "\n".join(lines)
    print(report)
    if args.out:
        with open(args.out, "w") as f:
            f.write(report + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
