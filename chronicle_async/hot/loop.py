"""The hot loop's duty cycle, and the helpers a jitted handler calls (emit, param, log).

``run`` is compiled once per handler (numba specialises it on the handler's
type). Each pass:

1. drains up to ``max_commands`` commands from the command ring (never blocks),
2. polls every active source, reading up to ``batch`` messages from each, and
   calls ``handler(state, ctx, source, type_id, seq, timestamp_ns, payload)``
   for each one; ``payload`` is a read-only ``uint8`` view of the mapped record,
3. if the pass found nothing, runs the idle strategy (spin, yield, or park on
   every queue at once).

The steady state never leaves ``run``: no syscall, lock, allocation or Python
object per message. At a segment's end marker, a source whose next segment the
Python side mapped ahead (``SRC_NEXT_SEG_ADDR``) switches to it in place;
otherwise ``run`` returns. It returns a ``EXIT_*`` code only for a rare event the
Python side must handle (a segment to map, a writer to roll, an error, stop).
Sources' positions live in the source table, written after each handled
message, so returning and re-entering loses nothing.

Handler results: 0 = handled; ``YIELD`` = handled, and leave ``run`` at once
(the Python-callback mode uses it when its batch is full); anything else = an
error: the message is *not* consumed and ``run`` returns ``EXIT_HANDLER_ERROR``.
"""
from __future__ import annotations

import numpy as np

from . import layout as L

from . import tables as T
from . import status
from ._jit import kernel
from .append import append_at
from .atomics import (
    address_of,
    cpu_relax,
    load_acquire_i32_at,
    load_acquire_i64_at,
    load_plain_i32_at,
    load_plain_i64_at,
    readonly_u8_at,
    store_plain_i32_at,
    store_plain_i64_at,
    store_release_i64_at,
)
from .clock import rdtsc
from .idle import park_many, sched_yield
from .position import commit_position_at
from .checksum import record_checksum_ok_at
from .read import read_next_at, seq_in_order
from .ring import claim_at, consume_at, peek_at, publish_at

#: Handler result: handled; return to Python now (the Python-callback mode's batch is full).
YIELD = 1

# ``run`` results: why it returned.
EXIT_STOPPED = 0  # a STOP command: every source's position was committed
EXIT_ONCE = 1  # the single pass asked for (``once``) is done
EXIT_YIELD = 2  # the handler returned YIELD
EXIT_NEED_SEGMENT = 3  # source LOOP_EXIT_SLOT reached a segment end not mapped ahead: map the next, re-enter
EXIT_NEED_ROLL = 4  # an output is (nearly) full: roll its writer, re-enter
EXIT_HANDLER_ERROR = 5  # LOOP_ERROR holds the handler's result; the message was not consumed
EXIT_CORRUPT = 6  # source LOOP_EXIT_SLOT has a malformed record (LOOP_ERROR = status.CORRUPT)
EXIT_HOLE = 7  # source LOOP_EXIT_SLOT waits at a zero commit word in a segment its writer has left
EXIT_NAMES = {
    EXIT_STOPPED: "STOPPED", EXIT_ONCE: "ONCE", EXIT_YIELD: "YIELD", EXIT_NEED_SEGMENT: "NEED_SEGMENT",
    EXIT_NEED_ROLL: "NEED_ROLL", EXIT_HANDLER_ERROR: "HANDLER_ERROR", EXIT_CORRUPT: "CORRUPT", EXIT_HOLE: "HOLE",
}
#: Idle passes between two looks for a source stuck at a hole (``_find_hole``): the look reads each
#: source's control line, which the writer changes at every append, so it stays off busy passes.
HOLE_CHECK_EVERY = 64

# Log levels and the loop's own events (the control plane turns them into text).
LOG_DEBUG, LOG_INFO, LOG_WARNING, LOG_ERROR = 10, 20, 30, 40
EVENT_USER = 0  # a handler's own record (``log``)
EVENT_READER_ADDED = 1  # source, arg0 = slot
EVENT_READER_REMOVED = 2  # source, arg0 = slot, arg1 = next_seq
EVENT_HANDLER_ERROR = 3  # source, arg0 = result, arg1 = seq
EVENT_CORRUPT = 4  # source, arg0 = segment, arg1 = offset
EVENT_STOPPED = 5  # arg0 = messages handled
EVENT_BAD_COMMAND = 6  # arg0 = op, arg1 = arg0 of the command
EVENT_DAMAGED = 7  # verify: a record skipped; source, arg0 = segment, arg1 = offset, arg2 = its seq, arg3 = expected


# -- clock ----------------------------------------------------------------------------------


@kernel(inline="always")
def now_ns(loop):
    """CLOCK_REALTIME in ns, from the cycle counter and the loop's calibration (no syscall).

    The counter is extrapolated from one reading of CLOCK_REALTIME at calibration
    (float64 arithmetic: no integer overflow, sub-ns resolution for years).
    """
    ticks = rdtsc() - loop[T.LOOP_CLOCK_BASE_TSC]
    per_tick = loop.view(np.float64)[T.LOOP_CLOCK_NS_PER_TICK_F64]
    return loop[T.LOOP_CLOCK_BASE_NS] + np.int64(np.float64(ticks) * per_tick)


# -- what a handler may call: ctx = (outputs, params, log_ring, loop) ---------------------------


@kernel(inline="always")
def emit(ctx, output, type_id, payload, timestamp_ns):
    """Append ``payload`` (a ``uint8`` array) to output writer ``output``. Returns its seq or a status.

    ``SEGMENT_FULL`` only if one handler call emits more than the loop's
    ``emit_headroom`` bytes: the loop rolls an output before it gets that full.
    """
    outputs = ctx[0]
    seg = outputs[output, T.OUT_SEG_ADDR]
    size = outputs[output, T.OUT_SEG_SIZE]
    ctl = outputs[output, T.OUT_CTL_ADDR]
    r = append_at(seg, size, ctl, type_id, address_of(payload, 0), payload.shape[0], timestamp_ns)
    if r >= 0:
        outputs[output, T.OUT_EMITTED] += 1
    if r == status.SEGMENT_FULL or load_plain_i64_at(ctl + L.CTL_WRITE_OFFSET_OFFSET) + outputs[output, T.OUT_HEADROOM] > size - L.RECORD_ALIGNMENT:
        outputs[output, T.OUT_FULL] = 1
    return r


@kernel(inline="always")
def param(ctx, index):
    """Parameter ``index`` (float64), as last set by ``HotLoop.set_param``."""
    return ctx[1][index]


@kernel(inline="always")
def log(ctx, level, source, arg0, arg1, arg2, arg3):
    """Put a fixed-size record in the log ring; a full ring counts a drop, never stalls."""
    _log_at(address_of(ctx[2], 0), ctx[3], level, EVENT_USER, source, arg0, arg1, arg2, arg3)


@kernel(inline="always")
def clock(ctx):
    """CLOCK_REALTIME ns without a syscall (see ``now_ns``)."""
    return now_ns(ctx[3])


@kernel
def _log_at(log_addr, loop, level, event, source, arg0, arg1, arg2, arg3):
    """Write one log record in place in the log ring; count a drop if it is full."""
    slot = claim_at(log_addr)
    if slot == 0:
        d = load_plain_i64_at(log_addr + L.RING_DROPPED_OFFSET)
        store_release_i64_at(log_addr + L.RING_DROPPED_OFFSET, d + 1)
        return False
    store_plain_i64_at(slot + T.LOG_TIMESTAMP_NS_OFFSET, now_ns(loop))
    store_plain_i32_at(slot + T.LOG_LEVEL_OFFSET, level)
    store_plain_i32_at(slot + T.LOG_EVENT_OFFSET, event)
    store_plain_i64_at(slot + T.LOG_SOURCE_OFFSET, source)
    store_plain_i64_at(slot + T.LOG_ARG0_OFFSET, arg0)
    store_plain_i64_at(slot + T.LOG_ARG1_OFFSET, arg1)
    store_plain_i64_at(slot + T.LOG_ARG2_OFFSET, arg2)
    store_plain_i64_at(slot + T.LOG_ARG3_OFFSET, arg3)
    publish_at(log_addr)
    return True


# -- the duty cycle ----------------------------------------------------------------------------

#: ``run`` pass modes.
RUN_UNTIL_EXIT = 0  # the hot thread: loop until a rare event or STOP
RUN_ONCE = 1  # one pass, no idling (tests drive the loop by hand)
RUN_UNTIL_WORK = 2  # return after the first pass that handled a message (Python callbacks)


@kernel(inline="always")
def _row_addr(sources, i, field):
    return address_of(sources, 0) + (i * T.SRC_FIELDS + field) * L.SIZE_OF_I64


@kernel
def commit_source(sources, i, loop):
    """Write source ``i``'s position to its position file, if it is named and has moved."""
    pos = sources[i, T.SRC_POS_ADDR]
    if pos != 0 and sources[i, T.SRC_UNCOMMITTED] != 0:
        g = sources[i, T.SRC_POS_GEN] + 1
        commit_position_at(pos, g, sources[i, T.SRC_SEG_ID], sources[i, T.SRC_OFFSET],
                           sources[i, T.SRC_NEXT_SEQ], now_ns(loop), sources[i, T.SRC_EPOCH])
        sources[i, T.SRC_POS_GEN] = g
    sources[i, T.SRC_UNCOMMITTED] = 0


@kernel(inline="always")
def _outputs_full(outputs):
    full = False
    for j in range(outputs.shape[0]):
        if outputs[j, T.OUT_FULL] != 0:
            full = True
    return full


@kernel
def _command(sources, pbits, loop, log_addr, op, a0, a1):
    """Carry out one command; True if it was STOP."""
    n_src = sources.shape[0]
    if op == T.CMD_ADD_READER and 0 <= a0 < n_src and sources[a0, T.SRC_STATE] == T.SRC_FREE:
        sources[a0, T.SRC_STATE] = T.SRC_ACTIVE
        _log_at(log_addr, loop, LOG_DEBUG, EVENT_READER_ADDED, sources[a0, T.SRC_SOURCE_ID], a0, 0, 0, 0)
    elif op == T.CMD_REMOVE_READER and 0 <= a0 < n_src and sources[a0, T.SRC_STATE] == T.SRC_ACTIVE:
        sources[a0, T.SRC_UNCOMMITTED] += 1  # always write the final position
        commit_source(sources, a0, loop)
        store_release_i64_at(_row_addr(sources, a0, T.SRC_STATE), T.SRC_RETIRED)
        _log_at(log_addr, loop, LOG_DEBUG, EVENT_READER_REMOVED, sources[a0, T.SRC_SOURCE_ID], a0,
                sources[a0, T.SRC_NEXT_SEQ], 0, 0)
    elif op == T.CMD_SET_PARAM and 0 <= a0 < pbits.shape[0]:
        pbits[a0] = a1
    elif op == T.CMD_STOP:
        for i in range(n_src):
            if sources[i, T.SRC_STATE] == T.SRC_ACTIVE:
                commit_source(sources, i, loop)
        _log_at(log_addr, loop, LOG_INFO, EVENT_STOPPED, -1, loop[T.LOOP_MESSAGES], 0, 0, 0)
        return True
    else:
        _log_at(log_addr, loop, LOG_WARNING, EVENT_BAD_COMMAND, -1, op, a0, 0, 0)
    return False


@kernel
def _idle(sources, cmd, scratch_addr, idle, loop, empty):
    mode = idle[T.IDLE_MODE]
    if mode == T.IDLE_SPIN:
        cpu_relax()
        return empty
    if mode == T.IDLE_BACKOFF and empty <= idle[T.IDLE_SPINS]:
        cpu_relax()
        return empty
    if mode == T.IDLE_BACKOFF and empty <= idle[T.IDLE_SPINS] + idle[T.IDLE_YIELDS]:
        sched_yield()
        return empty
    outcome = park_many(sources, cmd, scratch_addr + T.SCRATCH_TIMESPEC_OFFSET, scratch_addr + T.SCRATCH_WAITV_OFFSET,
                        idle[T.IDLE_PARK_NS])
    loop[T.LOOP_PARKS] += 1
    loop[T.LOOP_PARK_OUTCOMES + outcome] += 1
    return idle[T.IDLE_SPINS] + idle[T.IDLE_YIELDS]  # stay at the parking stage until work comes


@kernel
def _find_hole(sources):
    """The first active source whose next commit word is zero in a segment its writer has left
    (the end marker is committed before the writer moves on, so that word will never be written);
    -1 if none. Read on idle passes only."""
    for i in range(sources.shape[0]):
        if sources[i, T.SRC_STATE] != T.SRC_ACTIVE:
            continue
        seg_id = sources[i, T.SRC_SEG_ID]
        at = sources[i, T.SRC_SEG_ADDR] + sources[i, T.SRC_OFFSET]
        if load_acquire_i32_at(at) == 0 and load_acquire_i64_at(sources[i, T.SRC_CTL_ADDR] + L.CTL_WRITE_SEGMENT_OFFSET) > seg_id:
            if load_acquire_i32_at(at) == 0:
                return i
    return -1


@kernel
def _verified(sources, i, loop, log_addr, seg, off, nxt, seq, poff, n):
    """Verify mode: True if the record read at ``off`` passes its checksum and the seq rule
    (``read.seq_in_order``). Otherwise count it, log it, step source ``i`` past it, and return False."""
    rec = seg + poff - L.RECORD_HEADER_LENGTH
    flags = sources[i, T.SRC_VERIFY]
    may_jump = (flags & T.SRC_VERIFY_MAY_JUMP) != 0 or rec != seg + off or off == L.SEGMENT_DATA_OFFSET
    expected = sources[i, T.SRC_NEXT_SEQ]
    any_seq = (flags & T.SRC_VERIFY_ANY_SEQ) != 0
    if record_checksum_ok_at(rec, n, load_plain_i32_at(seg + L.SEG_VERSION_OFFSET)) and (any_seq or seq_in_order(seq, expected, may_jump)):
        if flags != T.SRC_VERIFY_ON:
            sources[i, T.SRC_VERIFY] = T.SRC_VERIFY_ON
        return True
    sources[i, T.SRC_VERIFY] = flags | T.SRC_VERIFY_MAY_JUMP
    sources[i, T.SRC_DAMAGED] += 1
    sources[i, T.SRC_OFFSET] = nxt
    sources[i, T.SRC_UNCOMMITTED] += 1
    _log_at(log_addr, loop, LOG_ERROR, EVENT_DAMAGED, sources[i, T.SRC_SOURCE_ID], sources[i, T.SRC_SEG_ID],
            rec - seg, seq, expected)
    return False


@kernel(cache=False)
def run(handler, state, sources, outputs, params, cmd_ring, log_ring, loop, idle, scratch, pass_mode):
    """The duty cycle. Returns an ``EXIT_*`` code; see the module docstring."""
    cmd = address_of(cmd_ring, 0)
    log_addr = address_of(log_ring, 0)
    scratch_addr = address_of(scratch, 0)
    pbits = params.view(np.int64)
    ctx = (outputs, params, log_ring, loop)
    n_src = sources.shape[0]
    batch = loop[T.LOOP_BATCH]
    max_cmds = loop[T.LOOP_MAX_COMMANDS]
    commit_every = loop[T.LOOP_COMMIT_EVERY]
    empty = 0
    idle_passes = 0
    while True:
        work = 0
        # 1. commands: non-blocking, at most max_cmds per pass
        while work < max_cmds:
            slot = peek_at(cmd)
            if slot == 0:
                break
            op = load_plain_i64_at(slot + T.CMD_OP_OFFSET)
            a0 = load_plain_i64_at(slot + T.CMD_ARG0_OFFSET)
            a1 = load_plain_i64_at(slot + T.CMD_ARG1_OFFSET)
            consume_at(cmd)
            work += 1
            if _command(sources, pbits, loop, log_addr, op, a0, a1):
                return EXIT_STOPPED
        # 2. poll every active source, up to `batch` messages each
        got = 0
        for i in range(n_src):
            if sources[i, T.SRC_STATE] != T.SRC_ACTIVE:
                continue
            seg = sources[i, T.SRC_SEG_ADDR]
            size = sources[i, T.SRC_SEG_SIZE]
            off = sources[i, T.SRC_OFFSET]
            source = sources[i, T.SRC_SOURCE_ID]
            loop[T.LOOP_EXIT_SLOT] = i  # names the source if the handler raises
            k = 0
            while k < batch:
                code, nxt, seq, ts, t, poff, n = read_next_at(seg, size, off)
                if code == status.NO_DATA:
                    break
                if code == status.END_OF_SEGMENT:
                    ahead = load_acquire_i64_at(_row_addr(sources, i, T.SRC_NEXT_SEG_ADDR))
                    if ahead != 0:  # the next segment was mapped ahead: switch to it without leaving
                        seg = ahead
                        off = L.SEGMENT_DATA_OFFSET
                        sources[i, T.SRC_SEG_ADDR] = seg
                        sources[i, T.SRC_SEG_ID] += 1
                        sources[i, T.SRC_OFFSET] = off
                        sources[i, T.SRC_UNCOMMITTED] += 1
                        loop[T.LOOP_SEGMENT_SWITCHES] += 1
                        # cleared last: the Python side, seeing 0, sees the switched segment fields
                        store_release_i64_at(_row_addr(sources, i, T.SRC_NEXT_SEG_ADDR), 0)
                        continue
                if code != 0:  # a segment end (map the next one) or a malformed record
                    sources[i, T.SRC_OFFSET] = nxt
                    if commit_every > 0:
                        commit_source(sources, i, loop)
                    loop[T.LOOP_EXIT_SLOT] = i
                    if code == status.END_OF_SEGMENT:
                        return EXIT_NEED_SEGMENT
                    loop[T.LOOP_ERROR] = code
                    _log_at(log_addr, loop, LOG_ERROR, EVENT_CORRUPT, source, sources[i, T.SRC_SEG_ID], nxt, 0, 0)
                    return EXIT_CORRUPT
                if sources[i, T.SRC_VERIFY] != 0 and not _verified(sources, i, loop, log_addr, seg, off, nxt, seq, poff, n):
                    off = nxt  # damaged: counted, logged and skipped, never handed to the handler
                    k += 1
                    continue
                rc = handler(state, ctx, source, t, seq, ts, readonly_u8_at(seg + poff, n))
                if rc != 0 and rc != YIELD:  # an error: the message stays unconsumed
                    loop[T.LOOP_ERROR] = rc
                    loop[T.LOOP_ERROR_SEQ] = seq
                    loop[T.LOOP_ERROR_SOURCE] = source
                    _log_at(log_addr, loop, LOG_ERROR, EVENT_HANDLER_ERROR, source, rc, seq, 0, 0)
                    return EXIT_HANDLER_ERROR
                off = nxt
                sources[i, T.SRC_OFFSET] = off
                sources[i, T.SRC_NEXT_SEQ] = seq + 1
                sources[i, T.SRC_DELIVERED] += 1
                sources[i, T.SRC_UNCOMMITTED] += 1
                loop[T.LOOP_MESSAGES] += 1
                k += 1
                if rc == YIELD or _outputs_full(outputs):
                    return EXIT_YIELD if rc == YIELD else EXIT_NEED_ROLL
            if k > 0:
                got += k
                if commit_every > 0 and (k < batch or sources[i, T.SRC_UNCOMMITTED] >= commit_every):
                    commit_source(sources, i, loop)  # a burst ended, or enough has piled up
        loop[T.LOOP_CYCLES] += 1
        if got + work == 0 and idle_passes % HOLE_CHECK_EVERY == 0:  # now and then, on idle passes only
            h = _find_hole(sources)
            if h >= 0:
                loop[T.LOOP_EXIT_SLOT] = h
                return EXIT_HOLE
        if pass_mode == RUN_ONCE or (pass_mode == RUN_UNTIL_WORK and got > 0):
            return EXIT_ONCE
        # 3. idle strategy, only when the pass found nothing to do
        if got + work == 0:
            idle_passes += 1
            empty = _idle(sources, cmd, scratch_addr, idle, loop, empty + 1)
        else:
            empty = 0


@kernel
def py_commit_source(sources, i, loop):
    """``commit_source`` for the Python side (a stopped loop, or the Python-callback mode)."""
    commit_source(sources, i, loop)


@kernel
def py_next_segment(sources, i):
    """``(next segment address, segment id)`` of a source row, for the Python side mapping ahead
    while the hot thread may run: the address is loaded first, with acquire order, so when it is 0
    the segment id is the one the hot thread switched to (it clears the address last)."""
    ahead = load_acquire_i64_at(_row_addr(sources, i, T.SRC_NEXT_SEG_ADDR))
    return ahead, sources[i, T.SRC_SEG_ID]


@kernel
def py_offer_next_segment(sources, i, address):
    """Publish (release) the address of the segment mapped ahead for source ``i``; the hot thread
    switches to it at the end marker. Only while the row's address is 0."""
    store_release_i64_at(_row_addr(sources, i, T.SRC_NEXT_SEG_ADDR), address)


@kernel
def py_source_state(sources, i):
    """A source row's state, loaded with acquire order (pairs with the hot thread's release)."""
    return load_acquire_i64_at(_row_addr(sources, i, T.SRC_STATE))


@kernel
def collect(state, ctx, source, type_id, seq, timestamp_ns, payload):
    """The Python-callback mode's handler: record where each message is; YIELD when full.

    ``state`` is int64[capacity + 1, 6]; row 0 holds the count, rows 1.. hold
    ``(source, type_id, seq, timestamp_ns, payload address, length)``.
    """
    k = state[0, 0] + 1
    state[k, 0] = source
    state[k, 1] = type_id
    state[k, 2] = seq
    state[k, 3] = timestamp_ns
    state[k, 4] = address_of(payload, 0)
    state[k, 5] = payload.shape[0]
    state[0, 0] = k
    return YIELD if k == state.shape[0] - 1 else 0


@kernel
def py_park(sources, bell_ring, scratch, park_ns):
    """``park_many`` for Python callers (``FanInReader.wait``): sleep until a source is written."""
    a = address_of(scratch, 0)
    return park_many(sources, address_of(bell_ring, 0), a + T.SCRATCH_TIMESPEC_OFFSET, a + T.SCRATCH_WAITV_OFFSET, park_ns)
