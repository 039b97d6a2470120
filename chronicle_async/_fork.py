"""Objects that hold queue files refuse to be used in a child process after ``fork()``.

A forked child inherits the parent's mappings and, through them, the parent's roles: an
inherited writer would append beside the parent with no lock (duplicate seqs, lost records),
its ``close()`` would mark the queue closed while the parent writes, and an inherited named
reader's ``commit()`` would move the parent's position. So every writer, reader and HotLoop
registers here when it opens, and in a child each is switched off at once (``after_in_child``):
any use raises :class:`~chronicle_async.ForkError`, and ``close()`` does nothing, leaving the
files and the parent's state alone. The check costs nothing per message: the objects' views
are swapped for stand-ins that raise, as ``close()`` does.

Open queues again in the child after the fork, or start children with the ``spawn`` method.
"""
from __future__ import annotations

import os
import weakref
from typing import Any

from ._errors import ForkError

_tracked: "weakref.WeakSet[Any]" = weakref.WeakSet()


def track(obj: Any) -> None:
    """Register an open object; it must have ``_forget_in_child()``."""
    _tracked.add(obj)


def _in_child() -> None:
    for obj in list(_tracked):
        try:
            obj._forget_in_child()
        except Exception:  # noqa: BLE001 - never let one object break the child's start
            pass
    _tracked.clear()


def error(what: str, path: str) -> ForkError:
    return ForkError(
        f"{what} of {path} was opened in process {_parent_hint()} and inherited through fork(); it cannot be "
        "used in this child (it would share the parent's lock, mappings and positions): open it again in the "
        "child, or start children with multiprocessing's 'spawn' method"
    )


def _parent_hint() -> str:
    return f"{os.getppid()} (this one is {os.getpid()})"


class ForkedView:
    """Stands in for an inherited object's mappings in a child: any use raises ForkError."""

    __slots__ = ("_error",)

    def __init__(self, err: ForkError):
        self._error = err

    def __getitem__(self, _key: object) -> int:
        raise self._error

    __setitem__ = __getitem__  # type: ignore[assignment]


os.register_at_fork(after_in_child=_in_child)
