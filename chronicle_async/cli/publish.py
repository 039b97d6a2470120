"""``chronicle publish``: append messages to a queue from the command line or stdin.

Sources, one message each:

- every MESSAGE argument (UTF-8);
- else stdin, line by line (the trailing ``\\n`` stripped; a ``\\r`` before it is kept);
- else, with ``--length-prefixed``, stdin as binary records: a 4-byte little-endian
  unsigned length, then that many payload bytes.

Lines are gathered into batches (``append_batch``) unless stdin is a terminal, where
each line is published as it is typed. A message too large for the queue's segments
stops the command with ``PayloadTooLargeError`` before any byte of it is written; the
messages before it stay published, and the error says how many.
"""
from __future__ import annotations

import argparse
import json
import struct
import sys
from collections.abc import Iterable, Iterator
from typing import Any, BinaryIO

#: A batch is published when it holds this many messages ...
BATCH_MESSAGES = 4096
#: ... or this many payload bytes.
BATCH_BYTES = 1 << 20
_LEN = struct.Struct("<I")

_EXAMPLES = """\
examples:
  chronicle publish bus/prices '{"px": 101.5}' '{"px": 101.6}'    two messages
  seq 1 100000 | chronicle publish bus/numbers --type 3          one message per line
  grep -v '^#' events.txt | chronicle publish bus/events --skip-empty
  my-encoder | chronicle publish bus/ticks --length-prefixed     binary records: <u32 LE length><payload>
"""


def register(sub: Any) -> None:
    """Add the ``publish`` sub-command to ``sub`` (the ``chronicle`` sub-parsers)."""
    from .argtypes import positive_int, type_id

    p = sub.add_parser(
        "publish", help="append messages (arguments, stdin lines, or length-prefixed binary records)",
        description="Append each MESSAGE argument (UTF-8) as one message; with no MESSAGE, read stdin: one\n"
        "message per line (the newline stripped), or --length-prefixed binary records (a 4-byte\n"
        "little-endian length, then the payload). Creates the queue if it does not exist (said on\n"
        "stderr) and writes as THE writer: a live writer elsewhere is a WriterLockedError (exit 1).\n"
        "Prints a one-line summary on stderr (count, first..last seq), or JSON on stdout with --json.",
        epilog=_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("path", help="the queue folder (created if missing)")
    p.add_argument("messages", nargs="*", metavar="MESSAGE", help="messages to publish (default: read stdin)")
    p.add_argument("--type", dest="type_id", type=type_id, default=0, metavar="N",
                   help="type_id of every message (default: %(default)s)")
    p.add_argument("--length-prefixed", action="store_true",
                   help="stdin holds binary records: <4-byte little-endian length><payload>, repeated")
    p.add_argument("--skip-empty", action="store_true",
                   help="do not publish empty lines (by default an empty line is an empty message)")
    p.add_argument("--segment-size", type=positive_int, metavar="BYTES",
                   help="segment size if the queue is created now (default: the library's); ignored otherwise")
    p.add_argument("--json", action="store_true",
                   help='print {"queue", "count", "first_seq", "last_seq"} on stdout instead of the summary')
    p.set_defaults(func=run_publish, parser=p)


def lines_of(stream: BinaryIO, skip_empty: bool) -> Iterator[bytes]:
    """Each line of ``stream`` without its trailing newline; empty ones dropped if ``skip_empty``."""
    for line in stream:
        if line.endswith(b"\n"):
            line = line[:-1]
        if skip_empty and not line:
            continue
        yield line


def length_prefixed_records(stream: BinaryIO) -> Iterator[bytes]:
    """Each ``<u32 LE length><payload>`` record of ``stream``; a truncated record is a ValueError."""
    from .._errors import InvalidArgumentError

    index = 0
    while True:
        head = stream.read(_LEN.size)
        if not head:
            return
        if len(head) < _LEN.size:
            raise InvalidArgumentError(
                f"--length-prefixed: stdin ended inside the length of record {index} ({len(head)} of 4 bytes); "
                "each record is a 4-byte little-endian length, then that many bytes"
            )
        (n,) = _LEN.unpack(head)
        payload = stream.read(n)
        if len(payload) < n:
            raise InvalidArgumentError(
                f"--length-prefixed: record {index} announces {n} bytes but stdin ended after {len(payload)}; "
                "it was not published (each record is a 4-byte little-endian length, then that many bytes)"
            )
        yield payload
        index += 1


def batches(messages: Iterable[bytes], limit: int, max_payload: int, too_large: Any) -> Iterator[list[bytes]]:
    """Groups of up to ``limit`` messages (or :data:`BATCH_BYTES`). ``too_large(index, size)`` is raised
    for a message over ``max_payload``; before it (or a malformed input's error) is raised, the batch
    gathered so far is yielded."""
    from .._errors import ChronicleError

    batch: list[bytes] = []
    size = 0
    try:
        for index, m in enumerate(messages):
            if len(m) > max_payload:
                raise too_large(index, len(m))
            batch.append(m)
            size += len(m)
            if len(batch) >= limit or size >= BATCH_BYTES:
                yield batch
                batch, size = [], 0
    except ChronicleError:  # a bad message: the good ones before it still go out
        if batch:
            yield batch
        raise
    if batch:
        yield batch


def run_publish(args: argparse.Namespace) -> int:
    from ..queue import args as A
    from ..queue.config import WriterConfig
    from ..queue.queue import Queue
    from .._errors import PayloadTooLargeError

    path = A.check_path(args.path)
    created = not Queue.exists(path)
    config = WriterConfig(segment_size=args.segment_size) if args.segment_size else None
    count, first, last = 0, None, None
    with Queue.open_publisher(path, config) as w:
        if created:
            print(f"chronicle: publish: created queue {path} (segment size {w.segment_size:,} bytes)",
                  file=sys.stderr)

        start = w.next_seq

        def too_large(index: int, size: int) -> Exception:
            done = f" (seqs {start}..{start + index - 1})" if index else ""
            return PayloadTooLargeError(
                f"message {index} is {size:,} bytes; queue {path} takes at most {w.max_payload:,} bytes per message "
                f"(its segment size is {w.segment_size:,} bytes). It was not published; the {index} before it "
                f"were{done}. Split the message, or publish to a new queue created with a larger --segment-size"
            )

        source: Iterable[bytes]
        limit = BATCH_MESSAGES
        if args.messages:
            source = (m.encode("utf-8", "surrogateescape") for m in args.messages)
        else:
            stdin = sys.stdin.buffer
            if args.length_prefixed:
                source = length_prefixed_records(stdin)
            else:
                source = lines_of(stdin, args.skip_empty)
            if stdin.isatty():
                limit = 1  # someone is typing: each line goes out when entered
        for batch in batches(source, limit, w.max_payload, too_large):
            # by keyword: the same call whichever argument order this version's append_batch takes
            seq = w.append_batch(type_ids=args.type_id, payloads=batch)
            first = seq if first is None else first
            last = seq + len(batch) - 1
            count += len(batch)
    if args.json:
        print(json.dumps({"queue": path, "count": count, "first_seq": first, "last_seq": last}))
    elif count:
        print(f"chronicle: publish: {count} message(s) to {path}, seq {first}..{last}", file=sys.stderr)
    else:
        print(f"chronicle: publish: no messages to {path}", file=sys.stderr)
    return 0
