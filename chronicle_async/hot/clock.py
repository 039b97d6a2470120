"""A cycle counter readable from jitted code (for latency measurement and pacing).

``rdtsc()`` reads the x86-64 time-stamp counter (``cntvct_el0`` on aarch64).
On machines with a constant, non-stop TSC (``constant_tsc nonstop_tsc`` in
/proc/cpuinfo) it ticks at a fixed rate and agrees across cores, so two
processes can compare readings. :func:`tsc_per_ns` calibrates it against
``time.perf_counter_ns``.
"""
from __future__ import annotations

import time

from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from ._jit import kernel
from .syscalls import MACHINE

_I64 = ir.IntType(64)


@intrinsic
def rdtsc(typingctx):
    """The CPU's cycle counter (monotonic, per-boot). 0 on unsupported machines."""
    sig = types.int64()

    def codegen(context, builder, signature, args):
        if MACHINE == "x86_64":  # LLVM lowers this to rdtsc
            mod = builder.module
            fn = mod.globals.get("llvm.readcyclecounter") or ir.Function(mod, ir.FunctionType(_I64, []), "llvm.readcyclecounter")
            return builder.call(fn, [])
        if MACHINE == "aarch64":
            asm = ir.InlineAsm(ir.FunctionType(_I64, []), "mrs $0, cntvct_el0", "=r", side_effect=True)
            return builder.call(asm, [])
        return ir.Constant(_I64, 0)

    return sig, codegen


@kernel
def read_tsc():
    return rdtsc()


def tsc_per_ns(duration: float = 0.05) -> float:
    """Counter ticks per nanosecond, measured over ``duration`` seconds."""
    read_tsc()  # compile (or load) before timing
    t0, c0 = time.perf_counter_ns(), read_tsc()
    while time.perf_counter_ns() - t0 < duration * 1e9:
        pass
    t1, c1 = time.perf_counter_ns(), read_tsc()
    return (c1 - c0) / (t1 - t0)
