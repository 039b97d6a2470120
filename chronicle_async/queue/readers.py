"""Moving and deleting a named reader's committed position: ``Queue.reset_reader`` and ``delete_reader``.

A named reader resumes after its last ``commit()``; its ``start`` mode applies only while the name
has no committed position (see :class:`~chronicle_async.Start`). These are the explicit ways to
move a name: both take the name's lock first, so they refuse (``ReaderLockedError``) while a live
process reads as that name, and neither touches the queue's data.
"""
from __future__ import annotations

import os

from . import args as A
from .config import Start
from .lock import FileLock
from .reader import QueueReader
from ..hot import layout as L
from .._errors import (
    ArgumentTypeError, InvalidArgumentError, QueueNotFoundError, QueuePermissionError, ReaderLockedError,
    ReaderNotFoundError,
)
from .position import owner_pid


def reset_reader(
    path: str | os.PathLike, name: str, to: Start | str | int = Start.EARLIEST, *, timestamp_ns: int | None = None
) -> int:
    """Move reader ``name``'s committed position; returns the seq it will deliver next.

    ``to`` is ``"earliest"`` (the oldest message still on disk), ``"latest"`` (the writer's
    next seq: only messages appended from now on), or a seq (that message, or the first after
    it still on disk). ``timestamp_ns`` instead moves it to the first message at or after that
    time (ns since the epoch; the tail if none). A name that never committed gets a position.

    The commit is durable (flushed) before this returns. Raises ``ReaderLockedError`` while a
    process has the reader open (close it first), ``QueueNotFoundError`` for a missing queue.
    """
    name = _check_name(name)
    if timestamp_ns is None:
        target = _target(to)
    elif to is not Start.EARLIEST and to != Start.EARLIEST.value:
        raise InvalidArgumentError("reset_reader: give either `to` or `timestamp_ns`, not both")
    else:
        target = None
    with QueueReader(path, name, Start.EARLIEST) as r:
        if timestamp_ns is not None:
            r.seek_timestamp(timestamp_ns)
        elif target is Start.LATEST:
            r.seek(r.cursor.writer_head()[2])
        elif target is Start.EARLIEST:
            r.seek(0)
        else:
            r.seek(target)
        r.commit(durable=True)
        return r.next_seq


def delete_reader(path: str | os.PathLike, name: str) -> None:
    """Delete reader ``name``'s position file: the name then starts afresh, as its ``start`` says.

    Raises ``ReaderNotFoundError`` if the queue has no such reader, ``ReaderLockedError`` while a
    process has it open, ``QueueNotFoundError`` for a missing queue.
    """
    name = _check_name(name)
    qdir = A.check_path(path)
    if not os.path.isfile(os.path.join(qdir, L.CONTROL_FILE_NAME)):
        raise QueueNotFoundError(f"no queue at {qdir} (its {L.CONTROL_FILE_NAME} is missing)")
    pos = os.path.join(qdir, L.READERS_DIR_NAME, name + L.READER_FILE_SUFFIX)
    if not os.path.lexists(pos):
        known = sorted(named_readers(qdir))
        raise ReaderNotFoundError(
            f"queue {qdir} has no reader named {name!r} (no {pos}); its readers: {', '.join(known) or 'none'}"
        )
    lock = FileLock.try_acquire(pos, fix=f"delete it by hand to reset reader {name!r}")
    if lock is None:
        raise ReaderLockedError(
            f"reader {name!r} of {qdir} is open in another process (pid {owner_pid(pos)}); close it there first", owner_pid(pos)
        )
    try:
        os.unlink(pos)
    except PermissionError:
        raise QueuePermissionError(
            f"no permission to delete {pos}: run as the queue's owner, or ask them to delete reader {name!r}"
        ) from None
    finally:
        lock.release()


def named_readers(path: str | os.PathLike) -> list[str]:
    """The names that have a position file in the queue at ``path`` (sorted)."""
    rdir = os.path.join(os.fspath(path), L.READERS_DIR_NAME)
    try:
        entries = os.listdir(rdir)
    except FileNotFoundError:
        return []
    suffix = L.READER_FILE_SUFFIX
    return sorted(e[: -len(suffix)] for e in entries if e.endswith(suffix) and not e.startswith("."))


def _check_name(name: object) -> str:
    if name is None:
        raise InvalidArgumentError("a reader name is needed: anonymous readers keep no position to reset or delete")
    return A.check_name(name)  # type: ignore[arg-type, return-value]


def _target(to: object) -> Start | int:
    if isinstance(to, bool):
        raise ArgumentTypeError(f"reset_reader: `to` is 'earliest', 'latest' or a seq, not {to!r}")
    if isinstance(to, int):
        if to < 0:
            raise InvalidArgumentError(f"reset_reader: seq {to} is negative; seqs start at 0")
        return to
    if not isinstance(to, (str, Start)):
        raise ArgumentTypeError(f"reset_reader: `to` is 'earliest', 'latest' or a seq, not {type(to).__name__}")
    start = A.coerce_enum(Start, to, "to")
    if start is Start.COMMITTED:
        raise InvalidArgumentError("reset_reader: `to` is 'earliest', 'latest' or a seq ('committed' is where it already is)")
    return start
