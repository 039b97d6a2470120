"""The ``chronicle`` command run by a real second user (uid 65534, ``nobody``) on queues owned by root.

A queue this user may not read is a ``QueuePermissionError`` naming the file and the fix,
never a missing queue; a queue it may read but not write is enough for the read-only
commands. Needs root (to start a child as another user); skipped otherwise.
"""
from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

from chronicle_async import Queue, WriterConfig
from chronicle_async.hot import layout as L

TINY = WriterConfig(segment_size=16 * 1024)
NOBODY = 65534
REPO = pathlib.Path(__file__).resolve().parents[2]


def _chown_tree(root: str, uid: int) -> None:
    os.chown(root, uid, uid)
    for d, dirs, files in os.walk(root):
        for n in dirs + files:
            os.chown(os.path.join(d, n), uid, uid)


def _launcher() -> tuple[list[str], dict] | str:
    """How to start this interpreter as ``nobody``: (command prefix, subprocess kwargs), or why it cannot."""
    attempts: list[tuple[list[str], dict]] = []
    if shutil.which("setpriv"):  # it can start an interpreter that lives under a folder only root may enter
        attempts.append(([shutil.which("setpriv"), f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"], {}))
    attempts.append(([], dict(user=NOBODY, group=NOBODY, extra_groups=[])))
    why = []
    for prefix, kwargs in attempts:
        try:
            p = subprocess.run(prefix + [sys.executable, "-c", "import os; print(os.geteuid())"], capture_output=True,
                               text=True, timeout=60, **kwargs)
        except OSError as e:
            why.append(str(e))
            continue
        if p.returncode == 0 and p.stdout.strip() == str(NOBODY):
            return prefix, kwargs
        why.append(p.stderr.strip()[-200:])
    return "; ".join(why)


@pytest.fixture(scope="module")
def nobody():
    """``(numba cache folder, command prefix, subprocess kwargs)`` to run as ``nobody``; the cache is
    seeded with this user's, so the commands start warm."""
    if os.geteuid() != 0:
        pytest.skip("needs root to run the command as another user (as non-root, permission bits already apply)")
    how = _launcher()
    if isinstance(how, str):
        pytest.skip(f"cannot start this interpreter as uid {NOBODY}: {how}")
    import chronicle_async.hot._jit  # noqa: F401  (sets NUMBA_CACHE_DIR for this process)

    cache = tempfile.mkdtemp(prefix="chronicle-nobody-cache-")
    try:
        ours = os.environ.get("NUMBA_CACHE_DIR")
        if ours and os.path.isdir(ours):
            shutil.copytree(ours, cache, dirs_exist_ok=True)
        _chown_tree(cache, NOBODY)
        yield (cache, *how)
    finally:
        shutil.rmtree(cache, ignore_errors=True)


@pytest.fixture
def as_nobody(nobody):
    """Run ``chronicle ARGS`` (or ``python *python``) as uid 65534."""
    cache, prefix, kwargs = nobody

    def run(*args: object, python: tuple[str, ...] = ("-m", "chronicle_async.cli")) -> subprocess.CompletedProcess:
        env = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", "PYTHONPATH": str(REPO), "NUMBA_CACHE_DIR": cache}
        return subprocess.run(prefix + [sys.executable, *python, *map(str, args)], env=env,
                              cwd="/", capture_output=True, text=True, timeout=60, **kwargs)

    return run


def make_queue(path, n: int = 3) -> None:
    with Queue.open_publisher(path, TINY) as w:
        for i in range(n):
            w.append(1, b'{"i": %d}' % i)
    with Queue.open_subscriber(path, "risk", "earliest") as r:
        r.next()
        r.commit()


def files_of(d) -> dict[str, bytes]:
    out = {}
    for root, _dirs, files in os.walk(d):
        for f in files:
            p = os.path.join(root, f)
            out[os.path.relpath(p, d)] = pathlib.Path(p).read_bytes()
    return out


def test_a_queue_folder_another_user_may_not_enter_is_a_permission_error_not_a_missing_queue(as_nobody, root_owned_dir):
    q = root_owned_dir / "prices"
    make_queue(q)
    os.chmod(q, 0o700)
    for command in (["inspect"], ["tail"], ["readers"], ["tail", "--name", "risk"]):
        p = as_nobody(*command, q)
        assert p.returncode == 1, (command, p.stdout, p.stderr)
        assert p.stderr.startswith(f"chronicle: QueuePermissionError: cannot read {q}"), (command, p.stderr)
        assert "uid 65534" in p.stderr and "owned by uid 0" in p.stderr, p.stderr
        assert f"run as the queue's owner, or grant read access: chmod a+rx {q}" in p.stderr, p.stderr
        assert "QueueNotFoundError" not in p.stderr and "missing" not in p.stderr and "Traceback" not in p.stderr


def test_monitor_once_reports_a_queue_it_may_not_read_and_exits_1(as_nobody, root_owned_dir):
    bus = root_owned_dir / "bus"
    make_queue(bus / "prices")
    make_queue(bus / "orders")
    os.chmod(bus / "prices", 0o700)
    p = as_nobody("monitor", bus, "--once")
    assert p.returncode == 1, p.stdout + p.stderr
    row = {line.split()[0]: line for line in p.stdout.splitlines() if line.split()[:1] in (["prices"], ["orders"])}
    assert "QueuePermissionError: cannot read" in row["prices"] and "waiting" not in row["prices"]
    assert row["orders"].endswith("writer_closed"), "a readable queue beside it is still shown"
    assert p.stderr.startswith(f"chronicle: prices: QueuePermissionError: cannot read {bus / 'prices'}")
    assert f"chmod a+rx {bus / 'prices'}" in p.stderr
    os.chmod(bus / "prices", 0o755)
    p = as_nobody("monitor", bus, "--once")
    assert p.returncode == 0, p.stdout + p.stderr


def test_inspect_of_a_control_file_another_user_may_not_read_says_cannot_read_not_cannot_write(as_nobody, root_owned_dir):
    q = root_owned_dir / "prices"
    make_queue(q)
    ctl = q / L.CONTROL_FILE_NAME
    os.chmod(ctl, 0o600)
    for command in ("inspect", "readers", "tail"):
        p = as_nobody(command, q)
        assert p.returncode == 1, (command, p.stdout, p.stderr)
        assert p.stderr.startswith(f"chronicle: QueuePermissionError: cannot read {ctl}"), (command, p.stderr)
        assert f"{ctl} is mode 600, owned by uid 0" in p.stderr and f"chmod a+r {ctl}" in p.stderr
        assert "cannot write" not in p.stderr and "writable" not in p.stderr


def test_read_only_commands_work_with_read_access_alone(as_nobody, root_owned_dir):
    q = root_owned_dir / "prices"
    make_queue(q, 5)  # root's: folder 0o755, files 0o644: readable by others, not writable
    before = files_of(q)
    t0 = time.monotonic()
    p = as_nobody("inspect", q)
    assert p.returncode == 0, p.stderr
    assert "seq 0 .. 4 (about 5 messages)" in p.stdout and "1 named (0 live)" in p.stdout
    p = as_nobody("readers", q)
    assert p.returncode == 0, p.stderr
    assert "risk" in p.stdout and "unknown" in p.stdout  # its .pos is private to its writers: no probe
    p = as_nobody("tail", q, "-n", 2)
    assert p.returncode == 0, p.stderr
    assert [line.split()[0] for line in p.stdout.splitlines()] == ["3", "4"]
    pos = q / L.READERS_DIR_NAME / ("risk" + L.READER_FILE_SUFFIX)
    p = as_nobody("tail", q, "--name", "risk")  # its position file is private (mode 600): say so, read nothing
    assert p.returncode == 1 and p.stderr.startswith(f"chronicle: QueuePermissionError: cannot read {pos}"), p.stderr
    assert "--from" in p.stderr and "Permissions" in p.stderr
    p = as_nobody("monitor", root_owned_dir, "--once")
    assert p.returncode == 0, p.stderr
    assert time.monotonic() - t0 < 60
    assert files_of(q) == before, "read-only commands change nothing"


def test_demo_in_a_folder_another_user_may_not_write_ends_at_once_with_the_writers_error(as_nobody, root_owned_dir):
    spawn = "import subprocess, sys; sys.exit(subprocess.call([sys.executable, '-c', '']))"
    if as_nobody(python=("-c", spawn)).returncode != 0:
        pytest.skip(f"uid {NOBODY} may not start {sys.executable} itself (only through setpriv), so the demo "
                    "cannot spawn its processes")
    q = root_owned_dir / "ticks"
    q.mkdir()  # empty, root's 0o755: the demo may use it, but nobody cannot create the queue in it
    t0 = time.monotonic()
    p = as_nobody("demo", q, "-n", 10)
    dt = time.monotonic() - t0
    assert p.returncode == 1, p.stdout + p.stderr
    assert dt < 10, f"took {dt:.1f} s (the reader process, waiting for the queue, must be stopped)"
    assert p.stderr.startswith(f"chronicle: QueuePermissionError: cannot create or open lock file {q}"), p.stderr
    assert "Traceback" not in p.stderr
    assert os.listdir(q) == []
