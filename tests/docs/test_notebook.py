"""examples/explore.ipynb runs top to bottom in a fresh kernel, without errors, and draws its plots."""
from __future__ import annotations

import os
import pathlib
import sys
import time

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("pandas")
pytest.importorskip("matplotlib")

ROOT = pathlib.Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "examples" / "explore.ipynb"


def test_explore_notebook_runs_and_plots(monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "Agg")  # headless; the notebook's %matplotlib inline still emits PNGs
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    # Kernel "python3": jupyter_client runs a kernelspec whose argv starts with "python" with
    # sys.executable, so the kernel is this interpreter (the venv's).
    client = nbclient.NotebookClient(
        nb, kernel_name="python3", timeout=120, resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    )
    t = time.perf_counter()
    client.execute()
    elapsed = time.perf_counter() - t

    code = [c for c in nb.cells if c.cell_type == "code"]
    errors = [
        (i, o.get("ename"), o.get("evalue"))
        for i, c in enumerate(code) for o in c.get("outputs", []) if o.get("output_type") == "error"
    ]
    assert errors == []
    assert all(c.get("execution_count") for c in code), "a code cell did not run"
    images = [c for c in code if any("image/png" in o.get("data", {}) for o in c.get("outputs", []))]
    assert len(images) >= 2, "the inter-arrival and latency plots produced no image"
    assert sum("plot_interarrival" in c.source for c in images) == 1
    assert sum("plot_latency" in c.source for c in images) == 1
    text = "".join(o.get("text", "") for c in code for o in c.get("outputs", []) if o.get("output_type") == "stream")
    assert "rows in" in text and "ticks in the window" in text
    print(f"notebook ran in {elapsed:.1f} s with {sys.executable}")
    assert elapsed < 60, f"the notebook took {elapsed:.1f} s (it should take well under 30 s)"
