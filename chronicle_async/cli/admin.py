"""``chronicle rm`` and ``chronicle purge``: delete a whole queue, or its oldest segments.

The rules live in the library (``queue/remove.py``, ``queue/purge.py``); this module parses,
asks for confirmation and prints. Both ask ``... [y/N]`` on a terminal unless ``--yes``; with
stdin not a terminal and no ``--yes`` they refuse (exit 1), so that a script never deletes by
accident.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

_EXAMPLES_RM = """\
examples:
  chronicle rm /dev/shm/bus/old-prices            asks first (on a terminal)
  chronicle rm bus/old-prices --yes               no question (scripts)
  chronicle rm bus/prices --yes --force           even under a live writer
"""

_EXAMPLES_PURGE = """\
examples:
  chronicle purge bus/prices --before-seq 1000000 --dry-run
  chronicle purge bus/prices --before-time 2024-05-01T00:00:00Z --yes
  chronicle purge bus/prices --before-time 1714521600000000000 --yes --force
"""


class Refused(Exception):
    """The user said no, or could not be asked: nothing was deleted (exit 1)."""


def register(sub: Any) -> None:
    """Add ``rm`` and ``purge`` to ``sub`` (the ``chronicle`` sub-parsers)."""
    from .argtypes import non_negative_int, time_ns

    raw = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser(
        "rm", help="delete a queue folder (only the files the queue made)",
        description="Delete the queue at PATH: its control file, segment files, writer lock, readers/*.pos\n"
        "and then the emptied folders. Anything else in the folder stops it (listed; nothing is\n"
        "deleted), as does a live writer (unless --force). Asks first on a terminal unless --yes;\n"
        "with stdin not a terminal, --yes is required.",
        epilog=_EXAMPLES_RM, formatter_class=raw,
    )
    p.add_argument("path", help="the queue folder")
    p.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    p.add_argument("--force", action="store_true",
                   help="delete even while a writer is live (its next append fails with QueueDeletedError)")
    p.add_argument("--json", action="store_true", help='print {"queue", "deleted": [paths]} on stdout')
    p.set_defaults(func=run_rm)

    p = sub.add_parser(
        "purge", help="delete a queue's oldest sealed segments, before a seq or a time",
        description="Delete, oldest first, whole sealed segments (never the one being written) all of whose\n"
        "messages are before --before-seq SEQ or timestamped before --before-time TIME; stops at the\n"
        "first segment that is not. Safe beside a live writer and readers (as retention is). A named\n"
        "reader whose committed position is in such a segment stops it (named) unless --force.\n"
        "Asks first on a terminal unless --yes or --dry-run; with stdin not a terminal, --yes is required.",
        epilog=_EXAMPLES_PURGE, formatter_class=raw,
    )
    p.add_argument("path", help="the queue folder")
    before = p.add_mutually_exclusive_group(required=True)
    before.add_argument("--before-seq", type=non_negative_int, metavar="SEQ",
                        help="delete segments whose messages all have seq < SEQ")
    before.add_argument("--before-time", type=time_ns, metavar="TIME",
                        help="delete segments whose messages are all timestamped before TIME: ns since the "
                        "epoch, or ISO 8601 (no zone: UTC)")
    p.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    p.add_argument("--force", action="store_true",
                   help="delete even segments holding a named reader's committed position")
    p.add_argument("--dry-run", action="store_true", help="only say what would be deleted")
    p.add_argument("--json", action="store_true", help="print what was (or would be) deleted as JSON")
    p.set_defaults(func=run_purge)


def confirm(question: str, yes: bool, verb: str) -> None:
    """Return if the user agrees (or ``yes``); raise :class:`Refused` otherwise."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise Refused(f"{verb}: stdin is not a terminal, so the question '{question}' cannot be asked; "
                      "nothing was deleted. Pass --yes to confirm")
    sys.stderr.write(f"{question} [y/N] ")
    sys.stderr.flush()
    answer = sys.stdin.readline().strip().lower()
    if answer not in ("y", "yes"):
        raise Refused(f"{verb}: not confirmed; nothing was deleted")


def run_rm(args: argparse.Namespace) -> int:
    from ..queue import args as A
    from ..queue.remove import check_removable, queue_contents, remove_queue
    from .inspect import fmt_bytes

    path = A.check_path(args.path)
    c = queue_contents(path)
    check_removable(c, force=args.force)
    try:
        confirm(f"Delete queue {path} ({c.segments} segments, {c.bytes_on_disk:,} bytes)?", args.yes, "rm")
    except Refused as e:
        print(f"chronicle: {e}", file=sys.stderr)
        return 1
    deleted = remove_queue(c, force=args.force)
    if args.json:
        print(json.dumps({"queue": path, "deleted": deleted}))
    else:
        print(f"chronicle: rm: deleted queue {path} ({c.segments} segments, {fmt_bytes(c.bytes_on_disk)})",
              file=sys.stderr)
    return 0


def _plan_json(plan: Any, deleted: list[int] | None) -> str:
    return json.dumps({
        "queue": plan.path,
        "dry_run": deleted is None,
        "segments": [vars(s) for s in plan.segments],
        "deleted": deleted if deleted is not None else [],
        "bytes": plan.bytes_on_disk,
        "readers": [vars(r) for r in plan.readers],
        "stopped": plan.stopped,
    })


def _describe(plan: Any) -> str:
    from .inspect import fmt_bytes

    segs = plan.segments
    seqs = [s for s in segs if s.first_seq >= 0]
    span = f", seqs {seqs[0].first_seq}..{seqs[-1].last_seq}" if seqs else ""
    return f"{len(segs)} segment(s) {segs[0].segment}..{segs[-1].segment}{span}, {fmt_bytes(plan.bytes_on_disk)}"


def run_purge(args: argparse.Namespace) -> int:
    from ..queue import args as A
    from ..queue.purge import plan_purge, purge

    path = A.check_path(args.path)
    if args.before_time is not None:
        plan = plan_purge(path, before_ns=args.before_time)
    else:
        plan = plan_purge(path, before_seq=args.before_seq)
    if not plan.segments:
        why = f" ({plan.stopped})" if plan.stopped else ""
        if args.json:
            print(_plan_json(plan, None if args.dry_run else []))
        print(f"chronicle: purge: nothing to delete in {path}{why}", file=sys.stderr)
        return 0
    if plan.readers and not args.force:
        held = "; ".join(
            f"reader {r.name!r} ({'live' if r.live else 'not live' if r.live is False else 'liveness unknown'}) "
            f"is at seq {r.next_seq} in segment {r.segment}" for r in plan.readers
        )
        print(f"chronicle: purge: {held}, which would be deleted; nothing was deleted. Let the reader catch up, "
              "purge less, or pass --force (the reader then resumes at the oldest message left)", file=sys.stderr)
        return 1
    if args.dry_run:
        if args.json:
            print(_plan_json(plan, None))
        print(f"chronicle: purge: would delete {_describe(plan)} from {path}", file=sys.stderr)
        return 0
    try:
        confirm(f"Delete {_describe(plan)} from queue {path}?", args.yes, "purge")
    except Refused as e:
        print(f"chronicle: {e}", file=sys.stderr)
        return 1
    deleted = purge(plan)
    if args.json:
        print(_plan_json(plan, deleted))
    print(f"chronicle: purge: deleted {_describe(plan)} from {path}", file=sys.stderr)
    return 0
