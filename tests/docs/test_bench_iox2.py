"""benchmarks.iox2: the iceoryx2 peer delivers every message it times (a smoke run at a tiny n)."""
from __future__ import annotations

import time

import pytest

pytest.importorskip("iceoryx2")

from benchmarks import iox2  # noqa: E402

N = 20_000


def test_iceoryx2_throughput_run_delivers_every_message_and_counts_n() -> None:
    t0 = time.monotonic()
    r = iox2.iox2_throughput(n=N, timeout_s=20)
    assert time.monotonic() - t0 < 20
    assert (r.name, r.kind) == (iox2.NAME, "throughput")
    assert r.n == N
    assert "lost 0, reordered 0, short sends 0" in r.note
    assert r.msgs_per_s is not None and r.msgs_per_s > 0
