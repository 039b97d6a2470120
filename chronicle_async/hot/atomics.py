"""Every shared-memory access of the hot path, with its memory order in its name.

numba has no atomics with memory ordering, so these are ``@intrinsic`` functions
that emit LLVM ``load atomic`` / ``store atomic`` / ``atomicrmw`` / ``fence``
instructions on a byte offset of a ``uint8[::1]`` buffer (a mapped segment or
control file). No other module may read or write a shared word any other way.

Naming: ``<op>_<order>_<type>(buf, byte_offset[, value])``.

==================  =====================================================
order               meaning
==================  =====================================================
``plain``           ordinary access; only for words no other thread reads
                    concurrently, or fields published by a later release
``relaxed``         atomic, no ordering (LLVM ``monotonic``); safe to spin on
``acquire``         later accesses stay after it (pairs with a release)
``release``         earlier accesses stay before it (the commit store)
``seq_cst``         total order; used by the waiter registration (Dekker)
==================  =====================================================

Intrinsics can only be called from jitted code. Plain Python uses the
``py_*`` wrappers at the bottom (each a tiny jitted function, ~300 ns a call),
which is fine for the cold paths that need a real RMW from Python (waiter
registration before a futex park).

Offsets must be naturally aligned for their type; the layout module guarantees
that for every shared word.
"""
from __future__ import annotations

import platform

from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from ._jit import kernel

_I8P = ir.IntType(8).as_pointer()


def _byte_ptr(context, builder, arrty, arr, offset):
    """Pointer to ``arr.data + offset`` (bytes)."""
    ary = context.make_array(arrty)(context, builder, arr)
    base = builder.bitcast(ary.data, _I8P)
    return builder.gep(base, [offset])


def _typed_ptr(context, builder, arrty, arr, offset, bits):
    return builder.bitcast(_byte_ptr(context, builder, arrty, arr, offset), ir.IntType(bits).as_pointer())


def _emit_load(builder, ptr, bits, ordering):
    if ordering == "plain":
        return builder.load(ptr, align=bits // 8)
    return builder.load_atomic(ptr, ordering, align=bits // 8)


def _emit_store(builder, val, ptr, bits, ordering):
    if ordering == "plain":
        builder.store(val, ptr, align=bits // 8)
    else:
        builder.store_atomic(val, ptr, ordering, align=bits // 8)


def _check_buf(buf):
    return isinstance(buf, types.Array) and buf.dtype == types.uint8 and buf.ndim == 1


def _make_load(bits, ordering):
    nbty = types.int32 if bits == 32 else types.int64

    @intrinsic
    def _load(typingctx, buf, offset):
        if not _check_buf(buf):
            return None
        sig = nbty(buf, types.intp)

        def codegen(context, builder, signature, args):
            arr, off = args
            off = context.cast(builder, off, signature.args[1], types.intp)
            return _emit_load(builder, _typed_ptr(context, builder, signature.args[0], arr, off, bits), bits, ordering)

        return sig, codegen

    return _load


def _make_store(bits, ordering):
    nbty = types.int32 if bits == 32 else types.int64

    @intrinsic
    def _store(typingctx, buf, offset, value):
        if not _check_buf(buf):
            return None
        sig = types.void(buf, types.intp, nbty)

        def codegen(context, builder, signature, args):
            arr, off, val = args
            off = context.cast(builder, off, signature.args[1], types.intp)
            val = context.cast(builder, val, signature.args[2], nbty)
            _emit_store(builder, val, _typed_ptr(context, builder, signature.args[0], arr, off, bits), bits, ordering)
            return context.get_dummy_value()

        return sig, codegen

    return _store


def _make_rmw(bits, op, ordering):
    nbty = types.int32 if bits == 32 else types.int64

    @intrinsic
    def _rmw(typingctx, buf, offset, value):
        if not _check_buf(buf):
            return None
        sig = nbty(buf, types.intp, nbty)

        def codegen(context, builder, signature, args):
            arr, off, val = args
            off = context.cast(builder, off, signature.args[1], types.intp)
            val = context.cast(builder, val, signature.args[2], nbty)
            ptr = _typed_ptr(context, builder, signature.args[0], arr, off, bits)
            return builder.atomic_rmw(op, ptr, val, ordering)

        return sig, codegen

    return _rmw


def _make_load_at(bits, ordering):
    nbty = types.int32 if bits == 32 else (types.int64 if bits == 64 else types.uint8)

    @intrinsic
    def _load_at(typingctx, address):
        sig = nbty(types.int64)

        def codegen(context, builder, signature, args):
            addr = context.cast(builder, args[0], signature.args[0], types.int64)
            return _emit_load(builder, builder.inttoptr(addr, ir.IntType(bits).as_pointer()), bits, ordering)

        return sig, codegen

    return _load_at


def _make_store_at(bits, ordering):
    nbty = types.int32 if bits == 32 else (types.int64 if bits == 64 else types.uint8)

    @intrinsic
    def _store_at(typingctx, address, value):
        sig = types.void(types.int64, nbty)

        def codegen(context, builder, signature, args):
            addr = context.cast(builder, args[0], signature.args[0], types.int64)
            val = context.cast(builder, args[1], signature.args[1], nbty)
            _emit_store(builder, val, builder.inttoptr(addr, ir.IntType(bits).as_pointer()), bits, ordering)
            return context.get_dummy_value()

        return sig, codegen

    return _store_at


# Address forms (``*_at(address)``): for kernels that take raw addresses once at entry, so no
# array flows through inlined code (which would cost atomic refcount updates per call).
load_plain_u8_at = _make_load_at(8, "plain")
load_plain_i32_at = _make_load_at(32, "plain")
load_relaxed_i32_at = _make_load_at(32, "monotonic")
load_acquire_i32_at = _make_load_at(32, "acquire")
load_plain_i64_at = _make_load_at(64, "plain")
store_plain_u8_at = _make_store_at(8, "plain")
store_plain_i32_at = _make_store_at(32, "plain")
store_release_i32_at = _make_store_at(32, "release")
store_plain_i64_at = _make_store_at(64, "plain")
store_release_i64_at = _make_store_at(64, "release")

load_acquire_i64_at = _make_load_at(64, "acquire")
load_relaxed_i64_at = _make_load_at(64, "monotonic")
store_relaxed_i32_at = _make_store_at(32, "monotonic")

load_acquire_i32 = _make_load(32, "acquire")
load_plain_i64 = _make_load(64, "plain")
load_acquire_i64 = _make_load(64, "acquire")

store_release_i32 = _make_store(32, "release")
store_plain_i64 = _make_store(64, "plain")
store_release_i64 = _make_store(64, "release")

fetch_add_seq_cst_i32 = _make_rmw(32, "add", "seq_cst")
fetch_max_seq_cst_i64 = _make_rmw(64, "max", "seq_cst")


def _make_rmw_at(bits, op, ordering):
    nbty = types.int32 if bits == 32 else types.int64

    @intrinsic
    def _rmw_at(typingctx, address, value):
        sig = nbty(types.int64, nbty)

        def codegen(context, builder, signature, args):
            addr = context.cast(builder, args[0], signature.args[0], types.int64)
            val = context.cast(builder, args[1], signature.args[1], nbty)
            ptr = builder.inttoptr(addr, ir.IntType(bits).as_pointer())
            return builder.atomic_rmw(op, ptr, val, ordering)

        return sig, codegen

    return _rmw_at


fetch_add_seq_cst_i32_at = _make_rmw_at(32, "add", "seq_cst")
fetch_max_seq_cst_i64_at = _make_rmw_at(64, "max", "seq_cst")


@intrinsic
def readonly_u8_at(typingctx, address, length):
    """A read-only ``uint8[::1]`` array over ``length`` bytes at ``address``: no copy, no
    allocation, no reference count (the caller keeps the memory mapped while it is used)."""
    arrty = types.Array(types.uint8, 1, "C", readonly=True)
    sig = arrty(types.int64, types.int64)

    def codegen(context, builder, signature, args):
        from numba.np.arrayobj import make_array, populate_array

        addr = context.cast(builder, args[0], signature.args[0], types.int64)
        n = context.cast(builder, args[1], signature.args[1], types.intp)
        ary = make_array(arrty)(context, builder)
        data = builder.inttoptr(addr, context.get_value_type(types.uint8).as_pointer())
        one = context.get_constant(types.intp, 1)
        populate_array(ary, data=data, shape=[n], strides=[one], itemsize=one, meminfo=None)
        return ary._getvalue()

    return sig, codegen


@intrinsic
def signal_fence_seq_cst(typingctx):
    """Compiler-only barrier: LLVM may not move memory accesses across it (no CPU fence).

    The writer puts it between its commit store and its waiter-count load; the CPU
    half of that Dekker pair is the parking reader's ``membarrier`` (docs/format.md).
    """
    sig = types.void()

    def codegen(context, builder, signature, args):
        builder.fence("seq_cst", "singlethread")
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def fence_seq_cst(typingctx):
    """Full CPU fence (``mfence`` on x86-64, ``dmb ish`` on aarch64)."""
    sig = types.void()

    def codegen(context, builder, signature, args):
        builder.fence("seq_cst")
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def address_of(typingctx, buf, offset):
    """The virtual address of ``buf[offset]`` as an int64 (for futex syscalls)."""
    if not isinstance(buf, types.Array):
        return None
    sig = types.int64(buf, types.intp)

    def codegen(context, builder, signature, args):
        arr, off = args
        ptr = _byte_ptr(context, builder, signature.args[0], arr, off)
        return builder.ptrtoint(ptr, ir.IntType(64))

    return sig, codegen


@intrinsic
def cpu_relax(typingctx):
    """Spin-loop hint (``pause`` on x86-64, ``yield`` on aarch64); a no-op elsewhere."""
    sig = types.void()
    machine = platform.machine()

    def codegen(context, builder, signature, args):
        if machine in ("x86_64", "AMD64"):
            asm = ir.InlineAsm(ir.FunctionType(ir.VoidType(), []), "pause", "~{memory}", side_effect=True)
            builder.call(asm, [])
        elif machine in ("aarch64", "arm64"):
            asm = ir.InlineAsm(ir.FunctionType(ir.VoidType(), []), "yield", "~{memory}", side_effect=True)
            builder.call(asm, [])
        return context.get_dummy_value()

    return sig, codegen


# ---------------------------------------------------------------------------------------------
# Python-callable wrappers (cold paths only: each call crosses numba's dispatcher, ~300 ns).


@kernel
def py_load_acquire_i32(buf, offset):
    return load_acquire_i32(buf, offset)


@kernel
def py_store_release_i32(buf, offset, value):
    store_release_i32(buf, offset, value)
