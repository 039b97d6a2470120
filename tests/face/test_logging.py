"""The library's logger: silent unless the application configures logging.

``chronicle_async`` logs its warnings to the ``"chronicle_async"`` logger, which carries a
``NullHandler``: with no logging configured, a warning is dropped instead of reaching stderr
through logging's last-resort handler; with logging configured, it is shown as usual.
"""
from __future__ import annotations

import logging
import subprocess
import sys
import textwrap

import chronicle_async

#: Makes a queue whose readers/ folder holds a folder named like a reader file, then runs
#: retention over it: the scan skips that entry with a warning naming it.
WARN_SCRIPT = textwrap.dedent("""
    import os, sys
    {setup}
    import chronicle_async
    from chronicle_async import Queue, WriterConfig, cleanup_segments
    folder = sys.argv[1]
    with Queue.open_publisher(folder, WriterConfig(segment_size=64 * 1024)) as w:
        w.append(1, b"x")
    os.makedirs(os.path.join(folder, "readers", "odd.pos"))
    cleanup_segments(folder, 0, 64 * 1024)
""")


def _run(tmp_path, setup: str) -> subprocess.CompletedProcess:
    script = WARN_SCRIPT.format(setup=setup)
    return subprocess.run([sys.executable, "-c", script, str(tmp_path / "q")],
                          capture_output=True, text=True, timeout=60, check=True)


def test_library_logger_has_a_null_handler():
    handlers = logging.getLogger("chronicle_async").handlers
    assert any(isinstance(h, logging.NullHandler) for h in handlers), handlers
    assert chronicle_async.__name__ == "chronicle_async"


def test_library_warning_prints_nothing_when_logging_is_not_configured(tmp_path):
    done = _run(tmp_path, setup="")
    assert done.stderr == ""
    assert done.stdout == ""


def test_library_warning_is_shown_once_the_application_configures_logging(tmp_path):
    done = _run(tmp_path, setup="import logging; logging.basicConfig(level=logging.WARNING)")
    assert "odd.pos is not a regular file" in done.stderr
