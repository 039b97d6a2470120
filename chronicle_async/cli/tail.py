"""``chronicle tail``: print a queue's messages, optionally following it.

The reader is anonymous (no position file, never commits) unless ``--name`` and
``--commit`` are both given; ``--name`` alone starts at that reader's committed
position, read from its file without opening (or locking) it.
"""
from __future__ import annotations

import collections
import os
import sys
from collections.abc import Iterable
from typing import Any, TextIO


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


class _Stop:
    """``--count`` and ``--until``/``--until-time``: when tail has printed enough."""

    def __init__(self, args: Any):
        self.left = args.count
        self.until_seq = args.until_seq
        self.until_ns = args.until_time

    def reached(self, m: Any) -> bool:
        """True if ``m`` is at or after ``--until`` (it is not printed)."""
        return (self.until_seq is not None and m.seq >= self.until_seq) or (
            self.until_ns is not None and m.timestamp_ns >= self.until_ns)

    def printed(self) -> bool:
        """Count one printed message; True once ``--count`` messages were printed."""
        if self.left is None:
            return False
        self.left -= 1
        return self.left <= 0

    @property
    def done_already(self) -> bool:
        return self.left is not None and self.left <= 0


def position_reader(r: Any, args: Any, path: str, types: frozenset[int] | None, owned: str | None) -> list[Any]:
    """Move ``r`` to where ``args`` says tail starts; returns messages already read (``--last`` with
    ``--type``), to print first."""
    from ..queue import files as F
    from ..hot import layout as L
    from ..queue.position import read_reader_position

    if args.from_seq is not None:
        r.seek(args.from_seq)
    elif args.from_time is not None:
        r.seek_timestamp(args.from_time)
    elif args.last is not None:
        return _seek_last(r, path, args.last, types)
    elif args.name and not owned:
        pos_file = os.path.join(path, L.READERS_DIR_NAME, args.name + L.READER_FILE_SUFFIX)
        if not F.exists(pos_file):
            raise _no_such_reader(path, args.name, pos_file)
        if not os.access(pos_file, os.R_OK):
            raise _private_reader(pos_file)
        pos = read_reader_position(pos_file)
        if pos is not None:
            r.seek(pos[2])  # its committed next_seq; never committed: the earliest data
    return []


class _Printer:
    """Prints a reader's messages through the filters and stop conditions; commits for ``--commit``."""

    def __init__(self, args: Any, out: TextIO, owned: str | None):
        self.types = frozenset(args.type) if args.type else None
        from .render import make_renderer

        self.render = make_renderer(args)
        self.stop = _Stop(args)
        self.out = out
        self.owned = owned
        self.dirty = False
        self.committed_ok = True  # False while a returned message may not be printed yet (no commit then)

    def backlog(self, r: Any, messages: list[Any]) -> bool:
        """Print already-read messages; True if a stop condition was met."""
        for m in messages:
            if self.stop.reached(m):
                if self.owned:
                    r.seek(m.seq)
                return True
            self.out.write(self.render(m.seq, m.timestamp_ns, m.type_id, m.payload) + "\n")
            if self.stop.printed():
                return True
        return self.stop.done_already

    def drain(self, r: Any) -> bool:
        """Print every message available now; True if a stop condition was met (then flushed)."""
        while True:
            m = r.next()
            if m is None:
                self.flush(r)
                return False
            if self.stop.reached(m):
                if self.owned:
                    r.seek(m.seq)  # a named reader's position stays at the first message not printed
                self.dirty = True
                self.flush(r)
                return True
            self.dirty = True
            if self.types is not None and m.type_id not in self.types:
                continue
            self.committed_ok = False
            self.out.write(self.render(m.seq, m.timestamp_ns, m.type_id, m.payload) + "\n")
            self.committed_ok = True
            if self.stop.printed():
                self.flush(r)
                return True

    def flush(self, r: Any) -> None:
        self.committed_ok = False
        self.out.flush()  # printed means delivered: a failed flush (a closed pipe) commits nothing
        self.committed_ok = True
        if self.owned and self.dirty:
            r.commit()
            self.dirty = False

    def close(self, r: Any) -> None:
        try:
            if self.owned and self.dirty and self.committed_ok and not r.closed:
                r.commit()
        finally:
            r.close()


def run_tail(args: Any, out: TextIO = sys.stdout) -> int:
    from ..queue import args as A
    from .._errors import QueueDeletedError
    from ..queue.queue import Queue
    from ..queue.liveness import DisconnectReason

    path = A.check_path(args.path)
    owned = args.name if args.commit else None
    if args.retry:
        from .follow import follow_across_recreation

        return follow_across_recreation(args, path, owned, _Printer(args, out, owned), position_reader)
    follow = args.follow or args.until_closed
    printer = _Printer(args, out, owned)
    r = Queue.open_subscriber(path, owned, "committed" if owned else "earliest")
    try:
        printer.dirty = owned is not None and (
            args.from_seq is not None or args.from_time is not None or args.last is not None)
        if printer.backlog(r, position_reader(r, args, path, printer.types, owned)):
            printer.flush(r)
            return 0
        closed_seen = False
        while not printer.drain(r):
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
                    "run tail again once the queue exists, or follow it with -F"
                )
    finally:
        printer.close(r)
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
