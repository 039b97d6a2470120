"""The source distribution: built from this checkout, it carries what a user needs to run the tests.

The sdist is built with ``python -m build`` (the ``build`` package, in the ``test`` extra; these
tests skip where it is not installed). Its file list must hold the licence, the ``py.typed``
marker and the test suite, and the tests unpacked from it must pass against the package unpacked
beside them. The wheel built from that sdist must ship the licence and ``py.typed`` too.
"""
from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import tarfile
import zipfile

import pytest

pytest.importorskip("build", reason="building the sdist needs the 'build' package (pip install -e '.[test]')")

CHECKOUT = pathlib.Path(__file__).resolve().parents[2]

#: Fast test files run from the unpacked sdist.
UNPACKED_TESTS = ("tests/face/test_exports.py", "tests/face/test_logging.py")


def _build(what: str, source: pathlib.Path, outdir: pathlib.Path) -> pathlib.Path:
    subprocess.run([sys.executable, "-m", "build", what, "--outdir", str(outdir), str(source)],
                   check=True, capture_output=True, text=True, timeout=120)
    suffix = ".tar.gz" if what == "--sdist" else ".whl"
    (built,) = outdir.glob(f"*{suffix}")
    return built


@pytest.fixture(scope="module")
def sdist(tmp_path_factory) -> pathlib.Path:
    return _build("--sdist", CHECKOUT, tmp_path_factory.mktemp("sdist"))


def _names(archive: pathlib.Path) -> set[str]:
    with tarfile.open(archive) as tar:
        return {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}


def test_sdist_lists_the_license_the_typing_marker_and_the_tests(sdist):
    names = _names(sdist)
    for needed in ("LICENSE", "README.md", "Makefile", "pyproject.toml", "chronicle_async/py.typed",
                   "tests/conftest.py", "examples/explore.ipynb", "docs/format.md",
                   "benchmarks/run.py", "scripts/pythons.sh"):
        assert needed in names, f"{needed} missing from {sdist.name}"
    assert not any("__pycache__" in n for n in names)


@pytest.mark.slow
def test_tests_unpacked_from_the_sdist_pass_against_the_unpacked_package(sdist, tmp_path):
    with tarfile.open(sdist) as tar:
        tar.extractall(tmp_path, filter="data")
    (tree,) = tmp_path.iterdir()
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *UNPACKED_TESTS],
                          cwd=tree, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert " passed" in done.stdout
    probe = subprocess.run([sys.executable, "-c", "import chronicle_async; print(chronicle_async.__file__)"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, check=True, timeout=60)
    assert probe.stdout.strip().startswith(str(tree))


@pytest.mark.slow
def test_wheel_built_from_the_sdist_ships_the_license_and_the_typing_marker(sdist, tmp_path):
    with tarfile.open(sdist) as tar:
        tar.extractall(tmp_path / "src", filter="data")
    (tree,) = (tmp_path / "src").iterdir()
    wheel = _build("--wheel", tree, tmp_path / "dist")
    names = zipfile.ZipFile(wheel).namelist()
    assert "chronicle_async/py.typed" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names), names
