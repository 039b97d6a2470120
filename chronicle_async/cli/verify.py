"""``chronicle verify``: parse the arguments, run :func:`verify_queue`, print its problems and a summary."""
from __future__ import annotations

import argparse
import json
import sys
from contextlib import contextmanager
from dataclasses import asdict
from typing import Callable, Iterator

HELP = "check every record of every segment: framing, checksums, seq continuity, headers (read-only)"
DESCRIPTION = (
    "Walk every record of every segment file of QUEUE, read-only and without any lock (a live writer "
    "is never blocked): segment headers against file names and the control file, record framing "
    "(commit word, length, end markers), each record's checksum, and seq continuity within and across "
    "segments. A gap before the first segment on disk (retention) and a live writer's uncommitted tail "
    "are fine. Prints one line per problem, `segment FILE offset N seq S: kind: detail`, then a summary. "
    "Exit 0 if clean, 1 if any problem was found."
)


@contextmanager
def progress_bar(label: str) -> Iterator[Callable[[int, int], None] | None]:
    """A rich progress bar on stderr when stderr is a terminal: yields ``update(done, total)``, else None."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

    with Progress(f"[bold]{label}", BarColumn(), DownloadColumn(), TimeRemainingColumn(),
                  console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def run_verify(args: argparse.Namespace) -> int:
    """Run the check; 0 if clean, 1 if any problem was found."""
    from ..queue.verify import verify_queue

    with progress_bar("verify") as update:
        report = verify_queue(args.path, progress=update)
    if args.json:
        doc = asdict(report)
        doc["ok"] = report.ok
        print(json.dumps(doc, indent=2))
    else:
        for p in report.problems:
            seq = "-" if p.seq is None else p.seq
            print(f"segment {p.segment} offset {p.offset} seq {seq}: {p.kind}: {p.detail}")
        seqs = "" if report.first_seq is None else f", seqs {report.first_seq}..{report.last_seq}"
        verdict = "OK" if report.ok else f"{len(report.problems)} problem(s)"
        print(f"{report.path}: {report.segments} segment(s), {report.records} record(s), "
              f"{report.bytes} bytes checked{seqs}: {verdict}")
    return 0 if report.ok else 1


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``verify`` subcommand."""
    p = sub.add_parser("verify", help=HELP, description=DESCRIPTION)
    p.add_argument("path", metavar="QUEUE", help="the queue folder")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object (for scripts)")
    p.set_defaults(func=run_verify)
