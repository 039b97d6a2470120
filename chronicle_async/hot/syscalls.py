"""Raw Linux syscalls callable from jitted code, and every syscall number the kernels use.

The syscall is issued with inline assembly (no libc, no ctypes pointer), so
kernels that use it stay cacheable. Only x86-64 and aarch64 are supported; on
any other machine :data:`HAVE_RAW_SYSCALL` is False, the kernels return
``-ENOSYS``, and readers wait by polling in 1 ms sleeps instead of parking.

The futex word lives in a MAP_SHARED file mapping, so the non-private ops are
used (``FUTEX_WAIT``/``FUTEX_WAKE``): waiters and wakers are in different
processes.
"""
from __future__ import annotations

import platform

import llvmlite.binding as _llvm
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

MACHINE = platform.machine()
HAVE_RAW_SYSCALL = MACHINE in ("x86_64", "aarch64")

# Every syscall number the kernels use, for this machine (-1: unsupported, the call returns -ENOSYS).
SYS_FUTEX = {"x86_64": 202, "aarch64": 98}.get(MACHINE, -1)
SYS_FUTEX_WAITV = 449  # the same number on x86-64 and aarch64 (Linux 5.16+)
SYS_MEMBARRIER = {"x86_64": 324, "aarch64": 283}.get(MACHINE, -1)
SYS_SCHED_YIELD = {"x86_64": 24, "aarch64": 124}.get(MACHINE, -1)
SYS_CLOCK_GETTIME = {"x86_64": 228, "aarch64": 113}.get(MACHINE, -1)
FUTEX_WAIT = 0
FUTEX_WAKE = 1
WAKE_ALL = 0x7FFFFFFF

_I64 = ir.IntType(64)

# Inline asm aborts the process (LLVM "no asm parser") unless the native asm parser is
# initialised first; do it once at import, before any kernel using it compiles.
_llvm.initialize_native_asmparser()


def _asm_syscall6():
    fnty = ir.FunctionType(_I64, [_I64] * 7)
    if MACHINE == "x86_64":
        return ir.InlineAsm(
            fnty, "syscall",
            "={rax},{rax},{rdi},{rsi},{rdx},{r10},{r8},{r9},~{rcx},~{r11},~{memory}",
            side_effect=True,
        )
    if MACHINE == "aarch64":
        return ir.InlineAsm(
            fnty, "svc #0",
            "={x0},{x8},{x0},{x1},{x2},{x3},{x4},{x5},~{memory}",
            side_effect=True,
        )
    return None


@intrinsic
def raw_syscall6(typingctx, nr, a0, a1, a2, a3, a4, a5):
    """``syscall(nr, a0..a5)`` returning the raw kernel result (negative errno on failure)."""
    sig = types.int64(types.int64, types.int64, types.int64, types.int64, types.int64, types.int64, types.int64)

    def codegen(context, builder, signature, args):
        asm = _asm_syscall6()
        if asm is None:  # unsupported machine: report ENOSYS
            return ir.Constant(_I64, -38)
        vals = [context.cast(builder, a, t, types.int64) for a, t in zip(args, signature.args)]
        return builder.call(asm, vals)

    return sig, codegen
