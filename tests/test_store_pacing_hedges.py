"""Waits, pacing refusals, hedges and the bulkhead's limit: recorded, stored, served, shown.

A scripted workload runs through real calls (hedged async calls, a paused
point, rate-limited points, bulkheads), the recorder writes it to a store
(SQLite, and PostgreSQL where the server is available), and the exact
counts are read back from the store, the gRPC service, its client and
``seawall stats --json``.
"""

from __future__ import annotations

import asyncio
import gc
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from seawall import (
    AdaptiveBulkhead,
    Bulkhead,
    Category,
    Classification,
    Classifier,
    Hedge,
    IntegrationPoint,
    RateLimit,
    RateLimitedError,
    Timeout,
)
from seawall._cli import main
from seawall.storage import MetricsClient, Recorder, Store, serve
from seawall.storage._schema import ADDED_IN_2, ADDED_IN_3, COUNT_TABLES, SCHEMA_VERSION
from seawall.testing import FakeClock

HEDGED_CALLS = 12  # i % 3: 0 hedge wins, 1 first attempt answers, 2 both attempts fail


class Throttled(Exception):
    """A dependency asking for a pause of 2 s."""


def _throttled() -> Classifier:
    return Classifier().on(Throttled, Classification(Category.RATE_LIMITED, retry=True,
                                                     breaker=False, delay=2.0))


def _raise_throttled() -> None:
    raise Throttled


async def _hedged_calls(point: IntegrationPoint) -> None:
    for i in range(HEDGED_CALLS):
        attempts: list[int] = []

        async def work(i: int = i, attempts: list[int] = attempts) -> str:
            attempts.append(1)
            if i % 3 == 1:
                return "first"
            if i % 3 == 0 and len(attempts) == 2:
                return "hedge"
            raise ConnectionError("reset")  # non-fatal: the hedge starts at once

        try:
            await point.acall(work)
        except ConnectionError:
            pass


def workload() -> dict[str, IntegrationPoint]:
    """Run the scripted calls; returns the points by name."""
    refused_clock = FakeClock()
    points = {
        # delay=30 s: hedges start only when an attempt fails (non-fatal), never by time
        "hedged": IntegrationPoint("hedged", hedge=Hedge(delay=30.0)),
        "paused": IntegrationPoint("paused", classifier=_throttled(), clock=FakeClock()),
        "paused-refused": IntegrationPoint("paused-refused", classifier=_throttled(),
                                           clock=refused_clock, timeout=Timeout(total=1.0)),
        "rate-waits": IntegrationPoint("rate-waits", clock=FakeClock(),
                                       rate_limit=RateLimit(rate=1.0, burst=2, max_wait=5.0)),
        "rate-refused": IntegrationPoint("rate-refused", clock=FakeClock(),
                                         rate_limit=RateLimit(rate=1.0, burst=1)),
        "adaptive": IntegrationPoint("adaptive", bulkhead=AdaptiveBulkhead(initial=12)),
        "fixed": IntegrationPoint("fixed", bulkhead=Bulkhead(max_concurrent=5)),
    }
    asyncio.run(_hedged_calls(points["hedged"]))
    for _ in range(3):  # each throttle pauses the point: the next call waits 2 s (fake)
        with pytest.raises(Throttled):
            points["paused"].call(_raise_throttled)
        points["paused"].call(lambda: None)
    for _ in range(2):  # a deadline of 1 s inside a pause of 2 s: refused, reason paused
        with pytest.raises(Throttled):
            points["paused-refused"].call(_raise_throttled)
        with pytest.raises(RateLimitedError):
            points["paused-refused"].call(lambda: None)
        refused_clock.advance(3.0)  # the pause is over
    for _ in range(5):  # 2 tokens at hand, then each call waits for the next one
        points["rate-waits"].call(lambda: None)
    points["rate-refused"].call(lambda: None)
    for _ in range(3):  # no token, no wait allowed: refused, reason rate_limit
        with pytest.raises(RateLimitedError):
            points["rate-refused"].call(lambda: None)
    for name in ("adaptive", "fixed"):
        for _ in range(4):
            points[name].call(lambda: None)
    return points


# what the workload must count, whatever the store
EXPECTED = {
    "hedged": {"calls": 12, "successes": 8, "failures": 4, "hedges_sent": 8, "hedges_won": 4},
    "paused": {"calls": 6, "waits_by_reason": {"paused": 3, "rate_limit": 0}},
    "paused-refused": {"calls": 4, "rejected": 2},
    "rate-waits": {"calls": 5, "waits_by_reason": {"paused": 0, "rate_limit": 3}},
    "rate-refused": {"calls": 4, "rejected": 3},
    "adaptive": {"calls": 4, "concurrency_limit": 12.0},
    "fixed": {"calls": 4, "concurrency_limit": 5.0},
}
REFUSALS = {"paused-refused": ("paused", 2), "rate-refused": ("rate_limit", 3)}


def record_workload(store: Store) -> dict[str, IntegrationPoint]:
    """Run :func:`workload` with a recorder on ``store`` and flush it; the points it used."""
    # the limit of live points sharing a name is summed: let earlier tests' points go first
    gc.collect()
    recorder = Recorder(store, flush_interval=60.0)
    try:
        points = workload()
        assert recorder.flush()
    finally:
        recorder.close()
    return points


def _check(by_point: dict[str, dict[str, object]], points: dict[str, IntegrationPoint]) -> None:
    for name, expected in EXPECTED.items():
        got = by_point[name]
        for field, value in expected.items():
            assert got[field] == value, (name, field, got[field], value)
    for name, (reason, count) in REFUSALS.items():
        assert by_point[name]["rejections_by_reason"][reason] == count  # type: ignore[index]
    for name, point in points.items():  # the store agrees with the point's own counters
        stats, got = point.stats(), by_point[name]
        assert got["hedges_sent"] == stats.hedges and got["hedges_won"] == stats.hedges_won
        assert got["waits_by_reason"] == {"paused": stats.paused_waits,
                                          "rate_limit": stats.rate_limit_waits}
        assert got["concurrency_limit"] == float(stats.concurrency_limit or 0)
        for reason in ("rate_limit", "paused"):
            assert got["rejections_by_reason"][reason] == stats.rejections[reason]  # type: ignore[index]


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    s = Store(f"sqlite:///{tmp_path / 'metrics.db'}")
    yield s
    s.close()


def test_the_workload_counts_what_it_scripts() -> None:
    """The points' own counters: the ground truth the store is checked against."""
    points = workload()
    assert points["hedged"].stats().hedges == 8 and points["hedged"].stats().hedges_won == 4
    assert points["paused"].stats().paused_waits == 3
    assert points["rate-waits"].stats().rate_limit_waits == 3
    assert points["rate-refused"].stats().rejections["rate_limit"] == 3
    assert points["paused-refused"].stats().rejections["paused"] == 2


def test_store_service_client_and_cli_carry_exact_counts(
        sqlite_store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    """Recorder -> SQLite -> store summary, gRPC client and seawall stats --json agree exactly."""
    points = record_workload(sqlite_store)
    _check({s.point: s.as_dict() for s in sqlite_store.summary()}, points)
    with serve(sqlite_store, "127.0.0.1:0") as server:
        with MetricsClient(server.address, timeout=5.0) as client:
            _check({s.point: s.as_dict() for s in client.summary()}, points)
            [series] = [b for b in client.series("hedged", start=0, end=4e9, step=4e9 // 60 * 60)
                        if b.calls]
            assert (series.hedges_sent, series.hedges_won) == (8, 4)
        assert main(["stats", "--target", server.address, "--json"]) == 0
        records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    _check({r["point"]: r for r in records}, points)


def test_postgresql_store_carries_exact_counts(postgres_url: str) -> None:
    """The same workload through a PostgreSQL store."""
    store = Store(postgres_url)
    try:
        assert store.dialect == "postgresql"
        points = record_workload(store)
        _check({s.point: s.as_dict() for s in store.summary()}, points)
    finally:
        store.close()


def make_old_store(path: Path, version: int) -> None:
    """Turn a fresh store into what seawall's schema ``version`` wrote."""
    Store(f"sqlite:///{path}").ensure_schema()
    dropped = ADDED_IN_3 + (ADDED_IN_2 if version == 1 else ())
    with sqlite3.connect(path) as db:
        for table in COUNT_TABLES.values():
            for column in dropped:
                db.execute(f"ALTER TABLE {table.name} DROP COLUMN {column}")
        db.execute("DELETE FROM seawall_schema_version")
        db.execute(f"INSERT INTO seawall_schema_version VALUES ({version}, 0.0)")
        db.execute("INSERT INTO seawall_minute (point, bucket, operation, host, pid, calls) "
                   "VALUES ('old', 1, 'op', 'h', 1, 3)")


@pytest.mark.parametrize("version", [1, 2])
def test_an_older_store_is_upgraded_in_place(tmp_path: Path, version: int) -> None:
    """A schema-1 or -2 store gains the new columns on open, keeps its rows and takes writes."""
    path = tmp_path / "old.db"
    make_old_store(path, version)
    old = Store(f"sqlite:///{path}")
    try:
        points = record_workload(old)
        _check({s.point: s.as_dict() for s in old.summary()}, points)
    finally:
        old.close()
    with sqlite3.connect(path) as db:
        versions = [v for (v,) in db.execute("SELECT version FROM seawall_schema_version")]
        columns = {row[1] for row in db.execute("PRAGMA table_info(seawall_hour)")}
        kept = db.execute("SELECT calls, hedges_sent FROM seawall_minute WHERE point = 'old'")
        assert kept.fetchall() == [(3, 0)]
    assert max(versions) == SCHEMA_VERSION == 3
    assert set(ADDED_IN_2 + ADDED_IN_3) <= columns


def test_a_read_only_older_store_reads_the_new_columns_as_zeros(tmp_path: Path) -> None:
    """A schema-2 store opened read-only is read as it is: the figures it lacks are 0."""
    path = tmp_path / "old.db"
    make_old_store(path, 2)
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO seawall_minute (point, bucket, operation, host, pid, calls, "
                   "successes, injected_calls) VALUES ('now', 0, 'op', 'h', 1, 4, 4, 1)")
    store = Store(f"sqlite:///{path}", read_only=True)
    try:
        [row] = [r for r in store.summary(window=600, now=60.0) if r.point == "now"]
        assert (row.calls, row.injected_calls) == (4, 1)
        assert (row.hedges_sent, row.hedges_won, row.concurrency_limit) == (0, 0, 0.0)
        assert row.waits_by_reason == {"paused": 0, "rate_limit": 0}
        assert row.rejections_by_reason["rate_limit"] == 0
    finally:
        store.close()
    with sqlite3.connect(path) as db:  # nothing was written
        assert [v for (v,) in db.execute("SELECT version FROM seawall_schema_version")] == [2]


def test_the_table_shows_waits_hedges_and_limit_only_where_there_are_some(
        sqlite_store: Store, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """seawall stats --wide: waits, hedges/won and limit columns, with each point's figures."""
    record_workload(sqlite_store)
    monkeypatch.setenv("COLUMNS", "200")
    with serve(sqlite_store, "127.0.0.1:0") as server:
        assert main(["stats", "--target", server.address, "--wide"]) == 0
        out = capsys.readouterr().out.splitlines()
        assert main(["stats", "--target", server.address, "--point", "paused", "--wide"]) == 0
        lone = capsys.readouterr().out
    header = next(line for line in out if line.startswith("┃"))
    headers = [c.strip() for c in header.strip("┃").split("┃")]
    assert headers[headers.index("rejected") + 1:][:3] == ["waits", "hedges/won", "limit"]
    rows = {cells[0]: dict(zip(headers, cells, strict=True)) for cells in (
        [c.strip() for c in line.strip("│").split("│")] for line in out if line.startswith("│"))}
    assert rows["hedged"]["hedges/won"] == "8/4" and rows["hedged"]["limit"] == "-"
    assert rows["paused"]["waits"] == "3" and rows["rate-waits"]["waits"] == "3"
    assert rows["adaptive"]["limit"] == "12" and rows["fixed"]["limit"] == "5"
    assert "waits" in lone and "hedges/won" not in lone and "limit" not in lone


def test_the_dashboard_api_carries_waits_hedges_and_limit(sqlite_store: Store) -> None:
    """/api/dashboard over HTTP: totals and per-step series of the scripted workload."""
    import httpx

    from seawall.storage import serve_http

    points = record_workload(sqlite_store)
    with serve_http(sqlite_store, "127.0.0.1:0") as web:
        out = httpx.get(f"http://{web.address}/api/dashboard", params={"window": "600"},
                        timeout=10.0).json()
    by_name = {p["name"]: p for p in out["points"]}
    for name, point in points.items():
        stats, totals, series = point.stats(), by_name[name]["totals"], by_name[name]["series"]
        assert (totals["hedges_sent"], totals["hedges_won"]) == (stats.hedges, stats.hedges_won)
        assert totals["waits_by_reason"] == {"paused": stats.paused_waits,
                                             "rate_limit": stats.rate_limit_waits}
        assert totals["concurrency_limit"] == float(stats.concurrency_limit or 0)
        assert totals["rejections_by_reason"]["rate_limit"] == stats.rejections["rate_limit"]
        assert sum(series["hedges"]) == stats.hedges
        assert sum(series["waits"]) == stats.paused_waits + stats.rate_limit_waits
        assert len(series["hedges"]) == len(series["waits"]) == len(out["t"])
    assert by_name["hedged"]["totals"]["hedges_sent"] == 8


def test_many_threads_and_tasks_add_up_exactly(sqlite_store: Store) -> None:
    """4 threads x 5 tasks of hedged calls and rate-limited calls: the store's counts are exact."""
    import threading

    gc.collect()
    hedged = IntegrationPoint("busy-hedged", hedge=Hedge(delay=30.0))
    limited = IntegrationPoint("busy-limited", clock=FakeClock(),
                               rate_limit=RateLimit(rate=1.0, burst=1))  # one token, no refill

    async def task() -> None:
        await _hedged_calls(hedged)  # 12 calls: 8 hedges, 4 won
        for _ in range(3):
            try:
                limited.call(lambda: None)
            except RateLimitedError:
                pass

    def thread() -> None:
        async def tasks() -> None:
            await asyncio.gather(*(task() for _ in range(5)))
        asyncio.run(tasks())

    recorder = Recorder(sqlite_store, flush_interval=0.05)
    try:
        threads = [threading.Thread(target=thread) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60.0)
        assert recorder.flush()
    finally:
        recorder.close()
    by_point = {s.point: s for s in sqlite_store.summary()}
    assert (by_point["busy-hedged"].calls, by_point["busy-hedged"].hedges_sent,
            by_point["busy-hedged"].hedges_won) == (240, 160, 80)
    assert by_point["busy-limited"].calls == 60
    assert by_point["busy-limited"].rejections_by_reason["rate_limit"] == 59
    assert (hedged.stats().hedges, limited.stats().rejections["rate_limit"]) == (160, 59)
