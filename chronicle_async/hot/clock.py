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


def _anchor(clock) -> tuple[int, int]:
    """A ``(clock ns, counter)`` pair read as close together as the interpreter allows.

    The counter read is bracketed by two clock reads; the tightest of 25 tries wins,
    so a preemption or a slow dispatcher call cannot skew the pair.
    """
    best = None
    for _ in range(25):
        a = clock()
        c = read_tsc()
        b = clock()
        if best is None or b - a < best[0]:
            best = (b - a, (a + b) // 2, c)
    return best[1], best[2]


def tsc_per_ns(duration: float = 0.05) -> float:
    """Counter ticks per nanosecond, measured over ``duration`` seconds (a few ppm at 0.1 s)."""
    read_tsc()  # compile (or load) before timing
    t0, c0 = _anchor(time.perf_counter_ns)
    time.sleep(duration)
    t1, c1 = _anchor(time.perf_counter_ns)
    return (c1 - c0) / (t1 - t0)


def realtime_anchor() -> tuple[int, int]:
    """``(time.time_ns(), counter)`` read together: the base for extrapolating CLOCK_REALTIME."""
    read_tsc()
    return _anchor(time.time_ns)
