"""Run the installed ``chronicle`` console script (the one ``pip install`` put beside this Python)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

#: The console script of the interpreter running the tests: the entry point users type.
CHRONICLE = os.path.join(os.path.dirname(sys.executable), "chronicle")


def chronicle(*args: object, input: str | bytes | None = None, timeout: float = 120,
              env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``chronicle ARGS...`` to completion; text mode unless ``input`` is bytes."""
    if not os.path.isfile(CHRONICLE):
        raise RuntimeError(f"{CHRONICLE} is missing: install the package (make test does) before running the CLI tests")
    return subprocess.run(
        [CHRONICLE, *map(str, args)], input=input, capture_output=True, text=not isinstance(input, bytes),
        timeout=timeout, check=False, env=env,
    )


def chronicle_json(*args: object, **kw: object) -> object:
    """Run ``chronicle ARGS... --json``; assert it exits 0 and return its parsed stdout."""
    p = chronicle(*args, "--json", **kw)  # type: ignore[arg-type]
    assert p.returncode == 0, p.stdout + p.stderr
    return json.loads(p.stdout)
