"""Helpers shared by tests: removing a queue folder under a live writer, waiting for a condition."""
from __future__ import annotations

import errno
import os
import shutil
import time


def remove_queue(path: str | os.PathLike) -> None:
    """``rm -rf`` a queue folder, again if a file appeared meanwhile: a live writer's supplier thread
    may be linking its next segment in while the folder goes (ENOTEMPTY), or removing its temp file
    (ENOENT)."""
    for _ in range(100):
        try:
            shutil.rmtree(path)
            return
        except OSError as e:
            if e.errno not in (errno.ENOTEMPTY, errno.ENOENT) or not os.path.lexists(path):
                if e.errno == errno.ENOENT and not os.path.lexists(path):
                    return
                raise
            time.sleep(0.01)
    shutil.rmtree(path)


def wait_for(cond, what: str, timeout: float = 10.0) -> None:
    """Poll ``cond()`` every millisecond until it is true; AssertionError naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.001)
