"""Configuration objects and enums of the public API. Durations are seconds (floats)."""
from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from .._errors import ArgumentTypeError, InvalidArgumentError
from ..hot import layout as L


class Durability(enum.Enum):
    """When written data reaches the disk (see docs/operations.md).

    Every committed message survives the *process* crashing in all modes: it is
    in the page cache the moment ``append`` returns. These modes are about
    surviving the *host* losing power.
    """

    #: Leave write-back to the kernel. ``QueueWriter.flush()`` still works on demand.
    NONE = "none"
    #: A background thread of the writer flushes new data every ``flush_interval`` seconds.
    ASYNC = "async"
    #: ``flush()`` is the durability point; each roll also flushes the finished segment, and
    #: fsyncs the new segment file and the queue directory when the roll created the file.
    SYNC = "sync"


class Start(enum.Enum):
    """Where a reader starts when it has no committed position.

    That is every anonymous reader, and a named reader the first time its name is used (or after
    :meth:`Queue.reset_reader` / :meth:`Queue.delete_reader`). A named reader that has committed
    always resumes after its last ``commit()``, whatever ``start`` says, like Kafka's
    ``auto.offset.reset``: moving a name's position is an explicit act (``Queue.reset_reader``,
    ``chronicle readers QUEUE reset NAME``), never a side effect of how a process opened it.
    """

    #: The default: the earliest data still on disk (a name that committed resumes after its commit).
    COMMITTED = "committed"
    #: The oldest message still on disk.
    EARLIEST = "earliest"
    #: Only messages appended after the open.
    LATEST = "latest"


class WaitStrategy(enum.Enum):
    """How ``QueueReader.wait()`` waits for data."""

    #: Spin on the commit word: lowest latency, burns a core.
    BUSY_SPIN = "busy_spin"
    #: Spin for ``spin_time`` seconds, then park on the futex.
    SPIN_THEN_PARK = "spin_then_park"
    #: Park on the futex straight away: no CPU while idle, tens of µs to wake.
    PARK = "park"


def _check_positive(name: str, value: object, *, allow_none: bool = False, integer: bool = False) -> None:
    if value is None and allow_none:
        return
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        want = "an int" if integer else "a number of seconds"
        raise ArgumentTypeError(f"WriterConfig.{name} must be {want}, not {type(value).__name__}")
    if not math.isfinite(value) or value <= 0:
        raise InvalidArgumentError(f"WriterConfig.{name} must be a finite number > 0, got {value!r}")


#: The most segments a supplier may keep prepared past a writer's head.
MAX_PREPARE_AHEAD = 64


@dataclass(frozen=True)
class WriterConfig:
    """Settings of a :class:`QueueWriter`. All durations are seconds.

    ``segment_size`` applies when the writer creates the queue; an existing queue
    keeps the size stored in its control file.
    """

    #: Bytes per segment file: a multiple of 4096, at least 16 KiB.
    segment_size: int = L.DEFAULT_SEGMENT_SIZE
    #: Soft cap on the bytes of segment files kept on disk (None: no cap). Checked by the
    #: writer's housekeeping thread every ``retention_check_interval``, never on append.
    max_bytes: int | None = None
    #: Soft cap on the number of segment files kept (None: no cap).
    max_segments: int | None = None
    #: See :class:`Durability`.
    durability: Durability = Durability.NONE
    #: Period of background flushes with ``Durability.ASYNC``.
    flush_interval: float = 0.05
    #: Period of the writer's liveness heartbeat (readers judge staleness with their own ttl).
    heartbeat_interval: float = 0.1
    #: How often the retention caps are checked when set.
    retention_check_interval: float = 0.01
    #: Fault in each new segment's pages when it is opened, so appends take no page faults.
    prefault: bool = True
    #: Segments the writer's own supplier thread keeps prepared past the head, so that a roll
    #: creates no file (``queue/supply.py``). None: 2 for segments of 4 to 64 MiB (a stock that
    #: absorbs a late preparation), 1 for larger ones or with a retention cap (recycled segments; prepared ones come on
    #: top of the caps), up to 8 for smaller segments. 0: no supplier thread; every roll creates and
    #: maps its segment inline (tens of milliseconds for a large segment). A ControlPlane managing the writer takes this over.
    prepare_ahead: int | None = None
    #: With a retention cap (``max_bytes`` / ``max_segments``), the supplier turns the segment the cap
    #: retires into the next prepared one: zeroed in place, with no new pages (``queue/supply.py``).
    #: A segment a reader still maps is deleted as usual instead. False: delete and create anew.
    recycle: bool = True

    def __post_init__(self) -> None:
        _check_positive("segment_size", self.segment_size, integer=True)
        why = L.check_segment_size(self.segment_size)
        if why:
            raise InvalidArgumentError(f"WriterConfig: {why} (got {self.segment_size})")
        _check_positive("max_bytes", self.max_bytes, allow_none=True, integer=True)
        _check_positive("max_segments", self.max_segments, allow_none=True, integer=True)
        if not isinstance(self.durability, Durability):
            try:
                object.__setattr__(self, "durability", Durability(self.durability))
            except ValueError:
                raise InvalidArgumentError(
                    f"WriterConfig.durability must be one of {[d.value for d in Durability]}, got {self.durability!r}"
                ) from None
        for name in ("flush_interval", "heartbeat_interval", "retention_check_interval"):
            _check_positive(name, getattr(self, name))
        if not isinstance(self.prefault, bool):
            raise ArgumentTypeError("WriterConfig.prefault must be a bool")
        if not isinstance(self.recycle, bool):
            raise ArgumentTypeError("WriterConfig.recycle must be a bool")
        p = self.prepare_ahead
        if p is not None and (isinstance(p, bool) or not isinstance(p, int) or not 0 <= p <= MAX_PREPARE_AHEAD):
            raise InvalidArgumentError(
                f"WriterConfig.prepare_ahead must be None or an int between 0 and {MAX_PREPARE_AHEAD}, got {p!r}"
            )
