"""HotLoop: a handler running in a pinned thread inside a jitted duty cycle (``hot/loop.py``)."""
from __future__ import annotations

import errno
import logging
import os
import struct
import threading
import time
import warnings
from typing import Any, Callable, NamedTuple, Sequence

import numba
import numpy as np
from numba.core.dispatcher import Dispatcher

from ..queue import args as A
from ..queue import fork as _fork
from .._errors import (
    ArgumentTypeError,
    BackPressureError,
    ChronicleError,
    CorruptSegmentError,
    DamagedRecordError,
    ForkError,
    HandlerError,
    InvalidArgumentError,
    QueueClosedError,
)
from ..queue.idle import Backoff, BusySpin, IdleStrategy, Park, ParkCounts
from ..queue.reader import Message, QueueReader
from ..queue.ring import SpscRing
from ..queue.liveness import DisconnectReason
from ..queue.writer import QueueWriter
from ..hot import layout as L
from ..hot import tables as T
from ..hot import loop as K
from ..hot.clock import realtime_anchor, tsc_per_ns
from ..hot.idle import futex_waitv_supported

log = logging.getLogger("chronicle_async")

_LOG = struct.Struct(T.LOG_RECORD_FORMAT)
_CMD = struct.Struct("<qqq")  # op, arg0, arg1 (the rest of the 64-byte slot is zero)
_F64 = struct.Struct("<d")
_Q = struct.Struct("<q")
#: Log event written by the Python side (codes from 64 up never clash with the kernel's):
#: a source's queue was deleted under it; source, arg0 = slot, arg1 = next_seq (what was delivered).
EVENT_SOURCE_DISCONNECTED = 64
_LEVELS = {K.LOG_DEBUG: logging.DEBUG, K.LOG_INFO: logging.INFO, K.LOG_WARNING: logging.WARNING, K.LOG_ERROR: logging.ERROR}
_EVENT_NAMES = {
    K.EVENT_USER: "user", K.EVENT_READER_ADDED: "reader added", K.EVENT_READER_REMOVED: "reader removed",
    K.EVENT_HANDLER_ERROR: "handler error", K.EVENT_CORRUPT: "corrupt record", K.EVENT_STOPPED: "stopped",
    K.EVENT_BAD_COMMAND: "bad command", K.EVENT_DAMAGED: "damaged record", EVENT_SOURCE_DISCONNECTED: "source disconnected",
}
_COMMAND_WAIT_S = 1.0
_calibration: tuple[int, int, float] | None = None


class HotLogRecord(NamedTuple):
    """One fixed-size record from the hot thread's log ring."""

    timestamp_ns: int
    level: int  # a ``logging`` level
    event: str  # "user" for a handler's own ``hot.loop.log`` record
    source: int  # -1 when no source is concerned
    args: tuple[int, int, int, int]


class SegmentCrossings(NamedTuple):
    """Segment ends a HotLoop's sources crossed: ``in_cycle`` inside the jitted cycle, into a
    segment mapped ahead; ``by_exit`` by leaving the cycle to map the next segment (the GIL)."""

    in_cycle: int
    by_exit: int


def _clock_calibration() -> tuple[int, int, float]:
    """(realtime ns, counter ticks, ns per tick), measured once per process (0.1 s)."""
    global _calibration
    if _calibration is None:
        per_ns = tsc_per_ns(0.1)
        base_ns, base_tsc = realtime_anchor()
        _calibration = (base_ns, base_tsc, 1.0 / per_ns if per_ns > 0 else 0.0)
    return _calibration


class HotLoop:
    """Run ``handler`` for every message of many queues, in one thread, inside a jitted cycle.

    ``handler`` is either

    * a numba ``@njit`` function ``handler(state, ctx, source, type_id, seq,
      timestamp_ns, payload) -> int``: ``payload`` is a read-only ``uint8``
      view of the mapped record (no copy), ``ctx`` gives ``hot.loop.emit``,
      ``param``, ``log`` and ``clock``. Return 0 when handled; any other value
      stops the loop with :class:`HandlerError` and leaves that message
      unconsumed. No Python runs per message: no syscall, lock or allocation.
    * or any Python callable ``handler(source, message)`` (the Python-callback
      mode): the same cycle collects messages in batches and the thread calls
      it with each :class:`Message` under the GIL (about 1 µs per message).
      An exception stops the loop with :class:`HandlerError`.

    Readers are handed over with :meth:`add_reader`, fully opened by the caller;
    the loop owns them until :meth:`remove_reader` gives them back. Named
    readers' positions are committed by the hot thread at the end of each burst
    and every ``commit_every`` messages.

    ``cpu`` pins the hot thread (``os.sched_setaffinity`` on its own thread id);
    if pinning fails, a warning says why and :attr:`pin_error` keeps it.
    ``idle`` is :class:`BusySpin`, :class:`Backoff` (default) or :class:`Park`.
    ``outputs`` are writers the handler may append to with ``emit(ctx, i, ...)``:
    while the loop runs, only the hot thread may append to them.

    Methods are for one controlling thread (or the control plane); they never
    wait on the hot thread except :meth:`remove_reader` and :meth:`stop`, which
    wait for its acknowledgement. A context manager: ``with`` starts the thread
    and stops it (and closes the readers it owns) on exit.
    """

    def __init__(
        self,
        handler: Callable[..., Any],
        state: Any = None,
        *,
        outputs: Sequence[QueueWriter] = (),
        params: int | Sequence[float] = 8,
        max_readers: int = 64,
        cpu: int | None = None,
        idle: IdleStrategy | None = None,
        batch: int = 256,
        commit_every: int = 4096,
        emit_headroom: int = 64 * 1024,
        command_capacity: int = 16,
        log_capacity: int = 1024,
        name: str = "chronicle-hot",
    ):
        self._closed = True
        self._forked: ForkError | None = None  # set in a forked child (queue/fork.py)
        self._jitted = isinstance(handler, Dispatcher)
        if not self._jitted and not callable(handler):
            raise ArgumentTypeError(f"handler must be a numba @njit function or a Python callable, not {type(handler).__name__}")
        self._check_int("max_readers", max_readers, 1, T.FUTEX_WAITV_MAX - 1)
        self._check_int("batch", batch, 1, 1 << 20)
        self._check_int("commit_every", commit_every, 0, 1 << 40)
        self._check_int("emit_headroom", emit_headroom, 0, 1 << 40)
        self._check_int("log_capacity", log_capacity, 1, L.RING_MAX_CAPACITY)
        if cpu is not None and (isinstance(cpu, bool) or not isinstance(cpu, int)):
            raise ArgumentTypeError(f"cpu must be an int (a CPU number) or None, not {type(cpu).__name__}")
        idle = Backoff() if idle is None else idle
        if not isinstance(idle, (BusySpin, Backoff, Park)):
            raise ArgumentTypeError(f"idle must be BusySpin(), Backoff() or Park(), not {type(idle).__name__}")
        if isinstance(params, int) and not isinstance(params, bool):
            self._check_int("params", params, 0, 1 << 20)
            self._params = np.zeros(max(params, 1), np.float64)
        else:
            try:
                self._params = np.array([float(p) for p in params] or [0.0], np.float64)
            except (TypeError, ValueError):
                raise ArgumentTypeError("params must be a count or a sequence of numbers") from None
        outs = list(outputs)
        for w in outs:
            if not isinstance(w, QueueWriter):
                raise ArgumentTypeError(f"outputs must be QueueWriter objects, not {type(w).__name__}")
            w.check_open()
        self._handler = handler
        self._user_state = state
        self._outputs_w = outs
        self._cpu = cpu
        self._idle_strategy = idle
        self._name = name
        self.pin_error: str | None = None
        self._cmd = SpscRing(_pow2(command_capacity, "command_capacity"), T.CMD_SLOT_SIZE)
        self._log = SpscRing(_pow2(log_capacity, "log_capacity"), T.LOG_SLOT_SIZE)
        self._sources = np.zeros((max_readers, T.SRC_FIELDS), np.int64)
        self._outputs = np.zeros((max(len(outs), 0), T.OUT_FIELDS), np.int64)
        self._headroom = emit_headroom
        self._loop = np.zeros(T.LOOP_FIELDS, np.int64)
        base_ns, base_tsc, per_tick = _clock_calibration()
        self._loop[T.LOOP_CLOCK_BASE_NS] = base_ns
        self._loop[T.LOOP_CLOCK_BASE_TSC] = base_tsc
        self._loop.view(np.float64)[T.LOOP_CLOCK_NS_PER_TICK_F64] = per_tick
        self._loop[T.LOOP_BATCH] = batch
        self._loop[T.LOOP_MAX_COMMANDS] = T.CMD_WORDS  # a small, fixed bound per pass
        self._loop[T.LOOP_COMMIT_EVERY] = commit_every if self._jitted else 0
        self._idle = idle.words()
        self._scratch = np.zeros(T.SCRATCH_LENGTH, np.uint8)
        if self._jitted:
            self._state = state
            self._run_handler = handler
        else:  # the Python-callback mode: the jitted cycle collects, this thread calls back
            self._state = np.zeros((batch + 1, 6), np.int64)
            self._run_handler = K.collect
        self._readers: dict[int, QueueReader] = {}
        self._disconnected: dict[int, DisconnectReason] = {}  # slot -> why it was retired by the loop
        self._free = list(range(max_readers - 1, -1, -1))
        self._lock = threading.RLock()
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()
        self._stopped.set()
        self._error: BaseException | None = None
        for i, w in enumerate(outs):
            self._refresh_output(i)
            w.hot_owner = self
        if isinstance(idle, (Park, Backoff)) and not futex_waitv_supported():
            warnings.warn(
                "futex_waitv is not available (Linux 5.16+ needed): an idle HotLoop will wake every 1 ms "
                "to poll its queues instead of sleeping until one is written", RuntimeWarning, stacklevel=2,
            )
        self._compile()
        self._closed = False
        _fork.track(self._forget_in_child)

    @staticmethod
    def _check_int(name: str, v: object, lo: int, hi: int) -> None:
        if isinstance(v, bool) or not isinstance(v, int):
            raise ArgumentTypeError(f"{name} must be an int, got {type(v).__name__}")
        if not lo <= v <= hi:
            raise InvalidArgumentError(f"{name} must be between {lo} and {hi}, got {v}")

    def _compile(self) -> None:
        """Compile the cycle for this handler now (one pass over no readers), not in the hot thread."""
        try:
            self._enter(K.RUN_ONCE)
        except (numba.core.errors.TypingError, numba.core.errors.UnsupportedError) as e:
            raise ArgumentTypeError(
                "the handler could not be compiled into the hot loop. It must be an @njit function "
                "handler(state, ctx, source, type_id, seq, timestamp_ns, payload) -> int, where payload is a "
                f"read-only uint8 array. numba said:\n{e}"
            ) from None

    def _enter(self, mode: int) -> int:
        return K.run(self._run_handler, self._state, self._sources, self._outputs, self._params, self._cmd.buffer,
                     self._log.buffer, self._loop, self._idle, self._scratch, mode)

    # -- readers -------------------------------------------------------------------------------

    def add_reader(self, reader: QueueReader, source: int | None = None) -> int:
        """Hand an open reader to the loop; returns the ``source`` id its messages carry.

        The loop owns the reader from now on: do not use it until
        :meth:`remove_reader` gives it back. ``source`` defaults to the slot number.
        """
        self._check_open()
        if not isinstance(reader, QueueReader):
            raise ArgumentTypeError(f"add_reader takes a QueueReader, not {type(reader).__name__}")
        cursor = reader.cursor
        cursor.check_open()
        if source is not None and (isinstance(source, bool) or not isinstance(source, int)):
            raise ArgumentTypeError(f"source must be an int, not {type(source).__name__}")
        with self._lock:
            if any(r is reader for r in self._readers.values()):
                raise InvalidArgumentError(f"{reader!r} is already owned by this loop")
            other = cursor.owner
            if other is not None and other is not self:
                raise InvalidArgumentError(
                    f"{reader!r} is already owned by another HotLoop ({other!r}): a reader has one owner at a "
                    "time; remove_reader() it from that loop first, or open a second reader"
                )
            if source is not None and any(self._sources[s, T.SRC_SOURCE_ID] == source for s in self._readers):
                raise InvalidArgumentError(f"source id {source} is already used by another reader of this loop")
            if not self._free:
                raise InvalidArgumentError(
                    f"this HotLoop already owns {len(self._readers)} readers (max_readers={self._sources.shape[0]}); "
                    "remove one, or create the loop with a larger max_readers"
                )
            slot = self._free.pop()
            row = self._sources[slot]
            row[:] = 0
            if self._jitted:
                cursor.map_ahead()  # the hot thread switches to it at the end marker
            cursor.to_row(row, generation=True, new_position=True)
            row[T.SRC_SOURCE_ID] = slot if source is None else source
            self._readers[slot] = reader
            cursor.owner = self
            if self.running:
                try:
                    self._send(T.CMD_ADD_READER, slot)
                except BaseException:
                    del self._readers[slot]
                    cursor.owner = None
                    cursor.drop_ahead()
                    self._free.append(slot)
                    raise
            else:
                row[T.SRC_STATE] = T.SRC_ACTIVE
            return int(row[T.SRC_SOURCE_ID])

    def _fill_row(self, slot: int, reader: QueueReader) -> None:
        reader.cursor.to_row(self._sources[slot])

    def _sync_reader(self, slot: int) -> QueueReader:
        """Copy the hot thread's view of a source back into its reader object."""
        reader = self._readers[slot]
        reader.cursor.from_row(self._sources[slot])
        return reader

    def remove_reader(self, source: int, timeout: float = _COMMAND_WAIT_S) -> QueueReader:
        """Take a reader back from the loop, positioned after the last message handled.

        Its position is committed first. Waits up to ``timeout`` seconds for the
        hot thread to let go of it.
        """
        self._check_open()
        A.check_seconds("timeout", timeout)
        with self._lock:
            slot = self._slot_of(source)
            if self.running and slot not in self._disconnected:  # a disconnected source is retired already
                self._send(T.CMD_REMOVE_READER, slot, timeout=timeout)
        deadline = time.monotonic() + timeout
        while self.running and K.py_source_state(self._sources, slot) != T.SRC_RETIRED:
            if time.monotonic() >= deadline:
                raise BackPressureError(
                    f"the hot loop did not release source {source} within {timeout} s "
                    "(is its handler stuck?); the reader is still owned by the loop"
                )
            time.sleep(50e-6)
        with self._lock:
            return self._retire(slot)

    def _retire(self, slot: int) -> QueueReader:
        row = self._sources[slot]
        if row[T.SRC_STATE] == T.SRC_ACTIVE:  # the loop is not running: commit on its behalf
            row[T.SRC_UNCOMMITTED] += 1
            K.py_commit_source(self._sources, slot, self._loop)
        reader = self._sync_reader(slot)
        reader.cursor.owner = None
        reader.cursor.drop_ahead()
        del self._readers[slot]
        self._disconnected.pop(slot, None)
        row[:] = 0
        self._free.append(slot)
        return reader

    def _slot_of(self, source: int) -> int:
        for slot in self._readers:
            if self._sources[slot, T.SRC_SOURCE_ID] == source:
                return slot
        raise InvalidArgumentError(f"this HotLoop has no reader with source id {source!r}")

    def map_ahead(self) -> int:
        """Map each source's next segment ahead, if its file exists, so that the hot thread crosses
        the segment end inside the jitted cycle; returns how many sources have one mapped ahead.

        The control side's step (a :class:`ControlPlane` given this loop calls it every
        ``log_interval``, off the event loop); safe from any thread while the loop runs, and done
        by the loop itself whenever it leaves the cycle. First, a source the hot thread switched
        to its segment mapped ahead hands that mapping to its reader, which unmaps the old one.
        Only for a jitted handler (the Python-callback mode leaves the cycle at each end).
        """
        if self._closed or not self._jitted:
            return 0
        with self._lock:
            return self._map_ahead()

    def _map_ahead(self) -> int:
        n = 0
        for slot, reader in self._readers.items():
            if slot in self._disconnected or K.py_source_state(self._sources, slot) != T.SRC_ACTIVE:
                continue
            ahead, seg_id = K.py_next_segment(self._sources, slot)
            if ahead == 0:  # not offered, or taken: then the row's segment is final until we offer
                cursor = reader.cursor
                cursor.follow_row(self._sources[slot])
                if cursor.segment_id == seg_id:
                    ahead = cursor.map_ahead()
                    if ahead != 0:
                        K.py_offer_next_segment(self._sources, slot, ahead)
            n += ahead != 0
        return n

    @property
    def sources(self) -> dict[int, QueueReader]:
        """``{source id: reader}`` for the readers the loop owns (do not use them while it runs)."""
        with self._lock:
            return {int(self._sources[s, T.SRC_SOURCE_ID]): r for s, r in self._readers.items()}

    @property
    def disconnected(self) -> dict[int, DisconnectReason]:
        """``{source id: reason}`` of the sources the loop retired by itself (their queue was deleted).

        Today the one reason is ``DisconnectReason.QUEUE_DELETED``: the queue deleted, or replaced
        by a new one, under the source's reader.

        Such a source takes no more of the loop's time and its position is not committed past
        what was delivered; the other sources keep flowing. It stays in :attr:`sources` until
        :meth:`remove_reader` gives its reader back (then close it).
        """
        with self._lock:
            return {int(self._sources[s, T.SRC_SOURCE_ID]): why for s, why in self._disconnected.items()}

    def delivered(self, source: int) -> int:
        """Messages handled from ``source`` since it was added."""
        with self._lock:
            return int(self._sources[self._slot_of(source), T.SRC_DELIVERED])

    def damaged(self, source: int) -> int:
        """Records of ``source`` skipped as damaged since it was added (its reader opened with
        ``verify=True``); each one is also logged as a "damaged record" event with its seq."""
        with self._lock:
            return int(self._sources[self._slot_of(source), T.SRC_DAMAGED])

    # -- commands ------------------------------------------------------------------------------

    def set_param(self, index: int, value: float) -> None:
        """Set parameter ``index`` (read by the handler with ``hot.loop.param(ctx, index)``)."""
        self._check_open()
        if isinstance(index, bool) or not isinstance(index, int):
            raise ArgumentTypeError(f"index must be an int, not {type(index).__name__}")
        if not 0 <= index < self._params.shape[0]:
            raise InvalidArgumentError(f"param index {index} is out of range: this loop has {self._params.shape[0]} params")
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise ArgumentTypeError(f"value must be a number, not {type(value).__name__}") from None
        with self._lock:
            if self.running:
                self._send(T.CMD_SET_PARAM, index, _Q.unpack(_F64.pack(v))[0])
            else:
                self._params[index] = v

    def param(self, index: int) -> float:
        """Parameter ``index`` as the hot thread sees it."""
        return float(self._params[index])

    def _send(self, op: int, a0: int = 0, a1: int = 0, timeout: float = _COMMAND_WAIT_S) -> None:
        """Push one command (this object is the ring's single producer; callers hold ``_lock``)."""
        cmd = _CMD.pack(op, a0, a1)
        deadline = time.monotonic() + timeout
        while not self._cmd.try_push(cmd):
            if time.monotonic() >= deadline:
                raise BackPressureError(
                    f"the hot loop's command ring ({self._cmd.capacity} slots) stayed full for {timeout} s; "
                    "the hot thread is not draining it (is its handler stuck?)"
                )
            time.sleep(50e-6)

    # -- running -------------------------------------------------------------------------------

    def start(self) -> "HotLoop":
        """Start the hot thread (pinned to ``cpu`` if given). Returns self."""
        self._check_open()
        if self.running:
            raise InvalidArgumentError("this HotLoop is already running")
        self._error = None
        self._stopped.clear()
        self._loop[T.LOOP_STATE] = T.LOOP_RUNNING
        self._thread = threading.Thread(target=self._main, name=self._name, daemon=True)
        self._thread.start()
        return self

    def _main(self) -> None:
        if self._cpu is not None:
            self._pin(self._cpu)
        mode = K.RUN_UNTIL_EXIT if self._jitted else K.RUN_UNTIL_WORK
        try:
            while True:
                code = self._enter(mode)
                with self._lock:
                    if not self._on_exit(code):
                        break
        except ChronicleError as e:
            self._error = e
        except BaseException as e:  # a handler that raised inside numba, or a bug: report, never swallow
            with self._lock:
                self._error = self._raised(e)
        finally:
            self._loop[T.LOOP_STATE] = T.LOOP_STOPPED
            self._stopped.set()

    def _pin(self, cpu: int) -> None:
        try:
            os.sched_setaffinity(0, {cpu})  # 0 = the calling thread (this hot thread) on Linux
        except OSError as e:
            why = "no such CPU, or it is outside this process's cpuset/taskset" if e.errno == errno.EINVAL else e.strerror
            self.pin_error = f"could not pin the hot thread to CPU {cpu}: {why} ({e})"
            warnings.warn(self.pin_error + "; it runs unpinned", RuntimeWarning, stacklevel=1)
        except AttributeError:
            self.pin_error = "could not pin the hot thread: os.sched_setaffinity is not available on this platform"
            warnings.warn(self.pin_error + "; it runs unpinned", RuntimeWarning, stacklevel=1)

    def run_once(self) -> int:
        """Run one pass in the calling thread (no idling); returns the messages it handled.

        For tests and single-stepping; the loop must not be running in its thread.
        Rare events (a segment end, a roll) are handled as the thread would.
        """
        self._check_open()
        if self.running:
            raise InvalidArgumentError("run_once() drives a loop that is not running; stop() it first")
        with self._lock:
            before = int(self._loop[T.LOOP_MESSAGES])
            while True:
                try:
                    code = self._enter(K.RUN_ONCE)
                except ChronicleError:
                    raise
                except Exception as e:
                    raise self._raised(e) from e
                if code == K.EXIT_ONCE:
                    self._on_exit(code)
                    break
                if not self._on_exit(code):
                    break
            return int(self._loop[T.LOOP_MESSAGES]) - before

    def _on_exit(self, code: int) -> bool:
        """Handle why ``run`` returned; False to stop the thread."""
        if not self._jitted:
            self._deliver()
        if code == K.EXIT_STOPPED:
            return False
        self._handle_exit(code)
        if self._jitted:
            self._map_ahead()  # out of the cycle anyway: map the segments after the current ones
        return True

    def _handle_exit(self, code: int) -> None:
        if code == K.EXIT_NEED_SEGMENT:
            self._advance(int(self._loop[T.LOOP_EXIT_SLOT]))
        elif code == K.EXIT_NEED_ROLL:
            self._roll_outputs()
        elif code == K.EXIT_HANDLER_ERROR:
            slot = int(self._loop[T.LOOP_EXIT_SLOT])
            self._commit_all()
            raise HandlerError(
                f"the hot-loop handler returned {int(self._loop[T.LOOP_ERROR])} for message seq "
                f"{int(self._loop[T.LOOP_ERROR_SEQ])} of source {int(self._loop[T.LOOP_ERROR_SOURCE])} "
                f"({self._readers[slot].path}); the loop stopped and that message was not consumed",
                int(self._loop[T.LOOP_ERROR]), int(self._loop[T.LOOP_ERROR_SOURCE]), int(self._loop[T.LOOP_ERROR_SEQ]),
            )
        elif code in (K.EXIT_CORRUPT, K.EXIT_HOLE):
            slot = int(self._loop[T.LOOP_EXIT_SLOT])
            r = self._readers[slot]
            if r.verify:
                self._skip_damaged(slot, "malformed" if code == K.EXIT_CORRUPT else "hole")
                return
            what = ("has a malformed record at offset" if code == K.EXIT_CORRUPT else
                    "has no record (a zero commit word), though its writer has moved on, at offset")
            seg_id, off, _seq = r.cursor.row_position(self._sources[slot])
            raise CorruptSegmentError(
                f"segment {seg_id} of {r.path} {what} "
                f"{off}: the data there is damaged or lost; the hot loop stopped. "
                "Open the reader with verify=True to skip damage, or remove the reader and seek() past it"
            )

    def _skip_damaged(self, slot: int, reason: str) -> None:
        """A verifying source stopped at a malformed record or a hole: move it to the next intact
        record (or segment), count it and log it, as the kernel does for a record failing its checks."""
        reader = self._sync_reader(slot)
        row = self._sources[slot]
        seg_id, off, expected = reader.cursor.row_position(row)
        try:
            reader.cursor.skip_damaged(reason)
        except DamagedRecordError:
            pass  # what the reader raises to its own caller; the loop counts and logs it instead
        self._fill_row(slot, reader)
        row[T.SRC_DAMAGED] += 1
        row[T.SRC_UNCOMMITTED] += 1
        source = int(row[T.SRC_SOURCE_ID])
        log.error("hot loop %s: source %d (%s): %s at offset %d of segment %d (seq %d expected) skipped",
                  self._name, source, reader.path, reason, off, seg_id, expected)
        self._log.try_push(_LOG.pack(time.time_ns(), K.LOG_ERROR, K.EVENT_DAMAGED, source, seg_id, off, -1, expected))

    def _raised(self, e: BaseException) -> HandlerError:
        """A jitted handler raised: name the message it failed on (still unconsumed) and commit."""
        slot = int(self._loop[T.LOOP_EXIT_SLOT])
        reader = self._readers.get(slot)
        source = seq = -1
        where = ""
        if reader is not None and self._sources[slot, T.SRC_STATE] == T.SRC_ACTIVE:
            row = self._sources[slot]
            source = int(row[T.SRC_SOURCE_ID])
            seq = reader.cursor.seq_at_row(row)  # the record the handler was given
            where = f" on message seq {seq} of source {source} ({reader.path})"
        self._commit_all()
        err = HandlerError(
            f"the hot-loop handler raised {type(e).__name__}: {e}{where}; the loop stopped and that message "
            "was not consumed", -1, source, seq,
        )
        err.__cause__ = e
        return err

    def _advance(self, slot: int) -> None:
        """A source reached its segment's end: map the next segment (rare; takes the GIL)."""
        reader = self._sync_reader(slot)
        if reader.cursor.advance_segment():
            self._fill_row(slot, reader)
            self._loop[T.LOOP_SEGMENT_EXITS] += 1
        elif reader.cursor.gone is not None:
            self._disconnect(slot, reader.cursor.gone)
        else:
            time.sleep(0.001)  # the next segment is not there yet (a writer mid-roll): look again soon

    def _disconnect(self, slot: int, why: DisconnectReason) -> None:
        """Retire one source by the loop's own decision (its queue was deleted); the others go on.

        Runs where the kernel is not running (the hot thread between passes, or ``run_once``), so
        the row is ours to change; the log ring has this thread as its one producer there.
        """
        row = self._sources[slot]
        reader = self._readers[slot]
        row[T.SRC_UNCOMMITTED] += 1  # its last position: after the last message delivered, no further
        K.py_commit_source(self._sources, slot, self._loop)
        self._fill_row(slot, reader)  # the reader's zero mapping: nothing in the row points at the deleted files
        row[T.SRC_STATE] = T.SRC_RETIRED
        self._disconnected[slot] = why
        source = int(row[T.SRC_SOURCE_ID])
        log.warning("hot loop %s: source %d (%s) disconnected: %s; the loop goes on with its other sources. "
                    "Take the reader back with remove_reader(%d) and close it", self._name, source, reader.path,
                    why.value, source)
        self._log.try_push(_LOG.pack(time.time_ns(), K.LOG_WARNING, EVENT_SOURCE_DISCONNECTED, source, slot,
                                     reader.cursor.row_position(row)[2], 0, 0))

    def _roll_outputs(self) -> None:
        for i, w in enumerate(self._outputs_w):
            if self._outputs[i, T.OUT_FULL]:
                w.roll()
                self._refresh_output(i)

    def _refresh_output(self, i: int) -> None:
        w = self._outputs_w[i]
        h = w.hot_handle()
        row = self._outputs[i]
        row[T.OUT_SEG_ADDR] = h.seg.ctypes.data
        row[T.OUT_SEG_SIZE] = h.seg.shape[0]
        row[T.OUT_CTL_ADDR] = h.ctl.ctypes.data
        row[T.OUT_HEADROOM] = min(self._headroom, (w.segment_size - L.SEGMENT_DATA_OFFSET) // 2)
        row[T.OUT_FULL] = 0

    def _deliver(self) -> None:
        """The Python-callback mode: call the handler for each collected message, in order."""
        st = self._state
        n = int(st[0, 0])
        if n == 0:
            return
        st[0, 0] = 0
        rows = st[1 : n + 1].tolist()
        by_source = {int(self._sources[s, T.SRC_SOURCE_ID]): s for s in self._readers}
        touched = set()
        for j, (source, type_id, seq, ts, addr, length) in enumerate(rows):
            slot = by_source[source]
            reader = self._readers[slot]
            start = addr - reader.cursor.segment_address
            msg = Message(seq, ts, type_id, reader.cursor.segment.mv[start : start + length])
            touched.add(slot)
            try:
                self._handler(source, msg)
            except BaseException as e:
                self._rewind(rows[j:], by_source)
                self._commit_all()
                err = HandlerError(
                    f"the hot-loop handler raised {type(e).__name__}: {e} on message seq {seq} of source {source} "
                    f"({reader.path}); the loop stopped and that message was not consumed", -1, source, seq,
                )
                raise err from e
        for slot in touched:
            K.py_commit_source(self._sources, slot, self._loop)

    def _rewind(self, undelivered: list, by_source: dict[int, int]) -> None:
        """Put each source back at its first collected-but-undelivered message."""
        seen = set()
        for source, _t, seq, _ts, addr, _n in undelivered:
            if source in seen:
                continue
            seen.add(source)
            slot = by_source[source]
            reader = self._readers[slot]
            delivered_not = sum(1 for r in undelivered if r[0] == source)
            row = self._sources[slot]
            reader.cursor.rewind_row(row, addr, seq)
            row[T.SRC_DELIVERED] -= delivered_not
            self._loop[T.LOOP_MESSAGES] -= delivered_not

    def _commit_all(self) -> None:
        for slot in self._readers:
            if self._sources[slot, T.SRC_STATE] == T.SRC_ACTIVE:
                self._sources[slot, T.SRC_UNCOMMITTED] += 1
                K.py_commit_source(self._sources, slot, self._loop)

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the hot thread to stop (it commits every position) and wait for it.

        Raises the loop's :class:`HandlerError` if it stopped on one.
        """
        A.check_seconds("timeout", timeout)
        if self._thread is not None and self._thread.is_alive():
            with self._lock:
                if not self._stopped.is_set():
                    self._send(T.CMD_STOP, timeout=timeout)
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise BackPressureError(f"the hot thread did not stop within {timeout} s (is its handler stuck?)")
        self._thread = None
        if self._error is not None:
            err, self._error = self._error, None
            raise err

    def wait_stopped(self, timeout: float | None = None) -> bool:
        """Wait until the hot thread stops by itself (an error); True if it has."""
        return self._stopped.wait(timeout)

    @property
    def running(self) -> bool:
        return self._thread is not None and not self._stopped.is_set()

    @property
    def error(self) -> BaseException | None:
        """The error that stopped the loop, if any (also raised by :meth:`stop`)."""
        return self._error

    # -- observing -----------------------------------------------------------------------------

    @property
    def messages(self) -> int:
        """Messages handled so far (updated at the end of each pass)."""
        return int(self._loop[T.LOOP_MESSAGES])

    @property
    def cycles(self) -> int:
        return int(self._loop[T.LOOP_CYCLES])

    @property
    def parks(self) -> int:
        """Times the idle loop parked on the futex."""
        return int(self._loop[T.LOOP_PARKS])

    @property
    def segment_crossings(self) -> SegmentCrossings:
        """Segment ends the sources crossed, inside the jitted cycle and by leaving it (:class:`SegmentCrossings`).

        Inside: the next segment was mapped ahead (:meth:`map_ahead`)."""
        return SegmentCrossings(int(self._loop[T.LOOP_SEGMENT_SWITCHES]), int(self._loop[T.LOOP_SEGMENT_EXITS]))

    @property
    def park_counts(self) -> ParkCounts:
        """How the loop's parks ended (:class:`ParkCounts`); ``missed`` must stay 0."""
        return ParkCounts.from_array(self._loop[T.LOOP_PARK_OUTCOMES:])

    def drain_log(self, limit: int | None = None) -> list[HotLogRecord]:
        """Take records off the hot thread's log ring (the control plane drains it for you)."""
        out = []
        while limit is None or len(out) < limit:
            raw = self._log.try_pop()
            if raw is None:
                break
            ts, level, event, source, a0, a1, a2, a3 = _LOG.unpack_from(raw, 0)
            out.append(HotLogRecord(ts, _LEVELS.get(level, level), _EVENT_NAMES.get(event, str(event)), source, (a0, a1, a2, a3)))
        return out

    @property
    def log_dropped(self) -> int:
        """Log records the hot thread dropped because the ring was full (it never waits)."""
        return self._log.dropped

    # -- lifetime ------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise self._forked or QueueClosedError("this HotLoop is closed")

    def _forget_in_child(self) -> None:
        """In a forked child: the hot thread does not exist here; switch the loop off without
        committing or closing anything the parent's loop still uses (``queue/fork.py``)."""
        if self._closed:
            return
        self._forked = _fork.error("the HotLoop", self._name)
        self._closed = True
        self._thread = None
        self._readers = {}
        self._outputs_w = []

    def close(self) -> None:
        """Stop the thread, commit and close every reader the loop owns."""
        if self._closed:
            return
        try:
            self.stop()
        finally:
            self._closed = True
            with self._lock:
                for slot in list(self._readers):
                    self._retire(slot).close()
            for w in self._outputs_w:
                w.hot_owner = None
            self._cmd.close()
            self._log.close()

    def __enter__(self) -> "HotLoop":
        if not self.running:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> "HotLoop":
        if not self.running:
            self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        import asyncio

        await asyncio.to_thread(self.close)  # joins the hot thread: off the event loop

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("running" if self.running else "stopped")
        return f"<HotLoop {self._name} {state} readers={len(self._readers)} messages={self.messages}>"


def _pow2(n: int, name: str) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1 or n & (n - 1):
        raise InvalidArgumentError(f"{name} must be a power of two, got {n!r}")
    return n
