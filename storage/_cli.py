"""``seawall serve`` and ``seawall stats``: the arguments and their handlers.

Handlers return the exit code; a bad value is reported in one line by
raising :class:`seawall.ConfigurationError` (exit code 2), anything that
goes wrong afterwards by raising another exception (exit code 1); the
``seawall`` front end prints either in one line, without a traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import threading
from typing import Any

from seawall import ConfigurationError

from ._schema import NAME_LENGTH
from ._service import DEFAULT_LISTEN, MIN_TOKEN_LENGTH, parse_listen
from ._store import DEFAULT_URL, MAX_WINDOW
from ._types import Summary

# the order of the keys of `seawall stats --json` (a test keeps it)
JSON_KEYS = ("point", "calls", "successes", "failures", "retries", "rejected", "cancelled",
             "fallbacks", "timeouts", "failures_by_category", "rejections_by_reason", "p50_ms",
             "p95_ms", "p99_ms", "mean_ms", "breaker_state", "window_seconds")


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``seawall serve``."""
    parser.add_argument("--store", default=None, metavar="URL",
                        help="SQLAlchemy URL or SQLite path of an existing metrics store "
                             f"(default: $SEAWALL_METRICS_URL or {DEFAULT_URL}); a SQLite file "
                             "this user may not write is served read-only")
    parser.add_argument("--create", action="store_true",
                        help="create the store (file and tables) when it does not exist")
    parser.add_argument("--listen", default=DEFAULT_LISTEN, metavar="HOST:PORT",
                        help=f"address to serve on (default: {DEFAULT_LISTEN}); any non-loopback "
                             "address needs --token")
    parser.add_argument("--token", default=None,
                        help="require 'authorization: Bearer TOKEN' on every call; at least "
                             f"{MIN_TOKEN_LENGTH} characters, no spaces "
                             "(default: $SEAWALL_METRICS_TOKEN)")
    parser.add_argument("--tls-cert", default=None, metavar="FILE", help="PEM certificate chain")
    parser.add_argument("--tls-key", default=None, metavar="FILE", help="PEM private key")
    parser.add_argument("--http", default=None, metavar="HOST:PORT",
                        help="also serve the dashboard (/), Prometheus metrics (/metrics) and "
                             "a JSON API (/api/) over HTTP; the same token and TLS rules apply")
    parser.add_argument("--retention-days", default=None, metavar="DAYS",
                        help="delete data older than this many days (checked periodically)")
    parser.set_defaults(handler=run_serve)


def add_stats_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``seawall stats``."""
    parser.add_argument("--target", default=None, metavar="HOST:PORT",
                        help="the metrics service (default: $SEAWALL_METRICS_TARGET or "
                             f"{DEFAULT_LISTEN})")
    parser.add_argument("--point", default=None, metavar="NAME", help="only this point")
    parser.add_argument("--window", default="3600", metavar="SECONDS",
                        help="how far back to look (default: 3600)")
    parser.add_argument("--json", action="store_true",
                        help="one JSON object per point instead of a table")
    parser.add_argument("--token", default=None,
                        help="bearer token (default: $SEAWALL_METRICS_TOKEN)")
    parser.add_argument("--tls", action="store_true", help="connect with TLS")
    parser.add_argument("--ca", default=None, metavar="FILE",
                        help="PEM certificate(s) to trust for TLS (implies --tls)")
    parser.set_defaults(handler=run_stats)


def _number(option: str, text: str, *, low: float, high: float) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ConfigurationError(f"{option} must be a number, got {text!r}") from None
    if math.isnan(value) or not low < value <= high:
        raise ConfigurationError(f"{option} must be > {low:.0f} and <= {high:.0f}, got {text}")
    return value


def run_serve(args: argparse.Namespace) -> int:
    """Serve until SIGINT or SIGTERM."""
    from ._service import CLI_NAMES, _serve

    retention = None
    if args.retention_days is not None:
        retention = _number("--retention-days", args.retention_days, low=0, high=36500) * 86400
    token = args.token if args.token is not None else os.environ.get("SEAWALL_METRICS_TOKEN")
    server = _serve(args.store, args.listen, token=token or None, tls_cert=args.tls_cert,
                    tls_key=args.tls_key, retention=retention, max_workers=8,
                    create=args.create, names=CLI_NAMES)
    web = None
    if args.http is not None:
        from ._http import serve_http

        try:
            web = serve_http(server.store, args.http, token=token or None,
                             tls_cert=args.tls_cert, tls_key=args.tls_key)
        except BaseException:
            server.stop(grace=0)
            raise
    stop = threading.Event()

    def _on_signal(signum: int, _frame: Any) -> None:
        stop.set()

    previous = {s: signal.signal(s, _on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        security = ("TLS" if args.tls_cert else "plaintext") + (", token required" if token else "")
        mode = " (read-only)" if server.store.read_only else ""
        print(f"seawall serve: metrics of {server.store!r}{mode} on {server.address} "
              f"({security}; health and reflection on). Ctrl-C stops.", flush=True)
        if web is not None:
            print(f"seawall serve: dashboard at {web.url}, Prometheus at {web.url}metrics"
                  + ("" if web.prometheus else " (off: pip install 'seawall[prometheus]')"),
                  flush=True)
        while not stop.wait(1.0):
            pass
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if web is not None:
            web.stop()
        server.stop(grace=2.0)
    return 0


def run_stats(args: argparse.Namespace) -> int:
    """Print each point's summary as a table or as JSON lines."""
    from ._client import MetricsClient

    window = _number("--window", args.window, low=0, high=MAX_WINDOW)
    if args.point is not None and len(args.point) > NAME_LENGTH:
        raise ConfigurationError(f"--point must be at most {NAME_LENGTH} characters, "
                                 f"got {len(args.point)}")
    from_env = not args.target and bool(os.environ.get("SEAWALL_METRICS_TARGET"))
    target = args.target or os.environ.get("SEAWALL_METRICS_TARGET") or DEFAULT_LISTEN
    parse_listen(target, name="$SEAWALL_METRICS_TARGET" if from_env else "--target", lowest=1)
    token = args.token if args.token is not None else os.environ.get("SEAWALL_METRICS_TOKEN")
    root = None
    if args.ca is not None:
        try:
            with open(args.ca, "rb") as handle:
                root = handle.read()
        except OSError as exc:
            raise ConfigurationError(f"cannot read {args.ca}: {exc.strerror}") from None
    with MetricsClient(target, token=token or None, tls=args.tls, root_certificates=root,
                       timeout=10.0) as client:
        summaries = client.summary(args.point, window=window)
    if args.json:
        for s in summaries:
            fields = {**s.as_dict(), "window_seconds": window}
            print(json.dumps({key: fields[key] for key in JSON_KEYS}))
        return 0
    _print_table(summaries, window, target)
    return 0


def _print_table(summaries: list[Summary], window: float, target: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"seawall metrics at {target}, last {window:g} s",
                  title_justify="left")
    for name, justify in (("point", "left"), ("calls", "right"), ("ok %", "right"),
                          ("failures", "right"), ("retries", "right"), ("rejected", "right"),
                          ("p50 ms", "right"), ("p95 ms", "right"), ("p99 ms", "right"),
                          ("breaker", "left")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for s in summaries:
        rate = s.success_rate
        table.add_row(
            s.point, str(s.calls), "-" if rate is None else f"{rate * 100:.1f}",
            str(s.failures), str(s.retries), str(s.rejected),
            f"{s.p50_ms:.2f}", f"{s.p95_ms:.2f}", f"{s.p99_ms:.2f}", s.breaker_state,
        )
    console = Console(file=sys.stdout, width=max(100, Console().width), soft_wrap=False)
    if not summaries:
        console.print(f"no calls recorded in the last {window:g} s")
        return
    console.print(table)
