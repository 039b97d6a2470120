"""``chronicle tail``: print a queue's messages, optionally following it.

The reader is anonymous (no position file, never commits) unless ``--name`` and
``--commit`` are both given; ``--name`` alone starts at that reader's committed
position, read from its file without opening (or locking) it.
"""
from __future__ import annotations

import collections
import json
import os
import re
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, TextIO

from ..queue.info import iso_ns

#: JSON is tried on payloads up to this size (bigger ones are shown as text or hex).
_JSON_MAX = 1 << 20
_NS_RE = re.compile(r"^\s*(\d+)\s*$")
_FRAC_RE = re.compile(r"\.(\d+)")


def parse_time(text: str) -> int:
    """ns since the epoch from an int of ns or an ISO 8601 time (no zone: UTC). ValueError if neither."""
    m = _NS_RE.match(text)
    if m:
        return int(m.group(1))
    s = text.strip()
    if s.endswith(("Z", "z")):
        s = s[:-1] + "+00:00"
    frac_ns = 0
    fm = _FRAC_RE.search(s)
    if fm:  # datetime keeps microseconds only: take the fraction to the ns ourselves
        digits = fm.group(1)
        if len(digits) > 9:
            raise ValueError(f"{text!r}: more than 9 fractional digits")
        frac_ns = int(digits.ljust(9, "0"))
        s = s[: fm.start()] + s[fm.end():]
    dt = datetime.fromisoformat(s)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    whole = dt.replace(microsecond=0)
    return int(whole.timestamp()) * 1_000_000_000 + frac_ns


def decode_payload(payload: Any) -> tuple[str, Any]:
    """``("json", value)``, ``("utf8", text)`` or ``("hex", hex digits)``."""
    data = bytes(payload)
    if data and len(data) <= _JSON_MAX and data[:1] not in (b" ", b"\t", b"\n", b"\r"):
        try:
            return "json", json.loads(data)
        except (ValueError, RecursionError):
            pass
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return "hex", data.hex()
    if all(c.isprintable() or c in "\t\n\r" for c in text):
        return "utf8", text
    return "hex", data.hex()


def _truncate(text: str, width: int | None, nbytes: int) -> str:
    if width and len(text) > width:
        return text[:width] + f"... ({nbytes:,} bytes)"
    return text


def render_text(seq: int, ts: int, type_id: int, payload: Any, width: int | None) -> str:
    kind, value = decode_payload(payload)
    n = len(payload)
    if kind == "json":
        shown = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    elif kind == "utf8":
        shown = value.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    else:
        shown = "hex:" + value
    line = f"{seq}  {iso_ns(ts) or ts}  type={type_id}  len={n}"
    return f"{line}  {_truncate(shown, width, n)}" if shown else line


def render_json(seq: int, ts: int, type_id: int, payload: Any, width: int | None) -> str:
    kind, value = decode_payload(payload)
    n = len(payload)
    truncated = False
    if width and kind != "json" and len(value) > width:
        value, truncated = value[:width], True
    rec = {"seq": seq, "timestamp_ns": ts, "time": iso_ns(ts), "type_id": type_id, "length": n,
           "encoding": kind, "payload": value}
    if truncated:
        rec["truncated"] = True
    return json.dumps(rec, ensure_ascii=False)


def _messages_until_empty(r: Any, types: frozenset[int] | None) -> Iterable[Any]:
    while True:
        m = r.next()
        if m is None:
            return
        if types is None or m.type_id in types:
            yield m


def _private_reader(pos_file: str) -> Exception:
    """The error for ``--name`` naming a reader whose position file this user may not read."""
    from .._errors import QueuePermissionError

    st = os.stat(pos_file)
    return QueuePermissionError(
        f"cannot read {pos_file} (mode {st.st_mode & 0o777:o}, owned by uid {st.st_uid}; this process runs as uid "
        f"{os.geteuid()}): reader position files are private to the users who may write them, so that no "
        "read-only user can lock them (docs/operations.md, \"Permissions\"); run as the reader's user, or "
        "start elsewhere with --from SEQ or --last N"
    )


def _no_such_reader(path: str, name: str, pos_file: str) -> Exception:
    """The error for ``--name`` (without ``--commit``) naming no reader: it lists the names there are."""
    from .._errors import InvalidArgumentError
    from ..hot import layout as L

    try:
        names = sorted(n[: -len(L.READER_FILE_SUFFIX)] for n in os.listdir(os.path.dirname(pos_file))
                       if n.endswith(L.READER_FILE_SUFFIX))
    except OSError:
        names = []
    there = f"its named readers are {', '.join(names)}" if names else "it has no named readers"
    return InvalidArgumentError(
        f"queue {path} has no reader named {name!r} ({pos_file} does not exist; {there}): "
        f"pass an existing name, or add --commit to read as a new reader {name!r} (that creates it)"
    )


def run_tail(args: Any, out: TextIO = sys.stdout) -> int:
    from ..queue import args as A
    from ..queue import files as F
    from .._errors import QueueDeletedError
    from ..queue.queue import Queue
    from ..queue.liveness import DisconnectReason
    from ..hot import layout as L
    from ..queue.position import read_reader_position

    path = A.check_path(args.path)
    types = frozenset(args.type) if args.type else None
    follow = args.follow or args.until_closed
    render = render_json if args.json else render_text
    width = args.width if args.width is not None else (None if args.json else 200)
    width = width or None  # 0: no truncation

    owned = args.name if args.commit else None
    r = Queue.open_subscriber(path, owned, "committed" if owned else "earliest")
    committed_ok = True  # False while a returned message may not be printed yet (no commit then)
    dirty = False
    try:
        backlog: list[Any] = []
        dirty = owned is not None and (args.from_seq is not None or args.from_time is not None or args.last is not None)
        if args.from_seq is not None:
            r.seek(args.from_seq)
        elif args.from_time is not None:
            r.seek_timestamp(args.from_time)
        elif args.last is not None:
            backlog = _seek_last(r, path, args.last, types)
        elif args.name and not owned:
            pos_file = os.path.join(path, L.READERS_DIR_NAME, args.name + L.READER_FILE_SUFFIX)
            if not F.exists(pos_file):
                raise _no_such_reader(path, args.name, pos_file)
            if not os.access(pos_file, os.R_OK):
                raise _private_reader(pos_file)
            pos = read_reader_position(pos_file)
            if pos is not None:
                r.seek(pos[2])  # its committed next_seq; never committed: the earliest data
        out.writelines(render(m.seq, m.timestamp_ns, m.type_id, m.payload, width) + "\n" for m in backlog)
        closed_seen = False
        while True:
            m = r.next()
            if m is None:
                committed_ok = False
                out.flush()  # printed means delivered: a failed flush (a closed pipe) commits nothing
                committed_ok = True
                if owned and dirty:
                    r.commit()
                    dirty = False
                if not follow:
                    break
                if args.until_closed:
                    if closed_seen:
                        break  # drained after the writer closed: nothing more is coming
                    if r.writer_status().state == "closed":
                        closed_seen = True
                        continue  # drain once more: appends before the close are all visible now
                if not r.wait(timeout=0.5) and r.detect_disconnect() is DisconnectReason.QUEUE_DELETED:
                    raise QueueDeletedError(
                        f"queue {path} was deleted while tail followed it (after seq {r.next_seq - 1}); "
                        "run tail again once the queue exists"
                    )
                continue
            dirty = True
            if types is not None and m.type_id not in types:
                continue
            committed_ok = False
            out.write(render(m.seq, m.timestamp_ns, m.type_id, m.payload, width) + "\n")
            committed_ok = True
    finally:
        try:
            if owned and dirty and committed_ok and not r.closed:
                r.commit()
        finally:
            r.close()
    return 0


def _seek_last(r: Any, path: str, n: int, types: frozenset[int] | None) -> list[Any]:
    """Position ``r`` for the last ``n`` messages (of ``types``); returns those already read, copied.

    Without a type filter this is one seek. With one, it reads a window before the tail
    (growing it until it holds ``n`` matching messages or covers the queue) and returns them.
    """
    from ..queue.info import inspect_queue
    from ..queue.reader import Message

    rng = inspect_queue(path, readers=False).messages
    assert rng is not None
    first, last = rng.first_seq, rng.last_seq
    if last is None or n <= 0:
        r.seek(last + 1 if last is not None else 0)
        return []
    if types is None:
        r.seek(max(first, last - n + 1))
        return []
    window = max(n, 256)
    while True:
        start = max(first, last - window + 1)
        r.seek(start)
        got: collections.deque = collections.deque(maxlen=n)
        for m in _messages_until_empty(r, types):
            got.append(Message(m.seq, m.timestamp_ns, m.type_id, bytes(m.payload)))
        if len(got) >= n or start <= first:
            return list(got)
        window *= 8
