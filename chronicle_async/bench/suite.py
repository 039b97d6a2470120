"""Run the packaged bench: every in-process and two-process peer, ``rounds`` times, medians kept."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from . import inproc, twoproc
from .stats import Row, median_row

#: ``progress(step_done, steps_total, what)``, called after each peer's round.
Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class BenchReport:
    """Medians over ``rounds`` of ``messages`` each: in-process round trips and two-process one-way figures."""

    messages: int
    rounds: int
    in_process: list[Row]
    two_process: list[Row]


def run_bench(messages: int = 20_000, rounds: int = 3, progress: Progress | None = None) -> BenchReport:
    """Measure every peer; in-process rows time append + read round trips, two-process rows one-way latency."""
    local = inproc.PEERS
    remote = twoproc.peers()
    total = rounds * (len(local) + len(remote))
    done = 0
    ctx = twoproc.spawn_context()
    samples_local: dict[str, list[Row]] = {name: [] for name in local}
    samples_remote: dict[str, list[Row]] = {name: [] for name in remote}
    for _ in range(rounds):
        for name, fn in local.items():
            samples_local[name].append(fn(messages))
            done += 1
            if progress:
                progress(done, total, f"in-process {name}")
        for name, pair in remote.items():
            samples_remote[name].append(pair(messages, ctx))
            done += 1
            if progress:
                progress(done, total, f"two-process {name}")
    return BenchReport(
        messages, rounds,
        [median_row(rows) for rows in samples_local.values()],
        [median_row(rows) for rows in samples_remote.values()],
    )
