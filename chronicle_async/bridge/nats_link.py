"""Connecting to NATS and checking the stream: every failure becomes a typed bridge error."""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable
from urllib.parse import urlsplit

from .errors import (
    BridgeAuthError, BridgeDependencyError, BridgeUnreachableError, BridgeURLError, StreamNotFoundError,
    SubjectMismatchError,
)

log = logging.getLogger("chronicle_async.bridge")

_SCHEMES = ("nats", "tls", "ws", "wss")


def check_url(url: str) -> str:
    """Return ``url`` if it is a NATS server URL, else raise :class:`BridgeURLError`."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise BridgeURLError(f"server URL {url!r} is malformed ({e}); write it as nats://HOST:PORT") from None
    if parts.scheme not in _SCHEMES or not parts.hostname:
        raise BridgeURLError(
            f"server URL {url!r} is not a NATS URL; write it as nats://HOST:PORT (schemes: {', '.join(_SCHEMES)})"
        )
    del port
    return url


def subject_matches(pattern: str, subject: str) -> bool:
    """True if NATS subject ``subject`` is captured by ``pattern`` (``*`` one token, ``>`` the rest)."""
    p, s = pattern.split("."), subject.split(".")
    for i, tok in enumerate(p):
        if tok == ">":
            return len(s) > i
        if i >= len(s) or (tok != "*" and tok != s[i]):
            return False
    return len(p) == len(s)


async def connect(url: str, *, connect_timeout: float = 5.0, name: str = "chronicle-bridge",
                  on_reconnect: Callable[[], None] | None = None) -> Any:
    """Connect to ``url``; afterwards the client reconnects forever by itself (an outage only pauses).

    Raises :class:`BridgeURLError`, :class:`BridgeUnreachableError` (nothing answered within
    ``connect_timeout`` seconds) or :class:`BridgeAuthError`. ``on_reconnect`` is called after each
    reconnection.
    """
    check_url(url)
    try:
        import nats
        import nats.errors
    except ImportError:
        raise BridgeDependencyError(
            "the bridge needs nats-py: pip install 'chronicle_async[bridge]' (or pip install nats-py)"
        ) from None

    async def quiet(_e: Exception) -> None:  # outages are expected; the bridge logs what it does about them
        log.debug("nats: %s", _e)

    async def reconnected() -> None:
        log.info("nats: reconnected to %s", url)
        if on_reconnect is not None:
            on_reconnect()

    first = asyncio.get_running_loop().create_future()

    async def failed(e: Exception) -> None:
        if not first.done():
            first.set_result(e)

    try:
        return await asyncio.wait_for(
            nats.connect(
                url, name=name, connect_timeout=min(connect_timeout, 2.0), allow_reconnect=True,
                max_reconnect_attempts=-1, reconnect_time_wait=0.25, error_cb=failed, ping_interval=2,
                max_outstanding_pings=2, reconnected_cb=reconnected,
            ),
            connect_timeout,
        )
    except nats.errors.AuthorizationError:
        raise BridgeAuthError(f"the NATS server at {url} refused the credentials: check the user/token") from None
    except (asyncio.TimeoutError, nats.errors.NoServersError, OSError) as e:
        why = first.result() if first.done() else e
        if isinstance(why, nats.errors.AuthorizationError):
            raise BridgeAuthError(f"the NATS server at {url} refused the credentials: check the user/token") from None
        raise BridgeUnreachableError(
            f"no NATS server answered at {url} within {connect_timeout:g} s ({type(why).__name__}: {why}); "
            "start one (nats-server -js) or fix --server"
        ) from None


async def check_stream(js: Any, url: str, stream: str, subject: str | None) -> list[str]:
    """Return the stream's subjects; raise if it is missing or does not capture ``subject``."""
    import nats.errors
    import nats.js.errors as jse

    try:
        info = await js.stream_info(stream)
    except jse.NotFoundError:
        raise StreamNotFoundError(
            f"stream {stream!r} does not exist on {url}: create it (nats stream add {stream} --subjects ...) "
            "or fix --stream"
        ) from None
    except (jse.ServiceUnavailableError, nats.errors.NoRespondersError, nats.errors.TimeoutError):
        raise StreamNotFoundError(
            f"the server at {url} does not answer JetStream requests for stream {stream!r}: start it with "
            "JetStream enabled (nats-server -js)"
        ) from None
    subjects = list(info.config.subjects or [])
    if subject is not None and not any(subject_matches(p, subject) for p in subjects):
        raise SubjectMismatchError(
            f"stream {stream!r} on {url} captures {subjects}, not {subject!r}: pick a subject it captures "
            "or add it to the stream's subjects"
        )
    return subjects
