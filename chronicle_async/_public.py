"""Where a public object says it lives: the one helper every public ``__init__`` calls."""
from __future__ import annotations

from typing import Any, Iterable


def claim(module_name: str, namespace: dict[str, Any], names: Iterable[str]) -> None:
    """Make each object of ``names`` in ``namespace`` report ``module_name`` as its module, so that
    tracebacks, ``repr`` and docs show its one public path, not the private module defining it."""
    for name in names:
        obj = namespace[name]
        if getattr(obj, "__module__", "").startswith("chronicle_async."):
            try:
                obj.__module__ = module_name
            except (AttributeError, TypeError):  # a function or type that does not allow it
                pass
