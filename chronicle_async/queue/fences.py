"""Platform facts the Python face needs: store ordering, and the asymmetric fence."""
from __future__ import annotations

import platform

from ..hot import wait as W
from ..hot.syscalls import HAVE_RAW_SYSCALL

#: x86-64 is total-store-order: stores from the pure-Python fast paths become visible in
#: program order, so a plain store of the commit word is a release store. Elsewhere the
#: Python face commits through a jitted release store instead.
TSO = platform.machine() in ("x86_64", "AMD64", "i686", "i386")

_registered: bool | None = None


def asymmetric_fence_register() -> bool:
    """Register this process for ``membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED)`` (once).

    When registered, a parking reader's membarrier forces a full fence on this
    process's threads, which is what lets the writer check the waiter count
    after its commit store without a fence of its own (see docs/format.md).
    """
    global _registered
    if _registered is None:
        ok = False
        if HAVE_RAW_SYSCALL:
            mask = W.membarrier(W.MEMBARRIER_CMD_QUERY)
            if mask > 0 and mask & W.MEMBARRIER_CMD_GLOBAL_EXPEDITED:
                ok = W.membarrier(W.MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED) == 0
        _registered = ok
    return _registered


def asymmetric_fence() -> bool:
    """Issue the heavy side of the asymmetric fence; False if the kernel refused."""
    return HAVE_RAW_SYSCALL and W.membarrier(W.MEMBARRIER_CMD_GLOBAL_EXPEDITED) == 0
