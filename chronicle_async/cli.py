"""The ``chronicle`` command. Imports are lazy so ``chronicle --help`` compiles nothing."""
from __future__ import annotations

import argparse
import sys


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(args.path, messages=args.messages, segment_size=args.segment_size)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="chronicle",
        description="chronicle_async: persisted, memory-mapped queues between processes on one host.",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = sub.add_parser("demo", help="run a writer process and a reader process on a local demo queue")
    demo.add_argument("path", nargs="?", default=".demo-bus/ticks", help="queue folder (default: %(default)s)")
    demo.add_argument("-n", "--messages", type=int, default=1_000_000, help="messages to send (default: %(default)s)")
    demo.add_argument("--segment-size", type=int, default=16 * 1024 * 1024, help="bytes per segment (default: %(default)s)")
    demo.set_defaults(func=_demo)
    args = parser.parse_args(argv)
    if args.version:
        from importlib.metadata import version

        print(version("chronicle_async"))
        return 0
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # typed library errors carry the file and the fix in their message
        from ._errors import ChronicleError

        if isinstance(e, ChronicleError):
            print(f"chronicle: {type(e).__name__}: {e}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
