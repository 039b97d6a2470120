"""The public face: every name importable from chronicle_async, once, and nothing from hot/ leaks."""
from __future__ import annotations

import subprocess
import sys

import chronicle_async

REQUIRED = {
    "Queue", "QueueWriter", "QueueReader", "WriterConfig", "Message", "WriterStatus", "DisconnectReason",
    "ChronicleError", "QueueNotFoundError", "WriterLockedError", "PayloadTooLargeError", "CorruptQueueError",
    "UnsupportedVersionError", "DiskFullError", "NotAQueueError", "QueuePermissionError",
}


def test_required_public_names_are_exported():
    assert REQUIRED <= set(chronicle_async.__all__)
    for name in chronicle_async.__all__:
        assert getattr(chronicle_async, name) is not None


def test_public_names_are_listed_once_and_report_the_public_module():
    assert len(chronicle_async.__all__) == len(set(chronicle_async.__all__))
    assert chronicle_async.Queue.__module__ == "chronicle_async"


def test_every_typed_error_derives_from_chronicle_error():
    for name in chronicle_async.__all__:
        obj = getattr(chronicle_async, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, chronicle_async.ChronicleError), name


def test_no_hot_kernel_leaks_into_the_public_face():
    for name in chronicle_async.__all__:
        mod = getattr(getattr(chronicle_async, name), "__module__", "") or ""
        assert not mod.startswith("chronicle_async.hot"), name


def test_cli_help_compiles_no_kernel():
    code = (
        "import sys\nfrom chronicle_async.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "from numba.core.registry import CPUDispatcher\n"
        "compiled = [f'{m}.{n}' for m, mod in list(sys.modules.items()) if m.startswith('chronicle_async')\n"
        "            for n, v in vars(mod).items() if isinstance(v, CPUDispatcher) and v.signatures]\n"
        "print(compiled)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_import_loads_no_asyncio_watchfiles_pandas_or_control_plane():
    code = (
        "import sys, chronicle_async\n"
        "print(sorted(m for m in ('asyncio', 'watchfiles', 'pandas', 'uvloop', 'chronicle_async.control',\n"
        "                         'chronicle_async.frames', 'chronicle_async.loop') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


PUBLIC_MODULES = ("chronicle_async", "chronicle_async.control", "chronicle_async.frames", "chronicle_async.loop")


def test_every_public_object_has_one_public_path():
    """Each public object is listed in exactly one public ``__all__``, and says that module is its home."""
    import importlib

    homes: dict[int, list[str]] = {}
    for modname in PUBLIC_MODULES:
        mod = importlib.import_module(modname)
        for name in mod.__all__:
            obj = getattr(mod, name)
            homes.setdefault(id(obj), []).append(f"{modname}.{name}")
            if isinstance(obj, type) or callable(obj):
                assert getattr(obj, "__module__", modname) == modname, (name, obj.__module__)
    twice = [paths for paths in homes.values() if len(paths) > 1]
    assert not twice, twice


def test_control_plane_and_notebook_names_stay_reachable_from_the_top_level():
    from chronicle_async import control, frames, loop

    for name in control.__all__:
        if name not in ("next_async", "run"):
            assert getattr(chronicle_async, name) is getattr(control, name), name
    for name in ("read_array", "read_array_async", "read_dataframe", "read_dataframe_async", "plot_latency",
                 "plot_interarrival"):
        assert getattr(chronicle_async, name) is getattr(frames, name), name
    for name in loop.__all__:
        assert getattr(chronicle_async, name) is getattr(loop, name), name
    assert "ControlPlane" in dir(chronicle_async) and "ControlPlane" not in chronicle_async.__all__
    try:
        chronicle_async.no_such_name  # noqa: B018
    except AttributeError as e:
        assert "no_such_name" in str(e)
    else:
        raise AssertionError("an unknown name must raise AttributeError")


def test_the_face_has_at_most_37_names():
    # 35, then ReaderNotFoundError and the inspect API's two result types (QueueInfo, QueueSummary)
    assert len(chronicle_async.__all__) <= 37


def test_the_bridge_face_lists_each_name_once_with_typed_errors_and_loads_no_nats_client():
    code = (
        "import sys, chronicle_async.bridge as b\n"
        "assert len(b.__all__) == len(set(b.__all__)), b.__all__\n"
        "from chronicle_async import ChronicleError\n"
        "errors = [n for n in b.__all__ if isinstance(getattr(b, n), type) and issubclass(getattr(b, n), Exception)]\n"
        "assert all(issubclass(getattr(b, n), ChronicleError) for n in errors), errors\n"
        "print(len(errors), sorted(m for m in ('nats', 'nats.js', 'nkeys') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    count, loaded = out.strip().splitlines()[-1].split(" ", 1)
    assert int(count) >= 8 and loaded == "[]"
