"""``chronicle bench``: the packaged bench (two rich tables, or --json), or with --full the source checkout's suite."""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from dataclasses import asdict
from typing import Any

HELP = "measure chronicle beside in-process and two-process peers (--full: the whole suite, source checkout)"
DESCRIPTION = """\
Measure chronicle beside its peers, like with like, in two tables:
  in-process:  append + read round trips in one thread, beside queue.SimpleQueue and collections.deque
  two-process: a writer process and a reader process (one-way latency p50/p99/p99.9/max of messages
               paced 20 us apart, and msgs/s of a blast), beside multiprocessing.Queue, os.pipe and
               pyzmq (when installed)
Figures are medians over --rounds. Works from an installed package. Progress goes to stderr.

--full runs the source checkout's benchmark suite (python -m benchmarks.run, found beside this package
or in the current folder) instead; --quick, --hotcore, --control and --out are its options.
"""


def find_benchmarks() -> str | None:
    """The source checkout holding ``benchmarks/run.py``: beside this package, or the cwd."""
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    for d in dict.fromkeys((here, os.getcwd())):
        if os.path.isfile(os.path.join(d, "benchmarks", "run.py")) and os.path.isfile(
            os.path.join(d, "benchmarks", "__init__.py")
        ):
            return d
    return None


def run_full(args: argparse.Namespace) -> int:
    """Delegate to ``python -m benchmarks.run`` in the source checkout."""
    root = find_benchmarks()
    if root is None:  # an installed package (pip install .) carries no benchmarks/
        here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        print(
            "chronicle: bench: the benchmark suite is not installed with the package: it lives in the source "
            f"checkout's benchmarks/ folder (looked beside the package, {here}, and in the current folder, "
            f"{os.getcwd()}). Run `chronicle bench` without --full for the packaged bench, or clone the "
            "repository and run `make bench` there",
            file=sys.stderr,
        )
        return 1
    cmd = [sys.executable, "-m", "benchmarks.run"]
    for flag in ("quick", "hotcore", "control"):
        if getattr(args, flag):
            cmd.append(f"--{flag}")
    if args.rounds is not None:
        cmd += ["--rounds", str(args.rounds)]
    if args.out:
        cmd += ["--out", os.path.abspath(args.out)]
    print(f"chronicle bench: running {' '.join(cmd[1:])} in {root}", file=sys.stderr, flush=True)
    return subprocess.call(cmd, cwd=root)


def _table(title: str, rows: list[Any], latency: str) -> Any:
    from rich.table import Table

    t = Table(title=title, title_justify="left")
    t.add_column("peer")
    t.add_column("msgs/s", justify="right")
    for p in ("p50", "p99", "p99.9", "max"):
        t.add_column(f"{latency} {p}", justify="right")
    for r in rows:
        t.add_row(r.peer, f"{r.msgs_per_s:,.0f}", *(_ns(v) for v in (r.p50, r.p99, r.p999, r.max)))
    return t


def _ns(v: int) -> str:
    if v >= 1_000_000:
        return f"{v / 1e6:.2f} ms"
    if v >= 1_000:
        return f"{v / 1e3:.1f} us"
    return f"{v} ns"


def run_packaged(args: argparse.Namespace) -> int:
    """Run the packaged bench; print two tables (or one JSON object)."""
    from rich.console import Console

    from ..bench import run_bench

    rounds = args.rounds if args.rounds else 3
    err = Console(stderr=True)
    if err.is_terminal:
        from rich.progress import BarColumn, Progress, TextColumn

        with Progress(TextColumn("[bold]bench[/] {task.description}"), BarColumn(), console=err, transient=True) as bar:
            task = bar.add_task("starting", total=None)
            report = run_bench(args.messages, rounds,
                               lambda done, total, what: bar.update(task, completed=done, total=total, description=what))
    else:
        report = run_bench(args.messages, rounds, lambda done, total, what: print(
            f"chronicle bench: {done}/{total} {what}", file=sys.stderr, flush=True))
    if args.json:
        print(json.dumps(asdict(report), indent=2))
        return 0
    out = Console() if sys.stdout.isatty() else Console(width=120)
    out.print(_table(f"in-process: append + read round trip, one thread ({report.messages} msgs, "
                     f"median of {report.rounds})", report.in_process, "round trip"))
    out.print(_table(f"two processes: writer -> reader ({report.messages} msgs, median of {report.rounds})",
                     report.two_process, "one-way"))
    return 0


def run(args: argparse.Namespace) -> int:
    """``chronicle bench``: --full (or one of the suite's options) delegates to the source checkout."""
    if args.full or args.quick or args.hotcore or args.control or args.out:
        return run_full(args)
    return run_packaged(args)


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``bench`` subcommand."""
    from .argtypes import positive_int
    p = sub.add_parser("bench", help=HELP, description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--messages", type=positive_int, default=10_000, metavar="N",
                   help="messages per peer and round, packaged bench (default: %(default)s)")
    p.add_argument("--rounds", type=positive_int, metavar="N", help="rounds; figures are medians (default: 3)")
    p.add_argument("--json", action="store_true", help="print the raw figures as one JSON object")
    p.add_argument("--full", action="store_true", help="run the source checkout's full suite (benchmarks/run.py)")
    p.add_argument("--quick", action="store_true", help="with --full: a tenth of the messages (a smoke run)")
    p.add_argument("--hotcore", action="store_true", help="with --full: only the hot-core figures")
    p.add_argument("--control", action="store_true", help="with --full: the control-plane figures")
    p.add_argument("--out", metavar="FILE", help="with --full: also write the markdown report here")
    p.set_defaults(func=run)
