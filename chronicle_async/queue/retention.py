"""Segment retention: which segment files may be deleted, and deleting them.

Safe to run beside a live writer and live readers, from any process:

- the head segment (the one being written) and anything newer (prepared
  segments) are never deleted;
- a segment a live named reader still needs is never deleted. A reader is live
  while its position file is locked (its process holds it open); dead readers
  do not hold segments back. The position used is the reader's last committed
  one, which is never ahead of what it has read;
- the head comes from the caller, read once before listing; the head only
  moves forward, so a stale value can only make deletion more cautious.
"""
from __future__ import annotations

import logging
import os

from . import files as F
from .._errors import ChronicleError, CorruptQueueError
from .lock import is_locked
from .position import read_reader_position
from ..hot import layout as L

log = logging.getLogger("chronicle_async")


def reader_files(queue_dir: str) -> list[tuple[str, str]]:
    """``(name, path)`` of each regular ``readers/*.pos`` file, sorted by name. Anything else under
    that name (a link, FIFO, folder, socket, device) is skipped with a warning naming it: a scan
    never opens or blocks on it."""
    rdir = os.path.join(queue_dir, L.READERS_DIR_NAME)
    out = []
    try:
        it = os.scandir(rdir)
    except FileNotFoundError:
        return out
    except NotADirectoryError:
        raise CorruptQueueError(
            f"{rdir} is not a folder: reader positions cannot be found, so retention cannot tell what live "
            f"readers still need; move it aside (mv {rdir} {rdir}.bad)"
        ) from None
    with it:
        for entry in it:
            if not entry.name.endswith(L.READER_FILE_SUFFIX):
                continue
            try:
                regular = entry.is_file(follow_symlinks=False)
            except OSError:
                regular = False
            if not regular:
                log.warning("%s is not a regular file; ignored (move it aside: mv %s %s.bad)",
                            entry.path, entry.path, entry.path)
                continue
            out.append((entry.name[: -len(L.READER_FILE_SUFFIX)], entry.path))
    out.sort()
    return out


def live_reader_segments(queue_dir: str) -> dict[str, int]:
    """Committed segment of every live named reader (lock held), by name.

    A position file this user may not open (another user's, see docs/operations.md
    "Permissions") counts as live at an unknown position: it holds back every segment.
    """
    out: dict[str, int] = {}
    for name, path in reader_files(queue_dir):
        try:
            live = is_locked(path)
        except ChronicleError as e:  # replaced by a non-regular file since the scan
            log.warning("%s", e)
            continue
        if live is None:
            log.warning("cannot probe reader file %s (not readable by uid %d): counted as live, holding every "
                        "segment; run retention as the reader's user, or let the group read and write it",
                        path, os.geteuid())
            out[name] = -1
            continue
        if not live:
            continue
        pos = read_reader_position(path)
        # a live reader that never committed still needs everything from the oldest segment
        out[name] = pos[0] if pos else -1
    return out


def plan_cleanup(
    queue_dir: str,
    head_segment: int,
    segment_size: int,
    *,
    max_bytes: int | None = None,
    max_segments: int | None = None,
) -> list[int]:
    """The segment ids ``cleanup_segments`` would delete now, oldest first (nothing is deleted).

    What it reads, and why a stale value can only make it delete less:

    - ``head_segment`` comes from the caller (the writer's ``write_segment``,
      which only grows): a stale, smaller head protects more segments.
    - each live named reader's committed segment, from its position file's
      newest crc-valid slot: a stale slot is older, so it protects more; a torn
      slot fails its crc and the older slot is used.
    - the folder listing: a segment created after the listing is newer than the
      head and never a candidate.

    Live means the reader's OFD lock is held. Dead readers (no lock) are not
    waited for. Live readers are never overruled, not even by the caps. The caps
    count the segments up to the head; segments prepared ahead of it are extra.
    """
    ids = F.list_segments(queue_dir)
    readers = live_reader_segments(queue_dir)
    floor = head_segment
    for seg in readers.values():
        floor = min(floor, seg if seg >= 0 else (ids[0] if ids else 0))
    candidates = [i for i in ids if i < head_segment and i < floor]
    if max_bytes is None and max_segments is None:
        return candidates if readers else []
    victims = []
    # The caps count data segments, up to the head: segments prepared ahead of it (a control
    # plane's prealloc) are empty and come on top.
    held = sum(1 for i in ids if i <= head_segment)
    count, total = held, held * segment_size
    for sid in candidates:
        over = (max_segments is not None and count > max_segments) or (max_bytes is not None and total > max_bytes)
        if not over:
            break
        victims.append(sid)
        count -= 1
        total -= segment_size
    return victims


def delete_segments(queue_dir: str, ids: list[int]) -> list[int]:
    """Unlink these segment files; returns those this call removed (others were already gone)."""
    deleted = []
    for sid in ids:
        try:
            os.unlink(F.segment_path(queue_dir, sid))
            deleted.append(sid)
        except FileNotFoundError:
            pass
    return deleted


def cleanup_segments(
    path: str | os.PathLike,
    head_segment: int,
    segment_size: int,
    *,
    max_bytes: int | None = None,
    max_segments: int | None = None,
) -> list[int]:
    """Delete old segment files of the queue at ``path``; returns the deleted ids, oldest first.

    Without caps, deletes every segment older than both the head and the oldest
    segment a live named reader still needs (nothing when no reader exists).
    With ``max_bytes`` / ``max_segments``, deletes oldest first only while the
    files on disk exceed a cap (soft caps: live readers still win).
    Safe beside a live writer and readers: see :func:`plan_cleanup`.
    """
    queue_dir = os.fspath(path)
    victims = plan_cleanup(queue_dir, head_segment, segment_size, max_bytes=max_bytes, max_segments=max_segments)
    return delete_segments(queue_dir, victims)
