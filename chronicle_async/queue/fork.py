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
from typing import Callable

from .._errors import ForkError

#: The hooks of the open objects, by the object's id; held weakly, so tracking keeps nothing alive.
_hooks: "dict[int, weakref.WeakMethod]" = {}


def track(hook: Callable[[], None]) -> None:
    """Call ``hook`` (a bound method of an open object, held weakly) in a child made by ``fork()``.

    The hook switches its object off without touching what the parent still uses: it closes no
    mapping and commits nothing, and makes every later use raise :class:`ForkError`.
    """
    key = id(hook.__self__)  # type: ignore[attr-defined]
    _hooks[key] = weakref.WeakMethod(hook, lambda _ref, key=key: _hooks.pop(key, None))  # type: ignore[arg-type]


def _in_child() -> None:
    # Every live hook is taken first, so no object is collected (its hook lost) while another's runs.
    hooks = [h for h in (ref() for ref in list(_hooks.values())) if h is not None]
    _hooks.clear()
    for hook in hooks:
        try:
            hook()
        except Exception:  # noqa: BLE001 - never let one object break the child's start
            pass


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
