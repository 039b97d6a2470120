"""`chronicle bridge` refuses a bad URL, an unreachable server, a missing stream and a wrong subject with typed errors."""
from __future__ import annotations

import pathlib

from chronicle_async.bridge import LocalNatsServer
from tests.bridge.natsserver import add_stream, free_port
from tests.cli.console import chronicle


def _queue(tmp_path: pathlib.Path) -> pathlib.Path:
    from chronicle_async import Queue

    q = tmp_path / "src"
    with Queue.open_publisher(q) as w:
        w.append(1, b"x")
    return q


def test_bridge_out_with_a_bad_url_exits_1_with_a_bridge_url_error(tmp_path: pathlib.Path) -> None:
    p = chronicle("bridge", "out", _queue(tmp_path), "--server", "http://127.0.0.1:4222", "--stream", "S",
                  "--subject", "a.b", timeout=30)
    assert p.returncode == 1, p.stderr
    assert "chronicle: BridgeURLError:" in p.stderr and "nats://HOST:PORT" in p.stderr


def test_bridge_in_to_an_unreachable_server_exits_1_with_a_bridge_unreachable_error(tmp_path: pathlib.Path) -> None:
    url = f"nats://127.0.0.1:{free_port()}"
    p = chronicle("bridge", "in", "--server", url, "--stream", "S", "--connect-timeout", "1", tmp_path / "dst",
                  timeout=30)
    assert p.returncode == 1, p.stderr
    assert "chronicle: BridgeUnreachableError:" in p.stderr and url in p.stderr


def test_bridge_out_to_a_missing_stream_exits_1_with_a_stream_not_found_error(
    tmp_path: pathlib.Path, nats_server: LocalNatsServer
) -> None:
    p = chronicle("bridge", "out", _queue(tmp_path), "--server", nats_server.url, "--stream", "NOPE",
                  "--subject", "a.b", timeout=30)
    assert p.returncode == 1, p.stderr
    assert "chronicle: StreamNotFoundError:" in p.stderr and "'NOPE'" in p.stderr


def test_bridge_out_on_a_subject_the_stream_does_not_capture_exits_1_with_a_subject_mismatch_error(
    tmp_path: pathlib.Path, nats_server: LocalNatsServer
) -> None:
    add_stream(nats_server.url, "S", ["bus.>"])
    p = chronicle("bridge", "out", _queue(tmp_path), "--server", nats_server.url, "--stream", "S",
                  "--subject", "other.x", timeout=30)
    assert p.returncode == 1, p.stderr
    assert "chronicle: SubjectMismatchError:" in p.stderr and "other.x" in p.stderr


def test_bridge_in_with_a_wrong_subject_filter_exits_1_with_a_subject_mismatch_error(
    tmp_path: pathlib.Path, nats_server: LocalNatsServer
) -> None:
    add_stream(nats_server.url, "S", ["bus.>"])
    p = chronicle("bridge", "in", "--server", nats_server.url, "--stream", "S", "--subject", "bus", tmp_path / "d",
                  timeout=30)
    assert p.returncode == 1, p.stderr
    assert "chronicle: SubjectMismatchError:" in p.stderr


def test_bridge_help_names_both_directions_and_the_local_prefix() -> None:
    p = chronicle("bridge", "--help", timeout=30)
    assert p.returncode == 0, p.stderr
    assert "out|in" in p.stdout and "16 bytes" in p.stdout and "docs/bridge.md" in p.stdout


def test_bridge_out_with_a_window_of_zero_is_a_usage_error(tmp_path: pathlib.Path) -> None:
    p = chronicle("bridge", "out", tmp_path / "q", "--server", "nats://127.0.0.1:1", "--stream", "S",
                  "--subject", "a", "--window", "0", timeout=30)
    assert p.returncode == 2
    assert "chronicle: UsageError: bridge out: argument --window: must be >= 1" in p.stderr
