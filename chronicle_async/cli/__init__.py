"""The ``chronicle`` command. Imports are lazy so ``chronicle --help`` compiles nothing.

Commands: ``demo``, ``ls``, ``inspect``, ``tail``, ``publish``, ``readers``, ``monitor``, ``rm``,
``purge``, ``verify``, ``export``, ``bench``, ``completion``, ``bridge``. Errors are printed as
``chronicle: <TypeName>: message``; the exit code is 1 for an error from the library or the file
system, 2 for a usage error, 130 on Ctrl-C (143 on SIGTERM).
"""
from __future__ import annotations

import argparse
import os
import signal
import sys


_EXAMPLES_TAIL = """\
payloads are shown as JSON if they parse, else as UTF-8 text if printable, else as hex:

  seq  time (UTC, ns)  type=N  len=N  payload

examples:
  chronicle tail /dev/shm/bus/prices              the last 10 messages
  chronicle tail /dev/shm/bus/prices -f           ... then every new one (Ctrl-C quits)
  chronicle tail bus/prices --from 0              everything still on disk
  chronicle tail bus/prices --from-time 2024-05-01T12:00:00Z --type 1 --type 7
  chronicle tail bus/prices --name risk           from reader "risk"'s committed position (read-only)
  chronicle tail bus/prices --name audit --commit -f   consume as reader "audit", committing as it prints
  chronicle tail bus/prices -F                    wait for the queue; follow it across deletion and re-creation
  chronicle tail bus/prices --from 0 --count 5    the first 5 messages
  chronicle tail bus/prices --from 0 --until 1000 seqs 0..999
  chronicle tail bus/prices --format '{seq} {payload}'
  chronicle tail .demo-bus/ticks --type 1 --dtype 'symbol:S8,price:<f8,qty:<i8,sent_ns:<i8,pad:S32'
"""


class _Parser(argparse.ArgumentParser):
    """argparse, with usage errors as ``chronicle: UsageError: ...`` (exit 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        where = self.prog.split(" ", 1)[1] + ": " if " " in self.prog else ""
        self.exit(2, f"chronicle: UsageError: {where}{message}\n")


from .argtypes import non_negative_int as _non_negative_int
from .argtypes import port as _port
from .argtypes import positive_seconds as _positive_float
from .argtypes import time_ns as _time_ns
from .argtypes import type_id as _type_id


_terminated_by: int | None = None


def _on_sigterm(signum: int, _frame: object) -> None:
    global _terminated_by
    _terminated_by = signum  # watchfiles turns any signal into KeyboardInterrupt: main() looks here
    raise SystemExit(128 + signum)  # unwinds like Ctrl-C: readers close, a named reader commits


def _catch_sigterm() -> None:
    try:
        signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread (main() called from a thread): leave it be
        pass


# -- commands ----------------------------------------------------------------------------------


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(args.path, messages=args.messages, segment_size=args.segment_size)


def _inspect(args: argparse.Namespace) -> int:
    import json

    from .inspect import format_inspect, format_ls, ls_rows, queue_snapshot
    from ..queue.info import is_bus_root, list_queues

    if is_bus_root(args.path):  # no control.cq, but queues in its sub-folders: list them
        queues = list_queues(args.path, args.ttl)
        if args.json:
            print(json.dumps({"path": os.path.abspath(args.path), "bus_root": True, "queues": ls_rows(queues)}, indent=2))
        else:
            print(f"{os.path.abspath(args.path)} is a bus root (not a queue); its queues:")
            print(format_ls(args.path, queues))
        return 0
    snap = queue_snapshot(args.path, args.ttl)
    if args.json:
        print(json.dumps(snap, indent=2))
    else:
        print(format_inspect(snap))
    return 0


def _ls(args: argparse.Namespace) -> int:
    import json

    from .inspect import format_ls, ls_rows
    from ..queue.info import list_queues

    queues = list_queues(args.root, args.ttl)
    if args.json:
        print(json.dumps(ls_rows(queues), indent=2))
    else:
        print(format_ls(args.root, queues))
    return 1 if any(q.error for q in queues) else 0


def _tail(args: argparse.Namespace) -> int:
    from .tail import run_tail

    if args.follow or args.until_closed or args.retry:
        _catch_sigterm()
    if args.from_seq is None and args.from_time is None and args.last is None and not args.name:
        args.last = 10  # like tail(1)
    return run_tail(args)


def _readers(args: argparse.Namespace) -> int:
    if args.action:
        from .readers import run_action

        return run_action(args)
    import json

    from .inspect import format_readers, queue_snapshot

    snap = queue_snapshot(args.path, args.ttl, messages=False)
    if args.json:
        print(json.dumps({"path": snap["path"], "head": snap["head"], "readers": snap["readers"]["entries"]}, indent=2))
    else:
        print(format_readers(snap))
    return 0


def _monitor(args: argparse.Namespace) -> int:
    from .monitor import run_monitor

    if args.once and args.prometheus is not None:
        print("chronicle monitor: error: --prometheus serves metrics while monitoring; drop --once", file=sys.stderr)
        return 2
    if not args.once:
        _catch_sigterm()
    try:
        return run_monitor(args)
    except ModuleNotFoundError as e:  # --prometheus without the metrics extra: the message names the pip command
        if e.name != "prometheus_client":
            raise
        print(f"chronicle: {type(e).__name__}: {e}", file=sys.stderr)
        return 1


# -- the parser --------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="chronicle",
        description="chronicle_async: persisted, memory-mapped queues between processes on one host.",
        epilog="run `chronicle COMMAND --help` for a command's options",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    raw = argparse.RawDescriptionHelpFormatter

    demo = sub.add_parser("demo", help="run a writer process and a reader process on a local demo queue")
    demo.add_argument("path", nargs="?", default=".demo-bus/ticks",
                      help="queue folder: new, empty, or made by an earlier demo (deleted first); anything else is "
                      "refused (default: %(default)s)")
    demo.add_argument("-n", "--messages", type=int, default=1_000_000, help="messages to send (default: %(default)s)")
    demo.add_argument("--segment-size", type=int, default=16 * 1024 * 1024, help="bytes per segment (default: %(default)s)")
    demo.set_defaults(func=_demo)

    p = sub.add_parser(
        "inspect", help="show a queue's format, segments, writer, first/last message and readers (read-only)",
        epilog="Given a bus root (a folder without control.cq whose sub-folders are queues), it says so and lists "
        "its queues as `chronicle ls` does.",
        description="Show a queue's format version, segment size, id, creation time, segment files, the writer's "
        "pid/epoch/state, whether its lock is held, heartbeat age and liveness, the first and last message "
        "(seq, time) and the number of named readers. Read-only: takes no lock, writes and creates nothing; "
        "reads the control file and scans only the first and last non-empty segments.",
    )
    p.add_argument("path", help="the queue folder")
    p.add_argument("--ttl", type=_positive_float, default=1.0,
                   help="heartbeat age (s) above which a writer is stale (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print JSON (for scripts)")
    p.set_defaults(func=_inspect)

    p = sub.add_parser(
        "ls", help="list the queues under a bus root: writer, next seq, segments, disk, readers (read-only)",
        description="List every queue under BUS_ROOT (each sub-folder holding a control.cq), by name: the "
        "writer's state (open, closed, dead, stale, none), next seq, segment files, bytes on disk and named "
        "readers (live). Read-only. Exit 1 if a queue cannot be read (listed with its error).",
    )
    p.add_argument("root", metavar="BUS_ROOT", help="the folder whose sub-folders are queues")
    p.add_argument("--ttl", type=_positive_float, default=1.0,
                   help="heartbeat age (s) above which a writer is stale (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print a JSON list (for scripts)")
    p.set_defaults(func=_ls)

    p = sub.add_parser(
        "tail", help="print messages (JSON / text / hex), optionally following the queue",
        description="Print a queue's messages: by default the last 10 (like tail(1)), or from --name's committed\n"
        "position. The reader is anonymous (no position file, never commits) unless --name and --commit\n"
        "are both given.",
        epilog=_EXAMPLES_TAIL, formatter_class=raw,
    )
    p.add_argument("path", help="the queue folder")
    p.add_argument("-f", "--follow", action="store_true",
                   help="keep waiting for new messages (spin, then park); Ctrl-C quits (exit 130)")
    p.add_argument("--until-closed", action="store_true",
                   help="follow until the writer closes the queue, then exit 0 (implies -f)")
    p.add_argument("-F", dest="retry", action="store_true",
                   help="follow the path, like tail -F: wait for a queue that does not exist yet, and go on with "
                   "a new queue when it is deleted and created again (a notice on stderr)")
    p.add_argument("--count", type=_non_negative_int, metavar="N", help="exit 0 after printing N messages")
    stop = p.add_mutually_exclusive_group()
    stop.add_argument("--until", dest="until_seq", type=_non_negative_int, metavar="SEQ",
                      help="exit 0 at the first message with seq >= SEQ (not printed)")
    stop.add_argument("--until-time", type=_time_ns, metavar="TIME",
                      help="exit 0 at the first message timestamped at or after TIME (ns or ISO 8601; not printed)")
    start = p.add_mutually_exclusive_group()
    start.add_argument("--from", dest="from_seq", type=_non_negative_int, metavar="SEQ",
                       help="start at this seq (or the first after it still on disk)")
    start.add_argument("--from-time", type=_time_ns, metavar="TIME",
                       help="start at the first message at or after TIME: ns since the epoch, or ISO 8601 (no zone: UTC)")
    start.add_argument("-n", "--last", type=_non_negative_int, metavar="N",
                       help="start with the last N messages (of the --type filter); default 10")
    p.add_argument("--type", type=_type_id, action="append", metavar="N",
                   help="only messages of this type_id (repeat for several)")
    p.add_argument("--name", help="start at this named reader's committed position (its file is only read)")
    p.add_argument("--commit", action="store_true",
                   help="with --name: read AS that reader (takes its lock) and commit after printing")
    p.add_argument("--width", type=_non_negative_int, metavar="CHARS",
                   help="truncate shown payloads to CHARS characters (default: 200; with --json: none); 0 = never")
    p.add_argument("--dtype", metavar="SPEC",
                   help="decode payloads as one numpy structured value: NAME:TYPE,... (e.g. 'ts:<i8,px:<f8,qty:<i4') "
                   "or a numpy dtype string ('i8,f8'); other sizes are shown as hex with a note")
    p.add_argument("--format", metavar="STR",
                   help="print each message with this Python format string over {seq} {time} {time_ns} {type} "
                   "{len} {payload} and the --dtype fields, e.g. '{seq} {px:.2f}'")
    p.add_argument("--json", action="store_true", help="one JSON object per message (JSON Lines)")
    p.set_defaults(func=_tail, parser=p)

    from .readers import ACTIONS, parse_target

    p = sub.add_parser(
        "readers", help="list named readers (read-only), or reset / delete one's committed position",
        description="List each named reader (readers/*.pos): committed segment/offset/next_seq, lag behind the "
        "writer in messages and (approximately) bytes, the age of its last commit, live (its lock is held) or "
        "dead, and whether it holds retention back (the oldest live reader, behind the head segment).\n\n"
        "`readers QUEUE reset NAME --to earliest|latest|SEQ|TIME` moves NAME's committed position (a name that "
        "committed always resumes there, whatever start mode a process opens it with); `readers QUEUE delete "
        "NAME` drops it, so the name starts afresh. Both refuse while a process reads as NAME.",
        formatter_class=raw,
    )
    p.add_argument("path", help="the queue folder")
    p.add_argument("action", nargs="?", choices=ACTIONS, help="reset or delete a reader (default: list them)")
    p.add_argument("reader", nargs="?", metavar="NAME", help="the reader name (with reset / delete)")
    p.add_argument("--to", type=parse_target, metavar="WHERE",
                   help="with reset: earliest, latest, a seq, or an ISO 8601 time (the first message at or after it)")
    p.add_argument("--ttl", type=_positive_float, default=1.0, help=argparse.SUPPRESS)
    p.add_argument("--json", action="store_true", help="print JSON (for scripts)")
    p.set_defaults(func=_readers, parser=p)

    p = sub.add_parser(
        "monitor", help="live view of every queue under a bus root (writers, msgs/s, disk, reader lag)",
        description="A live terminal view of every queue under BUS_ROOT (its sub-folders; a queue folder is shown "
        "alone): writer state/pid/epoch, msgs/s, next seq, segments and bytes on disk, heartbeat, disconnect "
        "reason, and each named reader's lag, as a table that fits the terminal (columns shrink and end in an "
        "ellipsis). WRITER is the one verdict on the writer: open, closed, dead (lock free), stale (no heartbeat "
        "within --ttl), none. Waits for a root or queues that do not exist yet, except with --once, which fails "
        "on a missing root. Read-only.",
    )
    p.add_argument("root", metavar="BUS_ROOT", help="the folder whose sub-folders are queues")
    p.add_argument("--interval", type=_positive_float, default=1.0, help="seconds between refreshes (default: %(default)s)")
    p.add_argument("--once", action="store_true",
                   help="print one snapshot and exit (exit 1 if a queue cannot be read: no permission, damaged)")
    p.add_argument("--queue", action="append", metavar="NAME",
                   help="show only this queue (repeat); shown as waiting until it exists")
    p.add_argument("--ttl", type=_positive_float, default=1.0,
                   help="heartbeat age (s) above which a writer is stale (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="one JSON snapshot per refresh (JSON Lines)")
    p.add_argument("--sort", default="name", choices=("name", "writer", "next_seq", "rate", "lag", "segments",
                                                      "disk", "heartbeat"),
                   help="order of the queue rows: name (default) or largest first for rate, lag (the most lagging "
                   "named reader), next_seq, segments, disk, heartbeat (oldest)")
    p.add_argument("--prometheus", type=_port, metavar="PORT",
                   help="also serve Prometheus metrics of every queue under BUS_ROOT on http://ADDR:PORT/metrics "
                   "while monitoring (needs pip install 'chronicle_async[metrics]'); not with --once (a scrape "
                   "endpoint must outlive one snapshot)")
    p.add_argument("--prometheus-addr", default="127.0.0.1", metavar="ADDR",
                   help="address the metrics endpoint listens on (default: %(default)s)")
    p.set_defaults(func=_monitor)

    from . import admin, completion, publish
    from . import bridge as bridge_cmd
    from . import bench as bench_cmd
    from . import export as export_cmd
    from . import verify as verify_cmd

    publish.register(sub)
    admin.register(sub)
    verify_cmd.register(sub)
    export_cmd.register(sub)
    bench_cmd.register(sub)
    bridge_cmd.register(sub)
    completion.register(sub, parser)
    return parser


def _validate(args: argparse.Namespace) -> None:
    if args.command == "readers":
        parser = args.parser
        if args.action and not args.reader:
            parser.error(f"{args.action} needs a reader NAME: chronicle readers QUEUE {args.action} NAME")
        if args.action == "reset" and args.to is None:
            parser.error("reset needs --to earliest|latest|SEQ|TIME")
        if args.to is not None and args.action != "reset":
            parser.error("--to goes with reset: chronicle readers QUEUE reset NAME --to WHERE")
    if args.command == "tail":
        parser = args.parser
        if args.commit and not args.name:
            parser.error("--commit needs --name (an anonymous reader has no position to commit)")
        if args.format is not None and args.json:
            parser.error("--format and --json both say how to print: pick one")
        if args.retry and args.until_closed:
            parser.error("-F follows the queue across writers and re-creation; --until-closed stops at a close: pick one")
        if args.dtype is not None or args.format is not None:
            from .render import check_format, parse_dtype
            from .._errors import ChronicleError

            try:
                dt = parse_dtype(args.dtype) if args.dtype is not None else None
                if args.format is not None:
                    check_format(args.format, dt)
            except ChronicleError as e:
                parser.error(str(e))
        if args.name:
            from ..queue.args import check_name
            from .._errors import ChronicleError

            try:
                check_name(args.name)
            except ChronicleError as e:
                parser.error(f"--name: {e}")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from importlib.metadata import version

        print(version("chronicle_async"))
        return 0
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    _validate(args)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 128 + (_terminated_by or signal.SIGINT)
    except BrokenPipeError:  # `chronicle tail ... | head`: the reader of our output left
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except OSError:
            pass
        return 141
    except Exception as e:  # typed library errors carry the file and the fix in their message
        from .._errors import ChronicleError

        if isinstance(e, (ChronicleError, OSError)):
            print(f"chronicle: {type(e).__name__}: {e}", file=sys.stderr)
            return 1
        raise
