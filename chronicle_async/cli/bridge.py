"""``chronicle bridge out|in``: the NATS JetStream bridge (parsing and printing; the logic is in chronicle_async.bridge)."""
from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from typing import Any

from .argtypes import positive_int, positive_seconds

_EPILOG = """\
examples:
  chronicle bridge out /dev/shm/bus/prices --server nats://127.0.0.1:4222 --stream PRICES --subject prices.host1
  chronicle bridge in --server nats://10.0.0.5:4222 --stream PRICES --subject prices.host1 /dev/shm/bus/prices-host1

  CHRONICLE_NATS_PASSWORD=... chronicle bridge out QUEUE --server URL --user bridge --stream S --subject SUBJ
  (or --token, or CHRONICLE_NATS_TOKEN=...; or --creds FILE)

Both run until Ctrl-C (exit 130) or SIGTERM (exit 143), exactly once across restarts; see docs/bridge.md.
Messages appended by `bridge in` start with 16 bytes: the stream seq and the source seq (u64 little-endian);
the source type_id and timestamp_ns are the local message's own.
"""


#: Environment variables read when the option is not given, so a secret need not be on a command line.
PASSWORD_ENV = "CHRONICLE_NATS_PASSWORD"
TOKEN_ENV = "CHRONICLE_NATS_TOKEN"


def _auth(args: argparse.Namespace) -> dict[str, Any]:
    """The credentials keywords of BridgeOut/BridgeIn from --user/--password/--token/--creds and the environment."""
    password = args.password if args.password is not None else (os.environ.get(PASSWORD_ENV) or None)
    if args.password is not None and args.user is None:
        args.parser.error("--password goes with --user (--user NAME --password ..., or --token / --creds)")
    if args.user is not None:
        if password is None:
            args.parser.error(f"--user {args.user} needs a password: set {PASSWORD_ENV} (or give --password)")
        return {"user": args.user, "password": password}
    if args.creds is not None:
        return {"creds": args.creds}
    token = args.token if args.token is not None else (os.environ.get(TOKEN_ENV) or None)
    return {"token": token} if token is not None else {}


#: Last resort only: a stop ends by itself within about nats_link.CLOSE_TIMEOUT_S (a lost cancel is repeated,
#: a close that waits on a server not reading is cut: see bridge/nats_link.py); if it ever does not, the
#: process exits anyway after this many seconds (tests/bridge/test_bridge_stop.py checks it never has to).
STOP_GRACE_S = 10.0


def _run(bridge: Any) -> int:
    from ..control import run

    async def main() -> int:
        task = asyncio.ensure_future(bridge.run())
        stopped: list[int] = []

        def stop(signum: int) -> None:
            stopped.append(signum)
            task.cancel()
            loop.call_later(STOP_GRACE_S, give_up, signum)

        def give_up(signum: int) -> None:
            # A stop must never hang: what was acked is committed, and a restart resumes exactly once.
            print(f"chronicle bridge: did not stop within {STOP_GRACE_S:g} s of signal {signum}; exiting "
                  f"(nothing unacknowledged was committed): {bridge.stats}", file=sys.stderr, flush=True)
            os._exit(128 + signum)

        loop = asyncio.get_running_loop()
        for s in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(s, stop, s)
        try:
            await task
        except asyncio.CancelledError:
            if not stopped:
                raise
        print(f"chronicle bridge: stopped: {bridge.stats}", file=sys.stderr)
        return 128 + stopped[0] if stopped else 0

    return run(main())


def _out(args: argparse.Namespace) -> int:
    from ..bridge import BridgeOut

    return _run(BridgeOut(args.path, server=args.server, stream=args.stream, subject=args.subject, name=args.name,
                          window=args.window, ack_timeout=args.ack_timeout, connect_timeout=args.connect_timeout,
                          **_auth(args)))


def _in(args: argparse.Namespace) -> int:
    from ..bridge import BridgeIn

    return _run(BridgeIn(args.path, server=args.server, stream=args.stream, subject=args.subject,
                         durable=args.durable, batch=args.batch, connect_timeout=args.connect_timeout, **_auth(args)))


def register(sub: Any) -> None:
    """Add ``chronicle bridge out`` and ``chronicle bridge in`` to the ``chronicle`` sub-commands."""
    raw = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser(
        "bridge", help="bridge a queue to a NATS JetStream stream and back, exactly once (extra: bridge)",
        description="Copy a queue to a NATS JetStream stream (out) or a stream into a queue (in), exactly once "
        "across crashes of the bridge and the server. Needs `pip install chronicle_async[bridge]`.",
        epilog=_EPILOG, formatter_class=raw,
    )
    verbs = p.add_subparsers(dest="direction", metavar="out|in", required=True)

    def common(q: argparse.ArgumentParser) -> None:
        q.add_argument("--server", required=True, metavar="URL", help="NATS server, e.g. nats://127.0.0.1:4222")
        q.add_argument("--stream", required=True, metavar="S", help="the JetStream stream (it must exist)")
        q.add_argument("--connect-timeout", type=positive_seconds, default=5.0, metavar="SECONDS",
                       help="give up if no server answers the first connect within this (default: %(default)s)")
        a = q.add_argument_group("authentication", "if the server wants credentials: --user with a password, "
                                 "--token or --creds. Keep secrets off the command line (other users see it "
                                 f"in ps): set {PASSWORD_ENV} or {TOKEN_ENV} instead.")
        kind = a.add_mutually_exclusive_group()
        kind.add_argument("--user", metavar="NAME",
                          help=f"user name; its password from --password or ${PASSWORD_ENV}")
        kind.add_argument("--token", metavar="TOKEN", help=f"an auth token (default: ${TOKEN_ENV}, better)")
        kind.add_argument("--creds", metavar="FILE", help="a NATS .creds file (user JWT and nkey seed; needs nkeys)")
        a.add_argument("--password", metavar="PASSWORD",
                       help=f"the password of --user (default: ${PASSWORD_ENV}, better)")
        q.set_defaults(parser=q)

    o = verbs.add_parser(
        "out", help="publish a queue's messages to a stream (a named reader; commits after the acks)",
        description="Tail QUEUE as named reader --name and publish each message to SUBJ of stream S, with headers "
        "Chronicle-Seq, Chronicle-Timestamp-Ns, Chronicle-Type-Id, Chronicle-Queue-Id and Nats-Msg-Id. Its lag "
        "shows in `chronicle readers QUEUE` like any named reader. An outage pauses it; it resumes by itself.",
        epilog=_EPILOG, formatter_class=raw,
    )
    o.add_argument("path", metavar="QUEUE", help="the queue folder")
    common(o)
    o.add_argument("--subject", required=True, metavar="SUBJ", help="the subject to publish on (one per source queue)")
    o.add_argument("--name", default="bridge-out", help="the reader name (default: %(default)s)")
    o.add_argument("--window", type=positive_int, default=2000, metavar="N",
                   help="publishes in flight (default: %(default)s)")
    o.add_argument("--ack-timeout", type=positive_seconds, default=5.0, metavar="SECONDS",
                   help="acks not in by then count as an outage: resend from the commit (default: %(default)s)")
    o.set_defaults(func=_out)

    i = verbs.add_parser(
        "in", help="append a stream's messages to a local queue (a durable consumer; acks after the append)",
        description="Append the messages of stream S (only SUBJ with --subject) to QUEUE, as its writer, through "
        "durable consumer --durable. Each local message is the 16-byte prefix (stream seq, source seq) and the "
        "source payload, with the source type_id and timestamp_ns.",
        epilog=_EPILOG, formatter_class=raw,
    )
    common(i)
    i.add_argument("--subject", metavar="SUBJ", help="only this subject (default: all the stream's)")
    i.add_argument("--durable", default="chronicle-bridge-in", help="the consumer name (default: %(default)s)")
    i.add_argument("--batch", type=positive_int, default=1000, metavar="N",
                   help="ack after every N appends; up to 4N unacknowledged in flight (default: %(default)s)")
    i.add_argument("path", metavar="QUEUE", help="the destination queue folder (this process is its writer)")
    i.set_defaults(func=_in)
