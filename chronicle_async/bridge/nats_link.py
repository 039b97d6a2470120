"""Connecting to NATS and checking the stream: every failure becomes a typed bridge error."""
from __future__ import annotations

import asyncio
import functools
import importlib.util
import inspect
import logging
import os
from typing import Any, Callable, Coroutine, TypeVar
from urllib.parse import urlsplit

from .errors import (
    BridgeAuthError, BridgeDependencyError, BridgeUnreachableError, BridgeURLError, CredentialsFileError,
    StreamNotFoundError, SubjectMismatchError,
)

log = logging.getLogger("chronicle_async.bridge")

T = TypeVar("T")

#: While a stopping bridge has not ended, its cancel is repeated this often (seconds).
RECANCEL_S = 0.05
#: Seconds a stopping bridge waits for nats-py's ``close()`` (which flushes to the server) before it aborts the socket.
CLOSE_TIMEOUT_S = 2.0

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


async def until_cancelled(aw: Coroutine[Any, Any, T]) -> T:
    """Await ``aw``; once the calling task is cancelled, cancel ``aw`` again and again until it has ended.

    One ``task.cancel()`` is one CancelledError thrown at one await, and code on the way may swallow
    it: Python 3.11's ``asyncio.wait_for`` returns the result when the awaited future completed in the
    loop iteration of the cancel (fixed in 3.12), which nats-py's requests and a window's acks are
    awaited with; nats-py's ``Client._flush_pending`` catches CancelledError (a publish stalled on a
    full socket returns normally) and ``publish_async`` turns one into ``TooManyStalledMsgsError``,
    which a bridge takes for an outage. A bridge loop that goes on after a lost cancel never stops.
    So ``aw`` runs as a child task that is cancelled every :data:`RECANCEL_S` until it ends; then the
    caller's CancelledError goes on. A cancel already lost before this call (``cancelling()`` of the
    caller) stops it at once.
    """
    me = asyncio.current_task()
    if me is not None and me.cancelling():
        aw.close()
        raise asyncio.CancelledError
    child = asyncio.ensure_future(aw)
    try:
        return await asyncio.shield(child)
    except asyncio.CancelledError:
        while not child.done():
            child.cancel()
            try:
                await asyncio.wait((child,), timeout=RECANCEL_S)
            except asyncio.CancelledError:  # a second stop: this one is under way
                pass
        if not child.cancelled():
            child.exception()  # an error on the way out of a stop is not reported as unretrieved
        raise


def _cancelling() -> bool:
    me = asyncio.current_task()
    return me is not None and me.cancelling() > 0


class StopAware:
    """A nats-py object (a JetStream context) whose coroutine methods never lose a cancel.

    nats-py swallows a cancel that lands while a publish waits for a stalled socket
    (``Client._flush_pending``): the publish then returns as if nothing happened, and the next one
    stalls again. Here every call that returns while its task is being cancelled (``cancelling()``)
    cancels what it returned (a publish's ack future) and raises CancelledError, so a stop ends at
    the first nats-py call it went through (and one that raised instead, e.g. ``publish_async``'s
    ``TooManyStalledMsgsError`` for a cancel, raises CancelledError: a stop, not an outage).
    """

    def __init__(self, target: Any):
        self._target = target

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._target, name)
        if not inspect.iscoroutinefunction(attr):
            return attr

        @functools.wraps(attr)
        async def call(*args: Any, **kwargs: Any) -> Any:
            try:
                result = await attr(*args, **kwargs)
            except Exception:
                if _cancelling():
                    raise asyncio.CancelledError from None
                raise
            if _cancelling():
                if isinstance(result, asyncio.Future):
                    result.cancel()
                raise asyncio.CancelledError
            return result

        setattr(self, name, call)  # looked up once
        return call


async def close(nc: Any, timeout: float | None = None) -> None:
    """``nc.close()`` for up to ``timeout`` seconds (default :data:`CLOSE_TIMEOUT_S`), then abort the socket.

    nats-py's close writes what is still pending and waits for the transport to drain and close: for
    as long as a stalled server (paused, or a dead peer behind a full socket) does not read. A bridge
    loses nothing by not waiting: what was not acknowledged was not committed (out), and what was
    appended but not acked is redelivered and skipped (in). The close runs as a task and is not
    cancelled by the deadline (nats-py's close swallows a cancel while it waits for a reconnection).
    """
    closing = asyncio.ensure_future(nc.close())
    closing.add_done_callback(_retrieve)
    timeout = CLOSE_TIMEOUT_S if timeout is None else timeout
    done, _ = await asyncio.wait((closing,), timeout=timeout)
    if not done:
        log.warning("nats: close did not finish within %g s (the server does not read); dropping the connection",
                    timeout)
        _abort(nc)  # the transport's drain and wait_closed now end, and with them the close


def _retrieve(task: asyncio.Future) -> None:
    if not task.cancelled() and task.exception() is not None:  # e.g. uvloop's RuntimeError on a closed transport
        log.debug("nats: close: %s: %s", type(task.exception()).__name__, task.exception())


def _abort(nc: Any) -> None:
    """Drop ``nc``'s socket with what is unsent (best effort: nats-py has no public abort)."""
    writer = getattr(getattr(nc, "_transport", None), "_io_writer", None)
    transport = getattr(writer, "transport", None)
    if transport is not None:
        transport.abort()
