"""examples/bridge_two_hosts.py runs end to end, and a bridge out's lag shows in `chronicle readers`."""
from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import time

from tests.bridge.conftest import Procs
from tests.bridge.feed import write
from chronicle_async.bridge import LocalNatsServer
from tests.bridge.natsserver import add_stream, stream_count
from tests.cli.console import chronicle_json

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "bridge_two_hosts.py")


def test_two_hosts_example_delivers_the_feed_of_host_a_to_host_b_once_in_order(
    tmp_path: pathlib.Path, nats_server: LocalNatsServer
) -> None:
    p = subprocess.run([sys.executable, EXAMPLE, str(tmp_path / "ex")], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "host B received 10000 messages once, in order; last: source seq 9999" in p.stdout
    assert "bridge out published 10000" in p.stdout


def test_bridge_out_lag_shows_in_chronicle_readers_and_drops_to_zero(
    tmp_path: pathlib.Path, nats_server: LocalNatsServer, procs: Procs
) -> None:
    add_stream(nats_server.url, "S", ["bus.>"])
    src = tmp_path / "src"
    write(str(src), 5_000)
    procs.chronicle("bridge", "out", src, "--server", nats_server.url, "--stream", "S", "--subject", "bus.a",
                    "--name", "to-nats")
    deadline = time.monotonic() + 30
    while stream_count(nats_server.url, "S") < 5_000 and time.monotonic() < deadline:
        time.sleep(0.1)
    lags = []
    while time.monotonic() < deadline:  # the commit follows the last ack by a moment
        entries = chronicle_json("readers", src)["readers"]
        lags = [e["lag_messages"] for e in entries if e["name"] == "to-nats" and e["live"]]
        if lags == [0]:
            break
        time.sleep(0.2)
    assert lags == [0], entries
