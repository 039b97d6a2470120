"""Load the wake and park kernels when a queue is opened, never on the way to a wake.

numba compiles a kernel (or loads it from its on-disk cache) the first time a
process calls it. The wait and wake kernels are first called when a reader is
already waiting: a writer's first ``futex_wake``, a reader's first park, the
asyncio waker thread's first ``futex_waitv``. Compiling there holds up that
wake by the compile time, 0.3–0.8 s with a cold cache, which looks exactly like
a wait that ran out its park slice (issue 9). So ``open_publisher`` and every
reader's open call :func:`warm_writer` / :func:`warm_waiters` first: a few
milliseconds once per process with a warm cache, the compile itself once per
installation otherwise. After that no wait or wake compiles anything; the tests
count compiled signatures to hold that.

The calls below use scratch buffers of exactly the types the real callers pass
(writable C-contiguous ``uint8`` mappings, ``int64`` tables), so the
specialisations they load are the ones the wait path uses.
"""
from __future__ import annotations

import threading

import numpy as np

from .ring import SpscRing
from ..hot import append as AP
from ..hot import layout as L
from ..hot import tables as T
from ..hot import loop as K
from ..hot import ring as RG
from ..hot import wait as W

_lock = threading.Lock()
_writer_done = False
_waiters_done = False

#: The kernels each side calls while waiting or waking (tests count their compiled signatures).
WRITER_KERNELS = (AP.wake_if_waiting, AP.wake_waiters)
WAITER_KERNELS = (W.register_waiter, W.extend_park_deadline, W.notify_word, W.futex_wait, W.membarrier,
                  K.py_park, RG.py_push, RG.py_pop)


def _ctl_like() -> np.ndarray:
    """A scratch buffer typed like a control mapping (``np.frombuffer`` of a writable mmap)."""
    return np.zeros(L.CONTROL_FILE_LENGTH, np.uint8)


def warm_writer() -> None:
    """Load the writer's wake kernels (once per process)."""
    global _writer_done
    if _writer_done:
        return
    with _lock:
        if not _writer_done:
            ctl = _ctl_like()
            AP.wake_if_waiting(ctl)  # no waiters in the scratch word: no syscall
            AP.wake_waiters(ctl)  # a FUTEX_WAKE on a private scratch word nobody waits on
            _writer_done = True


def warm_waiters() -> None:
    """Load every park kernel: ``QueueReader.wait``, ``FanInReader.wait`` and the asyncio waker (once per process)."""
    global _waiters_done
    if _waiters_done:
        return
    with _lock:
        if _waiters_done:
            return
        ctl = _ctl_like()
        W.register_waiter(ctl, 0)
        W.extend_park_deadline(ctl, 0)
        seen = W.notify_word(ctl)
        W.futex_wait(ctl, seen + 1, np.zeros(2, np.int64))  # the word differs: EAGAIN at once, no sleep
        W.membarrier(W.MEMBARRIER_CMD_QUERY)
        ring = SpscRing(16, L.RING_SLOT_ALIGNMENT)
        sink = np.zeros(ring.slot_size, np.uint8)
        RG.py_push(ring.buffer, np.zeros(8, np.uint8), True)  # a pushed slot: the park below returns at once
        K.py_park(np.zeros((0, T.SRC_FIELDS), np.int64), ring.buffer, np.zeros(T.SCRATCH_LENGTH, np.uint8), 0)
        while RG.py_pop(ring.buffer, sink):
            pass
        ring.close()
        _waiters_done = True
