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
