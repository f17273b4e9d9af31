"""``seawall demo``: the same workload against flaky dependencies, bare and through seawall.

It starts three dependencies on 127.0.0.1 (a gRPC service, an HTTP API and
a SQLite database) that inject real faults, runs the workload once with
bare clients and once through seawall's interceptors, transport and
instrumented engine, prints one side-by-side table per dependency, then
reads seawall's persisted metrics back through the metrics service.

Everything it writes goes to a temporary folder (removed at the end)
unless ``--store`` or ``--report`` name a place; every server and thread
it starts is stopped before it returns. With ``--chaos`` the outage is a
rehearsal: the dependencies stay up and :class:`seawall.Chaos` in the
clients injects it (both runs), so the same tables show what the policies
do with an outage nobody had to cause.
"""

from __future__ import annotations

import argparse
import math


def _rate(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the demo's options to ``parser`` and make :func:`run` its handler."""
    parser.description = (
        "Start a flaky gRPC service, HTTP API and SQLite database on 127.0.0.1, call them "
        "with bare clients and then through seawall, and compare what the callers saw."
    )
    parser.add_argument("--seed", type=int, default=7, help="seed of the fault draws (default 7)")
    parser.add_argument("--duration", type=_seconds, default=12.0,
                        help="seconds each of the two runs lasts (default 12)")
    parser.add_argument("--outage", type=float, default=None, metavar="SECONDS",
                        help="length of the full outage in the middle of each run "
                             "(default: a third of --duration; 0 for none)")
    parser.add_argument("--error-rate", type=_rate, default=0.10,
                        help="share of requests failing with UNAVAILABLE / 503 (default 0.10)")
    parser.add_argument("--latency-rate", type=_rate, default=0.05,
                        help="share of requests hit by a 400 ms latency spike (default 0.05)")
    parser.add_argument("--rate-limit-rate", type=_rate, default=0.02,
                        help="share of requests rate limited with pushback / Retry-After "
                             "(default 0.02)")
    parser.add_argument("--store", metavar="URL", default=None,
                        help="SQLAlchemy URL to persist seawall's metrics to "
                             "(default: a SQLite file in a temporary folder)")
    parser.add_argument("--report", metavar="FILE", default=None,
                        help="also write the results as JSON to FILE")
    parser.add_argument("--chaos", action="store_true",
                        help="rehearse the outage with seawall.Chaos: the dependencies stay up "
                             "and the clients inject it (UNAVAILABLE, 503, a lost database "
                             "connection), marked as injected in the metrics")
    parser.add_argument("--plain", action="store_true",
                        help="no live view or colours (the default when stdout is not a terminal)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Run the demo; returns the process exit code."""
    from ._demo_run import main  # grpc, httpx, sqlalchemy and rich load only for the demo

    return main(args)
