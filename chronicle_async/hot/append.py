"""Jitted append kernels: claim, copy, commit, and a futex wake only if someone waits.

These are the writer's hot path. They are plain functions over two buffers:
``seg`` (the current segment mapping) and ``ctl`` (the control file mapping).
The writer's state (write offset, next seq) lives in the control file's
writer-hot line, so Python ``append`` and jitted ``append`` interleave freely.

Call them from your own ``@numba.njit`` code with a :class:`WriterHandle`
from ``QueueWriter.hot_handle()``::

    h = writer.hot_handle()
    seq = append(h.seg, h.ctl, type_id, payload_u8, timestamp_ns)
    if seq == SEGMENT_FULL:   # leave the jitted loop, call writer.roll(), re-enter
        ...
    if seq == STALE_HANDLE:   # something rolled since the handle was taken: take a new one
        ...

Nothing here allocates, locks, or makes a syscall, except ``futex_wake`` when
the control file's waiter count is non-zero (a reader is parked).
"""
from __future__ import annotations

from collections import namedtuple

from . import layout as L
from . import status
from ._jit import kernel
from .atomics import (
    address_of,
    fence_seq_cst,
    signal_fence_seq_cst,
    load_plain_i64_at,
    load_relaxed_i32_at,
    store_plain_i32_at,
    store_plain_i64_at,
    store_release_i32_at,
    store_release_i64_at,
)
from .checksum import copy_and_adler32_at, header_seed_at
from .syscalls import FUTEX_WAKE, SYS_FUTEX, WAKE_ALL, raw_syscall6

#: What jitted user code needs to append: the segment and control mappings as uint8 arrays.
WriterHandle = namedtuple("WriterHandle", ["seg", "ctl"])

_ALIGN_MASK = ~(L.RECORD_ALIGNMENT - 1)


@kernel(inline="always")
def max_payload(segment_size):
    """Jitted twin of ``layout.max_payload``."""
    return min(
        segment_size - L.RECORD_ALIGNMENT - L.SEGMENT_DATA_OFFSET - L.RECORD_HEADER_LENGTH,
        L.MAX_PAYLOAD_BY_COMMIT_WORD,
    )


@kernel(inline="always")
def waiters_at(ctl_addr):
    """True if a reader is parked: waiters > 0 and their registration has not expired."""
    return load_relaxed_i32_at(ctl_addr + L.CTL_WAITERS_OFFSET) != 0 and load_plain_i64_at(
        ctl_addr + L.CTL_PARK_DEADLINE_NS_OFFSET
    ) >= load_plain_i64_at(ctl_addr + L.CTL_HEARTBEAT_NS_OFFSET)


@kernel(inline="always")
def wake_at(ctl_addr):
    """Bump the futex word and wake every parked reader (a syscall: only when waiters > 0)."""
    word = ctl_addr + L.CTL_NOTIFY_SEQ_OFFSET
    store_release_i32_at(word, load_relaxed_i32_at(word) + 1)
    raw_syscall6(SYS_FUTEX, word, FUTEX_WAKE, WAKE_ALL, 0, 0, 0)


@kernel
def wake_waiters(ctl):
    """``wake_at`` for Python callers holding the control mapping as an array."""
    wake_at(address_of(ctl, 0))


@kernel
def wake_if_waiting(ctl):
    """Wake parked readers if any are registered and unexpired (Python's slow path)."""
    a = address_of(ctl, 0)
    if waiters_at(a):
        wake_at(a)


@kernel(inline="always")
def write_record_at(rec_addr, type_id, seq, timestamp_ns, src_addr, n):
    """Write one record's header (all but the commit word) and payload at address ``rec_addr``."""
    store_plain_i32_at(rec_addr + L.REC_TYPE_ID_OFFSET, type_id)
    store_plain_i64_at(rec_addr + L.REC_SEQ_OFFSET, seq)
    store_plain_i64_at(rec_addr + L.REC_TIMESTAMP_OFFSET, timestamp_ns)
    store_plain_i32_at(rec_addr + L.REC_LENGTH_OFFSET, n)
    seed = header_seed_at(rec_addr, L.SEGMENT_VERSION)  # the writer only appends to current-version segments
    checksum = copy_and_adler32_at(rec_addr + L.RECORD_HEADER_LENGTH, src_addr, n, True, seed)
    store_plain_i32_at(rec_addr + L.REC_CHECKSUM_OFFSET, checksum)


@kernel(inline="always")
def append_at(seg_addr, seg_size, ctl_addr, type_id, src_addr, n, timestamp_ns):
    """Append ``n`` bytes at ``src_addr`` as one message. Returns its seq or a status code.

    Works on raw addresses only. Arrays flowing through inlined numba code carry
    reference counts, and their atomic updates would cost more than the append.
    """
    off = load_plain_i64_at(ctl_addr + L.CTL_WRITE_OFFSET_OFFSET)
    rec = (L.RECORD_HEADER_LENGTH + n + L.RECORD_ALIGNMENT - 1) & _ALIGN_MASK
    if load_plain_i64_at(seg_addr + L.SEG_ID_OFFSET) != load_plain_i64_at(ctl_addr + L.CTL_WRITE_SEGMENT_OFFSET):
        result = status.STALE_HANDLE
    elif type_id < 0 or type_id > L.MAX_TYPE_ID:
        result = status.BAD_TYPE_ID
    elif n > max_payload(seg_size):
        result = status.PAYLOAD_TOO_LARGE
    elif off + rec > seg_size - L.RECORD_ALIGNMENT:
        result = status.SEGMENT_FULL
    else:
        result = load_plain_i64_at(ctl_addr + L.CTL_NEXT_SEQ_OFFSET)
        write_record_at(seg_addr + off, type_id, result, timestamp_ns, src_addr, n)
        # Commit: a release store. The waiter check after it needs StoreLoad order against a
        # parking reader; the compiler barrier keeps program order here and the reader's
        # membarrier(GLOBAL_EXPEDITED) supplies the CPU fence (docs/format.md, "Waking").
        store_release_i32_at(seg_addr + off + L.REC_COMMIT_OFFSET, n + 1)
        store_release_i64_at(ctl_addr + L.CTL_WRITE_OFFSET_OFFSET, off + rec)
        store_release_i64_at(ctl_addr + L.CTL_NEXT_SEQ_OFFSET, result + 1)
        signal_fence_seq_cst()
        if waiters_at(ctl_addr):
            wake_at(ctl_addr)
    return result


@kernel(inline="always")
def append_from(seg, ctl, type_id, src, src_off, n, timestamp_ns):
    """Append ``src[src_off:src_off + n]`` as one message. Returns its seq or a status code."""
    return append_at(address_of(seg, 0), seg.shape[0], address_of(ctl, 0), type_id, address_of(src, src_off), n, timestamp_ns)


@kernel(inline="always")
def append(seg, ctl, type_id, payload, timestamp_ns):
    """Append a whole ``uint8`` array as one message. Returns its seq or a status code."""
    return append_at(address_of(seg, 0), seg.shape[0], address_of(ctl, 0), type_id, address_of(payload, 0), payload.shape[0], timestamp_ns)


@kernel
def append_batch(seg, ctl, type_ids, data, offsets, timestamps, start):
    """Append messages ``start..`` of a batch until done or the segment is full.

    Message ``i`` is ``data[offsets[i]:offsets[i + 1]]`` with ``type_ids[i]`` and
    ``timestamps[i]``. Returns how many messages were appended (possibly 0 when
    the segment is full), or a negative status for a bad message; the caller
    rolls and calls again from ``start + returned``. One waiter check and at
    most one wake cover the whole batch.
    """
    count = len(offsets) - 1
    size = seg.shape[0]
    seg_addr = address_of(seg, 0)
    ctl_addr = address_of(ctl, 0)
    data_addr = address_of(data, 0)
    limit = size - L.RECORD_ALIGNMENT
    off = load_plain_i64_at(ctl_addr + L.CTL_WRITE_OFFSET_OFFSET)
    seq = load_plain_i64_at(ctl_addr + L.CTL_NEXT_SEQ_OFFSET)
    maxp = max_payload(size)
    done = 0
    i = start
    if load_plain_i64_at(seg_addr + L.SEG_ID_OFFSET) != load_plain_i64_at(ctl_addr + L.CTL_WRITE_SEGMENT_OFFSET):
        i = count
        done = status.STALE_HANDLE
    while i < count:
        type_id = type_ids[i]
        a = offsets[i]
        n = offsets[i + 1] - a
        if type_id < 0 or type_id > L.MAX_TYPE_ID:
            done = status.BAD_TYPE_ID if done == 0 else done
            break
        if n > maxp:
            done = status.PAYLOAD_TOO_LARGE if done == 0 else done
            break
        rec = (L.RECORD_HEADER_LENGTH + n + L.RECORD_ALIGNMENT - 1) & _ALIGN_MASK
        if off + rec > limit:
            break
        write_record_at(seg_addr + off, type_id, seq, timestamps[i], data_addr + a, n)
        store_release_i32_at(seg_addr + off + L.REC_COMMIT_OFFSET, n + 1)
        off += rec
        seq += 1
        done += 1
        i += 1
    store_release_i64_at(ctl_addr + L.CTL_WRITE_OFFSET_OFFSET, off)
    store_release_i64_at(ctl_addr + L.CTL_NEXT_SEQ_OFFSET, seq)
    fence_seq_cst()  # StoreLoad: the commits above before the waiter check below
    if waiters_at(ctl_addr):
        wake_at(ctl_addr)
    return done
