"""Bridges between local queues and a NATS JetStream stream, exactly once (``pip install chronicle_async[bridge]``).

- :class:`BridgeOut`: queue -> stream (``chronicle bridge out``);
- :class:`BridgeIn`: stream -> queue (``chronicle bridge in``);
- :func:`unpack`: the source seq, stream seq and payload of a message a BridgeIn appended;
- :class:`LocalNatsServer`: a ``nats-server -js`` on loopback for tests, examples and benchmarks
  (not for production).

See docs/bridge.md. nats-py is imported only when a bridge runs.
"""
from __future__ import annotations

from .errors import BridgeAuthError as BridgeAuthError
from .errors import BridgeDependencyError as BridgeDependencyError
from .errors import BridgeError as BridgeError
from .errors import BridgeUnreachableError as BridgeUnreachableError
from .errors import BridgeURLError as BridgeURLError
from .errors import CredentialsFileError as CredentialsFileError
from .errors import NatsServerError as NatsServerError
from .errors import StreamNotFoundError as StreamNotFoundError
from .errors import SubjectMismatchError as SubjectMismatchError
from .ids import BridgedMessage as BridgedMessage
from .ids import unpack as unpack
from .inbound import BridgeIn as BridgeIn
from .out import BridgeOut as BridgeOut
from .server import LocalNatsServer as LocalNatsServer
from .server import find_nats_server as find_nats_server

__all__ = [
    "BridgeAuthError", "BridgeDependencyError", "BridgeError", "BridgeIn", "BridgeOut", "BridgeURLError",
    "BridgeUnreachableError", "BridgedMessage", "CredentialsFileError", "LocalNatsServer", "NatsServerError",
    "StreamNotFoundError", "SubjectMismatchError", "find_nats_server", "unpack",
]
