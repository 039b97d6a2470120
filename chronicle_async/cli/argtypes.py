"""The argparse types every ``chronicle`` command shares: one checker per kind of value.

Each takes the option's text and returns the value, or raises ``argparse.ArgumentTypeError``
(printed as ``chronicle: UsageError: ...``, exit 2).
"""
from __future__ import annotations

import argparse
import re
from datetime import UTC, datetime

_INT = re.compile(r"^\s*\d+\s*$")
_NS_RE = re.compile(r"^\s*(\d+)\s*$")
_FRAC_RE = re.compile(r"\.(\d+)")
MAX_TYPE_ID = 0x7FFFFFFF


def _int(text: str, what: str = "an integer") -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None


def positive_seconds(text: str) -> float:
    """A finite number of seconds > 0."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < v < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
    return v


def non_negative_int(text: str) -> int:
    """An integer >= 0 (a seq, a count)."""
    v = _int(text)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {v}")
    return v


def positive_int(text: str) -> int:
    """An integer >= 1 (a number of messages, rounds, bytes)."""
    v = _int(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {v}")
    return v


def port(text: str) -> int:
    """A TCP port, 0..65535 (0: the system picks a free one)."""
    v = _int(text, "a TCP port number (0..65535)")
    if not 0 <= v <= 65535:
        raise argparse.ArgumentTypeError(f"{v} is not a TCP port number (0..65535)")
    return v


def type_id(text: str) -> int:
    """A message type id, 0..2**31-1."""
    v = non_negative_int(text)
    if v > MAX_TYPE_ID:
        raise argparse.ArgumentTypeError(f"type ids are 0..{MAX_TYPE_ID}, got {v}")
    return v


def time_ns(text: str) -> int:
    """ns since the epoch, or an ISO 8601 time (no zone: UTC)."""
    try:
        return parse_time(text)
    except (ValueError, OverflowError) as e:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither ns since the epoch nor an ISO 8601 time like 2024-05-01T12:00:00.5Z ({e})"
        ) from None


def seq_or_time(text: str) -> tuple[str, int]:
    """``("seq", n)`` for an integer, ``("time", ns)`` for an ISO 8601 time."""
    if _INT.match(text):
        return "seq", int(text)
    try:
        return "time", parse_time(text)
    except (ValueError, OverflowError) as e:
        raise argparse.ArgumentTypeError(f"{text!r} is neither a seq nor an ISO 8601 time ({e})") from None


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
