"""A short benchmark that ships with the package (``chronicle bench``), needing no source checkout.

Two comparisons, each like with like: :mod:`.inproc` (append + read round trips in one thread:
chronicle beside ``queue.SimpleQueue`` and ``collections.deque``) and :mod:`.twoproc` (a writer
process and a reader process: chronicle beside ``multiprocessing.Queue``, ``os.pipe`` and pyzmq
when it is installed). :func:`run_bench` runs both and returns plain rows (medians over rounds).
"""
from __future__ import annotations

from .suite import BenchReport, run_bench

__all__ = ["BenchReport", "run_bench"]
