"""Connecting to NATS and checking the stream: every failure becomes a typed bridge error."""
from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
from typing import Any, Callable
from urllib.parse import urlsplit

from .errors import (
    BridgeAuthError, BridgeDependencyError, BridgeUnreachableError, BridgeURLError, CredentialsFileError,
    StreamNotFoundError, SubjectMismatchError,
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


def check_auth(user: str | None = None, password: str | None = None, token: str | None = None,
               creds: str | os.PathLike | None = None) -> None:
    """Raise ``ValueError`` unless the credentials are one kind: user and password, a token, or a creds file."""
    if password is not None and user is None:
        raise ValueError("a password needs a user (--user)")
    kinds = [k for k, v in (("a user", user), ("a token", token), ("a creds file", creds)) if v is not None]
    if len(kinds) > 1:
        raise ValueError(f"give one kind of credentials, not {' and '.join(kinds)}")


def check_creds_file(path: str | os.PathLike) -> str:
    """Return ``path`` if it is a readable NATS ``.creds`` file, else raise :class:`CredentialsFileError`."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            text = f.read(1 << 20)
    except FileNotFoundError:
        raise CredentialsFileError(f"the creds file {path!r} does not exist: fix --creds") from None
    except PermissionError:
        raise CredentialsFileError(
            f"the creds file {path!r} cannot be read (permission denied): run as its owner or fix its mode"
        ) from None
    except OSError as e:
        raise CredentialsFileError(f"the creds file {path!r} cannot be read ({e.strerror or e}): fix --creds") from None
    if b"BEGIN NATS USER JWT" not in text or b"BEGIN USER NKEY SEED" not in text:
        raise CredentialsFileError(
            f"{path!r} is not a NATS .creds file (it lacks the BEGIN NATS USER JWT and BEGIN USER NKEY SEED "
            "blocks): generate one with nsc generate creds"
        )
    return path


def _who(user: str | None, token: str | None, creds: str | None) -> str:
    if user is not None:
        return f"user {user!r}"
    if token is not None:
        return "a token"
    if creds is not None:
        return f"creds file {creds!r}"
    return "no credentials"


def _is_auth_failure(e: BaseException) -> bool:
    """nats-py reports a refused CONNECT as a plain ``Error("nats: 'Authorization Violation'")``, not
    AuthorizationError (2.16: it retries forever with allow_reconnect); JWTs add 'Authentication ...'."""
    import nats.errors

    text = str(e).lower()
    return isinstance(e, nats.errors.AuthorizationError) or "authorization violation" in text or (
        isinstance(e, nats.errors.Error) and "authentication" in text
    )


async def connect(url: str, *, connect_timeout: float = 5.0, name: str = "chronicle-bridge",
                  on_reconnect: Callable[[], None] | None = None, user: str | None = None,
                  password: str | None = None, token: str | None = None,
                  creds: str | os.PathLike | None = None) -> Any:
    """Connect to ``url``; afterwards the client reconnects forever by itself (an outage only pauses).

    Credentials: ``user`` and ``password``, or ``token``, or ``creds`` (a NATS ``.creds`` file:
    a user JWT and its nkey seed; needs the ``nkeys`` package). Raises :class:`BridgeURLError`,
    :class:`CredentialsFileError`, :class:`BridgeUnreachableError` (nothing answered within
    ``connect_timeout`` seconds) or :class:`BridgeAuthError` (the server refused the credentials,
    as soon as it says so). ``on_reconnect`` is called after each reconnection.
    """
    check_url(url)
    check_auth(user, password, token, creds)
    creds = check_creds_file(creds) if creds is not None else None
    try:
        import nats.errors
        from nats.aio.client import Client
    except ImportError:
        raise BridgeDependencyError(
            "the bridge needs nats-py: pip install 'chronicle_async[bridge]' (or pip install nats-py)"
        ) from None
    if creds is not None and importlib.util.find_spec("nkeys") is None:
        raise BridgeDependencyError(
            "--creds (a .creds file) needs the nkeys package to sign the server's nonce: pip install nkeys"
        )

    loop = asyncio.get_running_loop()
    first = loop.create_future()  # the first error of the first connect (why it is unreachable)
    refused = loop.create_future()  # set when the server refuses the credentials
    who = _who(user, token, creds)
    warned: list[Exception] = []

    async def on_error(e: Exception) -> None:
        if _is_auth_failure(e):
            if not refused.done():
                refused.set_result(e)
            if task.done() and not warned:  # a reconnect (the first connect raises); once per outage, not per try
                warned.append(e)
                log.warning("nats: the server at %s refused the credentials (%s) on reconnect: %s; retrying",
                            url, who, e)
        else:  # outages are expected; the bridge logs what it does about them
            log.debug("nats: %s", e)
        if not first.done():
            first.set_result(e)

    async def reconnected() -> None:
        warned.clear()
        log.info("nats: reconnected to %s", url)
        if on_reconnect is not None:
            on_reconnect()

    nc = Client()
    task = asyncio.ensure_future(nc.connect(
        url, name=name, connect_timeout=min(connect_timeout, 2.0), allow_reconnect=True,
        max_reconnect_attempts=-1, reconnect_time_wait=0.25, error_cb=on_error, ping_interval=2,
        max_outstanding_pings=2, reconnected_cb=reconnected, user=user, password=password, token=token,
        user_credentials=creds,
    ))
    try:
        await asyncio.wait({task, refused}, timeout=connect_timeout, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:  # cancelled while connecting
        await _abandon(nc, task)
        raise
    if task.done() and not refused.done():
        e = task.exception()
        if e is None:
            return nc
        if not first.done():
            first.set_result(e)
    await _abandon(nc, task)
    why = refused.result() if refused.done() else first.result() if first.done() else asyncio.TimeoutError()
    if _is_auth_failure(why):
        what = "requires credentials and none were given" if who == "no credentials" else \
            f"refused the credentials ({who})"
        raise BridgeAuthError(
            f"the NATS server at {url} {what}: check --user/--password (or CHRONICLE_NATS_PASSWORD), "
            "--token (or CHRONICLE_NATS_TOKEN) or --creds"
        ) from None
    if isinstance(why, (nats.errors.Error, OSError, asyncio.TimeoutError)):
        raise BridgeUnreachableError(
            f"no NATS server answered at {url} within {connect_timeout:g} s ({type(why).__name__}: {why}); "
            "start one (nats-server -js) or fix --server"
        ) from None
    raise why


async def _abandon(nc: Any, task: asyncio.Future) -> None:
    """Stop a connect that is still trying, and close the client."""
    import nats.errors

    task.cancel()
    try:
        await task
    except (asyncio.CancelledError, Exception):  # cancelled, or it failed: either way it is over
        pass
    try:
        await asyncio.wait_for(nc.close(), 2.0)
    except (nats.errors.Error, OSError, asyncio.TimeoutError):
        pass


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
