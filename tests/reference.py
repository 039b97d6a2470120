"""A pure-Python reference model of a chronicle_async queue, for model-based tests.

The model knows nothing about files, segments or offsets: a queue is a list of
messages whose seq is their index, named readers have a committed position
that survives reopening, and readers deliver messages in order. The real queue
must behave the same whatever its segment size or how often it rolls.

Semantics modelled (from the public docs):

- ``append`` returns the next seq; seqs start at 0 and are contiguous, also
  across writer sessions (a reopened writer continues at last seq + 1);
- ``append_batch`` appends in order and returns the seq of the first;
- a reader's position is the seq it delivers next. ``next()`` returns the
  message there or None when it has caught up;
- ``commit()`` stores a named reader's position; a named reader reopened
  resumes there whatever its start mode, so anything read but not committed is
  delivered again (at-least-once);
- the start mode applies to anonymous readers (which cannot commit) and to
  names that never committed: ``Start.EARLIEST`` and ``Start.COMMITTED`` open
  at the first message, ``Start.LATEST`` at the tail;
- ``seek(seq)`` positions at ``seq`` (clamped to ``len``) and is True only
  if that very message exists; a negative ``seq`` is an error (ValueError) and
  keeps the position; ``seek_timestamp(ts)`` positions at the first
  message with ``timestamp_ns >= ts`` (True) or at the tail (False).
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import NamedTuple

COMMITTED, EARLIEST, LATEST = "committed", "earliest", "latest"


class RefMessage(NamedTuple):
    seq: int
    timestamp_ns: int
    type_id: int
    payload: bytes


class AnonymousCommit(Exception):
    """The model's counterpart of InvalidArgumentError from an anonymous reader's commit()."""


@dataclass
class ReferenceQueue:
    messages: list[RefMessage] = field(default_factory=list)
    commits: dict[str, int] = field(default_factory=dict)
    writer_epoch: int = 0

    @property
    def next_seq(self) -> int:
        return len(self.messages)

    def open_writer(self) -> int:
        """A writer session opens (the first creates the queue); returns its epoch."""
        self.writer_epoch += 1
        return self.writer_epoch

    def append(self, type_id: int, payload: bytes, timestamp_ns: int) -> int:
        seq = len(self.messages)
        self.messages.append(RefMessage(seq, timestamp_ns, type_id, bytes(payload)))
        return seq

    def append_batch(self, type_ids: list[int], payloads: list[bytes], timestamps_ns: list[int]) -> int:
        first = len(self.messages)
        for p, t, ts in zip(payloads, type_ids, timestamps_ns):
            self.append(t, p, ts)
        return first

    def open_reader(self, name: str | None, start: str = COMMITTED) -> "ReferenceReader":
        if name is not None and name in self.commits:
            pos = self.commits[name]  # a name that committed resumes there, whatever ``start`` says
        elif start == LATEST:
            pos = self.next_seq
        else:
            pos = 0
        return ReferenceReader(self, name, pos)


@dataclass
class ReferenceReader:
    queue: ReferenceQueue
    name: str | None
    position: int

    @property
    def next_seq(self) -> int:
        return self.position

    def next(self) -> RefMessage | None:
        if self.position < len(self.queue.messages):
            m = self.queue.messages[self.position]
            self.position += 1
            return m
        return None

    def drain(self) -> list[RefMessage]:
        out = []
        while (m := self.next()) is not None:
            out.append(m)
        return out

    def commit(self) -> None:
        if self.name is None:
            raise AnonymousCommit("an anonymous reader cannot commit")
        self.queue.commits[self.name] = self.position

    def seek(self, seq: int) -> bool:
        if seq < 0:
            raise ValueError(f"seq {seq} is negative")
        n = len(self.queue.messages)
        self.position = min(seq, n)
        return seq < n

    def seek_timestamp(self, timestamp_ns: int) -> bool:
        stamps = [m.timestamp_ns for m in self.queue.messages]
        i = bisect.bisect_left(stamps, timestamp_ns)  # timestamps never go backwards
        self.position = i
        return i < len(stamps)


def record_checksum(type_id: int, seq: int, timestamp_ns: int, payload: bytes) -> int:
    """A record's checksum as docs/format.md states it (segment version 2): Adler-32 over the
    header fields type_id (i32), seq (i64), timestamp_ns (i64) and length (u32), little-endian,
    then the payload."""
    import struct
    import zlib

    header = struct.pack("<iqqI", type_id, seq, timestamp_ns, len(payload))
    return zlib.adler32(bytes(payload), zlib.adler32(header))


def records_on_disk(queue_dir) -> dict[int, tuple[int, int]]:
    """``{seq: (segment id, offset)}`` of every committed user record, read with plain file I/O and
    the layout constants (no library code): what damage tests aim at."""
    import os
    import struct

    from chronicle_async.hot import layout as L

    where = {}
    for name in sorted(os.listdir(queue_dir)):
        sid = L.parse_segment_file_name(name)
        if sid is None:
            continue
        data = open(os.path.join(queue_dir, name), "rb").read()
        off = L.SEGMENT_DATA_OFFSET
        while off + L.RECORD_HEADER_LENGTH <= len(data):
            (commit,) = struct.unpack_from("<i", data, off + L.REC_COMMIT_OFFSET)
            if commit <= 0:
                break
            t, seq = struct.unpack_from("<iq", data, off + L.REC_TYPE_ID_OFFSET)
            if t >= 0:
                where[seq] = (sid, off)
            off += L.record_length(commit - 1)
    return where

