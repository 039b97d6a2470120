"""In-process tables of the hot loop: words of int64 arrays and scratch buffers in one process's
memory, never on disk and never shared between processes (those formats are in ``layout.py``).

The command ring's slots, the source table (one row per reader a :class:`HotLoop` drives), the
output table (one row per writer it may ``emit`` to), the loop state words, the idle strategy
words, the log ring's records and the kernel structs the loop passes to ``futex_waitv``.
Indices are word indices unless the name ends in ``_OFFSET`` or ``_SIZE`` / ``_LENGTH`` (bytes).
"""
from __future__ import annotations

from .layout import SIZE_OF_I32, SIZE_OF_I64

# ------------------------------------------------------------------------------------------
# Command ring slot (64 bytes = 8 words):  | op | arg0 | arg1 | ... | arg6 |
CMD_SLOT_SIZE = 64
CMD_WORDS = CMD_SLOT_SIZE // SIZE_OF_I64
CMD_OP_OFFSET = 0
CMD_ARG0_OFFSET = CMD_OP_OFFSET + SIZE_OF_I64
CMD_ARG1_OFFSET = CMD_ARG0_OFFSET + SIZE_OF_I64
CMD_ADD_READER = 1  # arg0 = source slot (its row is filled in before the push)
CMD_REMOVE_READER = 2  # arg0 = source slot
CMD_SET_PARAM = 3  # arg0 = param index, arg1 = float64 bits of the value
CMD_STOP = 4

# Source table row (one per reader slot): written by the Python side while the slot is FREE,
# then owned by the hot thread from ADD_READER until it marks the row RETIRED.
SRC_STATE = 0  # SRC_FREE / SRC_ACTIVE / SRC_RETIRED
SRC_SEG_ADDR = 1  # address of the mapped segment being read
SRC_SEG_SIZE = 2
SRC_SEG_ID = 3
SRC_OFFSET = 4  # byte offset of the next record to read
SRC_NEXT_SEQ = 5
SRC_CTL_ADDR = 6  # address of the queue's control mapping (futex word, waiters)
SRC_POS_ADDR = 7  # address of the position file mapping, 0 for an anonymous reader
SRC_POS_GEN = 8  # generation of the last position slot written
SRC_EPOCH = 9  # writer epoch recorded with each commit
SRC_SOURCE_ID = 10  # the id the handler sees as ``source``
SRC_DELIVERED = 11  # messages handed to the handler
SRC_UNCOMMITTED = 12  # messages handled since the last position commit
SRC_CAN_PARK = 13  # 1 if the control mapping is writable (futex registration possible)
SRC_VERIFY = 14  # 0: deliver as read; else SRC_VERIFY_ON | the SRC_VERIFY_* bits of the seq rule
SRC_DAMAGED = 15  # records skipped as damaged (verify on): a checksum or seq-order failure
SRC_NEXT_SEG_ADDR = 16  # address of segment SRC_SEG_ID + 1 mapped ahead by the Python side, 0 if none:
#                         offered (release) by the Python side only while 0; taken and cleared
#                         (release, after the SEG_* fields) by the hot thread at the end marker
SRC_FIELDS = 24  # rows stay a multiple of 64 bytes
SRC_VERIFY_ON = 1
SRC_VERIFY_MAY_JUMP = 2  # the next seq may be later than expected (padding, a segment change, a damaged record)
SRC_VERIFY_ANY_SEQ = 4  # a new position: the first intact record sets the seq order
SRC_FREE = 0
SRC_ACTIVE = 1
SRC_RETIRED = 2

# Output table row (one per writer the handler may append to through ``emit``).
OUT_SEG_ADDR = 0
OUT_SEG_SIZE = 1
OUT_CTL_ADDR = 2
OUT_FULL = 3  # set by emit when a message did not fit: the loop rolls the writer
OUT_EMITTED = 4
OUT_HEADROOM = 5  # bytes kept free: the loop rolls the output once less than this is left
OUT_FIELDS = 8

# Loop state words (int64 array shared by the hot thread and the Python side).
LOOP_STATE = 0  # LOOP_IDLE / LOOP_RUNNING / LOOP_STOPPED
LOOP_CYCLES = 1  # duty cycles run
LOOP_MESSAGES = 2  # messages handled
LOOP_PARKS = 3  # times the loop parked
LOOP_EXIT_SLOT = 4  # source or output slot named by the last exit status
LOOP_ERROR = 5  # handler's non-zero result, or a kernel status
LOOP_ERROR_SEQ = 6  # seq of the message whose handling failed
LOOP_ERROR_SOURCE = 7  # source id of that message
LOOP_CLOCK_BASE_NS = 8  # CLOCK_REALTIME ns at LOOP_CLOCK_BASE_TSC, for position heartbeats
LOOP_CLOCK_BASE_TSC = 9
LOOP_CLOCK_NS_PER_TICK_F64 = 10  # nanoseconds per counter tick, as the bits of a float64
LOOP_BATCH = 11  # most messages read from one source per pass (fairness between sources)
LOOP_MAX_COMMANDS = 12  # most commands drained per pass
LOOP_COMMIT_EVERY = 13  # commit a source's position after this many messages, and at each burst's end; 0 = never
LOOP_SEGMENT_SWITCHES = 14  # segment ends crossed inside the cycle, into a segment mapped ahead (SRC_NEXT_SEG_ADDR)
LOOP_SEGMENT_EXITS = 15  # segment ends crossed by leaving the cycle (EXIT_NEED_SEGMENT; counted by the Python side)
LOOP_PARK_OUTCOMES = 16  # 16 .. 16 + idle.PARK_OUTCOMES - 1: parks counted by how they ended (idle.PARK_*)
LOOP_FIELDS = 24
LOOP_IDLE = 0
LOOP_RUNNING = 1
LOOP_STOPPED = 2

# Idle strategy words (int64 array; hot/idle.py).
IDLE_MODE = 0  # IDLE_SPIN / IDLE_BACKOFF / IDLE_PARK
IDLE_SPINS = 1  # empty passes spent spinning before yielding
IDLE_YIELDS = 2  # empty passes spent in sched_yield before parking
IDLE_PARK_NS = 3  # longest single park (a parker re-registers after it)
IDLE_FIELDS = 4
IDLE_SPIN = 0
IDLE_BACKOFF = 1
IDLE_PARK = 2

# struct timespec: | tv_sec i64 | tv_nsec i64 |
TIMESPEC_SEC_OFFSET = 0
TIMESPEC_NSEC_OFFSET = TIMESPEC_SEC_OFFSET + SIZE_OF_I64

# The hot loop's scratch buffer: a timespec, then the futex_waitv entries.
SCRATCH_TIMESPEC_OFFSET = 0
SCRATCH_WAITV_OFFSET = 64

# Log ring record (64 bytes): written by the hot thread, drained by the control plane.
#   0 timestamp_ns | 8 level | 12 event | 16 source | 24 arg0 | 32 arg1 | 40 arg2 | 48 arg3 | 56 pad
LOG_SLOT_SIZE = 64
LOG_TIMESTAMP_NS_OFFSET = 0
LOG_LEVEL_OFFSET = LOG_TIMESTAMP_NS_OFFSET + SIZE_OF_I64
LOG_EVENT_OFFSET = LOG_LEVEL_OFFSET + SIZE_OF_I32
LOG_SOURCE_OFFSET = LOG_EVENT_OFFSET + SIZE_OF_I32
LOG_ARG0_OFFSET = LOG_SOURCE_OFFSET + SIZE_OF_I64
LOG_ARG1_OFFSET = LOG_ARG0_OFFSET + SIZE_OF_I64
LOG_ARG2_OFFSET = LOG_ARG1_OFFSET + SIZE_OF_I64
LOG_ARG3_OFFSET = LOG_ARG2_OFFSET + SIZE_OF_I64
LOG_RECORD_FORMAT = "<qiiqqqqq"  # timestamp_ns, level, event, source, arg0..arg3

# futex_waitv(2) entry: | val u64 | uaddr u64 | flags u32 | reserved u32 |
FUTEX_WAITV_LENGTH = 24
FUTEX_WAITV_VAL_OFFSET = 0
FUTEX_WAITV_UADDR_OFFSET = FUTEX_WAITV_VAL_OFFSET + SIZE_OF_I64
FUTEX_WAITV_FLAGS_OFFSET = FUTEX_WAITV_UADDR_OFFSET + SIZE_OF_I64
FUTEX_WAITV_MAX = 128  # the kernel's limit on one futex_waitv call
SCRATCH_LENGTH = SCRATCH_WAITV_OFFSET + FUTEX_WAITV_MAX * FUTEX_WAITV_LENGTH

# Gather row (hot/gather.py fills one per selected record; frames.py reads the rows as a numpy
# structured array). Bytes; a row is GATHER_BODY_OFFSET + the payload dtype's size rounded up to 8.
#   0 seq i64 | 8 timestamp_ns i64 | 16 type_id i32 | 20 length i32 | 24 payload (dtype), or its offset in the segment i64
GATHER_SEQ_OFFSET = 0
GATHER_TIMESTAMP_OFFSET = GATHER_SEQ_OFFSET + SIZE_OF_I64
GATHER_TYPE_ID_OFFSET = GATHER_TIMESTAMP_OFFSET + SIZE_OF_I64
GATHER_LENGTH_OFFSET = GATHER_TYPE_ID_OFFSET + SIZE_OF_I32
GATHER_BODY_OFFSET = GATHER_LENGTH_OFFSET + SIZE_OF_I32
