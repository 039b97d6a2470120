"""SpscRing: the Python face of the lock-free single-producer single-consumer ring."""
from __future__ import annotations

import mmap
import os
import struct
from typing import Any

import numpy as np

from . import args as A
from .._errors import (
    ArgumentTypeError,
    CorruptQueueError,
    InvalidArgumentError,
    QueueClosedError,
    QueueNotFoundError,
    UnsupportedVersionError,
)
from ..hot import layout as L
from ..hot import ring as RG
_IDENTITY = struct.Struct("<IIqq")  # magic, version, capacity, slot_size at RING_MAGIC_OFFSET


class SpscRing:
    """A bounded ring of ``capacity`` fixed-size slots for one producer and one consumer.

    ``SpscRing(capacity, slot_size)`` lives in this process's memory (for threads);
    ``SpscRing.create(path, ...)`` and ``SpscRing.open(path)`` put it in a shared
    file (for processes: use ``/dev/shm`` for memory speed). ``try_push`` reports a
    full ring as False instead of blocking: that is the back-pressure.

    **Single producer, single consumer.** At most one thread pushes and at most one
    pops at any time; they may be different threads or processes. Several senders
    must be serialised onto one producer (the control plane does so for the hot
    loop's command ring). From Python, ``try_push`` costs about 0.9 µs and ``try_pop``
    0.3 µs (numba's dispatcher and the bytes conversion);
    jitted code uses ``chronicle_async.hot.ring`` on :attr:`buffer` directly.

    A context manager; ``close()`` unmaps a file-backed ring.
    """

    def __init__(self, capacity: int = 16, slot_size: int = 64, *, _mapping: Any = None, _path: str | None = None):
        if _mapping is None:
            _check_shape(capacity, slot_size)
            _mapping = mmap.mmap(-1, L.ring_length(capacity, slot_size))
            _IDENTITY.pack_into(_mapping, L.RING_MAGIC_OFFSET, L.RING_MAGIC, L.RING_VERSION, capacity, slot_size)
        self._mm = _mapping
        self._path = _path
        self._arr = np.frombuffer(self._mm, np.uint8)
        _m, _v, self._capacity, self._slot_size = _IDENTITY.unpack_from(self._mm, L.RING_MAGIC_OFFSET)
        self._scratch = np.zeros(self._slot_size, np.uint8)

    @classmethod
    def create(cls, path: str | os.PathLike, capacity: int = 16, slot_size: int = 64) -> "SpscRing":
        """Create a ring in a new file at ``path`` (it must not exist) and map it."""
        p = A.check_path(path)
        _check_shape(capacity, slot_size)
        length = L.ring_length(capacity, slot_size)
        if os.path.lexists(p):
            raise InvalidArgumentError(f"ring file {p} already exists: open it with SpscRing.open(), or remove it")
        tmp = f"{p}.tmp-{os.getpid()}-{id(length)}"
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            os.posix_fallocate(fd, 0, length)
            mm = mmap.mmap(fd, length, flags=mmap.MAP_SHARED)
            _IDENTITY.pack_into(mm, L.RING_MAGIC_OFFSET, L.RING_MAGIC, L.RING_VERSION, capacity, slot_size)
            try:
                os.link(tmp, p)  # publish complete: an opener never sees a half-written header
            except FileExistsError:
                mm.close()
                raise InvalidArgumentError(f"ring file {p} already exists: open it with SpscRing.open(), or remove it") from None
        finally:
            os.close(fd)
            os.unlink(tmp)
        return cls(_mapping=mm, _path=p)

    @classmethod
    def open(cls, path: str | os.PathLike) -> "SpscRing":
        """Map an existing ring file made by :meth:`create`."""
        p = A.check_path(path)
        from . import files as F

        try:  # never through a symbolic link, never blocking on a FIFO; regular files only
            fd = F.open_regular(p, os.O_RDWR, fix="create the ring with SpscRing.create()")
        except FileNotFoundError:
            raise QueueNotFoundError(f"ring file {p} does not exist: create it with SpscRing.create()") from None
        try:
            size = os.fstat(fd).st_size
            if size < L.RING_SLOTS_OFFSET:
                raise CorruptQueueError(f"{p} is {size} bytes: too short to be a ring file; recreate it with SpscRing.create()")
            mm = mmap.mmap(fd, size, flags=mmap.MAP_SHARED)
        finally:
            os.close(fd)
        magic, version, cap, slot = _IDENTITY.unpack_from(mm, L.RING_MAGIC_OFFSET)
        problem = None
        if magic != L.RING_MAGIC:
            problem = f"is not a ring file (magic {magic:#x})"
        elif version != L.RING_VERSION:
            mm.close()
            raise UnsupportedVersionError(f"ring file {p} has format version {version}; this chronicle_async reads {L.RING_VERSION}")
        elif _shape_error(cap, slot):
            problem = f"has an impossible shape ({_shape_error(cap, slot)})"
        elif size < L.ring_length(cap, slot):
            problem = f"is {size} bytes, shorter than its {cap} slots of {slot} bytes need ({L.ring_length(cap, slot)})"
        if problem:
            mm.close()
            raise CorruptQueueError(f"{p} {problem}; recreate it with SpscRing.create()")
        return cls(_mapping=mm, _path=p)

    # -- producer ------------------------------------------------------------------------------

    def try_push(self, data: Any, *, wake: bool = True) -> bool:
        """Copy ``data`` (bytes-like, at most ``slot_size`` bytes) into a slot; False if full.

        The rest of the slot is zero-filled. ``wake`` wakes a consumer parked on the
        ring's doorbell (one fence; leave it on unless you batch pushes).
        """
        src = self._bytes(data)
        if src.shape[0] > self._slot_size:
            raise InvalidArgumentError(f"{src.shape[0]} bytes do not fit a slot of {self._slot_size} bytes")
        return bool(RG.py_push(self._arr, src, wake))

    # -- consumer ------------------------------------------------------------------------------

    def try_pop(self) -> bytes | None:
        """The oldest slot's bytes (``slot_size`` of them), or None if the ring is empty."""
        self._check_open()
        if not RG.py_pop(self._arr, self._scratch):
            return None
        return self._scratch.tobytes()

    def try_pop_into(self, out: np.ndarray) -> bool:
        """Pop into ``out`` (a writable ``uint8`` array; its first ``len(out)`` bytes of the slot)."""
        self._check_open()
        if not isinstance(out, np.ndarray) or out.dtype != np.uint8 or out.ndim != 1 or not out.flags.writeable:
            raise ArgumentTypeError("try_pop_into(out) takes a writable 1-d numpy uint8 array")
        if not out.flags.c_contiguous:
            raise InvalidArgumentError("try_pop_into(out) needs a contiguous array (a strided view would lose the message)")
        return bool(RG.py_pop(self._arr, out))

    # -- either side ---------------------------------------------------------------------------

    def __len__(self) -> int:
        """Slots in use (a snapshot while both sides run)."""
        self._check_open()
        return int(RG.py_size(self._arr))

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def slot_size(self) -> int:
        return self._slot_size

    @property
    def dropped(self) -> int:
        """Pushes refused by the producer's ``hot.ring.push_or_drop_at`` (the log ring's overflow count)."""
        self._check_open()
        return int(RG.py_dropped(self._arr))

    @property
    def buffer(self) -> np.ndarray:
        """The ring's bytes as a ``uint8`` array, for the jitted ``hot.ring`` kernels."""
        self._check_open()
        return self._arr

    @property
    def path(self) -> str | None:
        return self._path

    def _bytes(self, data: Any) -> np.ndarray:
        self._check_open()
        if isinstance(data, np.ndarray):
            if data.dtype.hasobject:
                raise ArgumentTypeError("try_push takes bytes-like data; a numpy array of Python objects has no bytes to copy")
            if data.dtype != np.uint8 or data.ndim != 1:
                data = np.ascontiguousarray(data).view(np.uint8).reshape(-1)
            return np.ascontiguousarray(data)
        try:
            return np.frombuffer(A.as_bytes_like(data), np.uint8)
        except TypeError:
            raise ArgumentTypeError(f"try_push takes bytes-like data, not {type(data).__name__}") from None

    def _check_open(self) -> None:
        if self._mm is None:
            raise QueueClosedError(f"ring {self._path or '(in memory)'} is closed")

    def close(self) -> None:
        if self._mm is None:
            return
        self._arr = self._scratch = None  # type: ignore[assignment]
        mm, self._mm = self._mm, None
        try:
            mm.close()
        except BufferError:  # a caller still holds .buffer: the GC unmaps later
            pass

    def __enter__(self) -> "SpscRing":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> "SpscRing":
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        where = self._path or "in memory"
        if self._mm is None:
            return f"<SpscRing {where} closed>"
        return f"<SpscRing {where} capacity={self._capacity} slot_size={self._slot_size} used={len(self)}>"


def _shape_error(capacity: Any, slot_size: Any) -> str | None:
    for name, v in (("capacity", capacity), ("slot_size", slot_size)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            return f"{name} must be an int, got {type(v).__name__}"
    if capacity < 1 or capacity > L.RING_MAX_CAPACITY or capacity & (capacity - 1):
        return f"capacity must be a power of two between 1 and {L.RING_MAX_CAPACITY}, got {capacity}"
    if slot_size < L.RING_SLOT_ALIGNMENT or slot_size > L.RING_MAX_SLOT_SIZE or slot_size % L.RING_SLOT_ALIGNMENT:
        return f"slot_size must be a multiple of {L.RING_SLOT_ALIGNMENT} between {L.RING_SLOT_ALIGNMENT} and {L.RING_MAX_SLOT_SIZE}, got {slot_size}"
    return None


def _check_shape(capacity: Any, slot_size: Any) -> None:
    err = _shape_error(capacity, slot_size)
    if err:
        exc = ArgumentTypeError if "must be an int" in err else InvalidArgumentError
        raise exc(err)
