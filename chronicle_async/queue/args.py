"""Argument checks shared by the public face: each raises a typed error naming the argument."""
from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from .._errors import ArgumentTypeError, InvalidArgumentError
from ..hot import layout as L

_MAX_NAME = 128


def check_type_id(value: Any) -> int:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        if 0 <= int(value) <= L.MAX_TYPE_ID:
            return int(value)
        raise InvalidArgumentError(f"type_id must be in 0..{L.MAX_TYPE_ID}, got {value}")
    raise ArgumentTypeError(f"type_id must be an int, not {type(value).__name__}")


def check_timestamp(value: Any) -> int:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        if -(1 << 63) <= int(value) < (1 << 63):
            return int(value)
        raise InvalidArgumentError(f"timestamp_ns {value} does not fit in 64 bits")
    raise ArgumentTypeError(f"timestamp_ns must be an int of nanoseconds or None, not {type(value).__name__}")


def as_bytes_like(payload: Any) -> Any:
    """A byte-addressable view of ``payload`` (bytes-like or C-contiguous array), or raise."""
    if isinstance(payload, (bytes, bytearray)):
        return payload
    if isinstance(payload, np.ndarray) and payload.dtype.hasobject:
        raise ArgumentTypeError(
            f"payload is a numpy array of {payload.dtype} (Python objects): its bytes would be memory "
            "addresses, meaningless to a reader; pass plain data (numbers, bytes) or serialise the objects first"
        )
    try:
        mv = memoryview(payload)
    except TypeError:
        raise ArgumentTypeError(
            f"payload must be bytes-like (bytes, bytearray, memoryview, numpy array), not {type(payload).__name__}"
        ) from None
    if "O" in mv.format or "P" in mv.format:
        raise ArgumentTypeError(
            f"payload holds pointers (buffer format {mv.format!r}): its bytes would be memory addresses, "
            "meaningless to a reader; pass plain data (numbers, bytes) or serialise the objects first"
        )
    if not mv.c_contiguous:
        raise InvalidArgumentError("payload must be C-contiguous; pass numpy.ascontiguousarray(payload)")
    return mv.cast("B") if (mv.format != "B" or mv.ndim != 1) else mv


def per_message(value: Any, count: int, name: str) -> np.ndarray:
    """A C-contiguous int64 array of ``count`` values from a scalar or a sequence, or a typed error."""
    arr = np.asarray(value)
    if arr.dtype.kind not in "iu" and not (arr.dtype.kind == "O" and arr.size == 0):
        raise ArgumentTypeError(f"append_batch: {name} must be an int or a sequence of ints, not {arr.dtype} values")
    if arr.ndim > 1 or (arr.ndim == 1 and arr.shape[0] != count):
        raise InvalidArgumentError(f"append_batch: {name} has {arr.shape[0] if arr.ndim else 1} values for {count} messages")
    if arr.dtype.kind == "u" and arr.size and arr.max() > np.iinfo(np.int64).max:
        raise InvalidArgumentError(f"append_batch: {name} values must fit in 64 bits")
    return np.ascontiguousarray(np.broadcast_to(arr.astype(np.int64), (count,)))


def check_path(path: Any) -> str:
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if not isinstance(path, (str, os.PathLike)):
        raise ArgumentTypeError(f"path must be a str or os.PathLike naming the queue folder, not {type(path).__name__}")
    p = os.fspath(path)
    if isinstance(p, bytes):
        p = os.fsdecode(p)
    if not p:
        raise InvalidArgumentError("path is empty: pass the queue folder")
    if "\0" in p:
        raise InvalidArgumentError(f"path {p!r} contains a NUL character, which no file name may hold; pass the queue folder's real path")
    return os.path.abspath(p)


def check_name(name: str | None) -> str | None:
    if name is None:
        return None
    if not isinstance(name, str):
        raise ArgumentTypeError(f"reader name must be a str or None, not {type(name).__name__}")
    ok = 0 < len(name) <= _MAX_NAME and all(c.isalnum() or c in "-_." for c in name) and not name.startswith(".")
    if not ok:
        raise InvalidArgumentError(
            f"reader name {name!r} is invalid: use 1-{_MAX_NAME} letters, digits, '-', '_' or '.', not starting with '.'"
        )
    return name


def coerce_enum(enum_cls: Any, value: Any, what: str) -> Any:
    if isinstance(value, enum_cls):
        return value
    try:
        return enum_cls(value)
    except ValueError:
        raise InvalidArgumentError(f"{what} must be one of {[e.value for e in enum_cls]}, got {value!r}") from None


def check_ttl(ttl: float) -> None:
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not ttl > 0:
        raise InvalidArgumentError(f"ttl must be a positive number of seconds, got {ttl!r}")


def check_seconds(name: str, value: Any) -> float:
    """A positive, finite number of seconds, or a typed error naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ArgumentTypeError(f"{name} must be a number of seconds, not {type(value).__name__}")
    if not 0 < value < float("inf"):
        raise InvalidArgumentError(f"{name} must be a positive number of seconds, got {value!r}")
    return float(value)


def check_nonnegative_seconds(name: str, value: Any, *, allow_none: bool = False) -> float | None:
    """A number of seconds ``>= 0`` (or None, with ``allow_none``), else :class:`InvalidArgumentError` naming ``name``."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) or value < 0:
        what = "None or a non-negative number" if allow_none else "a non-negative number"
        raise InvalidArgumentError(f"{name} must be {what} of seconds, got {value!r}")
    return float(value)
