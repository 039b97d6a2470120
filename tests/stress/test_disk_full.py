"""A really full file system: a 2 MiB tmpfs mounted for the test (needs root / CAP_SYS_ADMIN)."""
from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import pathlib

import pytest

from chronicle_async import (
    ChronicleError,
    CorruptQueueError,
    DiskFullError,
    Queue,
    WriterConfig,
    cleanup_segments,
)
from chronicle_async.hot import layout as L

from ._workers import check_message, expected

SEGMENT_SIZE = 256 * 1024
MAX_SIZE = 2000
# The writer's own supplier is off (prepare_ahead=0) in these tests: they watch a roll creating its
# segment on a full disk, not a segment prepared before the disk filled.
INLINE = WriterConfig(prepare_ahead=0)
MNT_DETACH = 2

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


@pytest.fixture
def small_tmpfs(tmp_path: pathlib.Path):
    """A fresh 2 MiB tmpfs, unmounted at teardown."""
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    if _libc.mount(b"tmpfs", os.fsencode(mnt), b"tmpfs", 0, b"size=2m,mode=0755") != 0:
        e = ctypes.get_errno()
        if e in (errno.EPERM, errno.EACCES):
            pytest.skip(f"cannot mount a tmpfs at {mnt} ({os.strerror(e)}): this test needs root with CAP_SYS_ADMIN")
        raise OSError(e, f"mount tmpfs at {mnt}: {os.strerror(e)}")
    try:
        yield mnt
    finally:
        if _libc.umount2(os.fsencode(mnt), 0) != 0:  # busy (a mapping still alive): detach lazily
            _libc.umount2(os.fsencode(mnt), MNT_DETACH)


def temp_files(d: pathlib.Path) -> list[str]:
    return [n for n in os.listdir(d) if L.SEGMENT_TEMP_SUFFIX in n or ".tmp-" in n]


def fill_until_disk_full(w, limit: int = 100_000) -> DiskFullError:
    """Append seq after seq until a roll fails; returns the error."""
    for _ in range(limit):
        seq = w.next_seq
        tid, data = expected(seq, MAX_SIZE)
        try:
            got = w.append(tid, data)
        except DiskFullError as e:
            return e
        assert got == seq
    raise AssertionError(f"no DiskFullError after {limit} appends")


def check_disk_full_error(e: DiskFullError, w, queue: pathlib.Path) -> None:
    assert isinstance(e, OSError) and isinstance(e, ChronicleError)
    assert e.errno == errno.ENOSPC
    msg = str(e)
    assert L.segment_file_name(w.segment_id + 1) in msg, f"the message does not name the segment file: {msg}"
    assert "free disk space" in msg, f"the message gives no fix: {msg}"
    assert not temp_files(queue), f"temp files left behind: {temp_files(queue)}"
    assert not (queue / L.segment_file_name(w.segment_id + 1)).exists(), "a half-made segment was published"


def read_all(r, start: int, stop: int) -> None:
    for seq in range(start, stop):
        m = r.next()
        assert m is not None, f"seq {seq} is missing"
        err = check_message(m, seq, MAX_SIZE)
        assert err is None, err
    assert r.next() is None


@pytest.mark.timeout(120)
def read_all_from_earliest(queue: str, total: int) -> int:
    """Read every message left in the queue, checking each; returns the first seq found."""
    with Queue.open_subscriber(queue, None, "earliest") as r:
        m = r.next()
        assert m is not None
        assert check_message(m, m.seq, MAX_SIZE) is None
        read_all(r, m.seq + 1, total)
        return m.seq


def test_roll_on_full_disk_raises_disk_full_and_writer_continues_after_space_is_freed(small_tmpfs):
    queue = small_tmpfs / "q"
    filler = small_tmpfs / "filler"
    with open(filler, "wb") as f:  # take half of the file system
        os.posix_fallocate(f.fileno(), 0, 1024 * 1024)
    w = Queue.open_publisher(queue, WriterConfig(segment_size=SEGMENT_SIZE, prepare_ahead=0))
    r = Queue.open_subscriber(queue, None, "earliest")  # anonymous: creates no file
    try:
        e = fill_until_disk_full(w)
        appended = w.next_seq
        full_segment = w.segment_id
        assert full_segment >= 1, "the queue should have rolled at least once before the disk filled"
        check_disk_full_error(e, w, queue)

        # Still full: the same call fails the same way, and nothing changed.
        seq = w.next_seq
        tid, data = expected(seq, MAX_SIZE)
        with pytest.raises(DiskFullError):
            w.append(tid, data)
        assert w.next_seq == appended and w.segment_id == full_segment
        assert not temp_files(queue)

        read_all(r, 0, appended)  # everything appended before the failure is intact

        filler.unlink()  # free space: the same writer goes on, the retried message gets its seq
        assert w.append(tid, data) == seq
        for s in range(seq + 1, seq + 400):  # and keeps rolling (~2 segments: fits the freed space)
            t, d = expected(s, MAX_SIZE)
            assert w.append(t, d) == s
        assert w.segment_id > full_segment + 1
        read_all(r, appended, w.next_seq)
    finally:
        r.close()
        w.close()
    with Queue.open_subscriber(queue, None, "earliest") as r2:
        read_all(r2, 0, seq + 400)


@pytest.mark.timeout(120)
def test_recovery_that_needs_a_segment_on_a_full_disk_fails_cleanly_and_succeeds_later(small_tmpfs, spawn):
    """A writer killed mid-append leaves dirty bytes; the next writer must start a new segment, on a full disk."""
    queue = small_tmpfs / "q"
    n = 40
    filler_proc = spawn("fill", path=str(queue), count=n, segment_size=SEGMENT_SIZE, max_size=MAX_SIZE,
                        prepare_ahead=0)  # no segment prepared ahead: the next writer must create one
    filler_proc.expect("filled", timeout=60)
    assert filler_proc.kill9() < 0
    # the half-written record of seq n: header and payload bytes, commit word still 0
    seg0 = queue / L.segment_file_name(0)
    tail = L.SEGMENT_DATA_OFFSET + sum(L.record_length(len(expected(s, MAX_SIZE)[1])) for s in range(n))
    with open(seg0, "r+b") as f:
        f.seek(tail + L.REC_TYPE_ID_OFFSET)
        f.write(b"\x5a" * (L.RECORD_HEADER_LENGTH - L.REC_TYPE_ID_OFFSET + 100))
    fill_file_system(small_tmpfs / "filler")

    with pytest.raises(DiskFullError) as info:
        Queue.open_publisher(queue, INLINE)
    assert L.segment_file_name(1) in str(info.value)
    assert not temp_files(queue) and not (queue / L.segment_file_name(1)).exists()
    with Queue.open_subscriber(queue, None, "earliest") as r:  # the data is intact meanwhile
        read_all(r, 0, n)

    (small_tmpfs / "filler").unlink()
    with Queue.open_publisher(queue, INLINE) as w:
        assert w.epoch == 2  # the failed open never became a writer session
        assert w.next_seq == n and w.segment_id == 1
        t, d = expected(n, MAX_SIZE)
        assert w.append(t, d) == n
    with Queue.open_subscriber(queue, None, "earliest") as r:
        read_all(r, 0, n + 1)


def fill_file_system(path: pathlib.Path) -> None:
    """Write ``path`` until the file system has no byte left."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        while True:
            os.write(fd, b"\xff" * 4096)
    except OSError as e:
        assert e.errno == errno.ENOSPC
    finally:
        os.close(fd)


@pytest.mark.timeout(120)
def test_cleanup_segments_frees_space_for_the_writer_after_disk_full(small_tmpfs):
    queue = small_tmpfs / "q"
    w = Queue.open_publisher(queue, WriterConfig(segment_size=SEGMENT_SIZE, prepare_ahead=0))
    try:
        e = fill_until_disk_full(w)
        check_disk_full_error(e, w, queue)
        appended = w.next_seq
        # No live named reader holds segments back; a cap of 2 files deletes the oldest ones.
        deleted = cleanup_segments(queue, w.segment_id, w.segment_size, max_segments=2)
        assert deleted and deleted == list(range(deleted[0], deleted[-1] + 1)) and deleted[0] == 0
        assert w.segment_id not in deleted
        for s in range(appended, appended + 300):
            t, d = expected(s, MAX_SIZE)
            assert w.append(t, d) == s
        total = w.next_seq
    finally:
        w.close()
    first = read_all_from_earliest(queue, total)  # the first message left after the deleted segments
    assert 0 < first < appended
    assert not temp_files(queue)


@pytest.mark.timeout(120)
def test_named_reader_on_full_disk_raises_disk_full_and_can_open_once_space_is_freed(small_tmpfs):
    queue = small_tmpfs / "q"
    filler = small_tmpfs / "filler"
    w = Queue.open_publisher(queue, WriterConfig(segment_size=SEGMENT_SIZE, prepare_ahead=0))
    try:
        for s in range(10):
            t, d = expected(s, MAX_SIZE)
            w.append(t, d)
        fill_file_system(filler)  # take every byte left
        with pytest.raises(DiskFullError):
            Queue.open_subscriber(queue, "audit", "earliest")
        filler.unlink()
        try:
            r = Queue.open_subscriber(queue, "audit", "earliest")
        except CorruptQueueError as e:
            pytest.fail(f"the failed open left a broken reader file behind: {e}")
        with r:
            read_all(r, 0, 10)
    finally:
        w.close()


@pytest.mark.timeout(120)
def test_append_batch_on_full_disk_can_be_retried_without_duplicates(small_tmpfs):
    queue = small_tmpfs / "q"
    w = Queue.open_publisher(queue, WriterConfig(segment_size=SEGMENT_SIZE, prepare_ahead=0))
    try:
        batch = 100
        for _ in range(1000):
            first = w.next_seq
            seqs = range(first, first + batch)
            payloads = [expected(s, MAX_SIZE)[1] for s in seqs]
            tids = [expected(s, MAX_SIZE)[0] for s in seqs]
            try:
                assert w.append_batch(tids, payloads) == first
            except DiskFullError as e:
                error = e
                break
        else:
            raise AssertionError("the disk never filled")
        check_disk_full_error(error, w, queue)
        done = w.next_seq - first
        # Either nothing of the batch was appended (the same call can be retried), or the error
        # says how many were (as PayloadTooLargeError does), so the caller retries only the rest.
        assert done == 0 or getattr(error, "appended", None) == done or f"0..{done - 1}" in str(error), (
            f"{done} of the {batch} messages were appended, and the error does not say so: {error}"
        )
        cleanup_segments(queue, w.segment_id, w.segment_size, max_segments=2)  # free space
        assert w.append_batch(tids[done:], payloads[done:]) == first + done
        total = w.next_seq
    finally:
        w.close()
    read_all_from_earliest(queue, total)  # every message once: no batch prefix appended twice
