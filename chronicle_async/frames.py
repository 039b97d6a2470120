"""Read a queue into numpy and pandas in one call: the notebook workflow.

:func:`read_array` reads a range of a queue folder (by seq, or by time) into a
numpy structured array with the columns ``seq``, ``timestamp_ns`` and
``type_id``, and then either the fields of a payload ``dtype`` or a ``payload``
column of ``bytes``. :func:`read_dataframe` returns the same as a pandas
DataFrame indexed by seq, with a ``time`` column (``datetime64[ns, UTC]``).
:func:`plot_interarrival` and :func:`plot_latency` draw the two histograms one
looks at first; :func:`read_array_async` and :func:`read_dataframe_async` read in
a worker thread so a notebook's event loop never blocks.

Reading uses an anonymous reader: it takes no writer or reader lock (only the
shared lock every reader holds on the segment it maps, which keeps the writer from
recycling that segment under it), creates no file and never
commits, so it is safe beside a live writer and named readers. It reads what is
committed when it reaches the tail and stops there (a snapshot); messages
appended while it reads are included if it gets to them before stopping.

With a ``dtype`` every selected payload is copied, header and body, by a jitted
scan over the mapped segments straight into the preallocated result, with no
Python work per message. ``pandas`` and ``matplotlib`` are imported only by the
functions that need them (``pip install 'chronicle_async[notebook]'``).
"""
from __future__ import annotations

import asyncio
import datetime as _dt
import sys
import time
from collections.abc import Iterable
from typing import Any

import numpy as np

from .queue import args as A
from ._errors import ArgumentTypeError, CorruptSegmentError, InvalidArgumentError
from .queue.reader import QueueReader
from .hot import layout as L
from .hot import status as S
from .hot import tables as T
from .hot.gather import GATHER_BAD_SIZE, GATHER_FULL, gather_records

__all__ = [
    "HEADER_FIELDS",
    "plot_interarrival",
    "plot_latency",
    "read_array",
    "read_array_async",
    "read_dataframe",
    "read_dataframe_async",
    "to_dataframe",
]

#: Names of the header columns every result starts with.
HEADER_FIELDS = ("seq", "timestamp_ns", "type_id")

_CHUNK = 1 << 21  # most messages one kernel call gathers (progress reports between calls)
_FIRST_CAPACITY = 1 << 16  # smallest first capacity (when the data bounds the count at more)
_PREALLOC_BYTES = 1 << 30  # most bytes allocated up front (untouched pages cost nothing); past that, grow
_PROGRESS_AFTER_S = 1.0
_EMPTY_TYPES = np.zeros(0, np.int32)


# -- arguments --------------------------------------------------------------------------------


def _check_by(by: Any) -> bool:
    """True for ``by="time"``, False for ``by="seq"``."""
    if by == "seq":
        return False
    if by == "time":
        return True
    raise InvalidArgumentError(f"by must be 'seq' or 'time', got {by!r}")


def _datetime_ns(value: _dt.datetime) -> int:
    if value.tzinfo is None:  # naive datetimes are taken as UTC, like the stored timestamps
        value = value.replace(tzinfo=_dt.UTC)
    delta = value - _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


def _string_ns(text: str, what: str) -> int:
    s = text.strip()
    aware = None
    try:
        aware = _dt.datetime.fromisoformat(s)
    except ValueError:
        pass
    if aware is not None and aware.tzinfo is not None:
        # Keep nanoseconds: parse the wall time without the offset with numpy, then apply it.
        naive_ns = None
        for cut in ("Z", "+", "-"):
            i = s.rfind(cut)
            if i > 10:  # past the date's own dashes
                try:
                    naive_ns = int(np.datetime64(s[:i], "ns").astype(np.int64))
                except ValueError:
                    naive_ns = None
                break
        utc_shift = aware.utcoffset()
        if naive_ns is None or utc_shift is None:
            return _datetime_ns(aware)
        return naive_ns - (utc_shift.days * 86_400 + utc_shift.seconds) * 1_000_000_000 - utc_shift.microseconds * 1_000
    try:
        v = np.datetime64(s, "ns")
    except ValueError:
        raise InvalidArgumentError(
            f"{what}={text!r} is not an ISO 8601 date or time (e.g. '2024-05-01T09:30:00.25Z')"
        ) from None
    if np.isnat(v):
        raise InvalidArgumentError(f"{what}={text!r} is not a time (NaT)")
    return int(v.astype(np.int64))


def _time_ns(value: Any, what: str) -> int | None:
    """A time bound as int ns since the epoch (UTC): ints, datetimes, numpy/pandas times, ISO strings."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ArgumentTypeError(f"{what} must be a time, not a bool")
    if isinstance(value, (int, np.integer)):
        return A.check_timestamp(value)
    mod = type(value).__module__ or ""
    if mod.startswith("pandas"):  # Timestamp (a datetime subclass with ns), NaT
        ns = getattr(value, "value", None)
        if type(value).__name__ == "NaTType" or not isinstance(ns, (int, np.integer)):
            raise InvalidArgumentError(f"{what} is {value!r}, not a time")
        return int(ns)  # .value is ns since the epoch in UTC (naive Timestamps count as UTC)
    if isinstance(value, np.datetime64):
        if np.isnat(value):
            raise InvalidArgumentError(f"{what} is NaT, not a time")
        return int(value.astype("datetime64[ns]").astype(np.int64))
    if isinstance(value, _dt.datetime):
        return _datetime_ns(value)
    if isinstance(value, _dt.date):
        return _datetime_ns(_dt.datetime(value.year, value.month, value.day))
    if isinstance(value, str):
        return _string_ns(value, what)
    raise ArgumentTypeError(
        f"{what} must be int ns since the epoch, a datetime, numpy.datetime64, pandas.Timestamp or an "
        f"ISO 8601 string, not {type(value).__name__}"
    )


def _seq_bound(value: Any, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        hint = "; for a time range pass by='time'" if isinstance(value, (str, _dt.date, np.datetime64)) else ""
        raise ArgumentTypeError(f"{what} must be an int seq with by='seq', not {type(value).__name__}{hint}")
    if value < 0:
        raise InvalidArgumentError(f"{what} must be a seq >= 0, got {value}")
    return min(int(value), (1 << 63) - 1)


def _check_dtype(dtype: Any) -> np.dtype | None:
    if dtype is None:
        return None
    try:
        dt = np.dtype(dtype)
    except (TypeError, ValueError) as e:
        raise ArgumentTypeError(f"dtype {dtype!r} is not a numpy dtype: {e}") from None
    if dt.hasobject:
        raise ArgumentTypeError(f"dtype {dt} holds Python objects; payloads are raw bytes: use numeric, bytes or structured fields")
    if dt.itemsize == 0:
        raise InvalidArgumentError(f"dtype {dt} has size 0; it cannot describe a payload")
    clash = [f for f in (dt.names or ("value",)) if f in HEADER_FIELDS or f == "time"]
    if clash:
        raise InvalidArgumentError(
            f"dtype field {clash[0]!r} clashes with a header column ({', '.join(HEADER_FIELDS)}, time): rename it"
        )
    return dt


def _check_types(type_ids: Any) -> np.ndarray | None:
    if type_ids is None:
        return None
    if isinstance(type_ids, (int, np.integer)) and not isinstance(type_ids, bool):
        return np.array([A.check_type_id(type_ids)], np.int32)
    if isinstance(type_ids, (str, bytes)):
        raise ArgumentTypeError(f"type_ids must be an int or a collection of ints, not {type(type_ids).__name__}")
    try:
        ids = [A.check_type_id(t) for t in type_ids]
    except TypeError:
        raise ArgumentTypeError(f"type_ids must be an int or a collection of ints, not {type(type_ids).__name__}") from None
    return np.array(sorted(set(ids)), np.int32)


def _check_limit(limit: Any) -> int | None:
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)):
        raise ArgumentTypeError(f"limit must be an int or None, not {type(limit).__name__}")
    if limit < 0:
        raise InvalidArgumentError(f"limit must be >= 0, got {limit}")
    return int(limit)


# -- the result's layout ----------------------------------------------------------------------


def _result_dtype(dt: np.dtype | None) -> tuple[np.dtype, int]:
    """The structured dtype of the result, and its row size (the payload sits at ``T.GATHER_BODY_OFFSET``)."""
    names = list(HEADER_FIELDS)
    formats: list[Any] = [np.int64, np.int64, np.int32]
    offsets = [T.GATHER_SEQ_OFFSET, T.GATHER_TIMESTAMP_OFFSET, T.GATHER_TYPE_ID_OFFSET]
    if dt is None:
        return np.dtype({"names": [*names, "payload"], "formats": [*formats, object]}), 0
    if dt.names is None:
        names.append("value")
        formats.append(dt)
        offsets.append(T.GATHER_BODY_OFFSET)
    else:
        for name in dt.names:
            fdt, foff = dt.fields[name][:2]
            names.append(name)
            formats.append(fdt)
            offsets.append(T.GATHER_BODY_OFFSET + foff)
    row = T.GATHER_BODY_OFFSET + ((dt.itemsize + 7) & ~7)
    return np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": row}), row


_VAR_ROW = np.dtype({"names": ["seq", "timestamp_ns", "type_id", "length", "offset"],
                     "formats": [np.int64, np.int64, np.int32, np.int32, np.int64],
                     "offsets": [T.GATHER_SEQ_OFFSET, T.GATHER_TIMESTAMP_OFFSET, T.GATHER_TYPE_ID_OFFSET,
                                 T.GATHER_LENGTH_OFFSET, T.GATHER_BODY_OFFSET], "itemsize": 32})


class _Progress:
    """``read_array: 1,234,567 msgs  8.1 M msgs/s`` on stderr, from the first second on."""

    def __init__(self, enabled: bool | None, total: int | None):
        if enabled is None:
            try:
                enabled = sys.stderr.isatty()
            except (AttributeError, ValueError):
                enabled = False
        self.enabled = bool(enabled)
        self.total = total
        self.t0 = time.perf_counter()
        self.shown = False

    def update(self, n: int, final: bool = False) -> None:
        if not self.enabled:
            return
        dt = time.perf_counter() - self.t0
        if dt < _PROGRESS_AFTER_S and not self.shown:
            return
        of = f" of ~{self.total:,}" if self.total else ""
        sys.stderr.write(f"\rread_array: {n:,}{of} msgs  {n / dt / 1e6:.1f} M msgs/s" + ("\n" if final else ""))
        sys.stderr.flush()
        self.shown = not final


# -- reading ----------------------------------------------------------------------------------


def read_array(
    path: Any,
    start: Any = None,
    stop: Any = None,
    *,
    by: str = "seq",
    dtype: Any = None,
    type_ids: int | Iterable[int] | None = None,
    limit: int | None = None,
    progress: bool | None = None,
) -> np.ndarray:
    """Read messages ``[start, stop)`` of the queue at ``path`` into a numpy structured array.

    ``by="seq"``: ``start``/``stop`` are seqs. ``by="time"``: they are times, as int ns
    since the epoch, ``datetime`` (naive means UTC), ``numpy.datetime64``,
    ``pandas.Timestamp`` or ISO 8601 strings. None means from the oldest message kept /
    up to the tail. The time range assumes timestamps that do not go backwards.

    The result has the fields ``seq`` (i8), ``timestamp_ns`` (i8), ``type_id`` (i4), then
    the fields of ``dtype`` (a structured dtype; a plain dtype gives one field ``value``)
    or, with ``dtype=None``, a ``payload`` field of ``bytes`` objects. With a dtype every
    selected payload must be ``dtype.itemsize`` bytes (``InvalidArgumentError`` names the
    first seq that is not); select one layout with ``type_ids`` (an int or ints).
    ``limit`` caps how many messages are returned.

    Opens an anonymous reader: no writer or reader lock, no file created, nothing committed. ``progress``:
    a line on stderr while a read lasts over a second (None: only if stderr is a terminal).

    Raises ``QueueNotFoundError`` if ``path`` holds no queue, ``ArgumentTypeError`` /
    ``InvalidArgumentError`` for bad arguments, ``CorruptSegmentError`` for a damaged record.
    """
    by_time = _check_by(by)
    if by_time:
        lo, hi = _time_ns(start, "start"), _time_ns(stop, "stop")
    else:
        lo, hi = _seq_bound(start, "start"), _seq_bound(stop, "stop")
    dt = _check_dtype(dtype)
    types = _check_types(type_ids)
    limit = _check_limit(limit)
    out_dtype, row = _result_dtype(dt)
    reader = QueueReader(A.check_path(path), None, "earliest")
    try:
        if lo is not None:
            if by_time:
                reader.seek_timestamp(lo)
            else:
                reader.seek(lo)
        lo_k = -(1 << 63) if lo is None else lo
        hi_k = (1 << 63) - 1 if hi is None else hi
        if (types is not None and types.size == 0) or limit == 0 or hi_k <= lo_k:
            return np.zeros(0, out_dtype)
        return _read(reader, by_time, lo_k, hi_k, types, dt, out_dtype, row, limit, progress)
    finally:
        reader.close()


def _capacity_bound(reader: QueueReader, by_time: bool, lo: int, hi: int, itemsize: int, limit: int | None) -> int:
    """A first capacity: the seq range, else what the data left in the queue could hold."""
    seg_id, off = reader.position
    head_seg, head_off, next_seq = reader.cursor.writer_head()
    data_bytes = max(0, (head_seg - seg_id) * (reader.cursor.segment_size - L.SEGMENT_DATA_OFFSET) + head_off - off)
    bound = data_bytes // L.record_length(max(itemsize, 0))
    if not by_time:
        bound = min(bound, max(0, min(hi, next_seq) - max(lo, reader.next_seq)))
    if limit is not None:
        bound = min(bound, limit)
    return max(1, bound)


def _read(reader, by_time, lo, hi, types, dt, out_dtype, row, limit, progress) -> np.ndarray:
    fixed = dt is not None
    itemsize = dt.itemsize if fixed else -1
    tarr = _EMPTY_TYPES if types is None else types
    stop_n = limit if limit is not None else (1 << 62)
    bound = _capacity_bound(reader, by_time, lo, hi, itemsize, limit)
    # The bound is exact for a seq range, and may be far too high for a time range or a type
    # filter. Untouched memory costs only address space, and the result shrinks in place at the
    # end, so allocate the bound up to a size, then grow by doubling.
    cap = min(bound, max(_FIRST_CAPACITY, _PREALLOC_BYTES // (row if fixed else _VAR_ROW.itemsize)))
    buf = np.empty(cap, out_dtype if fixed else _VAR_ROW)
    flat = buf.view(np.uint8)
    bodies: list[bytes] = []
    n = 0
    shown = _Progress(progress, bound if bound > 1 and not by_time else None)
    cursor = reader.cursor
    while True:
        seg = cursor.segment
        code, off, n2, bad_seq, bad_len = gather_records(
            seg.arr, cursor.offset, by_time, lo, hi, tarr, itemsize, flat, row if fixed else 32, n, min(cap, n + _CHUNK), stop_n
        )
        cursor.move_to(off, cursor.next_seq)
        if not fixed and n2 > n:  # bytes objects from this segment's mapping, before moving on
            mv = seg.mv
            bodies.extend(bytes(mv[o : o + k]) for o, k in zip(buf["offset"][n:n2].tolist(), buf["length"][n:n2].tolist()))
        n = n2
        shown.update(n)
        if code == GATHER_FULL:
            if n >= cap:
                cap = max(2 * cap, 1024)
                grown = np.empty(cap, buf.dtype)
                grown[:n] = buf[:n]
                del flat
                buf, flat = grown, grown.view(np.uint8)
            continue
        if code == S.END_OF_SEGMENT:
            if cursor.advance_segment():
                continue
            break
        if code == GATHER_BAD_SIZE:
            raise InvalidArgumentError(
                f"message seq {bad_seq} of {reader.path} has a {bad_len}-byte payload, but dtype {dt} is "
                f"{dt.itemsize} bytes: select messages of one layout with type_ids=..., or pass dtype=None for raw bytes"
            )
        if code == S.CORRUPT:
            raise CorruptSegmentError(
                f"segment {cursor.segment.path} has a malformed record at offset {off}; the file is damaged: "
                "restore it from a backup, or read the ranges before and after it"
            )
        break  # GATHER_DONE or NO_DATA (the tail)
    shown.update(n, final=True)
    del flat
    if fixed:
        if n < cap:
            buf.resize(n, refcheck=False)  # in place (realloc): no view of buf is left
        return buf
    out = np.empty(n, out_dtype)
    for name in HEADER_FIELDS:
        out[name] = buf[name][:n]
    payload = np.empty(n, object)
    payload[:] = bodies
    out["payload"] = payload
    return out


# -- pandas -----------------------------------------------------------------------------------


def _pandas() -> Any:
    try:
        import pandas as pd
    except ImportError:
        raise ImportError(
            "read_dataframe needs pandas: pip install pandas (or pip install 'chronicle_async[notebook]')"
        ) from None
    return pd


def _flat_columns(arr: np.ndarray, prefix: str = "") -> Iterable[tuple[str, np.ndarray]]:
    """1-D columns of a structured array: sub-arrays split into ``name_i``, nested fields ``outer.inner``."""
    for name in arr.dtype.names:
        col = arr[name]
        label = f"{prefix}{name}"
        if col.dtype.names is not None:
            yield from _flat_columns(col, label + ".")
        elif col.ndim > 1:
            flat = col.reshape(col.shape[0], -1)
            for i in range(flat.shape[1]):
                yield f"{label}_{i}", flat[:, i]
        else:
            yield label, col


def to_dataframe(arr: np.ndarray) -> Any:
    """A :func:`read_array` result as a DataFrame: seq as index, ``time`` (UTC), then the other fields."""
    pd = _pandas()
    cols: dict[str, Any] = {"time": pd.to_datetime(np.ascontiguousarray(arr["timestamp_ns"]), unit="ns", utc=True)}
    for name, col in _flat_columns(arr):
        if name != "seq":
            cols[name] = np.ascontiguousarray(col)
    index = pd.Index(np.ascontiguousarray(arr["seq"]), name="seq")
    return pd.DataFrame(cols, index=index, copy=False)


def read_dataframe(
    path: Any,
    start: Any = None,
    stop: Any = None,
    *,
    by: str = "seq",
    dtype: Any = None,
    type_ids: int | Iterable[int] | None = None,
    limit: int | None = None,
    progress: bool | None = None,
) -> Any:
    """:func:`read_array` as a pandas DataFrame.

    Indexed by ``seq``; columns ``time`` (``datetime64[ns, UTC]``), ``timestamp_ns``,
    ``type_id``, then the fields of ``dtype`` (sub-arrays split into ``name_0``, ...;
    nested fields named ``outer.inner``), or ``payload`` (bytes) without one.
    """
    _pandas()  # fail before reading if pandas is missing
    arr = read_array(path, start, stop, by=by, dtype=dtype, type_ids=type_ids, limit=limit, progress=progress)
    return to_dataframe(arr)


async def read_array_async(path: Any, start: Any = None, stop: Any = None, **kwargs: Any) -> np.ndarray:
    """:func:`read_array` in a worker thread (``asyncio.to_thread``): the event loop keeps running."""
    kwargs.setdefault("progress", False)
    return await asyncio.to_thread(read_array, path, start, stop, **kwargs)


async def read_dataframe_async(path: Any, start: Any = None, stop: Any = None, **kwargs: Any) -> Any:
    """:func:`read_dataframe` in a worker thread (``asyncio.to_thread``): the event loop keeps running."""
    kwargs.setdefault("progress", False)
    return await asyncio.to_thread(read_dataframe, path, start, stop, **kwargs)


# -- plots ------------------------------------------------------------------------------------


def _axes(ax: Any) -> Any:
    if ax is not None:
        return ax
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError(
            "the plots need matplotlib: pip install matplotlib (or pip install 'chronicle_async[notebook]')"
        ) from None
    _fig, ax = plt.subplots(figsize=(7, 3.5))
    return ax


def _column(data: Any, name: str) -> np.ndarray:
    """Column ``name`` of a DataFrame or structured array as a numpy array."""
    try:
        col = data[name]
    except (KeyError, ValueError, IndexError):
        if name == "timestamp_ns" and getattr(getattr(data, "index", None), "name", None) == name:
            col = data.index
        else:
            raise InvalidArgumentError(f"no column {name!r} in the data (columns: {list(_names(data))})") from None
    except TypeError:
        raise ArgumentTypeError(f"expected a DataFrame or a structured array, not {type(data).__name__}") from None
    return np.asarray(getattr(col, "to_numpy", lambda: col)())


def _names(data: Any) -> Iterable[str]:
    if hasattr(data, "columns"):
        return [str(c) for c in data.columns]
    return list(getattr(getattr(data, "dtype", None), "names", None) or ())


def _log_bins(values: np.ndarray, count: int = 60) -> np.ndarray:
    """``count`` log-spaced bin edges covering every (positive) value, the extremes included.

    One value alone (a constant column) gets a narrow range around it, so its bar is drawn.
    """
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        lo, hi = lo / 1.25, hi * 1.25
    pad = 1e-9  # in decades: rounding in logspace must not push the extremes out of the edges
    return np.logspace(np.log10(lo) - pad, np.log10(hi) + pad, count)


def _unit_free(column: str) -> str:
    """``column`` without a unit suffix (``latency_ns`` -> ``latency``), for an axis labelled in µs."""
    for suffix in ("_ns", "_us", "_ms", "_s"):
        if column.endswith(suffix) and len(column) > len(suffix):
            return column[: -len(suffix)]
    return column


def _as_ns(col: np.ndarray) -> np.ndarray:
    if col.dtype.kind == "M":
        return col.astype("datetime64[ns]").astype(np.int64)
    if col.dtype.kind == "m":
        return col.astype("timedelta64[ns]").astype(np.int64)
    return col


def plot_interarrival(df: Any, ax: Any = None, *, bins: int = 60) -> Any:
    """Histogram of the gaps between consecutive messages' timestamps, in µs, on log axes.

    ``df``: a :func:`read_dataframe` or :func:`read_array` result (its ``timestamp_ns``
    column, or else ``time``). Gaps of zero cannot sit on a log axis: their count goes in
    the title. Returns the matplotlib Axes.
    """
    names = set(_names(df))
    ts = _as_ns(_column(df, "timestamp_ns" if "timestamp_ns" in names or not names else "time"))
    gaps = np.diff(ts.astype(np.int64)) / 1e3
    ax = _axes(ax)
    pos = gaps[gaps > 0]
    if pos.size:
        ax.hist(pos, bins=_log_bins(pos, bins), color="tab:blue")
        ax.set_xscale("log")
        ax.set_yscale("log")
        med = float(np.median(gaps))
        if med > 0:
            ax.axvline(med, color="k", ls="--", lw=1, label=f"median {med:.3g} µs")
            ax.legend(loc="upper right")
    zero = int(gaps.size - pos.size)
    title = f"inter-arrival times ({gaps.size:,} gaps"
    ax.set_title(title + (f", {zero:,} of 0 not shown)" if zero else ")"))
    ax.set_xlabel("gap between consecutive messages (µs)")
    ax.set_ylabel("count")
    return ax


def plot_latency(df: Any, column: str, ax: Any = None, *, unit: str = "ns", bins: int = 60, log_x: bool | None = None) -> Any:
    """Histogram of a latency column in µs (log count axis), with p50 / p99 / p99.9 marked.

    ``column`` holds durations in ``unit`` (``"ns"``, ``"us"``, ``"ms"`` or ``"s"``), or
    timedeltas. ``log_x``: log-spaced bins on a log axis (default: when every value is
    positive, as latencies with a long tail are). Returns the matplotlib Axes.
    """
    scale = {"ns": 1e-3, "us": 1.0, "µs": 1.0, "ms": 1e3, "s": 1e6}.get(unit)
    if scale is None:
        raise InvalidArgumentError(f"unit must be one of 'ns', 'us', 'ms', 's', got {unit!r}")
    col = _column(df, column)
    if col.dtype.kind == "m":
        us = _as_ns(col) / 1e3
    elif col.dtype.kind in "iuf":
        us = col.astype(np.float64) * scale
    else:
        raise ArgumentTypeError(f"column {column!r} holds {col.dtype} values, not numbers or timedeltas")
    us = us[np.isfinite(us)]
    ax = _axes(ax)
    if us.size:
        if log_x is None:
            log_x = bool(us.min() > 0)
        if log_x:
            pos = us[us > 0]
            ax.hist(pos, bins=_log_bins(pos, bins), color="tab:orange")
            ax.set_xscale("log")
        else:
            ax.hist(us, bins=bins, color="tab:orange")
        ax.set_yscale("log")
        for q, style in ((50, "-"), (99, "--"), (99.9, ":")):
            v = float(np.percentile(us, q))
            ax.axvline(v, color="k", ls=style, lw=1, label=f"p{q:g} {v:.3g} µs")
        ax.legend(loc="upper right")
    ax.set_title(f"{column} ({us.size:,} messages)")
    ax.set_xlabel(f"{_unit_free(column)} (µs)")
    ax.set_ylabel("count")
    return ax
