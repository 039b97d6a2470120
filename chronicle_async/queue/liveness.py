"""Liveness signals a reader can ask for: primitives, never policy."""
from __future__ import annotations

import enum
from dataclasses import dataclass

from ..hot import layout as L

#: ``writer_state`` words of the control file, as ``WriterStatus.state`` and ``chronicle inspect`` name them.
WRITER_STATE_NAMES = {L.WRITER_STATE_NONE: "none", L.WRITER_STATE_OPEN: "open", L.WRITER_STATE_CLOSED: "closed"}


class DisconnectReason(enum.Enum):
    """Why a reader should consider its writer gone (``QueueReader.detect_disconnect``)."""

    #: The writer process died (its lock is free but it never closed the queue).
    WRITER_DIED = "writer_died"
    #: The writer closed the queue cleanly; no more messages until a new writer opens it.
    WRITER_CLOSED = "writer_closed"
    #: The writer holds its lock but has not heartbeated within the ttl (hung or stopped).
    HEARTBEAT_STALE = "heartbeat_stale"
    #: The segment file this reader is positioned in was deleted.
    SEGMENT_MISSING = "segment_missing"
    #: A new writer session opened the queue since this reader last acknowledged it.
    EPOCH_CHANGED = "epoch_changed"
    #: The queue's control file is gone or belongs to another queue (the queue was deleted,
    #: e.g. ``shutil.rmtree``, or deleted and created again): nothing more comes to this reader.
    QUEUE_DELETED = "queue_deleted"


@dataclass(frozen=True)
class WriterStatus:
    """A snapshot of the writer's liveness, as seen from the control file and lock."""

    #: Lock held and heartbeat within the ttl.
    alive: bool
    #: Some process holds the writer lock right now.
    lock_held: bool
    #: Writer pid recorded in the control file (0 if none ever opened).
    pid: int
    #: Writer session number; goes up by one on every writer open.
    epoch: int
    #: "open", "closed" or "none"; "deleted" once the queue was deleted (or replaced) under the reader.
    state: str
    #: Wall-clock time of the last heartbeat, ns since the epoch (0 if never).
    heartbeat_ns: int
    #: Seconds since that heartbeat.
    heartbeat_age: float
    #: The ttl (seconds) this status was judged with.
    ttl: float
