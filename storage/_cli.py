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

from ._schema import ADDED, NAME_LENGTH
from ._service import DEFAULT_LISTEN, MIN_TOKEN_LENGTH, parse_listen
from ._store import DEFAULT_URL, MAX_WINDOW
from ._types import STATS_FIELDS, Summary

# the order of the keys of `seawall stats --json` (a test keeps it): the point, the Stats
# fields of seawall's first schema, the breaker state, the fields later schema versions added
# (Stats appends them in version order, from the first counter ADDED), then the window
_FIRST_ADDED = STATS_FIELDS.index(ADDED[min(ADDED)][0])
JSON_KEYS = ("point", *STATS_FIELDS[:_FIRST_ADDED], "breaker_state",
             *STATS_FIELDS[_FIRST_ADDED:], "window_seconds")


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
    parser.add_argument("--wide", action="store_true",
                        help="every column, however wide the terminal (default: the columns "
                             "that fit, by priority; long point names abbreviated)")
    parser.add_argument("--watch", action="store_true",
                        help="refresh in place, with per-minute sparklines of calls/s and p99 "
                             "per point (Ctrl-C stops)")
    parser.add_argument("--interval", default=None, metavar="SECONDS",
                        help="seconds between refreshes of --watch (0.5 to 3600; default: 2)")
    parser.add_argument("--series", action="store_true",
                        help="with --point: charts of calls/s, p50 and p99 over the window, "
                             "sized to the terminal")
    # how many refreshes --watch draws before it returns (tests and scripts)
    parser.add_argument("--count", default=None, help=argparse.SUPPRESS)
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
    """Print each point's summary as a table or as JSON lines; or watch it; or chart one point."""
    from ._client import MetricsClient

    window = _number("--window", args.window, low=0, high=MAX_WINDOW)
    if args.point is not None and len(args.point) > NAME_LENGTH:
        raise ConfigurationError(f"--point must be at most {NAME_LENGTH} characters, "
                                 f"got {len(args.point)}")
    for option, given in (("--interval", args.interval), ("--count", args.count)):
        if given is not None and not args.watch:
            raise ConfigurationError(f"{option} only applies to --watch")
    interval = 2.0
    if args.interval is not None:
        interval = _number("--interval", args.interval, low=0, high=3600)
        if interval < 0.5:
            raise ConfigurationError(f"--interval must be >= 0.5 and <= 3600 seconds, "
                                     f"got {args.interval}")
    count = None
    if args.count is not None:
        try:
            count = int(args.count)
        except ValueError:
            count = 0
        if count < 1:
            raise ConfigurationError(f"--count must be an integer >= 1, got {args.count!r}")
    modes = [flag for flag, on in (("--json", args.json), ("--watch", args.watch),
                                   ("--series", args.series)) if on]
    if len(modes) > 1:
        raise ConfigurationError(f"{' and '.join(modes)} cannot be combined: choose one")
    if args.series and args.point is None:
        raise ConfigurationError("--series needs --point NAME (the point to chart)")
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
        if args.watch:
            return _watch(client, args.point, window, target, interval=interval, count=count,
                          wide=args.wide)
        if args.series:
            return _print_series(client, args.point, window)
        summaries = client.summary(args.point, window=window)
    if args.json:
        for s in summaries:
            fields = {**s.as_dict(), "window_seconds": window}
            print(json.dumps({key: fields[key] for key in JSON_KEYS}))
        return 0
    _print_table(summaries, window, target, wide=args.wide)
    return 0


def _console(width: int | None = None) -> Any:
    """A console on stdout: the terminal's width ($COLUMNS when set; 80 when piped)."""
    from rich.console import Console

    console = Console(file=sys.stdout, soft_wrap=False, highlight=False)
    if width is not None and width > console.width:
        console.width = width
    return console


def _print_table(summaries: list[Summary], window: float, target: str, *,
                 wide: bool = False) -> None:
    from rich.table import Table

    from . import _terminal as term

    console = _console()
    if not summaries:
        console.print(f"no calls recorded in the last {window:g} s")
        return
    rows = [term.summary_cells(s) for s in summaries]
    every = term.with_extras(term.COLUMNS, summaries)
    columns, point_width = term.fit(every, rows, None if wide else console.width)
    hidden = [c.header for c in every if c not in columns]
    captions = [f"not shown: {', '.join(hidden)} (--wide shows them)"] if hidden else []
    injected = sum(s.injected_calls for s in summaries)
    if injected:  # a rehearsal ran: say so, apart from the real figures above
        failed = sum(s.injected_failures for s in summaries)
        captions.append(f"fault injection: {injected} injected calls ({failed} failed), "
                        "not counted above")
    table = Table(title=f"seawall metrics at {target}, last {window:g} s", title_justify="left",
                  caption="\n".join(captions) or None, caption_justify="left")
    for column in columns:
        table.add_column(column.header, **term.render_kwargs(column))
    for row in rows:
        row["point"] = term.abbreviate(row["point"], point_width)
        table.add_row(*(row[c.header] for c in columns))
    if wide:  # as wide as the table needs, never wrapped
        natural = [max(len(c.header), *(len(r[c.header]) for r in rows)) for c in columns]
        console = _console(term.table_width(natural))
    console.print(table)


def _watch_frame(client: Any, point: str | None, window: float, target: str, *,
                 interval: float, width: int | None) -> Any:
    """One refresh of ``--watch``: the table with a sparkline per point of calls/s and p99."""
    import time

    from rich.table import Table

    from . import _terminal as term

    summaries = client.summary(point, window=window)
    if not summaries:
        return f"no calls recorded in the last {window:g} s (watching; Ctrl-C stops)"
    rows = [term.summary_cells(s) for s in summaries]
    columns = term.with_extras(term.WATCH_COLUMNS, summaries)
    # the two trend columns share what the columns that always show leave
    base = term.table_width([min(max(len(r["point"]) for r in rows), 16)]
                            + [max(len(c.header), *(len(r[c.header]) for r in rows))
                               for c in columns if c.priority == 0 and c.header != "point"])
    trend = 60 + term.TREND_VALUE if width is None         else max(8, min(60 + term.TREND_VALUE, (width - base) // 2 - 3))
    minutes = max(1, min(trend - term.TREND_VALUE, int(window // 60) or 1))
    chosen, point_width = term.fit(columns, rows, width, reserved=2 * (trend + 3))
    now = time.time()
    table = Table(title=f"seawall stats at {target}: last {window:g} s; trends per minute over "
                        f"{minutes} min; every {interval:g} s, Ctrl-C stops",
                  title_justify="left")
    for column in chosen:
        table.add_column(column.header, **term.render_kwargs(column))
    table.add_column("calls/s", justify="right", no_wrap=True, min_width=trend)
    table.add_column("p99 ms", justify="right", no_wrap=True, min_width=trend)
    for s, row in zip(summaries, rows, strict=True):
        buckets = client.series(s.point, start=now - (minutes - 1) * 60, end=now,
                                step=60)[-minutes:]
        trends = []
        for values in (term.calls_per_second(buckets, 60.0), term.p99s(buckets)):
            last = term.last_value(values)
            trends.append(term.sparkline(values) + " "
                          + ("-" if last is None else term.number(last)).rjust(
                              term.TREND_VALUE - 1))
        row["point"] = term.abbreviate(row["point"], point_width)
        table.add_row(*(row[c.header] for c in chosen), *trends)
    return table


def _watch(client: Any, point: str | None, window: float, target: str, *, interval: float,
           count: int | None, wide: bool) -> int:
    """Refresh the frame every ``interval`` seconds (``count`` times, or until Ctrl-C)."""
    import time

    console = _console()
    width = None if wide else console.width
    frames = 0
    if console.is_terminal:
        from rich.live import Live

        with Live(console=console, auto_refresh=False, transient=False) as live:
            while True:
                live.update(_watch_frame(client, point, window, target, interval=interval,
                                         width=width), refresh=True)
                frames += 1
                if count is not None and frames >= count:
                    return 0
                time.sleep(interval)
    while True:  # piped: one frame after the other
        console.print(_watch_frame(client, point, window, target, interval=interval,
                                   width=width))
        frames += 1
        if count is not None and frames >= count:
            return 0
        time.sleep(interval)


def _print_series(client: Any, point: str, window: float) -> int:
    """Three charts of ``point`` over the window (calls/s, p50, p99), sized to the terminal."""
    import time

    from . import _terminal as term

    console = _console()
    width, lines = console.width, console.height
    step = term.chart_step(window, width - term.CHART_LABEL)
    now = time.time()
    buckets = client.series(point, start=now - window, end=now, step=step)
    for chart in term.series_charts(point, buckets, step=step, window=window, width=width,
                                    height=term.chart_height(lines)):
        for line in chart.lines:
            console.print(line, markup=False, soft_wrap=True)
    return 0
