"""``chronicle export``: parse the arguments, run :func:`export_queue` with a progress bar, print a summary."""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict

HELP = "write a range of messages to a Parquet or CSV file (needs pyarrow)"
DESCRIPTION = """\
Write the messages now on disk, from --from (included) up to --until (excluded); an integer is a seq, an ISO 8601
time like 2024-05-01T12:00:00.5Z is a timestamp, no zone meaning UTC), to OUT, a .parquet or .csv file.
Columns: seq, timestamp (timestamp[ns, UTC]), type_id, payload (binary; hex text in CSV). With --dtype
each payload is decoded as one numpy structured record and its fields become columns instead of payload.
Streams in batches (the queue is never held in memory), writes a temporary file and renames it into
place, so a failure leaves no partial OUT. Reads anonymously: never commits. Needs pyarrow:
pip install 'chronicle_async[export]'.

examples:
  chronicle export bus/prices -o prices.parquet
  chronicle export bus/prices --from 2024-05-01T12:00:00Z --until 2024-05-01T13:00:00Z -o hour.csv
  chronicle export bus/ticks --type 1 --dtype 'ts:<i8,px:<f8,qty:<i4' -o ticks.parquet
"""



def run_export(args: argparse.Namespace) -> int:
    """Export; 0 on success. Errors propagate (the CLI prints them, exit 1)."""
    from .._errors import InvalidArgumentError
    from ..queue.export import export_queue, load_pyarrow, output_format, parse_dtype

    if output_format(args.out) is None:
        args.parser.error(f"-o {args.out}: the output file must end in .parquet or .csv")
    try:
        dtype = parse_dtype(args.dtype) if args.dtype else None
    except InvalidArgumentError as e:
        args.parser.error(str(e))
    try:
        load_pyarrow()  # say what to install before reading anything
    except ModuleNotFoundError as e:
        print(f"chronicle: ModuleNotFoundError: {e}", file=sys.stderr)
        return 1
    bounds = {}
    if args.start:
        bounds["start_seq" if args.start[0] == "seq" else "start_ns"] = args.start[1]
    if args.until:
        bounds["until_seq" if args.until[0] == "seq" else "until_ns"] = args.until[1]
    if sys.stderr.isatty():
        from rich.console import Console
        from rich.progress import Progress, SpinnerColumn, TextColumn

        with Progress(SpinnerColumn(), TextColumn("[bold]export[/] {task.fields[rows]} messages"),
                      console=Console(stderr=True), transient=True) as bar:
            task = bar.add_task("export", rows=0)
            summary = export_queue(args.path, args.out, types=args.type, dtype=dtype, force=args.force,
                                   progress=lambda rows, _b: bar.update(task, rows=rows), **bounds)
    else:
        summary = export_queue(args.path, args.out, types=args.type, dtype=dtype, force=args.force, **bounds)
    if args.json:
        print(json.dumps(asdict(summary), indent=2))
    else:
        seqs = "" if summary.first_seq is None else f" (seqs {summary.first_seq}..{summary.last_seq})"
        print(f"{summary.out}: {summary.rows} message(s){seqs} written as {summary.format}, "
              f"columns {', '.join(summary.columns)}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``export`` subcommand."""
    from .argtypes import seq_or_time, type_id

    p = sub.add_parser("export", help=HELP, description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("path", metavar="QUEUE", help="the queue folder")
    p.add_argument("-o", "--out", required=True, metavar="OUT", help="the output file: NAME.parquet or NAME.csv")
    p.add_argument("--from", dest="start", type=seq_or_time, metavar="SEQ|TIME", help="first seq or time (default: the oldest on disk)")
    p.add_argument("--until", type=seq_or_time, metavar="SEQ|TIME", help="stop before this seq or time (excluded, as in tail --until; default: after the newest)")
    p.add_argument("--type", type=type_id, action="append", metavar="N", help="only this type_id (repeat for several)")
    p.add_argument("--dtype", metavar="SPEC",
                   help="numpy structured dtype of each payload, e.g. 'ts:<i8,px:<f8' or \"[('ts','<i8'),('px','<f8')]\"")
    p.add_argument("--force", action="store_true", help="overwrite OUT if it exists")
    p.add_argument("--json", action="store_true", help="print a JSON summary object instead of the summary line")
    p.set_defaults(func=run_export, parser=p)
