"""Queue files that are not what they should be: links, FIFOs, folders, other users, a full file system.

Every case uses real files. A symbolic link is never followed and its target never touched; a
FIFO or folder in place of a queue file is refused with a typed error naming it and the fix,
fast, never blocked on; folders and files never give others write access whatever the umask;
a user who may only read the queue cannot block its writer or a named reader (docs/operations.md,
"Permissions").
"""
from __future__ import annotations

import contextlib
import logging
import os
import pathlib
import shutil
import subprocess
import sys
import threading
import time

import pytest

import chronicle_async as ca
from chronicle_async import Queue, WriterConfig
from chronicle_async.hot import layout as L

TINY = WriterConfig(segment_size=16 * 1024)
NOBODY = 65534
BOUND = 10.0  # seconds: generous; a blocked open would never return at all


def make_queue(path, n: int = 3) -> None:
    with Queue.open_publisher(path, TINY) as w:
        for i in range(n):
            w.append(1, b"m%d" % i)


def bounded(fn, timeout: float = BOUND):
    """Run ``fn`` in a thread; return ``(finished, result or exception, seconds)``."""
    out: list = []

    def body():
        try:
            out.append(fn())
        except BaseException as e:  # noqa: BLE001 (handed to the test)
            out.append(e)

    t = threading.Thread(target=body, daemon=True)
    t0 = time.monotonic()
    t.start()
    t.join(timeout)
    return not t.is_alive(), (out[0] if out else None), time.monotonic() - t0


def unblock_fifo(path) -> None:
    """Let a thread blocked opening ``path`` for reading go (opening the write end)."""
    with contextlib.suppress(OSError):
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))


@contextlib.contextmanager
def umask(mask: int):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


# -- symbolic links are never followed --------------------------------------------------------


def test_a_writer_lock_symlink_is_refused_and_its_target_is_left_untouched(queue_dir, tmp_path):
    make_queue(queue_dir)
    target = tmp_path / "precious.txt"
    target.write_text("keep me\n")
    lock = queue_dir / L.WRITER_LOCK_NAME
    lock.unlink()
    lock.symlink_to(target)
    with pytest.raises(ca.CorruptQueueError) as ei:
        Queue.open_publisher(queue_dir, TINY)
    assert str(lock) in str(ei.value) and "symbolic link" in str(ei.value) and "mv " in str(ei.value)
    assert target.read_text() == "keep me\n"


def test_a_reader_position_symlink_is_refused_and_nothing_is_created_at_its_target(queue_dir, tmp_path):
    make_queue(queue_dir)
    target = tmp_path / "elsewhere.bin"
    pos = queue_dir / L.READERS_DIR_NAME / ("svc" + L.READER_FILE_SUFFIX)
    pos.parent.mkdir()
    pos.symlink_to(target)
    with pytest.raises(ca.CorruptQueueError) as ei:
        Queue.open_subscriber(queue_dir, "svc")
    assert str(pos) in str(ei.value) and "symbolic link" in str(ei.value)
    assert not target.exists()


@pytest.mark.parametrize("what", ["loop", "dangling", "folder"])
def test_a_head_segment_that_is_a_link_loop_a_dangling_link_or_a_folder_is_a_typed_error(queue_dir, what):
    make_queue(queue_dir)
    seg = queue_dir / L.segment_file_name(0)
    seg.unlink()
    if what == "loop":
        seg.symlink_to(seg.name)
    elif what == "dangling":
        seg.symlink_to(queue_dir / "gone.seg")
    else:
        seg.mkdir()
    with pytest.raises(ca.CorruptSegmentError) as ei:
        Queue.open_subscriber(queue_dir, start="earliest").close()
    assert str(seg) in str(ei.value) and "regular file" in str(ei.value)
    with pytest.raises(ca.CorruptQueueError) as ei:
        Queue.open_publisher(queue_dir, TINY).close()
    assert str(seg) in str(ei.value)


def test_a_position_file_that_is_a_link_loop_is_a_typed_error(queue_dir):
    make_queue(queue_dir)
    pos = queue_dir / L.READERS_DIR_NAME / ("svc" + L.READER_FILE_SUFFIX)
    pos.parent.mkdir()
    pos.symlink_to(pos.name)
    with pytest.raises(ca.CorruptQueueError, match="symbolic link"):
        Queue.open_subscriber(queue_dir, "svc")


def test_a_control_file_that_is_a_folder_is_named_by_chronicle_inspect(queue_dir):
    make_queue(queue_dir)
    ctl = queue_dir / L.CONTROL_FILE_NAME
    ctl.unlink()
    ctl.mkdir()
    with pytest.raises(ca.CorruptQueueError) as ei:
        Queue.open_subscriber(queue_dir)
    assert str(ctl) in str(ei.value) and "a folder" in str(ei.value)
    p = subprocess.run([sys.executable, "-m", "chronicle_async.cli", "inspect", str(queue_dir)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 1
    assert "No such device" not in p.stderr and str(ctl) in p.stderr and "CorruptQueueError" in p.stderr, p.stderr


# -- FIFOs: never opened for blocking -----------------------------------------------------------


def test_a_fifo_as_a_segment_is_refused_fast_by_a_reader(queue_dir):
    make_queue(queue_dir)
    seg = queue_dir / L.segment_file_name(0)
    seg.unlink()
    os.mkfifo(seg)
    try:
        done, res, took = bounded(lambda: Queue.open_subscriber(queue_dir, start="earliest"))
    finally:
        unblock_fifo(seg)
    assert done and took < BOUND, "opening a FIFO segment blocked"
    assert isinstance(res, ca.CorruptSegmentError) and str(seg) in str(res) and "FIFO" in str(res), res


def test_a_fifo_as_a_position_file_is_refused_fast(queue_dir):
    make_queue(queue_dir)
    pos = queue_dir / L.READERS_DIR_NAME / ("x" + L.READER_FILE_SUFFIX)
    pos.parent.mkdir()
    os.mkfifo(pos)
    try:
        done, res, took = bounded(lambda: Queue.open_subscriber(queue_dir, "x"))
    finally:
        unblock_fifo(pos)
    assert done and isinstance(res, ca.CorruptQueueError) and "FIFO" in str(res) and str(pos) in str(res), res


def test_a_fifo_in_readers_does_not_stop_the_writers_heartbeat_retention_or_close(queue_dir, caplog):
    make_queue(queue_dir)
    pos = queue_dir / L.READERS_DIR_NAME / ("x" + L.READER_FILE_SUFFIX)
    pos.parent.mkdir()
    os.mkfifo(pos)
    cfg = WriterConfig(segment_size=16 * 1024, max_segments=2, heartbeat_interval=0.01, retention_check_interval=0.01)
    try:
        with caplog.at_level(logging.WARNING, logger="chronicle_async"):
            w = Queue.open_publisher(queue_dir, cfg)
            with Queue.open_subscriber(queue_dir) as r:
                time.sleep(0.2)  # some housekeeping ticks, each scanning readers/
                hb1 = r.writer_status(ttl=5).heartbeat_ns
                for _ in range(4):
                    w.roll()
                deadline = time.monotonic() + BOUND

                def data_segments() -> int:  # the caps count segments up to the head; prepared ones come on top
                    return len([n for n in os.listdir(queue_dir) if n.endswith(".seg") and int(n[:-4]) <= w.segment_id])

                while data_segments() > 2 and time.monotonic() < deadline:
                    time.sleep(0.02)
                assert data_segments() <= 2, "retention stopped"
                assert r.writer_status(ttl=5).heartbeat_ns > hb1, "the heartbeat stopped"
            t0 = time.monotonic()
            w.close()
            assert time.monotonic() - t0 < 2.0, "close() waited for a blocked housekeeper"
    finally:
        unblock_fifo(pos)
    assert any(str(pos) in rec.getMessage() and "not a regular file" in rec.getMessage() for rec in caplog.records)


# -- modes: never writable by others, whatever the umask ----------------------------------------


def test_under_umask_0_nothing_the_queue_makes_is_writable_by_others(tmp_path):
    q = tmp_path / "open-umask"
    with umask(0):
        make_queue(q)
        with Queue.open_subscriber(q, "svc") as r:
            r.commit()
    for p in [q, q / L.READERS_DIR_NAME, *q.iterdir(), *(q / L.READERS_DIR_NAME).iterdir()]:
        assert not os.stat(p).st_mode & 0o002, f"{p} is writable by others: {os.stat(p).st_mode:o}"
    assert os.stat(q).st_mode & 0o777 == 0o775
    for private in (q / L.WRITER_LOCK_NAME, q / L.READERS_DIR_NAME / ("svc" + L.READER_FILE_SUFFIX)):
        assert os.stat(private).st_mode & 0o777 == 0o660  # the group may write, so it may read; others neither


def test_under_umask_022_lock_files_are_private_to_the_owner(queue_dir):
    with umask(0o022):
        make_queue(queue_dir)
        with Queue.open_subscriber(queue_dir, "svc") as r:
            r.commit()
    assert os.stat(queue_dir / L.WRITER_LOCK_NAME).st_mode & 0o777 == 0o600
    assert os.stat(queue_dir / L.READERS_DIR_NAME / "svc.pos").st_mode & 0o777 == 0o600
    assert os.stat(queue_dir / L.CONTROL_FILE_NAME).st_mode & 0o777 == 0o644
    assert os.stat(queue_dir / L.READERS_DIR_NAME).st_mode & 0o777 == 0o755


def test_an_old_world_readable_lock_file_is_made_private_at_the_next_open(queue_dir):
    make_queue(queue_dir)
    lock = queue_dir / L.WRITER_LOCK_NAME
    os.chmod(lock, 0o644)
    with umask(0o022):
        Queue.open_publisher(queue_dir, TINY).close()
    assert os.stat(lock).st_mode & 0o777 == 0o600


# -- a read-only user cannot block the writer or a named reader ---------------------------------

_HOLD_READ_LOCK = r"""
import fcntl, os, struct, sys
try:
    fd = os.open(sys.argv[1], os.O_RDONLY)
    fcntl.fcntl(fd, getattr(fcntl, "F_OFD_SETLK", 37), struct.pack("hhxxxxqqixxxx", fcntl.F_RDLCK, 0, 0, 0, 0))
    print("locked", flush=True)
except OSError as e:
    print("denied", e.errno, flush=True)
sys.stdin.read()
"""


@pytest.fixture
def nobody_holds_read_lock():
    """Start ``python`` as uid 65534 trying to read-lock a file; yields a function returning its first line."""
    if os.geteuid() != 0:
        pytest.skip("needs root to start a child as another user")
    setpriv = shutil.which("setpriv")
    if not setpriv:
        pytest.skip("setpriv is not installed")
    procs = []

    def start(path) -> str:
        p = subprocess.Popen([setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                              sys.executable, "-I", "-c", _HOLD_READ_LOCK, str(path)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        procs.append(p)
        line = p.stdout.readline().strip()
        if not line:
            pytest.skip(f"cannot run python as uid {NOBODY}: {p.stderr.read()[-300:]}")
        return line

    yield start
    for p in procs:
        p.stdin.close()
        p.wait(timeout=30)


def test_a_read_only_user_cannot_lock_writer_lock_so_the_writer_opens(root_owned_dir, nobody_holds_read_lock):
    q = root_owned_dir / "q"
    make_queue(q)
    assert nobody_holds_read_lock(q / L.WRITER_LOCK_NAME).startswith("denied")
    with Queue.open_publisher(q, TINY) as w:
        assert w.append(0, b"still mine") == 3


def test_a_read_only_user_cannot_lock_a_named_readers_file_so_it_opens(root_owned_dir, nobody_holds_read_lock):
    q = root_owned_dir / "q"
    make_queue(q)
    Queue.open_subscriber(q, "svc").close()
    assert nobody_holds_read_lock(q / L.READERS_DIR_NAME / "svc.pos").startswith("denied")
    with Queue.open_subscriber(q, "svc", "earliest") as r:
        assert r.next().seq == 0


def test_a_read_only_user_still_sees_a_live_writer_through_the_fallback(root_owned_dir, nobody_holds_read_lock):
    q = root_owned_dir / "q"
    make_queue(q)
    code = ("import sys; from chronicle_async import Queue; r = Queue.open_subscriber(sys.argv[1]); "
            "s = r.writer_status(ttl=60); print(s.lock_held, s.alive)")
    nobody_holds_read_lock(q / L.WRITER_LOCK_NAME)  # skips if no second user
    with Queue.open_publisher(q, TINY):
        p = subprocess.run([shutil.which("setpriv"), f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                            sys.executable, "-c", code, str(q)], capture_output=True, text=True, timeout=120,
                           env={**os.environ, "NUMBA_CACHE_DIR": "/tmp/chronicle-nobody-numba"})
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.split() == ["True", "True"]


# -- a full file system: out of inodes or of space ----------------------------------------------


@pytest.fixture
def tiny_tmpfs(tmp_path):
    """Mount a tmpfs with the given options; unmounted at teardown (skips if it cannot be mounted)."""
    mounted = []

    def mount(opts: str) -> pathlib.Path:
        mnt = tmp_path / f"fs{len(mounted)}"
        mnt.mkdir()
        p = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(mnt)], capture_output=True, text=True)
        if p.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs ({p.stderr.strip()}): needs root with CAP_SYS_ADMIN")
        mounted.append(mnt)
        return mnt

    yield mount
    for mnt in mounted:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def use_up_inodes(folder: pathlib.Path) -> None:
    for i in range(100000):
        try:
            (folder / f"filler{i}").touch()
        except OSError:
            return
    raise AssertionError("the inode limit was never reached")


def test_no_inode_left_for_a_new_position_file_is_a_disk_full_error(tiny_tmpfs):
    fs = tiny_tmpfs("size=4m,nr_inodes=64")
    q = fs / "q"
    make_queue(q)
    (q / L.READERS_DIR_NAME).mkdir()
    use_up_inodes(fs)
    with pytest.raises(ca.DiskFullError) as ei:
        Queue.open_subscriber(q, "svc")
    assert "svc.pos" in str(ei.value) and "inodes" in str(ei.value)


def test_no_inode_left_at_a_roll_is_a_disk_full_error_naming_the_segment(tiny_tmpfs):
    fs = tiny_tmpfs("size=4m,nr_inodes=64")
    q = fs / "q"
    with Queue.open_publisher(q, TINY) as w:
        use_up_inodes(fs)
        with pytest.raises(ca.DiskFullError) as ei:
            for _ in range(w.prepare_ahead + 1):  # the segments prepared before the disk filled come first
                w.roll()
        assert str(q) in str(ei.value) and ".seg" in str(ei.value)
        assert w.append(0, b"still fine") == 0


def test_no_space_left_for_the_control_file_is_a_disk_full_error_naming_it(tiny_tmpfs):
    fs = tiny_tmpfs("size=256k")
    filler = fs / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    with contextlib.suppress(OSError):
        while True:
            os.write(fd, b"\0" * 4096)
    os.close(fd)
    size = filler.stat().st_size
    os.truncate(filler, size - TINY.segment_size)  # room for segment 0, none for control.cq
    with pytest.raises(ca.DiskFullError) as ei:
        Queue.open_publisher(fs / "q", TINY)
    assert L.CONTROL_FILE_NAME in str(ei.value)


# -- ring files ---------------------------------------------------------------------------------


@pytest.mark.parametrize("what", ["symlink", "fifo", "folder"])
def test_a_ring_path_that_is_a_link_fifo_or_folder_is_refused_fast(tmp_path, what):
    real = tmp_path / "real.ring"
    ca.SpscRing.create(real).close()
    p = tmp_path / "x.ring"
    if what == "symlink":
        p.symlink_to(real)
    elif what == "fifo":
        os.mkfifo(p)
    else:
        p.mkdir()
    try:
        done, res, _took = bounded(lambda: ca.SpscRing.open(p))
    finally:
        if what == "fifo":
            unblock_fifo(p)
    assert done and isinstance(res, ca.CorruptQueueError) and str(p) in str(res), res


def test_retention_skips_a_fifo_in_readers_and_still_honours_a_live_reader(queue_dir):
    from chronicle_async.queue.retention import live_reader_segments

    make_queue(queue_dir)
    with Queue.open_subscriber(queue_dir, "live", "earliest") as r:
        r.commit()
        os.mkfifo(queue_dir / L.READERS_DIR_NAME / ("x" + L.READER_FILE_SUFFIX))
        done, res, _took = bounded(lambda: live_reader_segments(str(queue_dir)))
        unblock_fifo(queue_dir / L.READERS_DIR_NAME / ("x" + L.READER_FILE_SUFFIX))
        assert done and res == {"live": 0}, res
