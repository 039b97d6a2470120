"""Payload checksum: Adler-32, bit-identical to :func:`zlib.adler32`.

The Python face uses ``zlib.adler32`` (C speed). Jitted code uses
:func:`copy_and_adler32`, which copies the payload into the segment and
computes the same value from the same 32-byte vector loads. Per 32-byte block
``S = sum(d_j)`` and ``W = sum(j * d_j)`` are computed with LLVM vector IR,
then ``b += 32a + 32S - W`` and ``a += S``; remaining bytes use the scalar
recurrence. From segment version 2 a record's checksum runs over its header fields and
then its payload (``header_seed_at``, ``record_checksum_ok_at``). Adler-32 is weak against deliberate tampering but is what recovery
needs: it tells a whole payload from a torn or zero-filled one.
"""
from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from . import layout as L
from ._jit import kernel
from .atomics import address_of, load_plain_i32_at, load_plain_u8_at, store_plain_u8_at

ADLER_MOD = 65521
_REDUCE_EVERY = 4096  # bytes between modulo reductions; keeps a and b far below 2**63

_V8 = ir.VectorType(ir.IntType(8), 32)
_V32 = ir.VectorType(ir.IntType(32), 32)
_I64 = ir.IntType(64)


@intrinsic
def _copy_block32_sums(typingctx, dst_addr, src_addr, do_copy):
    """Load 32 bytes at address ``src_addr`` (optionally store them at ``dst_addr``).

    Returns ``(W << 16) | S`` with ``S = sum(d_j)`` (< 2**13) and ``W = sum(j * d_j)``.
    """
    sig = types.int64(types.int64, types.int64, types.boolean)

    def codegen(context, builder, signature, args):
        daddr, saddr, copy = args
        v = builder.load(builder.inttoptr(saddr, _V8.as_pointer()), align=1)
        with builder.if_then(copy):
            builder.store(v, builder.inttoptr(daddr, _V8.as_pointer()), align=1)
        z = builder.zext(v, _V32)
        w = builder.mul(z, ir.Constant(_V32, list(range(32))))
        mod = builder.module
        name = "llvm.vector.reduce.add.v32i32"
        red = mod.globals.get(name) or ir.Function(mod, ir.FunctionType(ir.IntType(32), [_V32]), name)
        total = builder.zext(builder.call(red, [z]), _I64)
        weighted = builder.zext(builder.call(red, [w]), _I64)
        return builder.or_(builder.shl(weighted, ir.Constant(_I64, 16)), total)

    return sig, codegen


@kernel(inline="always")
def copy_and_adler32_at(dst_addr, src_addr, n, do_copy, seed=1):
    """Adler-32 of the ``n`` bytes at ``src_addr``; if ``do_copy``, also copy them to ``dst_addr``.

    ``seed`` continues a running checksum (``zlib.adler32(data, seed)``); 1 starts a new one.
    """
    a = seed & 0xFFFF
    b = (seed >> 16) & 0xFFFF
    i = 0
    while n - i >= 32:
        sw = _copy_block32_sums(dst_addr + i, src_addr + i, do_copy)
        s = sw & 0xFFFF
        b += 32 * a + 32 * s - (sw >> 16)
        a += s
        i += 32
        if i % _REDUCE_EVERY == 0:
            a %= ADLER_MOD
            b %= ADLER_MOD
    while i < n:
        x = load_plain_u8_at(src_addr + i)
        if do_copy:
            store_plain_u8_at(dst_addr + i, x)
        a += int(x)
        b += a
        i += 1
    return ((b % ADLER_MOD) << 16) | (a % ADLER_MOD)


@kernel(inline="always")
def header_seed_at(rec_addr, version):
    """The running checksum after a record's checked header bytes (1, nothing, for version 1)."""
    seed = 1
    if version >= L.HEADER_CHECKSUM_VERSION:
        seed = copy_and_adler32_at(0, rec_addr + L.REC_CHECKED_OFFSET, L.REC_CHECKED_LENGTH, False, 1)
    return seed


@kernel(inline="always")
def record_checksum_ok_at(rec_addr, n, version):
    """True if the committed record at ``rec_addr`` (payload ``n`` bytes) matches its checksum."""
    want = load_plain_i32_at(rec_addr + L.REC_CHECKSUM_OFFSET) & 0xFFFFFFFF
    seed = header_seed_at(rec_addr, version)
    return copy_and_adler32_at(0, rec_addr + L.RECORD_HEADER_LENGTH, n, False, seed) == want


@kernel
def adler32(buf, start, n):
    """Adler-32 of ``buf[start:start + n]`` (same value as ``zlib.adler32``)."""
    return copy_and_adler32_at(0, address_of(buf, start), n, False)
