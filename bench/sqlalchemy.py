"""Cost of seawall's SQLAlchemy hooks on ``SELECT 1``, raw engine against instrumented engine.

Run: ``.venv/bin/python bench/sqlalchemy.py`` (or ``make bench``); about 15 s.
It starts its own throwaway PostgreSQL 15 (``tests/postgres.py``) on
127.0.0.1 and uses a SQLite file in a temp dir.

Two shapes per database, each through a raw engine and through an
identical engine instrumented with a full policy (retry + budget, breaker,
bulkhead, attempt and total timeouts):

* ``statement``: ``conn.exec_driver_sql("SELECT 1")`` on a connection held
  open (the per-statement hooks only);
* ``checkout+statement``: ``with engine.connect() as c: c.exec_driver_sql(...)``
  (checkout liveness poll, bulkhead permit, statement hooks, checkin).

Cases take turns in short interleaved batches so a noisy neighbour hurts
all alike. Printed: microseconds per call of the best batch (the intrinsic
cost), the overhead in microseconds and the ratio instrumented / raw, then
the medians (what a loaded machine sees). Target: under 5 % on PostgreSQL
over loopback.
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

import sqlalchemy as sa  # noqa: E402

import seawall  # noqa: E402
from seawall.interceptors import sqlalchemy as sw_sa  # noqa: E402
from tests.postgres import PostgresUnavailable, running_postgres  # noqa: E402

warnings.simplefilter("ignore")

BATCH_SECONDS = 0.01  # one batch of calls of one case
SECONDS_PER_DATABASE = 6.0
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

    cases = {
        f"{label} statement / raw": statement(held["raw"]),
        f"{label} statement / seawall": statement(held["seawall"]),
        f"{label} checkout+statement / raw": checkout(raw),
        f"{label} checkout+statement / seawall": checkout(inst),
    }
    return cases, [raw, inst]


def measure(cases: dict[str, Callable[[int], None]]) -> dict[str, tuple[float, float]]:
    """(best, median) seconds per call of each case over many short interleaved batches.

    Short batches taking turns make a burst of load from a neighbour land on
    every case alike; the best batch approximates the intrinsic cost, the
    median what a loaded machine sees.
    """
    sizes = {}
    for name, run in cases.items():  # warm up and size each batch to ~BATCH_SECONDS
        run(50)
        t0 = time.perf_counter()
        run(200)
        per = (time.perf_counter() - t0) / 200
        sizes[name] = max(20, int(BATCH_SECONDS / per))
    samples: dict[str, list[float]] = {name: [] for name in cases}
    end = time.monotonic() + SECONDS_PER_DATABASE
    rounds = 0
    gc.disable()
    try:
        while rounds < MIN_ROUNDS or (time.monotonic() < end and rounds < MAX_ROUNDS):
            for name, run in cases.items():
                t0 = time.perf_counter()
                run(sizes[name])
                samples[name].append((time.perf_counter() - t0) / sizes[name])
            rounds += 1
            gc.collect()
    finally:
        gc.enable()
    return {name: (min(v), statistics.median(v)) for name, v in samples.items()}


def report(results: dict[str, tuple[float, float]]) -> None:
    names = [n.removesuffix(" / raw") for n in results if n.endswith(" / raw")]
    print(f"{'case':30} {'raw us':>8} {'seawall us':>11} {'overhead us':>12} {'ratio':>6}"
          f"   {'median: raw':>11} {'seawall':>8} {'ratio':>6}")
    for n in names:
        (rb, rm), (sb, sm) = results[f"{n} / raw"], results[f"{n} / seawall"]
        print(f"{n:30} {rb * 1e6:8.1f} {sb * 1e6:11.1f} {(sb - rb) * 1e6:12.1f} {sb / rb:6.3f}"
              f"   {rm * 1e6:11.1f} {sm * 1e6:8.1f} {sm / rm:6.3f}")


def main() -> int:
    started = time.monotonic()
    print("seawall SQLAlchemy hooks: SELECT 1, raw engine vs instrumented "
          "(best and median of interleaved 10 ms batches)")
    with tempfile.TemporaryDirectory() as tmp:
        cases, engines = cases_for(f"sqlite:///{tmp}/bench.db", "sqlite")
        try:
            report(measure(cases))
        finally:
            for e in engines:
                e.dispose()
    try:
        with running_postgres() as server:
            cases, engines = cases_for(server.url(server.create_database()), "postgresql")
            try:
                report(measure(cases))
            finally:
                for e in engines:
                    e.dispose()
    except PostgresUnavailable as exc:
        print(f"postgresql: skipped ({exc})")
    print(f"done in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
