"""Read-only snapshots of a queue for the ``chronicle`` command (inspect, readers, monitor).

Nothing here takes a lock, opens a file for writing or creates a file: the
control file and segments are mapped read-only, lock files are probed with
``F_OFD_GETLK`` (``_lock.is_locked``), reader position files are ``read()``.
Finding the first and last message maps the first and the last non-empty
segments only (a jitted scan of one segment), so a huge queue inspects fast.
"""
from __future__ import annotations

import math
import os
import struct
import time
from datetime import UTC, datetime
from typing import Any

from ..queue import args as A
from ..queue import files as F
from .._errors import ChronicleError, CorruptQueueError
from ..queue.lock import is_locked, read_owner, writer_lock_held
from ..queue.liveness import WRITER_STATE_NAMES
from ..hot import layout as L

_STATE_WORDS = {v: k for k, v in WRITER_STATE_NAMES.items()}
_I64 = struct.Struct("<q")


# -- formatting ------------------------------------------------------------------------------


def iso_ns(ns: int | None) -> str | None:
    """``2024-05-01T12:00:00.123456789Z`` (UTC, nanoseconds) for ns since the epoch; None for 0/None."""
    if not ns or ns < 0:
        return None
    s, frac = divmod(int(ns), 1_000_000_000)
    return datetime.fromtimestamp(s, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{frac:09d}Z"


def fmt_bytes(n: int | None) -> str:
    if n is None:
        return "-"
    v = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(v) < 1024 or unit == "TiB":
            return f"{int(v)} B" if unit == "B" else f"{v:.1f} {unit}"
        v /= 1024
    return f"{n} B"  # pragma: no cover


def fmt_age(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "never"
    if seconds < 0:
        return "in the future"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms ago"
    if seconds < 120:
        return f"{seconds:.1f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min ago"
    return f"{seconds / 3600:.1f} h ago"


def _age(ns: int, now_ns: int) -> float | None:
    return (now_ns - ns) / 1e9 if ns > 0 else None


# -- the writer --------------------------------------------------------------------------------


def writer_condition(state: str, lock_held: bool, heartbeat_age: float | None, ttl: float) -> str | None:
    """Why the writer looks gone (the names of ``DisconnectReason``), or None if it is alive.

    The same order as ``QueueReader.detect_disconnect``, from the status fields alone;
    ``"no_writer_yet"`` when no writer ever opened the queue.
    """
    if state == "none":
        return "no_writer_yet"
    if state == "closed":
        return "writer_closed"
    if not lock_held:
        return "writer_died"
    if heartbeat_age is None or heartbeat_age > ttl:
        return "heartbeat_stale"
    return None


def segments_on_disk(path: str) -> tuple[list[int], int, int]:
    """``(ids, bytes allocated on disk, apparent bytes)`` of the segment files present."""
    ids = F.list_segments(path)
    alloc = apparent = 0
    for sid in ids:
        try:
            st = os.stat(F.segment_path(path, sid))
        except FileNotFoundError:
            continue
        alloc += st.st_blocks * 512
        apparent += st.st_size
    return ids, alloc, apparent


def control_fields(path: str, ttl: float = 1.0) -> dict[str, Any]:
    """Every field of ``control.cq`` plus the writer lock probe (maps the file read-only)."""
    m, info = F.open_control(path, writable=False)
    try:
        q, i32 = m.q, m.i32
        version = i32[L.CTL_VERSION_OFFSET // 4]
        fields = {
            "format_version": version,
            "segment_size": info.segment_size,
            "queue_id": info.queue_id,
            "created_ns": info.created_ns,
            "epoch": q[L.CTL_WRITER_EPOCH_OFFSET // 8],
            "pid": q[L.CTL_WRITER_PID_OFFSET // 8],
            "state": WRITER_STATE_NAMES.get(i32[L.CTL_WRITER_STATE_OFFSET // 4], "unknown"),
            "flags": i32[L.CTL_WRITER_FLAGS_OFFSET // 4],
            "head_segment": q[L.CTL_WRITE_SEGMENT_OFFSET // 8],
            "head_offset": q[L.CTL_WRITE_OFFSET_OFFSET // 8],
            "next_seq": q[L.CTL_NEXT_SEQ_OFFSET // 8],
            "heartbeat_ns": q[L.CTL_HEARTBEAT_NS_OFFSET // 8],
            "waiters": i32[L.CTL_WAITERS_OFFSET // 4],
        }
        del q, i32  # our views of the mapping, so close() can unmap at once
    finally:
        m.close()
    now = time.time_ns()
    lock_path = os.path.join(path, L.WRITER_LOCK_NAME)
    state_word = _STATE_WORDS.get(fields["state"], -1)
    held = writer_lock_held(path, fields["pid"], state_word)  # falls back if writer.lock is private
    owner = read_owner(lock_path) if held else None
    age = _age(fields["heartbeat_ns"], now)
    cond = writer_condition(fields["state"], held, age, ttl)
    fields.update(
        lock_held=held,
        lock_owner_pid=owner[0] if owner else None,
        heartbeat_age=age,
        alive=cond is None,
        condition=cond,
    )
    return fields


# -- first and last message ------------------------------------------------------------------


def _scan_segment(path: str, sid: int, segment_size: int, queue_id: int, want_last: bool) -> tuple[int, int, str | None]:
    """``(seq, timestamp_ns, problem)`` of the first (or last) message in segment ``sid``; seq -1 if none."""
    from ..hot import read as R
    from ..hot import status as S

    try:
        m = F.open_segment(path, sid, segment_size, queue_id, writable=False)
    except FileNotFoundError:
        return -1, -1, None
    except ChronicleError as e:
        return -1, -1, f"{type(e).__name__}: {e}"
    try:
        if not want_last:
            seq, ts = R.first_record(m.arr)
            return int(seq), int(ts), None
        st, off, last_seq, last_off, _n = R.scan(m.arr, L.SEGMENT_DATA_OFFSET, R.SCAN_TO_TAIL, 0)
        problem = None
        if st == S.CORRUPT:
            problem = f"segment {m.path} has a malformed record at offset {off}"
        if last_seq < 0:
            return -1, -1, problem
        return int(last_seq), _I64.unpack_from(m.mv, last_off + L.REC_TIMESTAMP_OFFSET)[0], problem
    finally:
        m.close()


def message_range(path: str, ids: list[int], segment_size: int, queue_id: int) -> dict[str, Any]:
    """First and last message (seq, timestamp) on disk: scans the first and last non-empty segments."""
    problems: list[str] = []
    first = last = (-1, -1)
    for sid in ids:
        seq, ts, why = _scan_segment(path, sid, segment_size, queue_id, want_last=False)
        if why:
            problems.append(why)
        if seq >= 0:
            first = (seq, ts)
            break
    if first[0] >= 0:
        for sid in reversed(ids):  # segments prepared ahead of the head are empty: skipped quickly
            seq, ts, why = _scan_segment(path, sid, segment_size, queue_id, want_last=True)
            if why:
                problems.append(why)
            if seq >= 0:
                last = (seq, ts)
                break
    out: dict[str, Any] = {"first_seq": None, "first_timestamp_ns": None, "first_time": None,
                           "last_seq": None, "last_timestamp_ns": None, "last_time": None, "count_estimate": 0}
    if first[0] >= 0 and last[0] >= 0:
        out.update(
            first_seq=first[0], first_timestamp_ns=first[1], first_time=iso_ns(first[1]),
            last_seq=last[0], last_timestamp_ns=last[1], last_time=iso_ns(last[1]),
            count_estimate=max(0, last[0] - first[0] + 1),
        )
    out["problems"] = problems
    return out


# -- named readers -----------------------------------------------------------------------------


def reader_entries(path: str, ctl: dict[str, Any], ids: list[int]) -> list[dict[str, Any]]:
    """One dict per ``readers/*.pos``: committed position, lag, commit age, live, retention."""
    from ..queue.position import owner_pid
    from ..queue.position import read_reader_position
    from ..queue.retention import reader_files

    rdir = os.path.join(path, L.READERS_DIR_NAME)
    try:
        found = reader_files(path)  # regular files only: links, FIFOs, ... are skipped with a warning
    except PermissionError as e:
        raise F.read_permission_error(rdir, e) from None
    except CorruptQueueError:  # readers/ is not a folder: no named readers to show
        return []
    now = time.time_ns()
    head_seg, head_off, head_seq = ctl["head_segment"], ctl["head_offset"], ctl["next_seq"]
    data_per_segment = ctl["segment_size"] - L.SEGMENT_DATA_OFFSET
    out = []
    for name, fpath in found:
        pos = read_reader_position(fpath)
        try:
            live = is_locked(fpath)  # None: this user may not open it (private to its owner)
        except ChronicleError:  # replaced by a non-regular file since the scan
            continue
        e: dict[str, Any] = {
            "name": name,
            "live": live,
            "owner_pid": owner_pid(fpath),
            "committed": pos is not None,
            "segment": None, "offset": None, "next_seq": None, "commit_ns": None, "commit_time": None,
            "commit_age": None, "writer_epoch": None, "lag_messages": None, "lag_bytes": None,
        }
        if pos is not None:
            seg, off, nseq, hb, ep = pos
            lag_bytes = (head_seg - seg) * data_per_segment + (head_off - off)
            e.update(
                segment=seg, offset=off, next_seq=nseq, commit_ns=hb, commit_time=iso_ns(hb),
                commit_age=_age(hb, now), writer_epoch=ep,
                lag_messages=max(0, head_seq - nseq), lag_bytes=max(0, lag_bytes),
            )
        out.append(e)
    # Retention keeps every segment from the oldest live reader's committed one (a live reader
    # that never committed pins the oldest segment); that reader holds retention back when it
    # is older than the head segment.
    oldest = ids[0] if ids else 0
    live = [(e["segment"] if e["segment"] is not None else oldest, e["name"]) for e in out if e["live"] is not False]
    floor = min(live)[0] if live else None
    for e in out:
        seg = e["segment"] if e["segment"] is not None else oldest
        holds = bool(e["live"] is not False and floor is not None and seg == floor and seg < head_seg)
        e["holds_retention"] = holds
        e["segments_held"] = sum(1 for i in ids if seg <= i < head_seg) if holds else 0
    return out


# -- the whole queue ---------------------------------------------------------------------------


def queue_snapshot(path: str, ttl: float = 1.0, *, messages: bool = True, readers: bool = True) -> dict[str, Any]:
    """Everything ``chronicle inspect`` shows, as plain JSON-able values (read-only)."""
    path = A.check_path(path)
    ctl = control_fields(path, ttl)
    ids, alloc, apparent = segments_on_disk(path)
    head = ctl["head_segment"]
    snap: dict[str, Any] = {
        "path": path,
        "format_version": ctl["format_version"],
        "segment_size": ctl["segment_size"],
        "queue_id": ctl["queue_id"],
        "queue_id_hex": f"{ctl['queue_id']:#x}",
        "created_ns": ctl["created_ns"],
        "created": iso_ns(ctl["created_ns"]),
        "segments": {
            "count": len(ids),
            "first_id": ids[0] if ids else None,
            "last_id": ids[-1] if ids else None,
            "head_id": head,
            "prepared_ahead": sum(1 for i in ids if i > head),
            "bytes_on_disk": alloc,
            "apparent_bytes": apparent,
        },
        "writer": {
            "pid": ctl["pid"],
            "epoch": ctl["epoch"],
            "state": ctl["state"],
            "lock_held": ctl["lock_held"],
            "lock_owner_pid": ctl["lock_owner_pid"],
            "heartbeat_ns": ctl["heartbeat_ns"],
            "heartbeat": iso_ns(ctl["heartbeat_ns"]),
            "heartbeat_age": ctl["heartbeat_age"],
            "alive": ctl["alive"],
            "liveness": "alive" if ctl["alive"] else ctl["condition"],
            "ttl": float(ttl),
            "parked_readers": ctl["waiters"],
        },
        "head": {"segment": head, "offset": ctl["head_offset"], "next_seq": ctl["next_seq"]},
        "problems": [],
    }
    if messages:
        rng = message_range(path, ids, ctl["segment_size"], ctl["queue_id"])
        snap["problems"] += rng.pop("problems")
        snap["messages"] = rng
    if readers:
        entries = reader_entries(path, ctl, ids)
        snap["readers"] = {"count": len(entries), "live": sum(1 for e in entries if e["live"]), "entries": entries}
    return snap


def format_inspect(s: dict[str, Any]) -> str:
    seg, w, m, r = s["segments"], s["writer"], s.get("messages"), s.get("readers")
    rows = [
        ("queue", s["path"]),
        ("format", f"version {s['format_version']}, segment size {fmt_bytes(s['segment_size'])} ({s['segment_size']:,} bytes)"),
        ("queue id", s["queue_id_hex"]),
        ("created", s["created"] or "-"),
    ]
    if seg["count"]:
        segs = (f"{seg['count']} on disk (ids {seg['first_id']}..{seg['last_id']}), head {seg['head_id']}"
                + (f", {seg['prepared_ahead']} prepared ahead" if seg["prepared_ahead"] else "")
                + f"; {fmt_bytes(seg['bytes_on_disk'])} on disk")
    else:
        segs = "none on disk"
    rows.append(("segments", segs))
    lock = "held" + (f" (pid {w['lock_owner_pid']})" if w["lock_owner_pid"] else "") if w["lock_held"] else "free"
    rows.append(("writer", f"pid {w['pid'] or '-'}, epoch {w['epoch']}, state {w['state']}, lock {lock}"))
    hb = fmt_age(w["heartbeat_age"]) + (f" ({w['heartbeat']})" if w["heartbeat"] else "")
    rows.append(("heartbeat", hb))
    rows.append(("liveness", w["liveness"] + ("" if w["alive"] else f" (ttl {w['ttl']:g} s)")))
    rows.append(("head", f"segment {s['head']['segment']} offset {s['head']['offset']:,}, next seq {s['head']['next_seq']:,}"))
    if m is not None:
        if m["first_seq"] is None:
            rows.append(("messages", "none on disk"))
        else:
            rows.append(("messages", f"seq {m['first_seq']:,} .. {m['last_seq']:,} (about {m['count_estimate']:,} messages)"))
            rows.append(("first", f"seq {m['first_seq']:,} at {m['first_time']}"))
            rows.append(("last", f"seq {m['last_seq']:,} at {m['last_time']}"))
    if r is not None:
        rows.append(("readers", f"{r['count']} named ({r['live']} live)"))
    for p in s["problems"]:
        rows.append(("problem", p))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def format_readers(s: dict[str, Any]) -> str:
    entries = s["readers"]["entries"]
    if not entries:
        return f"no named readers in {s['path']}"
    head = ("NAME", "STATE", "PID", "SEGMENT", "OFFSET", "NEXT_SEQ", "LAG_MSGS", "LAG_BYTES", "COMMITTED", "RETENTION")
    rows = [head]
    for e in entries:
        c = e["committed"]
        rows.append((
            e["name"],
            "unknown" if e["live"] is None else "live" if e["live"] else "dead",
            str(e["owner_pid"] or "-"),
            str(e["segment"]) if c else "-",
            f"{e['offset']:,}" if c else "-",
            f"{e['next_seq']:,}" if c else "-",
            f"{e['lag_messages']:,}" if c else "-",
            fmt_bytes(e["lag_bytes"]) if c else "-",
            fmt_age(e["commit_age"]) if c else "never",
            f"holds {e['segments_held']} segment(s)" if e["holds_retention"] else "-",
        ))
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = [f"readers of {s['path']} (writer next seq {s['head']['next_seq']:,}, head segment {s['head']['segment']})"]
    lines += ["  ".join(v.ljust(widths[i]) for i, v in enumerate(r)).rstrip() for r in rows]
    return "\n".join(lines)
