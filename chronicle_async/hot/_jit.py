"""The one place that sets numba options for every kernel in ``chronicle_async.hot``.

Every jitted function in this package is compiled through :func:`kernel`, so the
flags below are the only ones in force: ``nogil`` (kernels never hold the GIL),
``cache`` (warm starts skip compilation), ``boundscheck=False`` and
``fastmath=False`` (integer code; no reassociation surprises).

numba's cache does not notice edits to intrinsics that live in another module,
so the cache folder is keyed by :data:`KERNEL_ABI`; bump it whenever
``atomics.py``, ``layout.py`` or ``tables.py`` changes in a way that alters generated code.
The environment variable ``CHRONICLE_ASYNC_NO_CACHE=1`` turns caching off.
"""
from __future__ import annotations

import os
import pathlib
import tempfile

#: Bump when intrinsics or layout constants change, so stale cached machine code is never reused.
KERNEL_ABI = "13"

_cache_env = os.environ.get("CHRONICLE_ASYNC_NO_CACHE", "") not in ("1", "true", "yes")


def _writable_dir(path: pathlib.Path) -> bool:
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".probe-{os.getpid()}"
        probe.touch()
        probe.unlink()
        return True
    except OSError:
        return False


_user_cache_dir = "NUMBA_CACHE_DIR" in os.environ
if _cache_env and not _user_cache_dir:
    _candidates = []
    if os.environ.get("XDG_CACHE_HOME"):
        _candidates.append(pathlib.Path(os.environ["XDG_CACHE_HOME"]))
    try:
        _candidates.append(pathlib.Path.home() / ".cache")
    except RuntimeError:  # no home directory
        pass
    _candidates.append(pathlib.Path(tempfile.gettempdir()) / f"chronicle_async-{os.getuid()}")
    for _base in _candidates:
        _dir = _base / "chronicle_async" / f"numba-abi{KERNEL_ABI}"
        if _writable_dir(_dir):
            os.environ["NUMBA_CACHE_DIR"] = str(_dir)
            break
    else:  # nowhere to cache: compile every time rather than fail at import
        _cache_env = False

import numba  # noqa: E402  (must come after NUMBA_CACHE_DIR is set)

# numba reads NUMBA_CACHE_DIR when it is first imported; if the application imported numba
# before us, set its config directly. Every cache=True function of the process (the user's
# kernels that inline ours included) is then cached under the KERNEL_ABI-keyed folder, so
# upgrading chronicle_async never serves machine code built against older kernels.
if _cache_env and not _user_cache_dir and os.environ.get("NUMBA_CACHE_DIR"):
    numba.config.CACHE_DIR = os.environ["NUMBA_CACHE_DIR"]

CACHE = _cache_env


def kernel(fn=None, **overrides):
    """Decorate a hot kernel: ``njit(nogil=True, cache=True, boundscheck=False, fastmath=False)``."""
    opts = dict(nogil=True, cache=CACHE, boundscheck=False, fastmath=False, error_model="numpy")
    opts.update(overrides)
    if fn is None:
        return lambda f: numba.njit(**opts)(f)
    return numba.njit(**opts)(fn)
