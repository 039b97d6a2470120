"""``chronicle monitor``: a live view of every queue under a bus root (a rich table that fits the terminal).

A bus root is a folder whose immediate sub-folders are queues (a queue folder given
as the root is shown alone). Every frame is built from read-only snapshots
(``chronicle_async.queue.info.inspect_queue``): nothing is locked, opened for writing or created.
While the root (or a queue) does not exist yet the view says what it waits for;
between frames it sleeps on an inotify watch (``watchfiles``, non-recursive) of the
root, or of its nearest existing parent, so a queue appearing shows up at once.
A queue this user may not read is shown as an error (not as waiting); ``--once`` then exits 1,
and ``--once`` on a root that does not exist fails at once (there is nothing to wait for).
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import time
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

from .inspect import fmt_age, fmt_bytes, iso_ns, queue_snapshot
from .._errors import ChronicleError, NotAQueueError, QueuePermissionError
from ..queue.files import exists, nearest_existing_dir, read_permission_error
from ..hot import layout as L

#: How long a new writer epoch is flagged in the status column.
EPOCH_FLAG_S = 10.0
#: ``--once`` measures msgs/s over this window (at most ``--interval``).
ONCE_RATE_WINDOW_S = 0.2
#: Frames are at least this far apart, however busy the watched folder is.
MIN_FRAME_GAP_S = 0.1


def fmt_rate(r: float | None) -> str:
    if r is None:
        return "-"
    if r < 1000:
        return f"{r:.0f}"
    if r < 1e6:
        return f"{r / 1e3:.1f}k"
    return f"{r / 1e6:.2f}M"


class Monitor:
    """Builds snapshots of a bus root; remembers next_seq and epochs between them."""

    def __init__(self, root: str, ttl: float, names: list[str] | None = None):
        self.root = root
        self.ttl = ttl
        self.names = names or []
        self._prev: dict[str, tuple[int, float]] = {}
        self._epochs: dict[str, int] = {}
        self._epoch_changes: dict[str, tuple[int, int, float]] = {}

    def _queue_dirs(self) -> list[tuple[str, str]]:
        root = self.root
        if os.path.isfile(os.path.join(root, L.CONTROL_FILE_NAME)):
            return [(os.path.basename(root) or root, root)]
        found = set()
        try:
            it = os.scandir(root)
        except PermissionError as e:
            raise read_permission_error(root, e) from None
        with it:
            for e in it:
                if e.is_dir() and not e.name.startswith("."):
                    found.add(e.name)
        wanted = self.names or sorted(found)
        return [(n, os.path.join(root, n)) for n in wanted]

    def snapshot(self) -> dict[str, Any]:
        now = time.monotonic()
        snap: dict[str, Any] = {"root": self.root, "time": iso_ns(time.time_ns()), "waiting": None, "queues": []}
        if exists(self.root) and not os.path.isdir(self.root):
            raise NotAQueueError(f"{self.root} is a file, not a bus root folder; pass the folder that holds the queues")
        if not os.path.isdir(self.root):
            near = nearest_existing_dir(self.root)
            snap["waiting"] = f"waiting for bus root {self.root} to appear (watching {near})"
            return snap
        try:
            dirs = self._queue_dirs()
        except (FileNotFoundError, NotADirectoryError):  # the root went away since the check
            snap["waiting"] = f"waiting for bus root {self.root} to appear"
            return snap
        if not dirs:
            snap["waiting"] = f"waiting for queues under {self.root} (none yet)"
        for name, path in dirs:
            snap["queues"].append(self._queue(name, path, now))
        return snap

    def _queue(self, name: str, path: str, now: float) -> dict[str, Any]:
        q: dict[str, Any] = {"name": name, "path": path, "ready": False, "waiting": None, "error": None}
        if not os.path.isdir(path):
            q["waiting"] = "waiting for the queue folder"
            return q
        try:
            ready = exists(os.path.join(path, L.CONTROL_FILE_NAME))
        except QueuePermissionError as e:  # not a missing queue: say so
            q["error"] = f"{type(e).__name__}: {e}"
            return q
        if not ready:
            q["waiting"] = f"waiting for {L.CONTROL_FILE_NAME} (no writer has created the queue yet)"
            return q
        try:
            s = queue_snapshot(path, self.ttl, messages=False, readers=True)
        except FileNotFoundError:  # deleted between the listing and the look
            q["waiting"] = "waiting for the queue (it was just deleted)"
            self._prev.pop(path, None)
            return q
        except (ChronicleError, OSError) as e:
            q["error"] = f"{type(e).__name__}: {e}"
            return q
        w, nseq = s["writer"], s["head"]["next_seq"]  # w["status"]: the one writer verdict (open, dead, ...)
        rate = None
        prev = self._prev.get(path)
        if prev is not None and now > prev[1] and nseq >= prev[0]:
            rate = (nseq - prev[0]) / (now - prev[1])
        self._prev[path] = (nseq, now)
        old = self._epochs.get(path)
        if old and old != w["epoch"]:  # from 0: the first writer opened the queue, not news
            self._epoch_changes[path] = (old, w["epoch"], now)
        self._epochs[path] = w["epoch"]
        status = w["liveness"]
        change = self._epoch_changes.get(path)
        if status == "alive" and change is not None and now - change[2] < EPOCH_FLAG_S:
            status = f"epoch_changed {change[0]}->{change[1]}"
        q.update(
            ready=True,
            writer=w["status"], pid=w["pid"], epoch=w["epoch"], alive=w["alive"], lock_held=w["lock_held"],
            heartbeat_age=w["heartbeat_age"], next_seq=nseq, msgs_per_s=rate,
            segments=s["segments"]["count"], bytes_on_disk=s["segments"]["bytes_on_disk"],
            status=status,
            readers=[
                {k: e[k] for k in ("name", "live", "committed", "next_seq", "lag_messages", "lag_bytes",
                                   "commit_age", "holds_retention")}
                for e in s["readers"]["entries"]
            ],
        )
        return q


#: ``--sort`` keys: the column and whether larger values come first.
SORT_KEYS = {
    "name": (lambda q: q["name"], False),
    "writer": (lambda q: q.get("writer") or "", False),
    "next_seq": (lambda q: q.get("next_seq") or 0, True),
    "rate": (lambda q: q.get("msgs_per_s") or 0.0, True),
    "lag": (lambda q: max((r["lag_messages"] or 0 for r in q.get("readers", ())), default=0), True),
    "segments": (lambda q: q.get("segments") or 0, True),
    "disk": (lambda q: q.get("bytes_on_disk") or 0, True),
    "heartbeat": (lambda q: q.get("heartbeat_age") if q.get("heartbeat_age") is not None else math.inf, True),
}
#: Width of a frame written to a pipe or file: wide enough that no cell is ever cut (scripts want
#: whole lines, whatever ``COLUMNS`` says; a table is as wide as its widest row, never padded).
PIPE_WIDTH = 100_000
#: On a terminal, the QUEUE column keeps at least this many characters (or its longest name):
#: a long STATUS (an error message) is ellipsized first.
QUEUE_MIN_WIDTH = 16
_STYLES = {"open": "green", "closed": "yellow", "dead": "bold red", "stale": "red", "none": "dim"}


def sort_queues(queues: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """The queues ordered by ``key`` (one of ``SORT_KEYS``); not-ready queues last, by name."""
    get, desc = SORT_KEYS[key]
    ready = sorted((q for q in queues if q["ready"]), key=lambda q: q["name"])
    ready.sort(key=get, reverse=desc)
    return ready + sorted((q for q in queues if not q["ready"]), key=lambda q: q["name"])


def _reader_line(r: dict[str, Any]) -> str:
    lag = f"lag {r['lag_messages']:,} msgs / {fmt_bytes(r['lag_bytes'])}" if r["committed"] else "never committed"
    when = f", committed {fmt_age(r['commit_age'])}" if r["committed"] else ""
    pin = ", holds retention" if r["holds_retention"] else ""
    return f"    reader {r['name']}: {'live' if r['live'] else 'dead'}, {lag}{when}{pin}"


def render(snap: dict[str, Any], interval: float | None, sort: str = "name") -> RenderableType:
    """One frame: a header line, a table of queues (columns shrink and ellipsize to fit), reader lines."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    head = f"chronicle monitor {snap['root']}  {snap['time']}"
    if interval is not None:
        head += f"  (every {interval:g} s; Ctrl-C quits)"
    parts: list[RenderableType] = [Text(head, no_wrap=True, overflow="ellipsis"), Text("")]
    if snap["waiting"]:
        parts.append(Text(snap["waiting"], no_wrap=True, overflow="ellipsis"))
    queues = sort_queues(snap["queues"], sort)
    if not queues:
        return Group(*parts)
    table = Table(box=None, pad_edge=False, padding=(0, 2, 0, 0), show_edge=False, expand=False)
    name_width = min(max(len(q["name"]) for q in queues), QUEUE_MIN_WIDTH)
    for name in ("QUEUE", "WRITER", "PID", "EPOCH", "NEXT_SEQ", "MSG/S", "SEGS", "DISK", "HEARTBEAT", "STATUS"):
        table.add_column(name, no_wrap=True, overflow="ellipsis",
                         min_width=max(name_width, 4) if name == "QUEUE" else min(len(name), 4),
                         justify="left", header_style="bold")
    readers: list[str] = []
    for q in queues:
        if not q["ready"]:
            cells = (q["name"], "-", "-", "-", "-", "-", "-", "-", "-", q["error"] or q["waiting"])
            table.add_row(*(Text(c) for c in cells), style="red" if q["error"] else "dim")
            continue
        cells = (q["name"], q["writer"], str(q["pid"] or "-"), str(q["epoch"]), f"{q['next_seq']:,}",
                 fmt_rate(q["msgs_per_s"]), str(q["segments"]), fmt_bytes(q["bytes_on_disk"]),
                 fmt_age(q["heartbeat_age"]), q["status"])
        table.add_row(*(Text(c) for c in cells), style=_STYLES.get(q["writer"], ""))
        readers += [f"{q['name']}:"] + [_reader_line(r) for r in q["readers"]] if q["readers"] else []
    parts.append(table)
    if readers:
        parts.append(Text(""))
        parts += [Text(line, no_wrap=True, overflow="ellipsis") for line in readers]
    return Group(*parts)


def make_console(out: TextIO) -> Console:
    """A rich console on ``out``: the terminal's width on a tty (or ``COLUMNS``), else ``PIPE_WIDTH``."""
    from rich.console import Console

    width = None if out.isatty() else PIPE_WIDTH
    return Console(file=out, width=width, highlight=False, markup=False, emoji=False, soft_wrap=False)


def _relevant(root: str, watched: str) -> Any:
    """Changes worth an early frame: a folder on the way to ``root``, or an entry of ``root`` itself."""

    def keep(_change: Any, path: str) -> bool:
        path = os.path.abspath(path)
        if watched == root:
            return os.path.dirname(path) == root
        return root == path or root.startswith(path.rstrip(os.sep) + os.sep)

    return keep


class _Waiter:
    """Sleep up to a timeout, waking early when the watched folder changes (inotify via watchfiles)."""

    def __init__(self, interval: float):
        self._interval = interval
        self._dir: str | None = None
        self._gen: Any = None
        self._broken = False

    def wait(self, root: str) -> None:
        target = root if os.path.isdir(root) else nearest_existing_dir(root)
        if self._broken or not os.path.isdir(target):
            time.sleep(self._interval)
            return
        if target != self._dir:
            self.close()
            try:
                import watchfiles

                self._gen = watchfiles.watch(
                    target, watch_filter=_relevant(root, target), debounce=max(1, int(self._interval * 1000)), step=50,
                    rust_timeout=max(1, int(self._interval * 1000)), yield_on_timeout=True, recursive=False,
                )
                self._dir = target
            except Exception:  # noqa: BLE001 - no inotify: poll
                self._broken = True
                time.sleep(self._interval)
                return
        t0 = time.monotonic()
        try:
            next(self._gen)
        except Exception:  # noqa: BLE001 - the folder went away, or the watch failed: set it up again
            self.close()
        gap = MIN_FRAME_GAP_S - (time.monotonic() - t0)
        if gap > 0:
            time.sleep(gap)

    def close(self) -> None:
        g, self._gen, self._dir = self._gen, None, None
        if g is not None:
            with contextlib.suppress(Exception):  # a watch that already failed
                g.close()


def print_frame(console: Console, frame: RenderableType) -> None:
    """Print one frame; to a pipe or file without the cells' trailing padding (plain lines for scripts)."""
    if console.is_terminal:
        console.print(frame)
        return
    with console.capture() as cap:
        console.print(frame)
    console.file.write("".join(line.rstrip() + "\n" for line in cap.get().splitlines()))


def start_metrics(root: str, args: Any) -> Any:
    """The ``--prometheus`` endpoint for the queues under ``root`` (None without the option)."""
    port = getattr(args, "prometheus", None)
    if port is None:
        return None
    from ..control.metrics import serve_metrics

    server = serve_metrics([root], port, args.prometheus_addr, ttl=args.ttl)  # names the extra when it is missing
    print(f"chronicle monitor: serving Prometheus metrics on {server.url}", file=sys.stderr, flush=True)
    return server


def run_monitor(args: Any, out: TextIO = sys.stdout) -> int:
    from ..queue import args as A
    from .._errors import QueueNotFoundError

    root = A.check_path(args.root)
    mon = Monitor(root, args.ttl, args.queue)
    sort = getattr(args, "sort", "name")
    console = None if args.json else make_console(out)
    if args.once:
        if not os.path.isdir(root) and not exists(root):  # nothing to wait for in a one-shot check
            near = nearest_existing_dir(root)
            raise QueueNotFoundError(f"bus root {root} does not exist (nearest existing folder: {near}); "
                                     "check the path, or drop --once to wait for it to appear")
        mon.snapshot()  # first sample of every next_seq, for msgs/s
        time.sleep(min(args.interval, ONCE_RATE_WINDOW_S))
        snap = mon.snapshot()
        if console is None:
            out.write(json.dumps(snap) + "\n")
        else:
            print_frame(console, render(snap, None, sort))
        out.flush()
        errors = [q for q in snap["queues"] if q["error"]]
        for q in errors:  # a queue that cannot be shown (no permission, damaged) fails a one-shot check
            print(f"chronicle: {q['name']}: {q['error']}", file=sys.stderr)
        return 1 if errors else 0
    waiter = _Waiter(args.interval)
    metrics = start_metrics(root, args)
    try:
        if console is None:
            while True:
                out.write(json.dumps(mon.snapshot()) + "\n")
                out.flush()
                waiter.wait(root)
        if not console.is_terminal:
            while True:
                print_frame(console, render(mon.snapshot(), args.interval, sort))
                console.file.write("\n")
                out.flush()
                waiter.wait(root)
        from rich.live import Live

        with Live(console=console, auto_refresh=False, screen=False) as live:
            while True:
                live.update(render(mon.snapshot(), args.interval, sort), refresh=True)
                waiter.wait(root)
    finally:
        waiter.close()
        if metrics is not None:
            metrics.close()
