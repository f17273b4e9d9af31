"""The ``seawall`` command: demo, serve, stats.

Exit codes, the same for every subcommand: 0 done; 2 a usage error (an
unknown option, a bad value: argparse's own convention, kept for the
values it cannot check itself); 1 a failure at run time (a service that
cannot be reached, a store that fails); 130 interrupted with Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

USAGE_ERROR = 2
RUNTIME_ERROR = 1


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The ``seawall`` parser and each subcommand's own (to report errors with its usage)."""
    from seawall import __version__

    parser = argparse.ArgumentParser(
        prog="seawall", description="Resilience policies for gRPC, httpx, SQLAlchemy and functions."
    )
    parser.add_argument("--version", action="version", version=f"seawall {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    from seawall._demo import add_arguments as add_demo
    from seawall.storage._cli import add_serve_arguments, add_stats_arguments

    commands = {
        "demo": sub.add_parser("demo", help="run the demo on local flaky dependencies"),
        "serve": sub.add_parser("serve", help="serve a metrics store over gRPC"),
        "stats": sub.add_parser("stats", help="query a metrics service"),
    }
    add_demo(commands["demo"])
    add_serve_arguments(commands["serve"])
    add_stats_arguments(commands["stats"])
    return parser, commands


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``seawall`` with ``argv`` (default: the command line); returns the exit code."""
    from seawall import ConfigurationError

    # gRPC's core logs to stderr on its own (handshake failures, bind errors); every
    # failure is reported here in one line that says what to do, so its lines stay out
    # (GRPC_VERBOSITY is read when grpc loads: set it yourself to see them)
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")
    parser, commands = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        if extra:  # reported with the usage of the subcommand they were given to
            commands[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as done:  # argparse: --help, --version, or a usage error (already printed)
        return done.code if isinstance(done.code, int) else USAGE_ERROR
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        return 130
    except ConfigurationError as exc:  # a value given is wrong: nothing was done
        print(f"seawall {args.command}: error: {exc}", file=sys.stderr)
        return USAGE_ERROR
    except Exception as exc:  # one line, no traceback, for every command
        print(f"seawall {args.command}: error: {exc}", file=sys.stderr)
        return RUNTIME_ERROR
