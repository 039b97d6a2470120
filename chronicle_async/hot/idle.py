"""Idle kernels of the hot loop: yield, and park on many futex words at once.

Only an idle loop calls these (a pass that found no message and no command).
``park_many`` sleeps in one ``futex_waitv(2)`` (Linux 5.16+) on the loop's
command-ring doorbell and on the futex word of every queue it reads, so one
thread sleeps on N queues and wakes on whichever is written first. Each queue
sees the loop as an ordinary parked reader (docs/format.md, "Waking"): waiter
count, expiring park deadline, membarrier when the writer asks for it.
Where ``futex_waitv`` is missing (``-ENOSYS``), it sleeps on the doorbell alone
for at most ``FALLBACK_PARK_NS``, so a write is noticed within a millisecond.
"""
from __future__ import annotations

from . import layout as L

from . import tables as T
from ._jit import kernel
from .atomics import (
    fence_seq_cst,
    fetch_add_seq_cst_i32_at,
    fetch_max_seq_cst_i64_at,
    load_acquire_i32_at,
    load_plain_i64_at,
    load_relaxed_i32_at,
    store_plain_i64_at,
    store_relaxed_i32_at,
)
from .ring import peek_at
from .syscalls import (
    FUTEX_WAIT,
    SYS_CLOCK_GETTIME,
    SYS_FUTEX,
    SYS_FUTEX_WAITV,
    SYS_MEMBARRIER,
    SYS_SCHED_YIELD,
    raw_syscall6,
)
from .wait import EAGAIN, ETIMEDOUT, MEMBARRIER_CMD_GLOBAL_EXPEDITED
FUTEX2_SIZE_U32 = 0x02
CLOCK_REALTIME = 0
CLOCK_MONOTONIC = 1
ENOSYS = 38
#: Longest sleep without futex_waitv: the loop then polls its queues this often.
FALLBACK_PARK_NS = 1_000_000

# How a park ended (``park_many``'s result). Callers count them: a wait must end at a wake,
# never at the slice while data was there, and a test can assert that on the counts.
PARK_READY = 0  # work was already there after registering: no sleep
PARK_WOKEN = 1  # a futex wake: a writer's commit, a doorbell ring
PARK_MOVED = 2  # a watched word moved between sampling and sleeping (EAGAIN): a wake that raced the sleep
PARK_SLICE = 3  # the slice ran out with nothing to read: an idle timeout
PARK_MISSED = 4  # the slice ran out although data or a command was there: a lost wake-up (a bug)
PARK_POLLED = 5  # a short polling sleep ran out (a source that cannot wake us, or no futex_waitv)
PARK_INTERRUPTED = 6  # EINTR or another error: look again
PARK_OUTCOMES = 7


@kernel(inline="always")
def sched_yield():
    return raw_syscall6(SYS_SCHED_YIELD, 0, 0, 0, 0, 0, 0)


@kernel(inline="always")
def clock_ns(clock_id, ts_addr):
    """``clock_gettime(clock_id)`` in ns, using 16 bytes of scratch at ``ts_addr``."""
    raw_syscall6(SYS_CLOCK_GETTIME, clock_id, ts_addr, 0, 0, 0, 0)
    return load_plain_i64_at(ts_addr + T.TIMESPEC_SEC_OFFSET) * 1_000_000_000 + load_plain_i64_at(ts_addr + T.TIMESPEC_NSEC_OFFSET)


@kernel(inline="always")
def _set_entry(waitv_addr, i, word_addr, value):
    e = waitv_addr + i * T.FUTEX_WAITV_LENGTH
    # The kernel compares a u32 word and rejects (EINVAL) a val above 2**32 - 1: never sign-extend.
    store_plain_i64_at(e + T.FUTEX_WAITV_VAL_OFFSET, value & 0xFFFFFFFF)
    store_plain_i64_at(e + T.FUTEX_WAITV_UADDR_OFFSET, word_addr)
    store_plain_i64_at(e + T.FUTEX_WAITV_FLAGS_OFFSET, FUTEX2_SIZE_U32)  # flags u32 + reserved u32 = 0


@kernel(inline="always")
def _has_data(sources):
    for i in range(sources.shape[0]):
        if sources[i, T.SRC_STATE] == T.SRC_ACTIVE:
            if load_acquire_i32_at(sources[i, T.SRC_SEG_ADDR] + sources[i, T.SRC_OFFSET]) != 0:
                return True
    return False


@kernel(inline="always")
def park_many(sources, ring_addr, scratch_addr, waitv_addr, park_ns):
    """Sleep until the command ring or any active source is written, or ``park_ns`` passes.

    ``scratch_addr``: 16 bytes for a timespec; ``waitv_addr``: room for
    ``FUTEX_WAITV_MAX`` entries. Returns how the park ended, a ``PARK_*`` code.
    """
    n_src = sources.shape[0]
    polling = False
    # 1. register as a waiter on every queue, with an expiring deadline
    until = clock_ns(CLOCK_REALTIME, scratch_addr) + park_ns + 1
    need_fence = False
    for i in range(n_src):
        if sources[i, T.SRC_STATE] == T.SRC_ACTIVE and sources[i, T.SRC_CAN_PARK] == 0:
            park_ns = min(park_ns, FALLBACK_PARK_NS)  # a read-only queue cannot wake us: poll it
            polling = True
        if sources[i, T.SRC_STATE] == T.SRC_ACTIVE and sources[i, T.SRC_CAN_PARK] != 0:
            ctl = sources[i, T.SRC_CTL_ADDR]
            fetch_add_seq_cst_i32_at(ctl + L.CTL_WAITERS_OFFSET, 1)
            fetch_max_seq_cst_i64_at(ctl + L.CTL_PARK_DEADLINE_NS_OFFSET, until)
            if load_relaxed_i32_at(ctl + L.CTL_WRITER_FLAGS_OFFSET) & L.WRITER_FLAG_ASYMMETRIC_FENCE:
                need_fence = True
    store_relaxed_i32_at(ring_addr + L.RING_PARKED_OFFSET, 1)
    fence_seq_cst()
    if need_fence:  # the writers skip their fence; this supplies it (docs/format.md, "Waking")
        raw_syscall6(SYS_MEMBARRIER, MEMBARRIER_CMD_GLOBAL_EXPEDITED, 0, 0, 0, 0, 0)
    # 2. what each word holds now, then look once more for work
    n = 0
    bell = ring_addr + L.RING_DOORBELL_OFFSET
    _set_entry(waitv_addr, n, bell, load_acquire_i32_at(bell))
    n += 1
    for i in range(n_src):
        if n >= T.FUTEX_WAITV_MAX:
            park_ns = min(park_ns, FALLBACK_PARK_NS)  # more queues than one call can watch: poll
            polling = True
            break
        if sources[i, T.SRC_STATE] == T.SRC_ACTIVE and sources[i, T.SRC_CAN_PARK] != 0:
            word = sources[i, T.SRC_CTL_ADDR] + L.CTL_NOTIFY_SEQ_OFFSET
            _set_entry(waitv_addr, n, word, load_acquire_i32_at(word))
            n += 1
    result = PARK_READY
    if peek_at(ring_addr) == 0 and not _has_data(sources):
        # 3. sleep (absolute CLOCK_MONOTONIC deadline)
        deadline = clock_ns(CLOCK_MONOTONIC, scratch_addr) + park_ns
        store_plain_i64_at(scratch_addr + T.TIMESPEC_SEC_OFFSET, deadline // 1_000_000_000)
        store_plain_i64_at(scratch_addr + T.TIMESPEC_NSEC_OFFSET, deadline % 1_000_000_000)
        r = raw_syscall6(SYS_FUTEX_WAITV, waitv_addr, n, 0, scratch_addr, CLOCK_MONOTONIC, 0)
        if r == -ENOSYS:
            polling = True
            store_plain_i64_at(scratch_addr + T.TIMESPEC_SEC_OFFSET, 0)
            store_plain_i64_at(scratch_addr + T.TIMESPEC_NSEC_OFFSET, min(park_ns, FALLBACK_PARK_NS))
            r = raw_syscall6(SYS_FUTEX, bell, FUTEX_WAIT, load_plain_i64_at(waitv_addr) & 0xFFFFFFFF, scratch_addr, 0, 0)
        if r >= 0:
            result = PARK_WOKEN
        elif r == -EAGAIN:
            result = PARK_MOVED
        elif r == -ETIMEDOUT and polling:
            result = PARK_POLLED
        elif r == -ETIMEDOUT:
            # Nothing woke us for a whole slice. If data or a command is there now, a wake was lost.
            result = PARK_MISSED if (peek_at(ring_addr) != 0 or _has_data(sources)) else PARK_SLICE
        else:
            result = PARK_INTERRUPTED
    # 4. deregister
    store_relaxed_i32_at(ring_addr + L.RING_PARKED_OFFSET, 0)
    for i in range(n_src):
        if sources[i, T.SRC_STATE] == T.SRC_ACTIVE and sources[i, T.SRC_CAN_PARK] != 0:
            fetch_add_seq_cst_i32_at(sources[i, T.SRC_CTL_ADDR] + L.CTL_WAITERS_OFFSET, -1)
    return result


@kernel
def futex_waitv_supported():
    """True if this kernel has futex_waitv (a call with no entries fails with EINVAL, not ENOSYS)."""
    return raw_syscall6(SYS_FUTEX_WAITV, 0, 0, 0, 0, 0, 0) != -ENOSYS
