"""The bridge against a nats-server that wants credentials: a user and password, or a token (a real server, no mocks).

A refusal is a BridgeAuthError at once (never "unreachable" after the connect timeout); the right
credentials bridge every message; a password can come from the environment instead of the command line.
"""
from __future__ import annotations

import asyncio
import os
import pathlib
import time
from typing import Iterator

import pytest

from chronicle_async import Queue
from chronicle_async.bridge import (
    BridgeAuthError, BridgeIn, BridgeOut, CredentialsFileError, LocalNatsServer, unpack,
)
from tests.bridge.conftest import Procs
from tests.bridge.feed import payload, write
from tests.bridge.natsserver import add_stream, stream_count, stream_source_seqs
from tests.cli.console import chronicle

USER, PASSWORD, TOKEN = "bridge", "s3cret-pw", "s3cret-token"
USER_AUTH = {"user": USER, "password": PASSWORD}
N = 200


@pytest.fixture
def user_server(tmp_path: pathlib.Path) -> Iterator[LocalNatsServer]:
    """nats-server -js that wants user ``bridge`` with password ``s3cret-pw``; stream S captures bus.>."""
    with LocalNatsServer(tmp_path / "js-user", user=USER, password=PASSWORD) as server:
        add_stream(server.url, "S", ["bus.>"], auth=USER_AUTH)
        yield server


@pytest.fixture
def token_server(tmp_path: pathlib.Path) -> Iterator[LocalNatsServer]:
    """nats-server -js that wants token ``s3cret-token``; stream S captures bus.>."""
    with LocalNatsServer(tmp_path / "js-token", token=TOKEN) as server:
        add_stream(server.url, "S", ["bus.>"], auth={"token": TOKEN})
        yield server


def _source(tmp_path: pathlib.Path, n: int = N) -> pathlib.Path:
    src = tmp_path / "src"
    write(str(src), n)
    return src


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CHRONICLE_NATS_PASSWORD", "CHRONICLE_NATS_TOKEN")}
    return {**env, **extra}


def _wait_count(url: str, n: int, auth: dict[str, str], timeout: float = 30.0) -> int:
    deadline = time.monotonic() + timeout
    while (got := stream_count(url, "S", auth)) < n and time.monotonic() < deadline:
        time.sleep(0.1)
    return got


def test_bridge_out_run_with_a_wrong_password_raises_bridge_auth_error_at_once(
    tmp_path: pathlib.Path, user_server: LocalNatsServer
) -> None:
    out = BridgeOut(_source(tmp_path), server=user_server.url, stream="S", subject="bus.a", user=USER,
                    password="wrong", connect_timeout=10)
    t0 = time.monotonic()
    with pytest.raises(BridgeAuthError, match=r"refused the credentials \(user 'bridge'\): check --user/--password"):
        asyncio.run(out.run())
    assert time.monotonic() - t0 < 5, "an auth refusal must not wait for the connect timeout"
    assert "wrong" not in repr(out) and "wrong" not in str(out.stats)


def test_bridge_out_with_a_wrong_password_exits_1_with_a_bridge_auth_error_not_unreachable(
    tmp_path: pathlib.Path, user_server: LocalNatsServer
) -> None:
    p = chronicle("bridge", "out", _source(tmp_path), "--server", user_server.url, "--stream", "S", "--subject",
                  "bus.a", "--user", USER, "--password", "wrong", timeout=30, env=_env())
    assert p.returncode == 1, p.stderr
    assert "chronicle: BridgeAuthError:" in p.stderr and "refused the credentials (user 'bridge')" in p.stderr
    assert user_server.url in p.stderr
    assert "unreachable" not in p.stderr.lower() and "answered" not in p.stderr and "wrong" not in p.stderr


def test_bridge_in_without_credentials_to_a_server_that_wants_them_says_none_were_given(
    tmp_path: pathlib.Path, user_server: LocalNatsServer
) -> None:
    p = chronicle("bridge", "in", "--server", user_server.url, "--stream", "S", tmp_path / "dst", timeout=30,
                  env=_env())
    assert p.returncode == 1, p.stderr
    assert "chronicle: BridgeAuthError:" in p.stderr and "requires credentials and none were given" in p.stderr


def test_bridge_out_with_the_password_from_the_environment_publishes_every_message_once(
    tmp_path: pathlib.Path, user_server: LocalNatsServer, procs: Procs, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = _source(tmp_path)
    monkeypatch.setenv("CHRONICLE_NATS_PASSWORD", PASSWORD)  # the bridge process inherits it
    monkeypatch.delenv("CHRONICLE_NATS_TOKEN", raising=False)
    out = procs.chronicle("bridge", "out", src, "--server", user_server.url, "--stream", "S", "--subject", "bus.a",
                          "--user", USER)
    got = _wait_count(user_server.url, N, USER_AUTH)
    assert out.poll() is None, pathlib.Path(out.log_path).read_text()  # type: ignore[attr-defined]
    assert got == N
    assert stream_source_seqs(user_server.url, "S", USER_AUTH) == list(range(N))


def test_bridge_out_with_the_password_on_the_command_line_publishes_every_message(
    tmp_path: pathlib.Path, user_server: LocalNatsServer, procs: Procs, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CHRONICLE_NATS_PASSWORD", raising=False)
    procs.chronicle("bridge", "out", _source(tmp_path), "--server", user_server.url, "--stream", "S", "--subject",
                    "bus.a", "--user", USER, "--password", PASSWORD)
    assert _wait_count(user_server.url, N, USER_AUTH) == N


def test_bridge_out_and_in_with_a_token_deliver_every_message_once_in_order(
    tmp_path: pathlib.Path, token_server: LocalNatsServer
) -> None:
    src, dst = _source(tmp_path), tmp_path / "dst"
    out = BridgeOut(src, server=token_server.url, stream="S", subject="bus.a", token=TOKEN)
    inb = BridgeIn(dst, server=token_server.url, stream="S", subject="bus.a", token=TOKEN)

    async def main() -> None:
        tasks = [asyncio.ensure_future(out.run()), asyncio.ensure_future(inb.run())]
        deadline = time.monotonic() + 30
        while inb.stats.appended < N and time.monotonic() < deadline and not any(t.done() for t in tasks):
            await asyncio.sleep(0.05)
        for t in tasks:
            t.cancel()
        for t in tasks:  # a bridge that failed says why here
            try:
                await t
            except asyncio.CancelledError:
                pass

    asyncio.run(main())
    with Queue.open_subscriber(dst, None, "earliest") as r:
        got = [unpack(m) for m in iter(lambda: r.next(0.0), None)]
    assert [b.source_seq for b in got] == list(range(N))
    assert all(bytes(b.payload) == payload(b.source_seq) for b in got)
    assert TOKEN not in repr(out) and TOKEN not in str(inb.stats)


def test_bridge_out_with_the_token_from_the_environment_publishes_every_message(
    tmp_path: pathlib.Path, token_server: LocalNatsServer, procs: Procs, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHRONICLE_NATS_TOKEN", TOKEN)
    procs.chronicle("bridge", "out", _source(tmp_path), "--server", token_server.url, "--stream", "S", "--subject",
                    "bus.a")
    assert _wait_count(token_server.url, N, {"token": TOKEN}) == N


def test_bridge_in_with_a_wrong_token_exits_1_with_a_bridge_auth_error(
    tmp_path: pathlib.Path, token_server: LocalNatsServer
) -> None:
    p = chronicle("bridge", "in", "--server", token_server.url, "--stream", "S", tmp_path / "dst", timeout=30,
                  env=_env(CHRONICLE_NATS_TOKEN="wrong-token"))
    assert p.returncode == 1, p.stderr
    assert "chronicle: BridgeAuthError:" in p.stderr and "refused the credentials (a token)" in p.stderr
    assert "wrong-token" not in p.stderr


def test_a_missing_creds_file_is_a_credentials_file_error_naming_the_file(tmp_path: pathlib.Path) -> None:
    missing = tmp_path / "nope.creds"
    out = BridgeOut(tmp_path / "q", server="nats://127.0.0.1:1", stream="S", subject="a", creds=missing)
    with pytest.raises(CredentialsFileError, match=r"nope\.creds' does not exist"):
        asyncio.run(out.run())
    p = chronicle("bridge", "in", "--server", "nats://127.0.0.1:1", "--stream", "S", "--creds", missing,
                  tmp_path / "dst", timeout=30, env=_env())
    assert p.returncode == 1, p.stderr
    assert "chronicle: CredentialsFileError:" in p.stderr and str(missing) in p.stderr and "does not exist" in p.stderr


def test_a_creds_file_that_is_not_one_or_a_folder_is_a_credentials_file_error(tmp_path: pathlib.Path) -> None:
    bogus = tmp_path / "bogus.creds"
    bogus.write_text("user=me\n")
    for path, why in ((bogus, "is not a NATS .creds file"), (tmp_path, "cannot be read")):
        out = BridgeOut(tmp_path / "q", server="nats://127.0.0.1:1", stream="S", subject="a", creds=path)
        with pytest.raises(CredentialsFileError, match=why) as e:
            asyncio.run(out.run())
        assert str(path) in str(e.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_creds_file_is_a_credentials_file_error_saying_permission_denied(tmp_path: pathlib.Path) -> None:
    locked = tmp_path / "locked.creds"
    locked.write_text("-----BEGIN NATS USER JWT-----\nx\n------END NATS USER JWT------\n")
    locked.chmod(0)
    out = BridgeOut(tmp_path / "q", server="nats://127.0.0.1:1", stream="S", subject="a", creds=locked)
    with pytest.raises(CredentialsFileError, match=r"locked\.creds' cannot be read \(permission denied\)"):
        asyncio.run(out.run())


def test_password_without_user_is_a_usage_error(tmp_path: pathlib.Path) -> None:
    p = chronicle("bridge", "out", tmp_path / "q", "--server", "nats://127.0.0.1:1", "--stream", "S", "--subject",
                  "a", "--password", "pw", timeout=30, env=_env())
    assert p.returncode == 2
    assert "chronicle: UsageError: bridge out: --password goes with --user" in p.stderr


def test_user_without_any_password_is_a_usage_error_naming_the_environment_variable(tmp_path: pathlib.Path) -> None:
    p = chronicle("bridge", "in", "--server", "nats://127.0.0.1:1", "--stream", "S", "--user", USER,
                  tmp_path / "dst", timeout=30, env=_env())
    assert p.returncode == 2
    assert "chronicle: UsageError: bridge in: --user bridge needs a password: set CHRONICLE_NATS_PASSWORD" in p.stderr


def test_user_and_token_together_are_a_usage_error(tmp_path: pathlib.Path) -> None:
    p = chronicle("bridge", "out", tmp_path / "q", "--server", "nats://127.0.0.1:1", "--stream", "S", "--subject",
                  "a", "--user", USER, "--token", "t", timeout=30, env=_env())
    assert p.returncode == 2
    assert "not allowed with argument" in p.stderr


def test_two_kinds_of_credentials_in_the_api_are_a_value_error(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ValueError, match="one kind of credentials"):
        BridgeIn(tmp_path / "q", server="nats://127.0.0.1:1", stream="S", user=USER, password="p", token="t")
    with pytest.raises(ValueError, match="a password needs a user"):
        BridgeOut(tmp_path / "q", server="nats://127.0.0.1:1", stream="S", subject="a", password="p")

