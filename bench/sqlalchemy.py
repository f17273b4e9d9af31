"""Cost of seawall's SQLAlchemy hooks on ``SELECT 1``, raw engine against instrumented engine.

Run: ``.venv/bin/python bench/sqlalchemy.py`` (or ``make bench``); about 25 s.
It starts its own throwaway PostgreSQL 15 (``tests/postgres.py``) on
127.0.0.1 and uses a SQLite file in a temp dir.

Two shapes per database, each through a raw engine and through an
identical engine instrumented with a full policy (retry + budget, breaker,
bulkhead, attempt and total timeouts):

* ``statement``: ``conn.exec_driver_sql("SELECT 1")`` on a connection held
  open (the per-statement hooks only);
* ``checkout+statement``: ``with engine.connect() as c: c.exec_driver_sql(...)``
  (checkout liveness poll, bulkhead permit, statement hooks, checkin).

Raw and instrumented take turns in short batches (~10 ms), in alternating
order, so a noisy neighbour hurts both alike. Each round gives one ratio
instrumented / raw of two adjacent batches; the **median of these ratios**
is the figure that survives a shared machine. Also printed: microseconds
per call of the best batch of each (the intrinsic cost) and their
difference, and the median batch times. Target: under 5 % on PostgreSQL
over loopback.

An ``A/A control`` line times the raw engine's connection against a second
raw connection the same way: its distance from 1.000 is the noise floor
of that run. On a machine with two CPUs or more the PostgreSQL server is
pinned to one CPU and this process to another (see :func:`pin_apart`).
"""

from __future__ import annotations

import os
import sys

# run as a script, this file would shadow the sqlalchemy package: drop bench/ from the path
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]
sys.path.insert(0, os.path.dirname(_HERE))  # the repo root, for tests.postgres

import gc  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any, NamedTuple  # noqa: E402

import sqlalchemy as sa  # noqa: E402

import seawall  # noqa: E402
from seawall.interceptors import sqlalchemy as sw_sa  # noqa: E402
from tests.postgres import PostgresUnavailable, running_postgres  # noqa: E402

warnings.simplefilter("ignore")

BATCH_SECONDS = 0.01  # one batch of calls of one case
SECONDS_PER_DATABASE = {"sqlite": 6.0, "postgresql": 15.0}
MIN_ROUNDS, MAX_ROUNDS = 30, 2000


def full_point(name: str) -> seawall.IntegrationPoint:
    return seawall.IntegrationPoint(
        name,
        retry=seawall.Retry(attempts=3, backoff=seawall.Backoff.exponential(),
                            budget=seawall.RetryBudget()),
        breaker=seawall.CircuitBreaker(failure_rate=0.5, minimum_calls=20, window=100),
        bulkhead=seawall.Bulkhead(max_concurrent=64, max_wait=0.05),
        timeout=seawall.Timeout(attempt=1.0, total=5.0),
    )


def cases_for(url: str, label: str) -> tuple[dict[str, Callable[[int], None]], list[sa.Engine]]:
    raw = sa.create_engine(url)
    inst = sw_sa.instrument(sa.create_engine(url), full_point(label))
    held = {name: e.connect() for name, e in (("raw", raw), ("seawall", inst))}

    def statement(conn: sa.Connection) -> Callable[[int], None]:
        def run(n: int) -> None:
            for _ in range(n):
                conn.exec_driver_sql("SELECT 1").scalar()
        return run

    def checkout(engine: sa.Engine) -> Callable[[int], None]:
        def run(n: int) -> None:
            for _ in range(n):
                with engine.connect() as c:
                    c.exec_driver_sql("SELECT 1").scalar()
        return run

    control = raw.connect()  # a second raw connection: the A/A line shows the noise floor
    cases = {
        f"{label} A/A control / raw": statement(held["raw"]),
        f"{label} A/A control / seawall": statement(control),
        f"{label} statement / raw": statement(held["raw"]),
        f"{label} statement / seawall": statement(held["seawall"]),
        f"{label} checkout+statement / raw": checkout(raw),
        f"{label} checkout+statement / seawall": checkout(inst),
    }
    return cases, [raw, inst]


class Pair(NamedTuple):
    """One shape measured raw and instrumented (seconds per call)."""

    raw_best: float
    seawall_best: float
    raw_median: float
    seawall_median: float
    ratio_median: float  # median over rounds of (instrumented batch / adjacent raw batch)
    ratio_q1: float
    ratio_q3: float


def measure(cases: dict[str, Callable[[int], None]], seconds: float) -> dict[str, Pair]:
    """Time each ``<shape> / raw`` and ``<shape> / seawall`` pair in short interleaved batches.

    Every round runs one batch of each case, raw and instrumented next to
    each other (which goes first alternates), so a burst of load from a
    neighbour lands on both; the per-round ratio cancels it out.
    """
    sizes = {}
    for name, run in cases.items():  # warm up and size each batch to ~BATCH_SECONDS
        run(50)
        t0 = time.perf_counter()
        run(200)
        per = (time.perf_counter() - t0) / 200
        sizes[name] = max(20, int(BATCH_SECONDS / per))
    shapes = [n.removesuffix(" / raw") for n in cases if n.endswith(" / raw")]
    samples: dict[str, list[float]] = {name: [] for name in cases}
    ratios: dict[str, list[float]] = {shape: [] for shape in shapes}
    end = time.monotonic() + seconds
    rounds = 0
    gc.disable()
    try:
        while rounds < MIN_ROUNDS or (time.monotonic() < end and rounds < MAX_ROUNDS):
            for shape in shapes:
                pair = (f"{shape} / raw", f"{shape} / seawall")
                for name in pair if rounds % 2 == 0 else pair[::-1]:
                    n = sizes[name]
                    run = cases[name]
                    t0 = time.perf_counter()
                    run(n)
                    samples[name].append((time.perf_counter() - t0) / n)
                ratios[shape].append(samples[pair[1]][-1] / samples[pair[0]][-1])
            rounds += 1
            gc.collect()
    finally:
        gc.enable()
    out = {}
    for shape in shapes:
        raw, inst = samples[f"{shape} / raw"], samples[f"{shape} / seawall"]
        q1, _, q3 = statistics.quantiles(ratios[shape], n=4)
        out[shape] = Pair(min(raw), min(inst), statistics.median(raw), statistics.median(inst),
                          statistics.median(ratios[shape]), q1, q3)
    return out


def report(results: dict[str, Pair]) -> None:
    print(f"{'case':30} {'ratio':>6} {'(q1-q3)':>13}   {'best: raw us':>12} {'seawall':>8} "
          f"{'overhead':>8}   {'median: raw':>11} {'seawall':>8}")
    for shape, r in results.items():
        print(f"{shape:30} {r.ratio_median:6.3f} {f'({r.ratio_q1:.3f}-{r.ratio_q3:.3f})':>13}   "
              f"{r.raw_best * 1e6:12.1f} {r.seawall_best * 1e6:8.1f} "
              f"{(r.seawall_best - r.raw_best) * 1e6:8.1f}   "
              f"{r.raw_median * 1e6:11.1f} {r.seawall_median * 1e6:8.1f}")


def pin_apart(server: Any) -> bool:
    """Put this process on one CPU and the PostgreSQL server (and its future backends) on another.

    Each statement is a ping-pong between client and backend; left to the
    scheduler, where each wakes up varies from batch to batch and that
    jitter is larger than what is measured. Both cases run pinned alike.
    """
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if len(cpus) < 2:
        return False
    try:
        pid = int((server.datadir / "postmaster.pid").read_text().split()[0])
        os.sched_setaffinity(pid, {cpus[1]})
        os.sched_setaffinity(0, {cpus[0]})
    except (OSError, ValueError, IndexError):
        return False
    return True


def main() -> int:
    started = time.monotonic()
    print("seawall SQLAlchemy hooks: SELECT 1, raw engine vs instrumented; ratio = median over "
          "rounds of adjacent 10 ms batches (instrumented / raw)")
    with tempfile.TemporaryDirectory() as tmp:
        cases, engines = cases_for(f"sqlite:///{tmp}/bench.db", "sqlite")
        try:
            report(measure(cases, SECONDS_PER_DATABASE["sqlite"]))
        finally:
            for e in engines:
                e.dispose()
    try:
        with running_postgres() as server:
            pinned = pin_apart(server)
            cases, engines = cases_for(server.url(server.create_database()), "postgresql")
            try:
                if pinned:
                    print("(client on CPU 0, PostgreSQL on CPU 1)")
                report(measure(cases, SECONDS_PER_DATABASE["postgresql"]))
            finally:
                for e in engines:
                    e.dispose()
    except PostgresUnavailable as exc:
        print(f"postgresql: skipped ({exc})")
    print(f"done in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
