"""The bridge with a NATS .creds file (a user JWT and its nkey seed) against nats-server in operator mode.

No mocks and no nsc: tests/bridge/jwt_auth.py makes the operator, its accounts and the users with
fresh nkeys, and the server trusts that operator (MEMORY resolver, accounts preloaded). A user of
that operator's JetStream account bridges every message; a user of an operator the server does not
trust is refused at once with a BridgeAuthError, never "unreachable".
"""
from __future__ import annotations

import asyncio
import os
import pathlib
import time
from typing import Iterator

import pytest

pytest.importorskip("nkeys", reason="--creds needs nkeys (pip install 'chronicle_async[bridge]')")

from chronicle_async.bridge import BridgeAuthError, BridgeOut, LocalNatsServer  # noqa: E402
from tests.bridge.conftest import Procs  # noqa: E402
from tests.bridge.feed import write  # noqa: E402
from tests.bridge.jwt_auth import Operator  # noqa: E402
from tests.bridge.natsserver import add_stream, stream_count, stream_source_seqs  # noqa: E402
from tests.cli.console import chronicle  # noqa: E402

N = 200


@pytest.fixture
def creds(tmp_path: pathlib.Path) -> pathlib.Path:
    """A .creds file for a user of the trusted operator's JetStream account (see ``jwt_server``)."""
    return tmp_path / "bridge.creds"


@pytest.fixture
def jwt_server(tmp_path: pathlib.Path, creds: pathlib.Path) -> Iterator[LocalNatsServer]:
    """nats-server -js in operator mode trusting a fresh operator; stream S captures bus.> (made with ``creds``)."""
    op = Operator()
    op.user_creds(creds)
    config = op.write_config(tmp_path / "operator.conf")
    with LocalNatsServer(tmp_path / "js", config_path=config) as server:
        add_stream(server.url, "S", ["bus.>"], auth={"user_credentials": str(creds)})
        yield server


@pytest.fixture
def untrusted(tmp_path: pathlib.Path) -> pathlib.Path:
    """A well-formed .creds file whose user belongs to another operator's account (unknown to the server)."""
    return Operator("OTHER").user_creds(tmp_path / "untrusted.creds")


def _source(tmp_path: pathlib.Path, n: int = N) -> pathlib.Path:
    src = tmp_path / "src"
    write(str(src), n)
    return src


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("CHRONICLE_NATS_PASSWORD", "CHRONICLE_NATS_TOKEN")}


def _wait_count(url: str, n: int, creds: pathlib.Path, timeout: float = 30.0) -> int:
    auth = {"user_credentials": str(creds)}
    deadline = time.monotonic() + timeout
    while (got := stream_count(url, "S", auth)) < n and time.monotonic() < deadline:
        time.sleep(0.1)
    return got


def test_bridge_out_with_a_trusted_creds_file_publishes_every_message_in_order(
    tmp_path: pathlib.Path, jwt_server: LocalNatsServer, creds: pathlib.Path, procs: Procs,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for var in ("CHRONICLE_NATS_PASSWORD", "CHRONICLE_NATS_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    out = procs.chronicle("bridge", "out", _source(tmp_path), "--server", jwt_server.url, "--creds", creds,
                          "--stream", "S", "--subject", "bus.a")
    got = _wait_count(jwt_server.url, N, creds)
    assert out.poll() is None, pathlib.Path(out.log_path).read_text()  # type: ignore[attr-defined]
    assert got == N
    assert stream_source_seqs(jwt_server.url, "S", {"user_credentials": str(creds)}) == list(range(N))


def test_bridge_out_with_a_creds_file_of_an_untrusted_operator_exits_1_with_a_bridge_auth_error(
    tmp_path: pathlib.Path, jwt_server: LocalNatsServer, untrusted: pathlib.Path
) -> None:
    p = chronicle("bridge", "out", _source(tmp_path), "--server", jwt_server.url, "--creds", untrusted,
                  "--stream", "S", "--subject", "bus.a", timeout=30, env=_env())
    assert p.returncode == 1, p.stderr
    assert "chronicle: BridgeAuthError:" in p.stderr and f"refused the credentials (creds file '{untrusted}')" in p.stderr
    assert "unreachable" not in p.stderr.lower() and "answered" not in p.stderr
    seed = untrusted.read_text().split("-----BEGIN USER NKEY SEED-----\n")[1].split()[0]
    assert seed.startswith("SU") and seed not in p.stderr, "no nkey seed in the message"


def test_bridge_out_run_with_an_untrusted_creds_file_raises_bridge_auth_error_at_once(
    tmp_path: pathlib.Path, jwt_server: LocalNatsServer, untrusted: pathlib.Path, creds: pathlib.Path
) -> None:
    out = BridgeOut(_source(tmp_path), server=jwt_server.url, stream="S", subject="bus.a", creds=untrusted,
                    connect_timeout=10)
    t0 = time.monotonic()
    with pytest.raises(BridgeAuthError, match=r"refused the credentials \(creds file .*untrusted\.creds'\)"):
        asyncio.run(out.run())
    assert time.monotonic() - t0 < 5, "an auth refusal must not wait for the connect timeout"
    assert stream_count(jwt_server.url, "S", {"user_credentials": str(creds)}) == 0
