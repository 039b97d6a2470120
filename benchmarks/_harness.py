"""Shared helpers for the ``chronicle_async`` benchmark suite.

Only the standard library and numpy are used here so that every benchmark
script (and every spawned benchmark child process) can import this module
cheaply.  Importing it has no side effects.
"""

from __future__ import annotations

import importlib
import multiprocessing
import multiprocessing.context
import os
import platform
import statistics
import threading
from dataclasses import dataclass, replace
from typing import Iterable, Literal, Sequence

import numpy as np

__all__ = [
    "Result",
    "format_table",
    "machine_info",
    "median_of",
    "percentiles_ns",
    "pin",
    "spawn_ctx",
]

Kind = Literal["throughput", "latency"]

_LATENCY_FIELDS: tuple[str, ...] = ("p50", "p99", "p999", "max")
_NUMERIC_FIELDS: tuple[str, ...] = ("msgs_per_s", *_LATENCY_FIELDS, "n")


# --------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------


def percentiles_ns(samples: Sequence[int] | np.ndarray) -> dict[str, int]:
    """Summarise latency samples (nanoseconds).

    Returns a dict with integer keys ``p50``, ``p99``, ``p999`` and ``max``.
    Percentiles use numpy's default linear interpolation and are rounded to
    the nearest nanosecond.

    Raises:
        ValueError: if ``samples`` is empty.
    """
    arr = np.asarray(samples, dtype=np.int64).ravel()
    if arr.size == 0:
        raise ValueError("percentiles_ns() needs at least one sample")
    p50, p99, p999 = np.percentile(arr, [50.0, 99.0, 99.9])
    return {
        "p50": int(round(float(p50))),
        "p99": int(round(float(p99))),
        "p999": int(round(float(p999))),
        "max": int(arr.max()),
    }


# --------------------------------------------------------------------------
# Process / thread placement
# --------------------------------------------------------------------------


def pin(cpu: int | None) -> bool:
    """Pin the *calling thread* to ``cpu``.

    Uses ``os.sched_setaffinity`` on the thread's native id, so only the
    current thread (and threads it creates afterwards, which inherit the
    mask) is affected.  Silently does nothing if ``cpu`` is ``None``, the
    platform has no affinity API, or the CPU does not exist / is not
    allowed for this process.

    Returns:
        True if the thread was pinned, False if this was a no-op.
    """
    if cpu is None or not hasattr(os, "sched_setaffinity"):
        return False
    ncpu = os.cpu_count() or 1
    if cpu < 0 or cpu >= ncpu:
        return False
    try:
        os.sched_setaffinity(threading.get_native_id(), {cpu})
    except OSError:  # e.g. EINVAL: cpu outside our cpuset
        return False
    return True


def spawn_ctx() -> multiprocessing.context.SpawnContext:
    """Return the ``spawn`` multiprocessing context (never ``fork``)."""
    ctx = multiprocessing.get_context("spawn")
    assert isinstance(ctx, multiprocessing.context.SpawnContext)
    return ctx


# --------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    """One benchmark measurement.

    Attributes:
        name: Human-readable transport / scenario name (e.g. ``"pyzmq ipc"``).
        kind: ``"throughput"`` or ``"latency"``.
        msgs_per_s: Messages per second (throughput rows), else ``None``.
        p50, p99, p999, max: One-way latency percentiles in ns (latency
            rows), else ``None``.
        n: Number of messages (throughput) or latency samples kept.
        note: Free-form remark shown nowhere in the table but kept for
            reports.
    """

    name: str
    kind: Kind
    msgs_per_s: float | None = None
    p50: int | None = None
    p99: int | None = None
    p999: int | None = None
    max: int | None = None
    n: int = 0
    note: str = ""

    def __post_init__(self) -> None:
        if self.kind not in ("throughput", "latency"):
            raise ValueError(f"Result.kind must be 'throughput' or 'latency', got {self.kind!r}")


def _median_or_none(values: Iterable[float | int | None]) -> float | None:
    """Median of the non-``None`` values, or ``None`` if there are none."""
    present = [v for v in values if v is not None]
    if not present:
        return None
    return float(statistics.median(present))


def median_of(results: list[Result]) -> Result:
    """Field-wise median of several runs of the *same* benchmark.

    Numeric fields are replaced by the median over the runs that have a
    value (``None`` stays ``None``); integer fields are rounded back to
    ``int``.  ``name``, ``kind`` and ``note`` are taken from the first run.

    Raises:
        ValueError: if ``results`` is empty or mixes names/kinds.
    """
    if not results:
        raise ValueError("median_of() needs at least one Result")
    first = results[0]
    if any(r.name != first.name or r.kind != first.kind for r in results):
        raise ValueError("median_of() expects runs of a single benchmark (same name and kind)")
    updates: dict[str, float | int | None] = {}
    for field_name in _NUMERIC_FIELDS:
        med = _median_or_none(getattr(r, field_name) for r in results)
        if med is not None and field_name != "msgs_per_s":
            med = int(round(med))
        updates[field_name] = med
    if updates["n"] is None:
        updates["n"] = 0
    note = first.note or ""
    if len(results) > 1:
        note = f"{note}; median of {len(results)}" if note else f"median of {len(results)}"
    return replace(first, note=note, **updates)  # type: ignore[arg-type]


# --------------------------------------------------------------------------
# Formatting
# --------------------------------------------------------------------------


def _fmt_rate(msgs_per_s: float | None) -> str:
    """Format a message rate, e.g. ``"12.3 M"`` or ``"850 k"``."""
    if msgs_per_s is None:
        return "—"
    v = float(msgs_per_s)
    if v >= 1e9:
        return f"{v / 1e9:.1f} G"
    if v >= 1e6:
        return f"{v / 1e6:.1f} M" if v < 1e8 else f"{v / 1e6:.0f} M"
    if v >= 1e3:
        return f"{v / 1e3:.0f} k"
    return f"{v:.0f}"


def _fmt_ns(ns: int | None) -> str:
    """Format a duration given in ns, e.g. ``"142 ns"``, ``"31.2 µs"``, ``"1.4 ms"``."""
    if ns is None:
        return "—"
    v = float(ns)
    for scale, unit in ((1e9, "s"), (1e6, "ms"), (1e3, "µs")):
        if v >= scale:
            x = v / scale
            return f"{x:.1f} {unit}" if x < 100 else f"{x:.0f} {unit}"
    return f"{v:.0f} ns"


def _fmt_ratio(ratio: float) -> str:
    """Express a speed-up ratio (>1 means better than the baseline)."""
    if ratio >= 1.0:
        return f"×{ratio:.1f} faster"
    return f"×{1.0 / ratio:.1f} slower"


def _ratio_cell(row: Result, base: Result | None) -> str:
    """Ratio of ``row`` against the baseline row of the same kind."""
    if base is None or row is base:
        return "—" if base is None else "baseline"
    if row.kind == "throughput":
        if row.msgs_per_s and base.msgs_per_s:
            return _fmt_ratio(row.msgs_per_s / base.msgs_per_s)
    elif row.p50 and base.p50:
        return _fmt_ratio(base.p50 / row.p50)
    return "—"


def format_table(results: list[Result], baseline: str | None = None) -> str:
    """Render results as a GitHub-markdown table.

    Columns: name, msgs/s, p50, p99, p99.9, max, plus ``vs <baseline>`` when
    ``baseline`` names a result.  The ratio compares msgs/s for throughput
    rows and p50 for latency rows, each against the baseline row of the same
    kind.

    Raises:
        ValueError: if ``baseline`` is given but no result has that name.
    """
    header = ["name", "msgs/s", "p50", "p99", "p99.9", "max"]
    bases: dict[str, Result] = {}
    if baseline is not None:
        for r in results:
            if r.name == baseline:
                bases.setdefault(r.kind, r)
        if not bases:
            raise ValueError(f"baseline {baseline!r} not found among results")
        header.append(f"vs {baseline}")
    rows: list[list[str]] = []
    for r in results:
        row = [
            r.name,
            _fmt_rate(r.msgs_per_s),
            _fmt_ns(r.p50),
            _fmt_ns(r.p99),
            _fmt_ns(r.p999),
            _fmt_ns(r.max),
        ]
        if baseline is not None:
            row.append(_ratio_cell(r, bases.get(r.kind)))
        rows.append(row)
    return _markdown(header, rows)


def _markdown(header: list[str], rows: list[list[str]]) -> str:
    """Render a padded markdown table (first column left-, rest right-aligned)."""
    widths = [max(len(c) for c in col) for col in zip(header, *rows)]
    widths = [max(w, 3) for w in widths]

    def line(cells: list[str]) -> str:
        parts = [
            cells[i].ljust(widths[i]) if i == 0 else cells[i].rjust(widths[i])
            for i in range(len(cells))
        ]
        return "| " + " | ".join(parts) + " |"

    sep = "| " + " | ".join(
        ("-" * widths[i]) if i == 0 else ("-" * (widths[i] - 1) + ":") for i in range(len(header))
    ) + " |"
    return "\n".join([line(header), sep, *(line(r) for r in rows)])


# --------------------------------------------------------------------------
# Environment
# --------------------------------------------------------------------------


def _cpu_model() -> str:
    """CPU model name from /proc/cpuinfo, falling back to platform data."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for raw in fh:
                key, _, value = raw.partition(":")
                if key.strip() == "model name":
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _module_version(name: str) -> str | None:
    """``module.__version__`` if the module imports, else ``None``."""
    try:
        mod = importlib.import_module(name)
    except Exception:  # noqa: BLE001 - any import failure means "not available"
        return None
    return str(getattr(mod, "__version__", "unknown"))


def machine_info() -> dict[str, str | int | float | None]:
    """Describe the machine the benchmarks ran on."""
    return {
        "cpu": _cpu_model(),
        "nproc": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "numpy": _module_version("numpy"),
        "numba": _module_version("numba"),
        "loadavg_1m": _loadavg_1m(),
    }


def _loadavg_1m() -> float | None:
    """1-minute load average (a hint that the machine was busy), if known."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None
