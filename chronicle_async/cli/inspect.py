"""Text for ``chronicle inspect``, ``readers`` and ``ls``: formats the library's read-only snapshots.

The reading itself is ``chronicle_async.queue.info`` (``inspect_queue``, ``list_queues``):
nothing takes a lock, opens a file for writing or creates a file.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

from ..queue.info import QueueSummary, inspect_queue, iso_ns

__all__ = ["fmt_age", "fmt_bytes", "format_inspect", "format_ls", "format_readers", "iso_ns", "queue_snapshot"]


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


def queue_snapshot(path: str, ttl: float = 1.0, *, messages: bool = True, readers: bool = True) -> dict[str, Any]:
    """Everything ``chronicle inspect`` shows, as plain JSON-able values (read-only)."""
    return inspect_queue(path, ttl, messages=messages, readers=readers).as_dict()


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
    rows.append(("writer", f"{w['status']} (pid {w['pid'] or '-'}, epoch {w['epoch']}, state {w['state']}, lock {lock})"))
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


def ls_rows(queues: list[QueueSummary]) -> list[dict[str, Any]]:
    """``chronicle ls --json``: one plain dict per queue."""
    return [dataclasses.asdict(q) for q in queues]


def format_ls(root: str, queues: list[QueueSummary]) -> str:
    """One line per queue under a bus root: name, writer state, next seq, segments, disk, readers."""
    if not queues:
        return f"no queues under {root}"
    head = ("QUEUE", "WRITER", "NEXT_SEQ", "SEGS", "DISK", "READERS")
    rows = [head]
    for q in queues:
        if q.error:
            rows.append((q.name, "error", "-", "-", "-", q.error))
            continue
        rows.append((q.name, q.writer or "-", f"{q.next_seq:,}", str(q.segments), fmt_bytes(q.bytes_on_disk),
                     f"{q.readers} ({q.live_readers} live)"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    return "\n".join("  ".join(v.ljust(widths[i]) for i, v in enumerate(r)).rstrip() for r in rows)
