"""Build docs/api.md from the docstrings of the public names.

Run ``python scripts/gen_api_docs.py`` after changing a public docstring or signature;
``tests/test_api_docs.py`` fails when docs/api.md is out of date.
"""
from __future__ import annotations

import enum
import inspect
import pathlib
import sys
from types import ModuleType
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "api.md"

#: (module, names, heading, intro) for each section; names None = the module's __all__.
SECTIONS: list[tuple[str, list[str] | None, str, str]] = [
    ("chronicle_async", None, "chronicle_async",
     "The queue, its readers and writers, their options and liveness, and every error: "
     "`from chronicle_async import ...`. `import chronicle_async` loads no asyncio, watchfiles, pandas or hot loop."),
    ("chronicle_async.loop", None, "chronicle_async.loop",
     "Consumers of many cursors: the hot loop on a pinned thread, the fan-in reader, the SPSC ring and the "
     "idle strategies. Also reachable as `chronicle_async.X`, loaded on first use."),
    ("chronicle_async.control", None, "chronicle_async.control",
     "The asyncio control plane. Its names (all but `run` and `next_async`) are also reachable as "
     "`chronicle_async.X`, loaded on first use."),
    ("chronicle_async.frames", None, "chronicle_async.frames",
     "Queues as numpy arrays and pandas frames, and plots, for notebooks. The `read_*` and `plot_*` names "
     "are also reachable as `chronicle_async.X`, loaded on first use."),
    ("chronicle_async.hot.append", ["append", "append_from", "append_batch", "WriterHandle"], "chronicle_async.hot.append",
     "Jitted append kernels for your own `@numba.njit` code (see `QueueWriter.hot_handle`)."),
    ("chronicle_async.hot.read", ["read_next", "peek"], "chronicle_async.hot.read",
     "Jitted read kernels."),
    ("chronicle_async.hot.loop", ["emit", "param", "log", "clock", "YIELD"], "chronicle_async.hot.loop",
     "What a `HotLoop` handler may call."),
    ("chronicle_async.hot.ring", ["try_push", "try_pop", "claim_at", "publish_at", "peek_at", "consume_at",
                                  "push_or_drop_at"], "chronicle_async.hot.ring",
     "SPSC ring kernels for jitted producers and consumers (`SpscRing.buffer`)."),
    ("chronicle_async.hot.status", None, "chronicle_async.hot.status",
     "Status codes returned by the kernels (negative values)."),
]


def _doc(obj: Any) -> str:
    d = inspect.getdoc(obj) or ""
    return d.strip()


def _sig(obj: Any) -> str:
    target = getattr(obj, "py_func", obj)  # numba dispatchers
    try:
        return str(inspect.signature(target))
    except (TypeError, ValueError):
        return "(...)"


def _members(cls: type) -> list[tuple[str, Any]]:
    out = []
    for name, member in vars(cls).items():
        if name.startswith("_") and name not in ("__aiter__", "__enter__", "__aenter__", "__len__"):
            continue
        if name.startswith("__") and name not in ("__aiter__", "__len__"):
            continue
        out.append((name, member))
    return out


def _render_class(name: str, cls: type, lines: list[str]) -> None:
    kind = "enum" if issubclass(cls, enum.Enum) else ("exception" if issubclass(cls, BaseException) else "class")
    sig = "" if kind != "class" else _sig(cls)
    lines += [f"### `{name}{sig}`", "", f"*{kind}*", ""]
    if _doc(cls):
        lines += [_doc(cls), ""]
    if issubclass(cls, enum.Enum):
        lines += ["| member | value |", "| --- | --- |"]
        lines += [f"| `{m.name}` | `{m.value!r}` |" for m in cls]
        lines.append("")
        return
    if hasattr(cls, "_fields") and isinstance(getattr(cls, "_fields"), tuple):  # NamedTuple
        lines += ["Fields: " + ", ".join(f"`{f}`" for f in cls._fields), ""]
    for mname, member in _members(cls):
        if isinstance(member, property):
            lines += [f"- **`{mname}`** (property): {(_doc(member) or '').splitlines()[0] if _doc(member) else ''}".rstrip()]
        elif isinstance(member, (staticmethod, classmethod)):
            fn = member.__func__
            lines += [f"- **`{mname}{_sig(fn)}`** ({type(member).__name__}): {_first(fn)}".rstrip()]
        elif callable(member):
            lines += [f"- **`{mname}{_sig(member)}`**: {_first(member)}".rstrip()]
    lines.append("")


def _first(obj: Any) -> str:
    d = _doc(obj)
    return d.split("\n\n")[0].replace("\n", " ") if d else ""


def _render(mod: ModuleType, names: list[str], lines: list[str]) -> None:
    for name in names:
        obj = getattr(mod, name)
        if isinstance(obj, type):
            _render_class(name, obj, lines)
        elif callable(obj):
            lines += [f"### `{name}{_sig(obj)}`", ""]
            if _doc(getattr(obj, "py_func", obj)):
                lines += [_doc(getattr(obj, "py_func", obj)), ""]
        else:
            lines += [f"### `{name} = {obj!r}`", ""]


def build() -> str:
    import importlib

    lines = [
        "# API reference",
        "",
        "Generated from the docstrings by `python scripts/gen_api_docs.py`; `tests/test_api_docs.py`",
        "fails when this file is out of date. Guides: README.md, docs/hot-loop.md, docs/control-plane.md.",
        "",
    ]
    for modname, names, heading, intro in SECTIONS:
        mod = importlib.import_module(modname)
        if names is None:
            names = list(getattr(mod, "__all__", None) or [n for n in vars(mod) if n.isupper()])
        lines += [f"## {heading}", "", intro, ""]
        if modname == "chronicle_async.hot.status":
            lines += ["| code | value | meaning |", "| --- | --- | --- |"]
            src = inspect.getsource(mod).splitlines()
            for n in names:
                v = getattr(mod, n)
                if not isinstance(v, int):
                    continue
                comment = ""
                for i, line in enumerate(src):
                    if line.startswith(f"{n} ="):
                        j = i - 1
                        parts = []
                        while j >= 0 and src[j].startswith("#:"):
                            parts.insert(0, src[j][2:].strip())
                            j -= 1
                        comment = " ".join(parts)
                lines.append(f"| `{n}` | {v} | {comment} |")
            lines.append("")
            continue
        _render(mod, sorted(names, key=str.lower), lines)
    return "\n".join(lines).rstrip() + "\n"


def main() -> int:
    text = build()
    if "--check" in sys.argv:
        return 0 if OUT.exists() and OUT.read_text() == text else 1
    OUT.write_text(text)
    print(f"wrote {OUT.relative_to(ROOT)} ({len(text.splitlines())} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
