"""Typed errors of the NATS JetStream bridge. Each names the server, stream or subject and the fix."""
from __future__ import annotations

from .._errors import ChronicleError


class BridgeError(ChronicleError):
    """Base class of the bridge's errors."""


class BridgeDependencyError(BridgeError):
    """nats-py is not installed: ``pip install 'chronicle_async[bridge]'``."""


class BridgeURLError(BridgeError):
    """The server URL is malformed (want ``nats://HOST:PORT``, ``tls://``, ``ws://`` or ``wss://``)."""


class BridgeUnreachableError(BridgeError):
    """No NATS server answered at the URL within the connect timeout."""


class BridgeAuthError(BridgeError):
    """The server refused the connection's credentials."""


class StreamNotFoundError(BridgeError):
    """The JetStream stream does not exist (or JetStream is not enabled on the server)."""


class SubjectMismatchError(BridgeError):
    """The subject is not one the stream captures, so publishes would not be stored."""


class NatsServerError(BridgeError):
    """A :class:`LocalNatsServer` could not start: no ``nats-server`` binary, or it exited or was not ready in time."""


class CredentialsFileError(BridgeError):
    """The ``.creds`` file given to the bridge is missing or cannot be read."""
