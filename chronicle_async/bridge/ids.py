"""What the bridge writes beside each payload: NATS headers on the way out, a 16-byte prefix on the way in.

Out (queue -> stream), each stream message carries the headers
``Chronicle-Queue-Id`` (hex), ``Chronicle-Seq``, ``Chronicle-Timestamp-Ns``, ``Chronicle-Type-Id``
and ``Nats-Msg-Id = "<queue_id hex>-<seq>"`` (the duplicate-detection key).

In (stream -> queue), each local message keeps the source ``type_id`` and ``timestamp_ns`` in its own
fields and starts with :data:`PREFIX` (little-endian u64 stream seq, u64 source queue seq) before the
source payload. :func:`unpack` gives them back; the local queue's seqs are its own.
"""
from __future__ import annotations

import struct
from typing import NamedTuple

from ..queue.reader import Message

H_QUEUE_ID = "Chronicle-Queue-Id"
H_SEQ = "Chronicle-Seq"
H_TIMESTAMP = "Chronicle-Timestamp-Ns"
H_TYPE_ID = "Chronicle-Type-Id"
H_MSG_ID = "Nats-Msg-Id"

#: ``<stream seq u64><source seq u64>`` in front of each payload a ``bridge in`` appends.
PREFIX = struct.Struct("<QQ")


def msg_id(queue_id: int, seq: int) -> str:
    """The ``Nats-Msg-Id`` of message ``seq`` of queue ``queue_id``: unique per queue identity and seq."""
    return f"{queue_id:x}-{seq}"


def out_headers(queue_id: int, m: Message) -> dict[str, str]:
    """The headers ``bridge out`` publishes message ``m`` with."""
    q = f"{queue_id:x}"
    return {
        H_MSG_ID: f"{q}-{m.seq}", H_QUEUE_ID: q, H_SEQ: str(m.seq),
        H_TIMESTAMP: str(m.timestamp_ns), H_TYPE_ID: str(m.type_id),
    }


class BridgedMessage(NamedTuple):
    """A message a ``bridge in`` appended, as the source wrote it."""

    local_seq: int
    stream_seq: int
    source_seq: int
    timestamp_ns: int
    type_id: int
    payload: memoryview


def unpack(m: Message) -> BridgedMessage:
    """Split a message of a ``bridge in`` queue into its source seq, stream seq and the source payload."""
    stream_seq, source_seq = PREFIX.unpack_from(m.payload)
    return BridgedMessage(m.seq, stream_seq, source_seq, m.timestamp_ns, m.type_id, m.payload[PREFIX.size:])
