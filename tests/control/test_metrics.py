"""Prometheus metrics, scraped over real HTTP on loopback: ControlPlane.serve_metrics and monitor --prometheus."""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from chronicle_async import Queue, WriterConfig
from chronicle_async.control import ControlPlane
from tests.cli.console import CHRONICLE
from tests.writer_process import WriterProcess

TINY = WriterConfig(segment_size=16 * 1024)


def scrape(url: str) -> dict[tuple[str, frozenset], float]:
    """``{(sample name, labels): value}`` of one scrape of ``url``."""
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.status == 200
        text = resp.read().decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def labels(**kw: str) -> frozenset:
    return frozenset(kw.items())


def test_control_plane_serves_its_writers_rolls_and_the_queues_of_a_writer_process(tmp_path):
    other = tmp_path / "bus" / "prices"

    async def main() -> tuple[dict, object, int, str]:
        async with ControlPlane() as plane:
            w = Queue.open_publisher(tmp_path / "orders", TINY)
            try:
                plane.manage_writer(w)
                for i in range(2000):  # about 12 segments of 16 KiB: rolls onto prepared segments
                    w.append(1, b"order %06d" % i + b"." * 64)
                    if i % 200 == 0:
                        await asyncio.sleep(0.01)  # the prealloc worker keeps up
                server = plane.serve_metrics(0, roots=(tmp_path / "bus",))
                got = await plane.run_blocking(scrape, server.url)
                return got, w.roll_counts, w.next_seq, w.path
            finally:
                plane.unmanage_writer(w)
                w.close()

    with WriterProcess(other, 42) as wp, Queue.open_subscriber(other, "risk", "earliest") as r:
        for _ in range(10):
            r.next()
        r.commit()
        got, rolls, next_seq, own = asyncio.run(main())
        assert wp.next_seq == 42
    mine = labels(queue="orders", path=own)
    assert got[("chronicle_queue_messages_total", mine)] == next_seq == 2000
    assert got[("chronicle_writer_alive", mine)] == 1
    assert got[("chronicle_writer_rolls_total", labels(queue="orders", path=own, how="prepared"))] == rolls.prepared
    assert got[("chronicle_writer_rolls_total", labels(queue="orders", path=own, how="inline"))] == rolls.inline
    assert rolls.prepared + rolls.inline >= 10 and rolls.prepared >= 1
    assert got[("chronicle_control_segments_prepared_total", labels())] >= 1  # the writer's own supplier prepares some too
    assert ("chronicle_control_requests_dropped_total", labels()) in got
    theirs = labels(queue="prices", path=str(other))
    assert got[("chronicle_queue_messages_total", theirs)] == 42
    assert got[("chronicle_writer_alive", theirs)] == 1
    risk = labels(queue="prices", path=str(other), reader="risk")
    assert got[("chronicle_reader_lag_messages", risk)] == 32
    assert got[("chronicle_reader_lag_bytes", risk)] > 0
    assert got[("chronicle_reader_live", risk)] == 1


def test_monitor_prometheus_serves_a_writer_process_metrics_until_ctrl_c(tmp_path):
    q = tmp_path / "prices"
    with WriterProcess(q, 50) as wp:
        with Queue.open_subscriber(q, "risk", "earliest") as r:
            for _ in range(20):
                r.next()
            r.commit()
        mon = subprocess.Popen([CHRONICLE, "monitor", str(tmp_path), "--json", "--interval", "0.2", "--prometheus", "0"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            line = mon.stderr.readline()
            assert line.startswith("chronicle monitor: serving Prometheus metrics on http://127.0.0.1:"), line
            url = line.rsplit(" ", 1)[1].strip()
            got = scrape(url)
            ql = labels(queue="prices", path=str(q))
            assert got[("chronicle_queue_messages_total", ql)] == wp.next_seq == 50
            assert got[("chronicle_writer_alive", ql)] == 1
            assert got[("chronicle_queue_segments", ql)] >= 1 and got[("chronicle_queue_bytes_on_disk", ql)] > 0
            rl = labels(queue="prices", path=str(q), reader="risk")
            assert got[("chronicle_reader_lag_messages", rl)] == 30 and got[("chronicle_reader_live", rl)] == 0
            wp.kill()
            assert scrape(url)[("chronicle_writer_alive", ql)] == 0  # read at scrape time, not cached
        finally:
            mon.send_signal(signal.SIGINT)
            rc = mon.wait(timeout=30)
            mon.stderr.close()
    assert rc == 130


def test_without_prometheus_client_the_error_names_the_metrics_extra(tmp_path):
    code = ("import sys; sys.modules['prometheus_client'] = None\n"  # as if it were not installed
            "from chronicle_async.cli import main\n"
            f"sys.exit(main(['monitor', {str(tmp_path)!r}, '--prometheus', '0']))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert p.returncode == 1, p.stderr
    assert p.stderr.startswith("chronicle: ModuleNotFoundError: Prometheus metrics need the prometheus_client package")
    assert "pip install 'chronicle_async[metrics]'" in p.stderr
