"""On-disk layout: the single source of truth for every byte offset in a queue.

No other module may write a literal byte offset. Everything is little-endian.
``docs/format.md`` explains the protocol around these words; this module only
says where they are. ``tests/hot/test_layout.py`` pins the diagrams below to
the constants.

A queue is a directory::

    <queue>/
      control.cq            CONTROL_FILE_LENGTH bytes, shared mapping (below)
      writer.lock           OFD lock + "pid starttime epoch" text naming the holder
      000000000000.seg      segment files, SEGMENT_NAME_FORMAT, fixed size each
      000000000001.seg
      readers/<name>.pos    READER_FILE_LENGTH bytes per named reader (below)

Control file (``control.cq``), four 128-byte lines, grouped by who writes them::

   line  0       4       8              16             24             32
         +-------+-------+--------------+--------------+--------------+
     0   | magic |version| segment_size | queue_id     | created_ns   |  identity: written at create
         +-------+-------+--------------+--------------+--------------+
         | writer_epoch  | writer_pid   |w_state|w_flags| (pad to 128) |  writer session: written at open/close
         +---------------+--------------+-------+-------+--------------+
   128   | write_segment | write_offset | next_seq     | (pad to 256)     writer-hot: every append
         +---------------+--------------+--------------+
   256   | heartbeat_ns  | (pad to 384)                                  writer's housekeeping thread
         +---------------+
   384   |notify |waiters| park_deadline_ns | (pad to 512)                futex word, waiters, their expiry
         +-------+-------+------------------+

Segment file: a 64-byte header, then records from ``SEGMENT_DATA_OFFSET``.
The last ``RECORD_ALIGNMENT`` bytes are reserved so every segment can end with
an in-band end marker (a padding record)::

     0       4       8              16             24             32             40
     +-------+-------+--------------+--------------+--------------+--------------+
     | magic |version| segment_id   | queue_id     | segment_size | created_ns   | pad to 64
     +-------+-------+--------------+--------------+--------------+--------------+

Record: a 32-byte header and the payload, padded to a multiple of 64 bytes::

     0        4        8               16              24       28       32
     +--------+--------+---------------+---------------+--------+--------+---------
     | commit | type_id|     seq       | timestamp_ns  | length |checksum| payload..
     +--------+--------+---------------+---------------+--------+--------+---------
              |<------------- checked (version 2) ------------>|        |<- checked

Commit word: 0 = nothing here yet; > 0 = committed, and equal to ``length + 1``.
The writer stores it last (release, or seq_cst from jitted code); readers load
it first (acquire) and touch nothing else of the record before they see it
non-zero. ``type_id == PADDING_TYPE_ID`` marks padding, which readers skip; a
padding record that reaches the end of the segment is the end-of-segment
marker.

Reader position file (``readers/<name>.pos``): a header line, then two slots
written alternately, so a crash mid-commit always leaves one whole slot::

     0       4       8              16                                       64
     +-------+-------+--------------+----------------------------------------+
     | magic |version| owner_pid    | (pad)                                  |
     +-------+-------+--------------+----------------------------------------+
  64 | generation    | segment      | offset       | next_seq     | heartbeat_ns | writer_epoch |crc32 | slot 0
 128 | generation    | segment      | offset       | next_seq     | heartbeat_ns | writer_epoch |crc32 | slot 1
     +---------------+--------------+--------------+--------------+--------------+--------------+------+
"""
from __future__ import annotations

SIZE_OF_I32 = 4
SIZE_OF_I64 = 8
CACHE_LINE_PAIR = 128  # two cache lines: defeats adjacent-line prefetch false sharing
PAGE_SIZE = 4096

# --- control file ---------------------------------------------------------------------------
CONTROL_FILE_NAME = "control.cq"
CONTROL_MAGIC = 0x54435143  # b"CQCT" read as a little-endian u32
CONTROL_VERSION = 1

CTL_MAGIC_OFFSET = 0
CTL_VERSION_OFFSET = CTL_MAGIC_OFFSET + SIZE_OF_I32
CTL_SEGMENT_SIZE_OFFSET = CTL_VERSION_OFFSET + SIZE_OF_I32
CTL_QUEUE_ID_OFFSET = CTL_SEGMENT_SIZE_OFFSET + SIZE_OF_I64
CTL_CREATED_NS_OFFSET = CTL_QUEUE_ID_OFFSET + SIZE_OF_I64
CTL_WRITER_EPOCH_OFFSET = CTL_CREATED_NS_OFFSET + SIZE_OF_I64
CTL_WRITER_PID_OFFSET = CTL_WRITER_EPOCH_OFFSET + SIZE_OF_I64
CTL_WRITER_STATE_OFFSET = CTL_WRITER_PID_OFFSET + SIZE_OF_I64
CTL_WRITER_FLAGS_OFFSET = CTL_WRITER_STATE_OFFSET + SIZE_OF_I32
CTL_IDENTITY_END = CTL_WRITER_FLAGS_OFFSET + SIZE_OF_I32

CTL_WRITE_SEGMENT_OFFSET = 1 * CACHE_LINE_PAIR
CTL_WRITE_OFFSET_OFFSET = CTL_WRITE_SEGMENT_OFFSET + SIZE_OF_I64
CTL_NEXT_SEQ_OFFSET = CTL_WRITE_OFFSET_OFFSET + SIZE_OF_I64

CTL_HEARTBEAT_NS_OFFSET = 2 * CACHE_LINE_PAIR

CTL_NOTIFY_SEQ_OFFSET = 3 * CACHE_LINE_PAIR  # the futex word
CTL_WAITERS_OFFSET = CTL_NOTIFY_SEQ_OFFSET + SIZE_OF_I32
#: Latest CLOCK_REALTIME ns until which some reader may be parked (atomic max by parkers).
#: The writer wakes only while this is not older than its heartbeat, so the registration
#: of a reader killed while parked expires within one park slice.
CTL_PARK_DEADLINE_NS_OFFSET = CTL_WAITERS_OFFSET + SIZE_OF_I32

CONTROL_FILE_LENGTH = 4 * CACHE_LINE_PAIR

#: ``writer_state`` values.
WRITER_STATE_NONE = 0  # no writer has opened the queue yet
WRITER_STATE_OPEN = 1  # a writer holds the queue (it may have died: check the lock)
WRITER_STATE_CLOSED = 2  # the last writer closed cleanly

#: ``writer_flags`` bits.
WRITER_FLAG_ASYMMETRIC_FENCE = 1  # the writer registered for membarrier; parkers must issue one

# --- segment files --------------------------------------------------------------------------
SEGMENT_SUFFIX = ".seg"
SEGMENT_NAME_FORMAT = "{:012d}.seg"
SEGMENT_TEMP_SUFFIX = ".seg.tmp"
SEGMENT_MAGIC = 0x47535143  # b"CQSG"
SEGMENT_VERSION = 2  # 2: the record checksum covers the header too; version 1 segments are still read
SEGMENT_MIN_VERSION = 1  # the oldest segment format this code reads

SEG_MAGIC_OFFSET = 0
SEG_VERSION_OFFSET = SEG_MAGIC_OFFSET + SIZE_OF_I32
SEG_ID_OFFSET = SEG_VERSION_OFFSET + SIZE_OF_I32
SEG_QUEUE_ID_OFFSET = SEG_ID_OFFSET + SIZE_OF_I64
SEG_SIZE_OFFSET = SEG_QUEUE_ID_OFFSET + SIZE_OF_I64
SEG_CREATED_NS_OFFSET = SEG_SIZE_OFFSET + SIZE_OF_I64
SEG_HEADER_END = SEG_CREATED_NS_OFFSET + SIZE_OF_I64
SEGMENT_HEADER_LENGTH = 64
SEGMENT_DATA_OFFSET = SEGMENT_HEADER_LENGTH

# --- records --------------------------------------------------------------------------------
RECORD_ALIGNMENT = 64
REC_COMMIT_OFFSET = 0
REC_TYPE_ID_OFFSET = REC_COMMIT_OFFSET + SIZE_OF_I32
REC_SEQ_OFFSET = REC_TYPE_ID_OFFSET + SIZE_OF_I32
REC_TIMESTAMP_OFFSET = REC_SEQ_OFFSET + SIZE_OF_I64
REC_LENGTH_OFFSET = REC_TIMESTAMP_OFFSET + SIZE_OF_I64
REC_CHECKSUM_OFFSET = REC_LENGTH_OFFSET + SIZE_OF_I32
RECORD_HEADER_LENGTH = REC_CHECKSUM_OFFSET + SIZE_OF_I32  # 32

#: The checksum is Adler-32. From segment version ``HEADER_CHECKSUM_VERSION`` on it runs over the
#: header bytes ``[REC_CHECKED_OFFSET, REC_CHECKSUM_OFFSET)`` (type_id, seq, timestamp_ns, length)
#: and then the payload; in version 1 segments it covers the payload alone.
HEADER_CHECKSUM_VERSION = 2
REC_CHECKED_OFFSET = REC_TYPE_ID_OFFSET
REC_CHECKED_LENGTH = REC_CHECKSUM_OFFSET - REC_CHECKED_OFFSET  # 24

#: Reserved ``type_id`` of padding records (and of the end-of-segment marker).
PADDING_TYPE_ID = -1
#: Largest user ``type_id``; user ids are 0..MAX_TYPE_ID.
MAX_TYPE_ID = 0x7FFFFFFF
#: The commit word is an i32 holding ``length + 1``.
MAX_PAYLOAD_BY_COMMIT_WORD = 0x7FFFFFFF - 1

#: Smallest and largest segment sizes accepted; sizes must be multiples of PAGE_SIZE.
MIN_SEGMENT_SIZE = 16 * 1024
MAX_SEGMENT_SIZE = 1 << 40
DEFAULT_SEGMENT_SIZE = 64 * 1024 * 1024

# --- reader position files ------------------------------------------------------------------
READERS_DIR_NAME = "readers"
READER_FILE_SUFFIX = ".pos"
READER_MAGIC = 0x44525143  # b"CQRD"
READER_VERSION = 2  # 2 added queue_id; version 1 files (queue_id 0: unknown) are still read
RDR_MAGIC_OFFSET = 0
RDR_VERSION_OFFSET = RDR_MAGIC_OFFSET + SIZE_OF_I32
RDR_OWNER_PID_OFFSET = RDR_VERSION_OFFSET + SIZE_OF_I32
RDR_QUEUE_ID_OFFSET = RDR_OWNER_PID_OFFSET + SIZE_OF_I64  # the queue_id of the queue the position belongs to
READER_SLOT0_OFFSET = 64
READER_SLOT_LENGTH = 64
SLOT_GENERATION_OFFSET = 0
SLOT_SEGMENT_OFFSET = SLOT_GENERATION_OFFSET + SIZE_OF_I64
SLOT_OFFSET_OFFSET = SLOT_SEGMENT_OFFSET + SIZE_OF_I64
SLOT_NEXT_SEQ_OFFSET = SLOT_OFFSET_OFFSET + SIZE_OF_I64
SLOT_HEARTBEAT_NS_OFFSET = SLOT_NEXT_SEQ_OFFSET + SIZE_OF_I64
SLOT_WRITER_EPOCH_OFFSET = SLOT_HEARTBEAT_NS_OFFSET + SIZE_OF_I64
SLOT_CHECKSUM_OFFSET = SLOT_WRITER_EPOCH_OFFSET + SIZE_OF_I64  # crc32 of the slot bytes before it
SLOT_END = SLOT_CHECKSUM_OFFSET + SIZE_OF_I32
READER_FILE_LENGTH = READER_SLOT0_OFFSET + 2 * READER_SLOT_LENGTH

WRITER_LOCK_NAME = "writer.lock"

# struct formats for the Python face: each derived from the offsets above, in field order.
CONTROL_IDENTITY_FORMAT = "<IIqqqqqII"  # magic .. writer_flags, starting at CTL_MAGIC_OFFSET
SEGMENT_HEADER_FORMAT = "<IIqqqq"  # magic .. created_ns, starting at SEG_MAGIC_OFFSET
RECORD_HEADER_FORMAT = "<iiqqII"  # commit, type_id, seq, timestamp_ns, length, checksum
RECORD_BODY_FORMAT = "<iqqII"  # type_id .. checksum, starting at REC_TYPE_ID_OFFSET
RECORD_CHECKED_FORMAT = RECORD_BODY_FORMAT[:-1]  # the header bytes a version 2 checksum covers
READER_HEADER_FORMAT = "<IIqq"
READER_SLOT_FORMAT = "<qqqqqqI"  # generation .. checksum


def record_length(payload_length: int) -> int:
    """Bytes a record with this payload occupies (header + payload, rounded up to 64)."""
    return (RECORD_HEADER_LENGTH + payload_length + RECORD_ALIGNMENT - 1) & ~(RECORD_ALIGNMENT - 1)


def segment_data_end(segment_size: int) -> int:
    """Offset past which no user record may extend (the last 64 bytes hold the end marker)."""
    return segment_size - RECORD_ALIGNMENT


def max_payload(segment_size: int) -> int:
    """The largest payload a queue with this segment size accepts."""
    by_segment = segment_data_end(segment_size) - SEGMENT_DATA_OFFSET - RECORD_HEADER_LENGTH
    return min(by_segment, MAX_PAYLOAD_BY_COMMIT_WORD)


def segment_file_name(segment_id: int) -> str:
    return SEGMENT_NAME_FORMAT.format(segment_id)


def segment_temp_name(segment_id: int, tag: str) -> str:
    """Name of a segment file still being prepared (published later by hard link)."""
    return f"{segment_id:012d}{SEGMENT_TEMP_SUFFIX}-{tag}"


def parse_segment_file_name(name: str) -> int | None:
    """The segment id of a file name, or None if it is not a segment file."""
    if not name.endswith(SEGMENT_SUFFIX):
        return None
    stem = name[: -len(SEGMENT_SUFFIX)]
    if len(stem) != 12 or not (stem.isascii() and stem.isdigit()):
        return None
    return int(stem)


def check_segment_size(segment_size: int) -> str | None:
    """Why a segment size is unacceptable, or None if it is fine."""
    if segment_size < MIN_SEGMENT_SIZE or segment_size > MAX_SEGMENT_SIZE:
        return f"segment_size must be between {MIN_SEGMENT_SIZE} and {MAX_SEGMENT_SIZE} bytes"
    if segment_size % PAGE_SIZE:
        return f"segment_size must be a multiple of {PAGE_SIZE} bytes"
    return None


# --- SPSC rings (hot/ring.py) ---------------------------------------------------------------
# A ring lives in any uint8 buffer: process memory for threads, a shared file for processes.
#
#   line  0          8             16            24
#     0   |magic|vers| capacity    | slot_size   | (pad to 128)                 identity: at create
#   128   | head     | tail_cache  | (pad to 256)                               consumer's line
#   256   | tail     | head_cache  | dropped     | (pad to 384)                 producer's line
#   384   |doorbell|parked| (pad to 512)                                        consumer's futex word
#   512   slot 0 | slot 1 | ... | slot capacity-1        (capacity a power of two, slot_size % 8 == 0)
#
# head/tail count slots ever consumed/produced (never wrap; slot = count & (capacity - 1)).
# ``tail_cache`` and ``head_cache`` are private to their side (plain access); ``dropped``
# counts pushes refused by ``push_or_drop`` (producer-written, read by anyone).
RING_MAGIC = 0x47525143  # b"CQRG"
RING_VERSION = 1
RING_MAGIC_OFFSET = 0
RING_VERSION_OFFSET = RING_MAGIC_OFFSET + SIZE_OF_I32
RING_CAPACITY_OFFSET = RING_VERSION_OFFSET + SIZE_OF_I32
RING_SLOT_SIZE_OFFSET = RING_CAPACITY_OFFSET + SIZE_OF_I64
RING_HEAD_OFFSET = 1 * CACHE_LINE_PAIR
RING_TAIL_CACHE_OFFSET = RING_HEAD_OFFSET + SIZE_OF_I64
RING_TAIL_OFFSET = 2 * CACHE_LINE_PAIR
RING_HEAD_CACHE_OFFSET = RING_TAIL_OFFSET + SIZE_OF_I64
RING_DROPPED_OFFSET = RING_HEAD_CACHE_OFFSET + SIZE_OF_I64
RING_DOORBELL_OFFSET = 3 * CACHE_LINE_PAIR
RING_PARKED_OFFSET = RING_DOORBELL_OFFSET + SIZE_OF_I32
RING_SLOTS_OFFSET = 4 * CACHE_LINE_PAIR
RING_SLOT_ALIGNMENT = SIZE_OF_I64
RING_MAX_CAPACITY = 1 << 24
RING_MAX_SLOT_SIZE = 1 << 20


def ring_length(capacity: int, slot_size: int) -> int:
    """Bytes a ring of ``capacity`` slots of ``slot_size`` bytes occupies."""
    return RING_SLOTS_OFFSET + capacity * slot_size
