"""Bounded, lock-free, single-producer single-consumer ring of fixed-size slots (kernels).

The layout is in ``layout.py`` (``RING_*``). Exactly one thread (or process) may
produce and exactly one may consume; several producers must be serialised onto
one (the control plane does that for the hot loop's command ring).

Memory order of each word (docs/format.md, "SPSC rings"):

=============  ==========  ===============================================================
word           written by  access
=============  ==========  ===============================================================
tail           producer    release store after the slot is written; consumer loads acquire
head           consumer    release store after the slot is read; producer loads acquire
head_cache     producer    plain (private): the producer reloads ``head`` only when the
                           cached copy says the ring is full
tail_cache     consumer    plain (private): reloaded from ``tail`` only when it looks empty
dropped        producer    release store; anyone loads relaxed
doorbell       producer    relaxed bump, then ``FUTEX_WAKE``, only if ``parked`` is set
parked         consumer    relaxed store, then a full fence (Dekker pair with the producer's
                           fence between its ``tail`` store and its ``parked`` load)
=============  ==========  ===============================================================

Kernels work on the ring's base address (``ring_addr``) so they inline into
callers' loops without reference-count traffic. Results are addresses of a
slot, or 0 for "full" (producer) and "empty" (consumer): never an exception.
"""
from __future__ import annotations

from . import layout as L
from ._jit import kernel
from .atomics import (
    address_of,
    fence_seq_cst,
    load_acquire_i64_at,
    load_plain_i64_at,
    load_plain_u8_at,
    load_relaxed_i32_at,
    store_plain_i64_at,
    store_plain_u8_at,
    store_release_i64_at,
    store_relaxed_i32_at,
)
from .syscalls import FUTEX_WAKE, SYS_FUTEX, WAKE_ALL, raw_syscall6


@kernel(inline="always")
def capacity_at(ring_addr):
    return load_plain_i64_at(ring_addr + L.RING_CAPACITY_OFFSET)


@kernel(inline="always")
def slot_size_at(ring_addr):
    return load_plain_i64_at(ring_addr + L.RING_SLOT_SIZE_OFFSET)


@kernel(inline="always")
def claim_at(ring_addr):
    """Producer: address of the next free slot, or 0 if the ring is full. Publish with ``publish_at``."""
    cap = load_plain_i64_at(ring_addr + L.RING_CAPACITY_OFFSET)
    tail = load_plain_i64_at(ring_addr + L.RING_TAIL_OFFSET)
    result = 0
    if tail - load_plain_i64_at(ring_addr + L.RING_HEAD_CACHE_OFFSET) >= cap:
        head = load_acquire_i64_at(ring_addr + L.RING_HEAD_OFFSET)
        store_plain_i64_at(ring_addr + L.RING_HEAD_CACHE_OFFSET, head)
        if tail - head >= cap:
            return result
    size = load_plain_i64_at(ring_addr + L.RING_SLOT_SIZE_OFFSET)
    result = ring_addr + L.RING_SLOTS_OFFSET + (tail & (cap - 1)) * size
    return result


@kernel(inline="always")
def publish_at(ring_addr):
    """Producer: make the claimed slot visible to the consumer (release)."""
    tail = load_plain_i64_at(ring_addr + L.RING_TAIL_OFFSET)
    store_release_i64_at(ring_addr + L.RING_TAIL_OFFSET, tail + 1)


@kernel(inline="always")
def peek_at(ring_addr):
    """Consumer: address of the oldest full slot, or 0 if the ring is empty. Free it with ``consume_at``."""
    head = load_plain_i64_at(ring_addr + L.RING_HEAD_OFFSET)
    result = 0
    if head >= load_plain_i64_at(ring_addr + L.RING_TAIL_CACHE_OFFSET):
        tail = load_acquire_i64_at(ring_addr + L.RING_TAIL_OFFSET)
        store_plain_i64_at(ring_addr + L.RING_TAIL_CACHE_OFFSET, tail)
        if head >= tail:
            return result
    cap = load_plain_i64_at(ring_addr + L.RING_CAPACITY_OFFSET)
    size = load_plain_i64_at(ring_addr + L.RING_SLOT_SIZE_OFFSET)
    result = ring_addr + L.RING_SLOTS_OFFSET + (head & (cap - 1)) * size
    return result


@kernel(inline="always")
def consume_at(ring_addr):
    """Consumer: hand the slot returned by ``peek_at`` back to the producer (release)."""
    head = load_plain_i64_at(ring_addr + L.RING_HEAD_OFFSET)
    store_release_i64_at(ring_addr + L.RING_HEAD_OFFSET, head + 1)


@kernel(inline="always")
def size_at(ring_addr):
    """Slots in use, as seen from any thread (approximate while both sides run)."""
    return load_acquire_i64_at(ring_addr + L.RING_TAIL_OFFSET) - load_acquire_i64_at(ring_addr + L.RING_HEAD_OFFSET)


@kernel(inline="always")
def copy_bytes_at(dst, src, n):
    """Copy ``n`` bytes, eight at a time while it can (slots are 8-byte aligned)."""
    i = 0
    while i + 8 <= n:
        store_plain_i64_at(dst + i, load_plain_i64_at(src + i))
        i += 8
    while i < n:
        store_plain_u8_at(dst + i, load_plain_u8_at(src + i))
        i += 1


@kernel(inline="always")
def wake_consumer_at(ring_addr):
    """Producer, after a publish: wake the consumer if it parked on the doorbell.

    The full fence orders the ``tail`` store before the ``parked`` load (the consumer
    does the mirror image), so a consumer about to park either sees the new slot
    or is woken. Costs a fence per call: use it on control paths, not per message.
    """
    fence_seq_cst()
    if load_relaxed_i32_at(ring_addr + L.RING_PARKED_OFFSET) != 0:
        word = ring_addr + L.RING_DOORBELL_OFFSET
        store_relaxed_i32_at(word, load_relaxed_i32_at(word) + 1)
        raw_syscall6(SYS_FUTEX, word, FUTEX_WAKE, WAKE_ALL, 0, 0, 0)


@kernel(inline="always")
def try_push_at(ring_addr, src_addr, n):
    """Copy ``n`` bytes (at most one slot) into a new slot; False if the ring is full."""
    slot = claim_at(ring_addr)
    if slot == 0:
        return False
    copy_bytes_at(slot, src_addr, n)
    publish_at(ring_addr)
    return True


@kernel(inline="always")
def push_or_drop_at(ring_addr, src_addr, n):
    """``try_push_at``, counting a drop instead when full (for the log ring: never stall)."""
    if try_push_at(ring_addr, src_addr, n):
        return True
    d = load_plain_i64_at(ring_addr + L.RING_DROPPED_OFFSET)
    store_release_i64_at(ring_addr + L.RING_DROPPED_OFFSET, d + 1)
    return False


@kernel(inline="always")
def try_pop_at(ring_addr, dst_addr, n):
    """Copy the oldest slot's first ``n`` bytes out and free it; False if the ring is empty."""
    slot = peek_at(ring_addr)
    if slot == 0:
        return False
    copy_bytes_at(dst_addr, slot, n)
    consume_at(ring_addr)
    return True


# -- array forms, for jitted user code and the Python face -------------------------------------


@kernel(inline="always")
def try_push(ring, src):
    """Push the bytes of ``src`` (a C-contiguous array, at most ``slot_size`` bytes). False if full.

    Bytes of the slot past ``src.nbytes`` keep whatever they held.
    """
    return try_push_at(address_of(ring, 0), address_of(src, 0), min(src.nbytes, slot_size_at(address_of(ring, 0))))


@kernel(inline="always")
def try_pop(ring, dst):
    """Pop the oldest slot into ``dst`` (a C-contiguous array: its first ``dst.nbytes`` bytes). False if empty."""
    return try_pop_at(address_of(ring, 0), address_of(dst, 0), min(dst.nbytes, slot_size_at(address_of(ring, 0))))


@kernel
def py_push(ring, src, wake):
    """Python's push: the slot is zero-filled past ``src``; wakes a parked consumer if asked."""
    r = address_of(ring, 0)
    slot = claim_at(r)
    if slot == 0:
        return False
    size = slot_size_at(r)
    n = min(src.shape[0], size)
    copy_bytes_at(slot, address_of(src, 0), n)
    i = n
    while i < size:
        store_plain_u8_at(slot + i, 0)
        i += 1
    publish_at(r)
    if wake:
        wake_consumer_at(r)
    return True


@kernel
def py_pop(ring, dst):
    r = address_of(ring, 0)
    return try_pop_at(r, address_of(dst, 0), min(dst.shape[0], slot_size_at(r)))


@kernel
def py_size(ring):
    return size_at(address_of(ring, 0))


@kernel
def py_dropped(ring):
    return load_acquire_i64_at(address_of(ring, 0) + L.RING_DROPPED_OFFSET)
