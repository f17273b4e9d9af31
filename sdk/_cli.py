"""The ``seawall`` command: demo, serve, stats."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="seawall", description="Resilience policies for gRPC, httpx, SQLAlchemy and functions."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    from seawall._demo import add_arguments as add_demo
    from seawall.storage._cli import add_serve_arguments, add_stats_arguments

    add_demo(sub.add_parser("demo", help="run the demo on local flaky dependencies"))
    add_serve_arguments(sub.add_parser("serve", help="serve a metrics store over gRPC"))
    add_stats_arguments(sub.add_parser("stats", help="query a metrics service"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        return int(handler(args))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # one line, no traceback, for every command
        print(f"seawall {args.command}: error: {exc}", file=sys.stderr)
        return 1
