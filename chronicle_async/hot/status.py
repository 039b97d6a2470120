"""Status codes returned by hot kernels. Kernels never raise; the Python face maps these.

Non-negative results are values (a seq, a count, an offset). Negative results
are one of the codes below, each documented with what the caller should do.
"""
from __future__ import annotations

#: The record does not fit in the current segment: roll (``QueueWriter.roll()``) and retry.
SEGMENT_FULL = -2
#: The payload can never fit any segment of this queue: reject it (``PayloadTooLargeError``).
PAYLOAD_TOO_LARGE = -3
#: No committed record at the read position yet: wait or poll again later.
NO_DATA = -4
#: The reader reached this segment's end marker: map the next segment and continue.
END_OF_SEGMENT = -5
#: A committed record is malformed (length mismatch or overruns the segment): stop, report the file.
CORRUPT = -6
#: A ``type_id`` outside 0..MAX_TYPE_ID was given: reject it.
BAD_TYPE_ID = -7
#: The handle's segment is no longer the writer's head (a roll happened): take a new
#: handle with ``QueueWriter.hot_handle()`` and retry. Nothing was written.
STALE_HANDLE = -8

NAMES = {
    SEGMENT_FULL: "SEGMENT_FULL",
    PAYLOAD_TOO_LARGE: "PAYLOAD_TOO_LARGE",
    NO_DATA: "NO_DATA",
    END_OF_SEGMENT: "END_OF_SEGMENT",
    CORRUPT: "CORRUPT",
    BAD_TYPE_ID: "BAD_TYPE_ID",
    STALE_HANDLE: "STALE_HANDLE",
}
