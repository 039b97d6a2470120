"""Park and wake on the control file's futex word, and the asymmetric fence.

Waiting protocol (reader side, only when idle; see docs/format.md, "Waking"):

1. ``waiters += 1`` (seq_cst RMW), and ``park_deadline_ns = max(it, now + slice)``,
2. if the writer set ``WRITER_FLAG_ASYMMETRIC_FENCE``: ``membarrier(GLOBAL_EXPEDITED)``,
3. ``seen = notify_seq`` (acquire),
4. re-check for data; if there is some, ``waiters -= 1`` and return,
5. ``futex_wait(&notify_seq, seen, timeout)``, then ``waiters -= 1``.

Writer side, after each commit: load ``waiters``; if non-zero and
``park_deadline_ns >= heartbeat_ns``, bump ``notify_seq`` and ``futex_wake``
(``append.wake_waiters``). Parks last at most one slice (``PARK_SLICE_S``), so
a reader killed while parked stops costing the writer wake-ups within a slice.
"""
from __future__ import annotations

from . import layout as L
from ._jit import kernel
from .atomics import address_of, fetch_add_seq_cst_i32, fetch_max_seq_cst_i64, load_acquire_i32
from .syscalls import FUTEX_WAIT, SYS_FUTEX, SYS_MEMBARRIER, raw_syscall6

MEMBARRIER_CMD_QUERY = 0
MEMBARRIER_CMD_GLOBAL_EXPEDITED = 1 << 1
MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED = 1 << 2

#: Longest single futex sleep of a parked reader; each slice re-registers it.
PARK_SLICE_S = 1.0

EAGAIN = 11
ETIMEDOUT = 110
EINTR = 4


@kernel
def register_waiter(ctl, delta):
    """``waiters += delta`` (seq_cst); returns the previous count."""
    return fetch_add_seq_cst_i32(ctl, L.CTL_WAITERS_OFFSET, delta)


@kernel
def extend_park_deadline(ctl, until_ns):
    """``park_deadline_ns = max(park_deadline_ns, until_ns)`` (seq_cst)."""
    return fetch_max_seq_cst_i64(ctl, L.CTL_PARK_DEADLINE_NS_OFFSET, until_ns)


@kernel
def notify_word(ctl):
    return load_acquire_i32(ctl, L.CTL_NOTIFY_SEQ_OFFSET)


@kernel
def futex_wait(ctl, expected, timespec):
    """Sleep while ``notify_seq == expected``; ``timespec`` is int64[2] (sec, nsec) or empty for none.

    Returns 0 on wake, or a negative errno (EAGAIN: the word had already moved;
    ETIMEDOUT; EINTR). All of these mean "look again".
    """
    ts_addr = address_of(timespec, 0) if timespec.shape[0] == 2 else 0
    return raw_syscall6(SYS_FUTEX, address_of(ctl, L.CTL_NOTIFY_SEQ_OFFSET), FUTEX_WAIT, expected, ts_addr, 0, 0)


@kernel
def membarrier(cmd):
    """``membarrier(cmd, 0, 0)``: the raw result (negative errno on failure)."""
    return raw_syscall6(SYS_MEMBARRIER, cmd, 0, 0, 0, 0, 0)
