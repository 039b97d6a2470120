"""How ``chronicle tail`` shows one message: ``--dtype`` decoding and ``--format`` templates.

``--dtype SPEC`` is a numpy dtype, written either as named fields ``NAME:TYPE,NAME:TYPE,...``
(``ts:<i8,px:<f8,qty:<i4``; TYPE is any numpy type string: ``<f8``, ``S8``, ``3<i4``) or as any
string ``numpy.dtype()`` takes (``i8,f8`` names its fields ``f0``, ``f1``; a plain ``<f8`` is
one field, ``value``). A payload whose size is not the dtype's itemsize is shown as hex with a
note. ``--format STR`` is a Python format string over ``{seq} {time} {time_ns} {type} {len}
{payload}`` and the dtype's field names.
"""
from __future__ import annotations

import json
import string
from collections.abc import Callable
from typing import Any

import numpy as np

from .inspect import iso_ns
from .._errors import InvalidArgumentError

#: JSON is tried on payloads up to this size (bigger ones are shown as text or hex).
_JSON_MAX = 1 << 20


def decode_payload(payload: Any) -> tuple[str, Any]:
    """``("json", value)``, ``("utf8", text)`` or ``("hex", hex digits)``."""
    data = bytes(payload)
    if data and len(data) <= _JSON_MAX and data[:1] not in (b" ", b"\t", b"\n", b"\r"):
        try:
            return "json", json.loads(data)
        except (ValueError, RecursionError):
            pass
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return "hex", data.hex()
    if all(c.isprintable() or c in "\t\n\r" for c in text):
        return "utf8", text
    return "hex", data.hex()


def truncate(text: str, width: int | None, nbytes: int) -> str:
    """``text`` cut to ``width`` characters, saying the payload's size, if it is longer."""
    if width and len(text) > width:
        return text[:width] + f"... ({nbytes:,} bytes)"
    return text


def shown_payload(payload: Any) -> str:
    """The payload as the text output shows it: compact JSON, escaped text, or ``hex:...``."""
    kind, value = decode_payload(payload)
    if kind == "json":
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    if kind == "utf8":
        return value.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    return "hex:" + value


def render_text(seq: int, ts: int, type_id: int, payload: Any, width: int | None) -> str:
    n = len(payload)
    shown = shown_payload(payload)
    line = f"{seq}  {iso_ns(ts) or ts}  type={type_id}  len={n}"
    return f"{line}  {truncate(shown, width, n)}" if shown else line


def render_json(seq: int, ts: int, type_id: int, payload: Any, width: int | None) -> str:
    kind, value = decode_payload(payload)
    n = len(payload)
    truncated = False
    if width and kind != "json" and len(value) > width:
        value, truncated = value[:width], True
    rec = {"seq": seq, "timestamp_ns": ts, "time": iso_ns(ts), "type_id": type_id, "length": n,
           "encoding": kind, "payload": value}
    if truncated:
        rec["truncated"] = True
    return json.dumps(rec, ensure_ascii=False)

#: The fields every ``--format`` string may use.
BASE_FIELDS = ("seq", "time", "time_ns", "type", "len", "payload")


def parse_dtype(spec: str) -> np.dtype:
    """The numpy dtype of ``--dtype SPEC`` (see the module notes); InvalidArgumentError if it is none."""
    try:
        if ":" in spec:
            parts = []
            for item in spec.split(","):
                name, sep, kind = item.partition(":")
                if not sep or not name.strip() or not kind.strip():
                    raise ValueError(f"{item!r} is not NAME:TYPE")
                parts.append((name.strip(), kind.strip()))
            dt = np.dtype(parts)
        else:
            dt = np.dtype(spec)
    except (TypeError, ValueError, SyntaxError) as e:
        raise InvalidArgumentError(
            f"--dtype {spec!r} is not a numpy dtype ({e}); write NAME:TYPE,NAME:TYPE (e.g. 'ts:<i8,px:<f8') "
            "or a numpy dtype string (e.g. 'i8,f8')"
        ) from None
    if dt.itemsize == 0:
        raise InvalidArgumentError(f"--dtype {spec!r} has no bytes (itemsize 0); give it at least one field")
    if dt.hasobject:
        raise InvalidArgumentError(f"--dtype {spec!r} holds Python objects, which no payload can carry")
    return dt


def _plain(v: Any) -> Any:
    if isinstance(v, bytes):
        return v.rstrip(b"\0").decode("utf-8", "backslashreplace")
    if isinstance(v, tuple):
        return [_plain(x) for x in v]
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return v


def decode_fields(dt: np.dtype, payload: Any) -> dict[str, Any] | None:
    """The fields of ``payload`` as plain Python values (bytes fields as text, NULs stripped);
    None if its size is not ``dt.itemsize``."""
    if len(payload) != dt.itemsize:
        return None
    arr = np.frombuffer(bytes(payload), dt, count=1)
    if dt.names is None:
        return {"value": _plain(arr.tolist()[0])}
    return {name: _plain(arr[name].tolist()[0]) for name in dt.names}


def size_note(dt: np.dtype, n: int) -> str:
    return f"{n} bytes, not the --dtype itemsize {dt.itemsize}"


def _shown(v: Any) -> str:
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False) if not v or " " in v or '"' in v else v
    if isinstance(v, list):
        return json.dumps(v, ensure_ascii=False, separators=(",", ":"))
    return str(v)


def fields_text(fields: dict[str, Any]) -> str:
    """``name=value name=value``: numbers as Python prints them, text bare (quoted if it has spaces)."""
    return " ".join(f"{k}={_shown(v)}" for k, v in fields.items())


class _Missing:
    """A dtype field of a payload that did not decode: ``-`` whatever the format spec."""

    def __format__(self, _spec: str) -> str:
        return "-"

    def __str__(self) -> str:
        return "-"


MISSING = _Missing()


def check_format(template: str, dt: np.dtype | None) -> None:
    """InvalidArgumentError if ``template`` names a field tail does not provide."""
    names = set(BASE_FIELDS)
    if dt is not None:
        names |= set(dt.names or ("value",))
    try:
        used = [f for _lit, f, _spec, _conv in string.Formatter().parse(template) if f is not None]
    except ValueError as e:
        raise InvalidArgumentError(f"--format {template!r} is not a format string: {e}") from None
    for f in used:
        root = f.split(".", 1)[0].split("[", 1)[0]
        if not root or root not in names:
            raise InvalidArgumentError(
                f"--format {template!r} uses {{{f}}}, which is not a field; the fields are "
                + ", ".join("{" + n + "}" for n in sorted(names))
            )


def make_renderer(args: Any) -> Callable[[int, int, int, Any], str]:
    """``render(seq, timestamp_ns, type_id, payload) -> line`` for the options in ``args``:
    ``--json``, ``--width``, ``--dtype``, ``--format`` (see the module notes)."""

    width = args.width if args.width is not None else (None if args.json else 200)
    width = width or None  # 0: no truncation
    dt = parse_dtype(args.dtype) if args.dtype else None
    template = args.format
    if template is not None:
        check_format(template, dt)
    if dt is None and template is None:
        plain = render_json if args.json else render_text
        return lambda seq, ts, type_id, payload: plain(seq, ts, type_id, payload, width)

    def render(seq: int, ts: int, type_id: int, payload: Any) -> str:
        n = len(payload)
        fields = decode_fields(dt, payload) if dt is not None else None
        note = size_note(dt, n) if dt is not None and fields is None else None
        if args.json:
            if fields is None:
                return render_json(seq, ts, type_id, payload, width) if note is None else json.dumps(
                    {"seq": seq, "timestamp_ns": ts, "time": iso_ns(ts), "type_id": type_id, "length": n,
                     "encoding": "hex", "payload": bytes(payload).hex(), "note": note}, ensure_ascii=False)
            return json.dumps({"seq": seq, "timestamp_ns": ts, "time": iso_ns(ts), "type_id": type_id, "length": n,
                               "encoding": "dtype", "payload": fields}, ensure_ascii=False)
        if fields is not None:
            shown = fields_text(fields)
        elif note is not None:
            shown = f"hex:{bytes(payload).hex()} ({note})"
        else:
            shown = shown_payload(payload)
        if template is None:
            line = f"{seq}  {iso_ns(ts) or ts}  type={type_id}  len={n}"
            return f"{line}  {truncate(shown, width, n)}" if shown else line
        values: dict[str, Any] = {"seq": seq, "time": iso_ns(ts) or str(ts), "time_ns": ts, "type": type_id,
                                  "len": n, "payload": truncate(shown, width, n)}
        if dt is not None:
            values.update(fields if fields is not None else dict.fromkeys(dt.names or ("value",), MISSING))
        try:
            return template.format_map(values)
        except (ValueError, TypeError, IndexError, KeyError, AttributeError) as e:
            return f"{seq}  --format failed on this message ({type(e).__name__}: {e}): {shown}"

    return render
