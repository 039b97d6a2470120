"""QueueWriter: the single writer of a queue (Python face over the hot append kernels)."""
from __future__ import annotations

import errno
import inspect
import logging
import os
import struct
import threading
import time
import zlib
import weakref
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np

from . import args as A
from . import files as F
from . import fork as _fork
from .config import MAX_PREPARE_AHEAD, Durability, WriterConfig
from .._errors import (
    ArgumentTypeError,
    ChronicleError,
    CorruptSegmentError,
    DiskFullError,
    ForkError,
    InvalidArgumentError,
    PayloadTooLargeError,
    QueueClosedError,
    QueueDeletedError,
    WriterLockedError,
)
from .housekeeping import Housekeeper
from .supply import SegmentSupplier, auto_prepare_ahead
from .recovery import RecoveryReport, Tail, recover, write_end_marker
from .lock import FileLock, read_owner
from .fences import TSO, asymmetric_fence_register
from .warm import warm_writer
from ..hot import append as AP
from ..hot import layout as L
from ..hot import status as S

log = logging.getLogger("chronicle_async")

#: Most segments past the head a control plane may prepare for one writer.

_BODY = struct.Struct(L.RECORD_BODY_FORMAT)
_IDX_WRITE_OFFSET = L.CTL_WRITE_OFFSET_OFFSET // 8
_IDX_NEXT_SEQ = L.CTL_NEXT_SEQ_OFFSET // 8
_IDX_WRITE_SEGMENT = L.CTL_WRITE_SEGMENT_OFFSET // 8
_IDX_WAITERS = L.CTL_WAITERS_OFFSET // 4
_HDR = L.RECORD_HEADER_LENGTH
_BODY_OFFSET = L.REC_TYPE_ID_OFFSET
_ALIGN_M1 = L.RECORD_ALIGNMENT - 1
_ALIGN_MASK = ~_ALIGN_M1
_MAX_TYPE_ID = L.MAX_TYPE_ID
_time_ns = time.time_ns
_adler32 = zlib.adler32
_pack_body = _BODY.pack_into
_pack_checked = struct.Struct(L.RECORD_CHECKED_FORMAT).pack  # the header bytes a checksum covers
_wake_if_waiting = AP.wake_if_waiting

#: bytes payloads up to this size are packed together with the header by one cached Struct.
_FUSED_MAX = 4096
_fused_pack: dict[int, Any] = {}


def _make_fused_pack(n: int) -> Any:
    if len(_fused_pack) > 512:  # bounded: many distinct sizes fall back to fresh Structs
        _fused_pack.clear()
    pack = _fused_pack[n] = struct.Struct(f"{L.RECORD_BODY_FORMAT}{n}s").pack_into
    return pack


_CLOSED: Any = F.ClosedView("writer")


def _bad_batch_item(items: Sequence[Any]) -> ChronicleError:
    """The error for the first item of an ``append_batch`` sequence that is not bytes-like, naming its index."""
    for i, p in enumerate(items):
        if isinstance(p, str):
            return ArgumentTypeError(
                f"append_batch: item {i} is a str; payloads must be bytes-like (encode text first: s.encode())"
            )
        try:
            A.as_bytes_like(p)
        except ChronicleError as e:
            return type(e)(f"append_batch: item {i}: {e}")
    return ArgumentTypeError("append_batch: payloads must be bytes-like")  # pragma: no cover


def _both(first: Callable[[int], None], second: Callable[[int], None]) -> Callable[[int], None]:
    def call(new_segment_id: int) -> None:
        first(new_segment_id)
        second(new_segment_id)

    return call


class RollCounts(NamedTuple):
    """How a writer's rolls found their next segment (:attr:`QueueWriter.roll_counts`)."""

    #: Rolls that took a segment a supplier had prepared: an end marker and a few stores.
    prepared: int
    #: Rolls that created and mapped the segment themselves, on the writer's thread.
    inline: int
    #: Of the ``prepared`` rolls, those whose segment was a retired one recycled by the supplier
    #: (zeroed in place, no new pages: ``WriterConfig.recycle``).
    recycled: int = 0


_BATCH_ARGS = ("type_ids", "payloads", "timestamps_ns")
_OLD_BATCH_ARGS = ("payloads", "type_ids", "timestamps_ns")


def _looks_like_payloads(first: Any) -> bool:
    """True if append_batch's first argument is payloads (the old order), not type ids."""
    if isinstance(first, (int, float, np.number)):
        return False
    if isinstance(first, np.ndarray):
        return first.ndim == 2 or (first.ndim == 1 and first.dtype.names is not None)
    if isinstance(first, (list, tuple)):
        return bool(first) and not isinstance(first[0], (int, np.integer))
    return True  # bytes, a generator or another iterable: type ids are an int, a sequence or an array


def _batch_args(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, Any, Any]:
    """Bind append_batch's arguments: ``(type_ids, payloads, timestamps_ns)``, from either order."""
    unknown = sorted(set(kwargs) - set(_BATCH_ARGS))
    if unknown or len(args) > 3:
        raise ArgumentTypeError(
            f"append_batch(type_ids, payloads, timestamps_ns=None) got {'unknown keywords ' + str(unknown) if unknown else f'{len(args)} positional arguments'}"
        )
    old = "payloads" not in kwargs and bool(args) and _looks_like_payloads(args[0])
    names = _OLD_BATCH_ARGS if old else _BATCH_ARGS
    bound = dict(kwargs)
    for name, value in zip(names, args):
        if name in bound:
            raise ArgumentTypeError(f"append_batch got two values for {name}")
        bound[name] = value
    if old:
        import warnings

        warnings.warn(
            "append_batch(payloads, type_ids) is deprecated: the order is now append_batch(type_ids, payloads, "
            "timestamps_ns), like append(type_id, payload)", DeprecationWarning, stacklevel=3,
        )
    bound.setdefault("type_ids", 0)
    if "payloads" not in bound:
        raise ArgumentTypeError("append_batch(type_ids, payloads): the payloads are missing; e.g. append_batch(0, [b'a', b'b'])")
    return bound["type_ids"], bound["payloads"], bound.get("timestamps_ns")


def _append_batch_signature(
    self, type_ids: int | Sequence[int] | np.ndarray, payloads: Any,  # type: ignore[no-untyped-def]
    timestamps_ns: int | Sequence[int] | np.ndarray | None = None,
) -> int:
    """The signature ``QueueWriter.append_batch`` shows (it also binds the old order)."""
    raise NotImplementedError


class QueueWriter:
    """The one writer of a queue. Create it with :meth:`Queue.open_publisher`.

    A context manager. Use it from one thread: ``append`` takes no lock. (The
    writer's own housekeeping thread only stores the heartbeat word and, when
    configured, flushes and applies the retention caps.)
    """

    def __init__(self, path: str | os.PathLike, config: WriterConfig | None = None, *, repair: bool = False):
        if config is None:
            config = WriterConfig()
        if not isinstance(config, WriterConfig):
            raise ArgumentTypeError(f"config must be a WriterConfig, not {type(config).__name__}")
        self._path = A.check_path(path)
        self._config = config
        if not isinstance(repair, bool):
            raise ArgumentTypeError(f"repair must be True or False, not {type(repair).__name__}")
        self._repair = repair
        self._recovery: RecoveryReport | None = None
        self._forked: ForkError | None = None  # set in a forked child (queue/fork.py)
        self._closed = True
        self._ctl_q = self._ctl_i32 = self._seg_mv = _CLOSED
        self._lock: FileLock | None = None
        self._ctl: F.Mapping | None = None
        self._seg: F.Mapping | None = None
        self._housekeeper: Housekeeper | None = None
        self._io_lock = threading.Lock()  # roll / flush / close (cold paths) against the housekeeper
        self._unsynced: list[str] = []
        self._dir_dirty = False
        #: ``{segment_id: writable Mapping}`` prepared by a control plane's prealloc worker
        #: (at most ``_prepare_ahead`` of them, for the next segments).
        self._prepared: dict[int, F.Mapping] = {}
        #: Mappings of segments rolled away from, unmapped later by the control plane (munmap of a
        #: large pre-faulted mapping costs milliseconds) or at the next roll without one.
        self._retired: list[F.Mapping] = []
        #: The supplier's roll callback (:meth:`attach_supplier`): called with the new segment id after
        #: a roll that leaves ``_notify_below`` or fewer prepared segments (the control plane's wake-up:
        #: a system call, so not every roll).
        self._on_roll: Callable[[int], None] | None = None
        self._prepare_ahead = 0
        self._notify_below = 0
        #: The HotLoop whose thread appends to this writer, if any (:attr:`hot_owner`).
        self._hot_owner: Any = None
        #: The writer's own supplier thread (``WriterConfig.prepare_ahead``), and its depth.
        self._supplier: SegmentSupplier | None = None
        self._own_depth = 0
        self._rolls_prepared = 0
        self._rolls_inline = 0
        self._rolls_recycled = 0
        self._recycled_ids: set[int] = set()  # prepared segments that are recycled ones (for roll_counts)
        self._supply_pending = False  # a roll asked the supplier for segments; its pass is not done
        try:
            self._open()
        except BaseException:
            self._teardown()
            raise
        self._closed = False
        _fork.track(self._forget_in_child)
        depth = self._config.prepare_ahead
        capped = self._config.max_bytes is not None or self._config.max_segments is not None
        self._own_depth = auto_prepare_ahead(self._segment_size, capped) if depth is None else depth
        if self._own_depth:
            self._supplier = SegmentSupplier(self)
            self._supplier.start()
            self._attach_own_supplier()
        if F.segment_version(self._seg) < L.SEGMENT_VERSION:
            self.roll()  # a head segment written by an older version: new records go to a current one

    # -- open and recovery ------------------------------------------------------------------

    def _open(self) -> None:
        d = self._path
        F.check_queue_dir(d, creating=True)
        F.make_dir(d)  # a folder made here is never writable by others, whatever the umask
        lock_path = os.path.join(d, L.WRITER_LOCK_NAME)
        self._lock = FileLock.try_acquire(lock_path, fix="open the publisher again (the lock file is recreated)")
        if self._lock is None:
            owner = read_owner(lock_path)
            pid = owner[0] if owner else None
            raise WriterLockedError(
                f"queue {d} already has a live writer (pid {pid if pid else 'unknown'}, lock {lock_path}); "
                "a queue has one writer at a time: stop that process, or write to another queue",
                pid,
            )
        F.remove_orphan_temp_files(d)
        if not os.path.exists(F.control_path(d)):
            F.create_queue(d, self._config.segment_size)
        self._ctl, info = F.open_control(d, writable=True)
        self._ctl_q, self._ctl_i32, self._ctl_arr = self._ctl.q, self._ctl.i32, self._ctl.arr
        self._segment_size = info.segment_size
        self._queue_id = info.queue_id
        self._data_end = L.segment_data_end(self._segment_size)
        self._max_payload = L.max_payload(self._segment_size)
        self._recover()
        q = self._ctl.q
        self._epoch = q[L.CTL_WRITER_EPOCH_OFFSET // 8] + 1
        q[L.CTL_WRITER_EPOCH_OFFSET // 8] = self._epoch
        q[L.CTL_WRITER_PID_OFFSET // 8] = os.getpid()
        flags = L.WRITER_FLAG_ASYMMETRIC_FENCE if asymmetric_fence_register() else 0
        if not flags and TSO:
            log.warning(
                "membarrier(2) is unavailable: readers parked on %s fall back to 1 ms polling slices", d
            )
        self._ctl.i32[L.CTL_WRITER_FLAGS_OFFSET // 4] = flags
        warm_writer()  # the first wake must not wait for a compile (queue/warm.py)
        q[L.CTL_HEARTBEAT_NS_OFFSET // 8] = time.time_ns()
        self._ctl.i32[L.CTL_WRITER_STATE_OFFSET // 4] = L.WRITER_STATE_OPEN
        self._lock.write_owner(f"epoch={self._epoch}")
        self._flushed_to = self._ctl.q[_IDX_WRITE_OFFSET]
        self._housekeeper = self._make_housekeeper()
        self._housekeeper.start()

    def _make_housekeeper(self) -> Housekeeper:
        """The housekeeping thread, given what it uses and no more: the heartbeat word of the control
        file, the queue's identity and retention caps, and callables for the writer's flush, closed
        state and head segment. The callables hold the writer weakly (the thread never keeps it
        alive); once it is gone they say closed, flush nothing and give no head."""
        cfg = self._config
        hb = L.CTL_HEARTBEAT_NS_OFFSET // 8
        ref = weakref.ref(self)
        flush_ref = weakref.WeakMethod(self._flush_unless_closed)

        def closed() -> bool:
            w = ref()
            return w is None or w.closed

        def flush() -> None:
            f = flush_ref()
            if f is not None:
                f()

        def head_segment() -> int | None:
            w = ref()
            return None if w is None else w.segment_id

        def spare() -> int:
            w = ref()
            return 1 if w is not None and w.recycles and w.supply_pending else 0

        return Housekeeper(
            self._path, self._queue_id, self._segment_size, self._ctl.q[hb : hb + 1],
            heartbeat_interval=cfg.heartbeat_interval,
            flush_interval=cfg.flush_interval if cfg.durability is Durability.ASYNC else None,
            retention_interval=cfg.retention_check_interval,
            max_bytes=cfg.max_bytes, max_segments=cfg.max_segments,
            flush=flush, closed=closed, head_segment=head_segment, spare=spare,
        )

    def _recover(self) -> None:
        """Run recovery over the queue's files with the control file's hints, then store its tail."""
        assert self._ctl is not None
        q, i32 = self._ctl.q, self._ctl.i32
        tail: Tail = recover(
            self._path, self._segment_size, self._queue_id,
            head_hint=q[_IDX_WRITE_SEGMENT], seq_hint=int(q[_IDX_NEXT_SEQ]),
            clean=i32[L.CTL_WRITER_STATE_OFFSET // 4] == L.WRITER_STATE_CLOSED,
            repair=self._repair, prefault=self._config.prefault,
        )
        self._seg, self._seg_id = tail.mapping, tail.segment_id
        self._seg_i32 = F.commit_view(tail.mapping)
        self._seg_mv = tail.mapping.mv
        q[_IDX_WRITE_SEGMENT] = tail.segment_id
        q[_IDX_WRITE_OFFSET] = tail.offset
        q[_IDX_NEXT_SEQ] = tail.next_seq
        self._recovery = tail.report

    @property
    def recovery(self) -> RecoveryReport:
        """What recovery found and did when this writer opened (:class:`RecoveryReport`)."""
        assert self._recovery is not None
        return self._recovery

    # -- appending --------------------------------------------------------------------------

    def append(self, type_id: int, payload: Any, timestamp_ns: int | None = None) -> int:
        """Append one message and return its seq.

        ``payload`` is any bytes-like object (bytes, bytearray, memoryview, a
        C-contiguous numpy array). ``timestamp_ns`` defaults to CLOCK_REALTIME
        now, in ns. The message is visible to readers when this returns.

        Arguments are validated before any byte is written, so a rejected call
        leaves nothing behind the tail.
        """
        fused = type(payload) is bytes
        if not fused:
            payload = A.as_bytes_like(payload)
        if timestamp_ns is None:
            timestamp_ns = _time_ns()
        elif type(timestamp_ns) is not int:
            timestamp_ns = A.check_timestamp(timestamp_ns)
        if type(type_id) is not int or not 0 <= type_id <= _MAX_TYPE_ID:
            type_id = A.check_type_id(type_id)
        n = len(payload)
        q = self._ctl_q
        off = q[_IDX_WRITE_OFFSET]
        end = off + ((_HDR + _ALIGN_M1 + n) & _ALIGN_MASK)
        if end > self._data_end:
            off = self._roll_for(n)
            end = off + ((_HDR + _ALIGN_M1 + n) & _ALIGN_MASK)
        seq = q[_IDX_NEXT_SEQ]
        mv = self._seg_mv
        try:  # a failure here can only leave header bytes under a zero commit word: the slot is reused
            ck = _adler32(payload, _adler32(_pack_checked(type_id, seq, timestamp_ns, n)))  # header, then payload
            if fused and n <= _FUSED_MAX:  # header and payload in one C call
                pack = _fused_pack.get(n) or _make_fused_pack(n)
                pack(mv, off + _BODY_OFFSET, type_id, seq, timestamp_ns, n, ck, payload)
            else:
                _pack_body(mv, off + _BODY_OFFSET, type_id, seq, timestamp_ns, n, ck)
                mv[off + _HDR : off + _HDR + n] = payload
        except struct.error as e:
            raise InvalidArgumentError(f"append: timestamp_ns {timestamp_ns} is out of range: {e}") from None
        self._seg_i32[off >> 2] = n + 1  # the commit store (release: TSO, or a jitted store elsewhere)
        q[_IDX_WRITE_OFFSET] = end
        q[_IDX_NEXT_SEQ] = seq + 1
        if self._ctl_i32[_IDX_WAITERS]:  # rare: someone parked; the kernel checks their expiry too
            _wake_if_waiting(self._ctl_arr)
        return seq

    def append_batch(self, *args: Any, **kwargs: Any) -> int:
        """Append many messages in one call; returns the seq of the first.

        ``append_batch(type_ids, payloads, timestamps_ns=None)``: the order of :meth:`append`,
        type ids first. ``payloads`` is a 2-D C-contiguous array (one row per message), a 1-D
        structured array (one element per message), or a sequence of bytes-like objects.
        ``type_ids`` and ``timestamps_ns`` are scalars or per-message arrays; the default
        timestamp is CLOCK_REALTIME at the call, for all. Messages are committed in order; one
        wake covers the batch. The old order, ``append_batch(payloads, type_ids=0, ...)``, still
        works and warns (DeprecationWarning); it is told apart by the first argument's type.

        The whole batch is validated before any message is written: a bad argument or a too
        large payload appends nothing. A failure part-way (the disk filled at a roll) says how
        many went in: every error raised here carries ``appended`` (0 when nothing was).
        """
        type_ids, payloads, timestamps_ns = _batch_args(args, kwargs)
        data, offsets = self._batch_layout(payloads)
        count = len(offsets) - 1
        if count == 0:
            return self._ctl_q[_IDX_NEXT_SEQ]
        tids = A.per_message(type_ids, count, "type_ids")
        if tids.size and (tids.min() < 0 or tids.max() > L.MAX_TYPE_ID):
            raise InvalidArgumentError(f"append_batch: type_ids must be in 0..{L.MAX_TYPE_ID}; nothing was appended")
        tids = tids.astype(np.int32)
        tss = A.per_message(time.time_ns() if timestamps_ns is None else timestamps_ns, count, "timestamps_ns")
        self._check_batch_sizes(offsets)
        first = self._ctl_q[_IDX_NEXT_SEQ]
        start = 0
        while start < count:
            done = AP.append_batch(self._seg.arr, self._ctl_arr, tids, data, offsets, tss, start)
            if done < 0:
                raise self._batch_failure(done, start, first, offsets, tids)
            start += done
            if start < count:
                try:
                    self._roll_for(int(offsets[start + 1] - offsets[start]))
                except DiskFullError as e:
                    err = DiskFullError(
                        errno.ENOSPC,
                        f"{e.strerror}. Messages 0..{start - 1} of this batch were appended (seqs {first}.."
                        f"{first + start - 1}); retry with the rest, payloads[{start}:]",
                    )
                    err.appended = start
                    raise err from None
        return first

    def _check_batch_sizes(self, offsets: np.ndarray) -> None:
        """PayloadTooLargeError (``appended`` 0) if any message of a batch exceeds ``max_payload``."""
        lengths = np.diff(offsets)
        if lengths.size and lengths.max() > self._max_payload:
            self.check_open()
            bad = int(np.argmax(lengths > self._max_payload))
            err = PayloadTooLargeError(
                f"append_batch: message {bad} of the batch is {int(lengths[bad])} bytes; queue {self._path} "
                f"takes at most {self._max_payload} bytes per message (its segment_size is {self._segment_size}); "
                "nothing of the batch was appended: split that message, or create the queue with a larger "
                "WriterConfig(segment_size=...)"
            )
            err.appended = 0  # type: ignore[attr-defined]
            raise err

    def _batch_failure(self, status: int, start: int, first: int, offsets: np.ndarray, tids: np.ndarray) -> ChronicleError:
        """The typed error for a kernel status part-way through a batch, with ``appended`` = ``start``."""
        done = (f"messages 0..{start - 1} of this batch were appended (seqs {first}..{first + start - 1})"
                if start else "nothing of the batch was appended")
        if status == S.PAYLOAD_TOO_LARGE:
            err: ChronicleError = PayloadTooLargeError(
                f"message {start} of the batch is {offsets[start + 1] - offsets[start]} bytes; queue {self._path} "
                f"takes at most {self._max_payload} bytes per message; {done}"
            )
        elif status == S.STALE_HANDLE:
            err = QueueClosedError(f"the writer of {self._path} lost its head segment mapping; {done}")
        else:
            err = InvalidArgumentError(f"message {start} of the batch has type_id {tids[start]} outside "
                                       f"0..{L.MAX_TYPE_ID}; {done}")
        err.appended = start  # type: ignore[attr-defined]
        return err

    @staticmethod
    def _batch_layout(payloads: Any) -> tuple[np.ndarray, np.ndarray]:
        if isinstance(payloads, np.ndarray):
            if payloads.dtype.hasobject:
                raise ArgumentTypeError(
                    f"append_batch: payloads is a numpy array of {payloads.dtype} (Python objects): its bytes would be "
                    "memory addresses; pass plain data (numbers, bytes) or serialise the objects first"
                )
            if payloads.dtype.names is not None and payloads.ndim == 1:
                arr = np.ascontiguousarray(payloads)
                size = arr.dtype.itemsize
                count = arr.shape[0]
            elif payloads.ndim == 2:
                arr = np.ascontiguousarray(payloads)
                size = arr.shape[1] * arr.dtype.itemsize
                count = arr.shape[0]
            else:
                raise InvalidArgumentError(
                    "append_batch: a numpy payload array must be 2-D (one row per message) or a 1-D structured array"
                )
            data = arr.reshape(-1).view(np.uint8) if arr.size else np.zeros(0, np.uint8)
            return data, np.arange(count + 1, dtype=np.int64) * size
        if isinstance(payloads, (bytes, bytearray, memoryview, str)):
            raise ArgumentTypeError("append_batch takes a sequence of payloads; for one message use append()")
        try:
            items = payloads if isinstance(payloads, (list, tuple)) else list(payloads)
        except TypeError:
            raise ArgumentTypeError(f"append_batch: payloads must be an array or a sequence of bytes-like, not {type(payloads).__name__}") from None
        try:
            parts = [p if isinstance(p, (bytes, bytearray)) else A.as_bytes_like(p) for p in items]
        except ChronicleError:
            raise _bad_batch_item(items) from None
        lengths = np.fromiter((len(p) for p in parts), dtype=np.int64, count=len(parts))
        offsets = np.zeros(len(parts) + 1, np.int64)
        np.cumsum(lengths, out=offsets[1:])
        return np.frombuffer(b"".join(parts), np.uint8), offsets

    def hot_handle(self) -> AP.WriterHandle:
        """The buffers jitted code passes to ``chronicle_async.hot.append.append``.

        Valid until the next roll: when the kernel returns ``SEGMENT_FULL``, leave
        the jitted loop, call :meth:`roll`, and take a new handle.
        """
        self.check_open()
        return AP.WriterHandle(self._seg.arr, self._ctl_arr)

    # -- rolling ----------------------------------------------------------------------------

    def _roll_for(self, n: int) -> int:
        if n > self._max_payload:
            self.check_open()
            raise PayloadTooLargeError(
                f"payload of {n} bytes is too large for queue {self._path}: its segment_size "
                f"({self._segment_size}) allows at most {self._max_payload} bytes per message; "
                "split the message or create the queue with a larger WriterConfig(segment_size=...)"
            )
        self.roll()
        return self._ctl_q[_IDX_WRITE_OFFSET]

    def roll(self) -> int:
        """End the current segment and continue in the next one; returns the new segment id.

        ``append`` calls this itself. Jitted writers call it after ``SEGMENT_FULL``.
        An existing (prepared) next segment is opened as it is, never truncated.
        """
        self.check_open()
        with self._io_lock:
            d = self._path
            new_id = self._seg_id + 1
            durable = self._config.durability is Durability.SYNC
            new = self._take_prepared(new_id)
            if new is not None and not os.path.exists(new.path):  # one stat: the queue may be gone under us
                self._retired.append(new)
                new = None
            inline = new is None
            if inline:
                self._rolls_inline += 1
            else:
                self._rolls_prepared += 1
                if new_id in self._recycled_ids:
                    self._rolls_recycled += 1
            self._recycled_ids.discard(new_id)
            if inline:  # nobody prepared it: create and map it here (slow: fallocate, mmap, prefault)
                try:
                    F.create_segment(d, new_id, self._segment_size, self._queue_id, durable=durable)
                    new = F.open_segment(d, new_id, self._segment_size, self._queue_id, writable=True, prefault=self._config.prefault)
                except (FileNotFoundError, NotADirectoryError, CorruptSegmentError):
                    if F.queue_gone(d, self._queue_id):
                        raise self._deleted_error(f"roll to segment {new_id}") from None
                    raise
            q = self._ctl_q
            off = q[_IDX_WRITE_OFFSET]
            old = self._seg
            # The end marker goes first: a crash after it leaves a segment that recovery and
            # readers both follow to N+1 (which exists). Then the head moves.
            write_end_marker(self._seg, off, q[_IDX_NEXT_SEQ])
            q[_IDX_WRITE_SEGMENT] = new_id
            q[_IDX_WRITE_OFFSET] = L.SEGMENT_DATA_OFFSET
            if self._ctl_i32[_IDX_WAITERS]:
                _wake_if_waiting(self._ctl_arr)
            if durable:
                old.flush()
            else:
                self._unsynced.append(old.path)  # flush() will fdatasync it
            self._dir_dirty = True
            self._seg, self._seg_id, self._seg_mv = new, new_id, new.mv
            self._seg_i32 = F.commit_view(new)
            self._flushed_to = L.SEGMENT_DATA_OFFSET
            on_roll = self._on_roll
            if self._prepare_ahead:
                self._retired.append(old)  # the control plane's prealloc thread unmaps it
            else:
                old.close()
                self.release_retired()
            if on_roll is not None and (inline or len(self._prepared) <= self._notify_below):
                self._supply_pending = True
                on_roll(new_id)
            return new_id

    def _deleted_error(self, doing: str) -> QueueDeletedError:
        return QueueDeletedError(
            f"cannot {doing}: queue {self._path} was deleted under this writer (its folder or "
            f"{L.CONTROL_FILE_NAME} is gone, or a new queue replaced it); what it appended since is lost with it. "
            "Close this writer and reopen the publisher (Queue.open_publisher) to create the queue again"
        )

    def _take_prepared(self, new_id: int) -> F.Mapping | None:
        """The prepared mapping of segment ``new_id`` if there is one and its header checks out."""
        m = self._prepared.pop(new_id, None)
        for sid in [i for i in self._prepared if i <= new_id]:  # stale: the writer is past them
            self._retired.append(self._prepared.pop(sid))
        if m is None:
            return None
        try:
            ok = m.mv is not None and F.segment_header_matches(m, new_id, self._segment_size, self._queue_id)
        except (ValueError, TypeError):
            ok = False
        if ok:
            return m
        log.warning("%s: discarding prepared segment %d: its header does not match", self._path, new_id)
        self._retired.append(m)
        return None

    def offer_prepared(self, segment_id: int, mapping: F.Mapping, *, recycled: bool = False) -> bool:
        """Give the writer a mapped, prepared segment for a coming roll (the prealloc worker's hand-off).

        Accepted for the next ``prepare_ahead`` segments only (set by :meth:`attach_supplier`). Returns False, and
        leaves ``mapping`` to the caller, if the writer is closed, already past
        ``segment_id``, or already holds it. ``recycled``: the segment is a retired one the supplier
        zeroed (counted in :attr:`roll_counts`).
        """
        with self._io_lock:  # not while a roll is choosing its next segment
            if self._closed or not self._seg_id < segment_id <= self._seg_id + self._prepare_ahead or segment_id in self._prepared:
                return False
            self._prepared[segment_id] = mapping
            if recycled:
                self._recycled_ids.add(segment_id)
            return True

    def attach_supplier(self, on_roll: Callable[[int], None] | None, *, prepare_ahead: int = 0,
                        retention: bool = False) -> None:
        """Let a segment supplier (a control plane) prepare this writer's next segments.

        ``prepare_ahead``: how many segments past the head :meth:`offer_prepared` accepts (0 to
        ``MAX_PREPARE_AHEAD``; 0: none, rolls create their segment inline). While it is above 0,
        rolls retire the old mapping for the supplier to unmap (:meth:`release_retired`) instead of
        unmapping it themselves.

        ``on_roll(new_segment_id)`` is called by :meth:`roll`, on the thread that rolls (the writer's
        thread: ``append``, ``append_batch``, ``roll``, or a HotLoop's thread for its outputs), after a
        roll that created its segment inline or that leaves ``max(1, prepare_ahead // 2)`` or fewer
        prepared segments. It must be quick and must not block (hand a request to another thread).

        ``retention``: the supplier applies the retention caps from now on; this writer's
        housekeeping thread stops applying its ``WriterConfig`` caps until :meth:`detach_supplier`.
        Raises :class:`QueueClosedError` on a closed writer.
        """
        self.check_open()
        if isinstance(prepare_ahead, bool) or not isinstance(prepare_ahead, int) or not 0 <= prepare_ahead <= MAX_PREPARE_AHEAD:
            raise InvalidArgumentError(f"prepare_ahead must be an int between 0 and {MAX_PREPARE_AHEAD}, got {prepare_ahead!r}")
        if prepare_ahead == 0 and self._supplier is not None:
            # A supplier of no segments (retention only): the writer's own thread keeps supplying them.
            own = self._supplier.request
            self._prepare_ahead = self._own_depth
            self._notify_below = max(1, self._own_depth // 2)
            self._on_roll = own if on_roll is None else _both(own, on_roll)
        else:
            self._prepare_ahead = prepare_ahead
            self._notify_below = max(1, prepare_ahead // 2) if prepare_ahead else 0
            self._on_roll = on_roll
        if retention and self._housekeeper is not None:
            self._housekeeper.hand_off_retention()

    def detach_supplier(self) -> None:
        """Undo :meth:`attach_supplier`: the writer's own supplier thread prepares its segments again
        (with ``WriterConfig.prepare_ahead=0``: rolls create and unmap segments inline), the segments
        retired so far are unmapped now, and the housekeeping thread applies the ``WriterConfig``
        retention caps again. Segments already prepared stay for the coming rolls. Any thread; a
        no-op on a closed writer beyond dropping the callback."""
        self._on_roll = None
        self._prepare_ahead = 0
        if not self._closed:
            self.release_retired()
            if self._housekeeper is not None:
                self._housekeeper.take_back_retention()
            if self._supplier is not None:
                self._attach_own_supplier()

    def _attach_own_supplier(self) -> None:
        """The writer's own supplier thread prepares its segments (at open, and when a control plane lets go)."""
        assert self._supplier is not None
        self._prepare_ahead = self._own_depth
        self._notify_below = max(1, self._own_depth // 2)
        self._on_roll = self._supplier.request
        self._supplier.request()

    @property
    def roll_counts(self) -> "RollCounts":
        """How this writer's rolls found their segment: ``prepared`` by a supplier (a few stores), or
        ``inline`` (the roll created and mapped it: file work on the writer's thread)."""
        return RollCounts(self._rolls_prepared, self._rolls_inline, self._rolls_recycled)

    @property
    def recycles(self) -> bool:
        """Whether a supplier may recycle this writer's retired segments: ``WriterConfig.recycle`` and
        a retention cap (``max_bytes`` or ``max_segments``) are both set."""
        c = self._config
        return c.recycle and (c.max_bytes is not None or c.max_segments is not None)

    @property
    def supply_pending(self) -> bool:
        """True from a roll that asked the supplier for segments until its pass is done
        (:meth:`supply_done`). Meanwhile retention leaves one segment over the caps: the one the
        supplier is about to recycle (``WriterConfig.recycle``). Any thread."""
        return self._supply_pending

    def supply_done(self) -> None:
        """The supplier's pass is done (the supplier calls this, on its own thread)."""
        self._supply_pending = False

    @property
    def retained_segments(self) -> int | None:
        """How many segments up to the head the ``WriterConfig`` caps keep (None: no cap)."""
        c = self._config
        caps = [n for n in (c.max_segments, None if c.max_bytes is None else max(1, c.max_bytes // self._segment_size))
                if n is not None]
        return min(caps) if caps else None

    @property
    def prepare_ahead(self) -> int:
        """How many segments past the head a supplier may prepare (:meth:`attach_supplier`; 0 when none)."""
        return self._prepare_ahead

    @property
    def prepared_segments(self) -> list[int]:
        """Ids of the segments prepared for coming rolls."""
        return sorted(self._prepared)

    def release_retired(self, keep: int = 0) -> int:
        """Unmap segments rolled away from (a supplier calls this off the writer's thread), except the
        ``keep`` most recent ones (kept for recycling: :meth:`take_retired`). Returns how many it unmapped."""
        n = 0
        while len(self._retired) > keep:
            try:
                m = self._retired.pop(0)
            except IndexError:
                break
            m.close()
            n += 1
        return n

    def take_retired(self, segment_id: int) -> F.Mapping | None:
        """Hand a supplier the writer's still-mapped, retired mapping of ``segment_id`` (None if it has
        none): recycling it costs a memset, no page faults. Off the writer's thread."""
        for m in list(self._retired):
            try:
                if m.mv is not None and int(m.q[L.SEG_ID_OFFSET >> 3]) == segment_id:
                    self._retired.remove(m)
                    return m
            except (ValueError, TypeError):
                continue
        return None

    # -- durability -------------------------------------------------------------------------

    def flush(self) -> None:
        """Write everything appended so far to disk (msync), and return when it is there."""
        self.check_open()
        with self._io_lock:
            self._flush_locked()

    def _flush_unless_closed(self) -> None:
        """The housekeeper's periodic flush (``Durability.ASYNC``): under the I/O lock, unless closed meanwhile."""
        with self._io_lock:
            if not self._closed:
                self._flush_locked()

    def _flush_locked(self) -> None:
        if self._seg is None:
            return
        for path in self._unsynced:  # segments finished since the last flush
            try:
                fd = F.open_regular(path, os.O_RDONLY)
            except FileNotFoundError:  # deleted by retention meanwhile: nothing to keep
                continue
            except ChronicleError as e:  # replaced by something else meanwhile: not ours to sync
                log.warning("flush of %s skipped: %s", path, e)
                continue
            try:
                os.fdatasync(fd)
            finally:
                os.close(fd)
        self._unsynced.clear()
        end = self._ctl_q[_IDX_WRITE_OFFSET]
        self._seg.flush(min(self._flushed_to, end), end)
        self._flushed_to = end
        self._ctl.flush()
        if self._dir_dirty:  # new segment files' directory entries
            try:
                F.fsync_dir(self._path)
            except (FileNotFoundError, NotADirectoryError):
                if not F.queue_gone(self._path, self._queue_id):
                    raise
                self._dir_dirty = False
                raise self._deleted_error("flush") from None
            self._dir_dirty = False

    # -- properties -------------------------------------------------------------------------

    @property
    def path(self) -> str:
        return self._path

    @property
    def config(self) -> WriterConfig:
        return self._config

    @property
    def next_seq(self) -> int:
        """The seq the next append will get."""
        self.check_open()
        return self._ctl_q[_IDX_NEXT_SEQ]

    @property
    def epoch(self) -> int:
        """This writer session's number (one more than the previous writer's)."""
        return self._epoch

    @property
    def segment_id(self) -> int:
        return self._seg_id

    @property
    def segment_size(self) -> int:
        return self._segment_size

    @property
    def queue_id(self) -> int:
        """The queue's identity (from its control file; every segment header carries it)."""
        return self._queue_id

    @property
    def max_payload(self) -> int:
        """The largest payload this queue accepts, in bytes."""
        return self._max_payload

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def hot_owner(self) -> Any:
        """The HotLoop whose thread appends to this writer (it is one of the loop's outputs), or None.

        A HotLoop sets it for each output when it is created and clears it when it closes;
        :meth:`close` refuses while that loop is running.
        """
        return self._hot_owner

    @hot_owner.setter
    def hot_owner(self, loop: Any) -> None:
        self._hot_owner = loop

    # -- lifecycle --------------------------------------------------------------------------

    def check_open(self) -> None:
        """Raise :class:`QueueClosedError` if this writer is closed (:class:`ForkError` in a forked child)."""
        if self._closed:
            raise self._forked or QueueClosedError(f"the writer of {self._path} is closed")

    def _forget_in_child(self) -> None:
        """In a forked child: switch this inherited writer off without touching the queue (``queue/fork.py``).

        No close: that would mark the queue closed while the parent writes. Every use raises ForkError.
        """
        if self._closed:
            return
        self._forked = _fork.error("the writer", self._path)
        self._closed = True
        self._housekeeper = self._supplier = None  # their threads do not exist in the child
        self._lock = None  # queue/lock.py already closed the inherited descriptor
        self._prepared, self._retired = {}, []
        self._ctl_q = self._ctl_i32 = self._seg_mv = self._seg_i32 = _fork.ForkedView(self._forked)
        self._ctl_arr = None

    def close(self) -> None:
        """Stop housekeeping, mark the queue cleanly closed, and release the writer lock."""
        if self._closed:
            return
        owner = self._hot_owner
        if owner is not None and owner.running:
            raise InvalidArgumentError(
                f"the writer of {self._path} is an output of a running HotLoop, whose thread appends to it: "
                "stop or close the loop first"
            )
        self._closed = True
        if self._housekeeper is not None:
            self._housekeeper.stop()
            self._housekeeper = None
        if self._supplier is not None:  # before the I/O lock: an offer under way takes it, and is refused
            self._supplier.stop()
            self._supplier = None
        with self._io_lock:
            if self._config.durability is not Durability.NONE:
                try:
                    self._flush_locked()
                except QueueDeletedError:
                    pass  # deleted under us: nothing left to make durable; close the rest normally
            if self._ctl is not None:
                self._ctl.i32[L.CTL_WRITER_STATE_OFFSET // 4] = L.WRITER_STATE_CLOSED
                if self._ctl.i32[L.CTL_WAITERS_OFFSET // 4]:
                    AP.wake_waiters(self._ctl.arr)
        self._teardown()

    def _teardown(self) -> None:
        prepared, self._prepared = self._prepared, {}
        for m in prepared.values():
            m.close()
        self.release_retired()
        # Drop our own views first: an mmap cannot close while views of it exist.
        self._ctl_q = self._ctl_i32 = self._seg_mv = self._seg_i32 = _CLOSED  # any use raises QueueClosedError
        self._ctl_arr = None
        for m in (self._seg, self._ctl):
            if m is not None:
                m.close()
        self._seg = self._ctl = None  # type: ignore[assignment]
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> "QueueWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> "QueueWriter":
        return self

    async def __aexit__(self, *exc: object) -> None:
        import asyncio

        # close() may join the segment supplier thread and flush: off the event loop. The writer
        # is handed to that thread only after the last append of the block returned.
        await asyncio.to_thread(self.close)

    def __del__(self) -> None:
        try:
            if not self._closed and self._housekeeper is not None:
                self._housekeeper.stop(join=False)
        except Exception:
            pass

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"segment={self._seg_id} next_seq={self._ctl_q[_IDX_NEXT_SEQ]}"
        return f"<QueueWriter {self._path} epoch={getattr(self, '_epoch', '?')} {state}>"


QueueWriter.append_batch.__signature__ = inspect.signature(_append_batch_signature)  # type: ignore[attr-defined]
