"""``chronicle readers QUEUE reset NAME --to ...`` and ``chronicle readers QUEUE delete NAME``.

The listing (``chronicle readers QUEUE``) is in ``cli/inspect.py``; these two verbs move or drop a
named reader's committed position through :meth:`Queue.reset_reader` / :meth:`Queue.delete_reader`,
which refuse while a process reads as that name.
"""
from __future__ import annotations

import argparse
import json

ACTIONS = ("reset", "delete")


def parse_target(text: str) -> tuple[str | int, int | None]:
    """``--to``: ``earliest``, ``latest``, a seq (an integer) or an ISO 8601 time -> ``(to, timestamp_ns)``."""
    from .argtypes import parse_time

    t = text.strip().lower()
    if t in ("earliest", "latest"):
        return t, None
    if t.isdigit():
        return int(t), None
    try:
        return "earliest", parse_time(text)
    except (ValueError, OverflowError):
        raise argparse.ArgumentTypeError(
            f"--to {text!r}: give earliest, latest, a seq (an integer) or an ISO 8601 time like 2024-05-01T12:00:00Z"
        ) from None


def run_action(args: argparse.Namespace) -> int:
    from ..queue.queue import Queue

    if args.action == "reset":
        to, ts = args.to
        nxt = Queue.reset_reader(args.path, args.reader, to, timestamp_ns=ts)
        if args.json:
            print(json.dumps({"path": args.path, "reader": args.reader, "next_seq": nxt}))
        else:
            print(f"reader {args.reader!r} of {args.path} now delivers seq {nxt} next")
        return 0
    Queue.delete_reader(args.path, args.reader)
    if args.json:
        print(json.dumps({"path": args.path, "reader": args.reader, "deleted": True}))
    else:
        print(f"deleted reader {args.reader!r} of {args.path}: that name starts afresh (as its start mode says)")
    return 0
