"""Injected outcomes in the metrics: stored apart, served apart, exported with seawall.injected."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

import seawall
from seawall._cli import main
from seawall.storage import Recorder, Store, serve
from seawall.storage._schema import ADDED_IN_2, SCHEMA_VERSION
from seawall.testing import FakeClock
from tests.otel_support import read, sdk_provider, total
from tests.test_store_pacing_hedges import make_old_store


def rehearsal(name: str) -> seawall.IntegrationPoint:
    """Calls 0..59: every 3rd really fails; chaos injects faults into a seeded third."""
    return seawall.IntegrationPoint(
        name, clock=FakeClock(),
        chaos=seawall.Chaos(fault_rate=0.3, fault=ConnectionError("injected"), seed=5))


def run(point: seawall.IntegrationPoint, calls: int = 60) -> None:
    for i in range(calls):
        def work(i: int = i) -> str:
            if i % 3 == 0:
                raise ConnectionError("real")
            return "ok"
        try:
            point.call(work)
        except ConnectionError:
            pass


def record_rehearsal(store: Store, name: str) -> seawall.IntegrationPoint:
    """Run the rehearsal point ``name`` with a recorder on ``store`` and flush it."""
    recorder = Recorder(store, flush_interval=60.0)
    try:
        point = rehearsal(name)
        run(point)
        assert recorder.flush()
    finally:
        recorder.close()
    return point


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(f"sqlite:///{tmp_path / 'metrics.db'}")
    yield s
    s.close()


def test_the_store_keeps_injected_calls_apart(store: Store) -> None:
    """calls/failures/latencies hold only real calls; injected ones have their own counters."""
    point = record_rehearsal(store, "stored")
    stats = point.stats()
    [summary] = store.summary("stored")
    assert summary.injected_calls == stats.injected_failures > 0
    assert summary.injected_failures == stats.injected_failures
    assert summary.calls == 60 - stats.injected_failures
    assert summary.failures == stats.failures  # only the real ConnectionError("real")
    assert summary.successes == stats.successes
    assert summary.calls == summary.successes + summary.failures


def test_an_older_store_is_upgraded_in_place(tmp_path: Path) -> None:
    """A schema-1 store (no injected columns) gains them on open and takes writes."""
    path = tmp_path / "old.db"
    make_old_store(path, 1)  # what seawall's first schema wrote
    old = Store(f"sqlite:///{path}")
    record_rehearsal(old, "upgraded")
    [summary] = old.summary("upgraded")
    assert summary.injected_calls > 0
    with sqlite3.connect(path) as db:
        versions = [v for (v,) in db.execute("SELECT version FROM seawall_schema_version")]
        columns = {row[1] for row in db.execute("PRAGMA table_info(seawall_minute)")}
    assert max(versions) == SCHEMA_VERSION and set(ADDED_IN_2) <= columns
    old.close()


def test_service_and_cli_show_injected_counts(store: Store,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """seawall stats --json carries injected_calls/injected_failures; the table says so below."""
    point = record_rehearsal(store, "served")
    injected = point.stats().injected_failures
    with serve(store, "127.0.0.1:0") as server:
        assert main(["stats", "--target", server.address, "--json"]) == 0
        record = json.loads(capsys.readouterr().out)
        assert record["injected_calls"] == injected and record["injected_failures"] == injected
        assert record["calls"] == 60 - injected
        assert main(["stats", "--target", server.address, "--wide"]) == 0
        out = capsys.readouterr().out
    assert f"fault injection: {injected} injected calls ({injected} failed)" in out


def test_otel_marks_injected_series() -> None:
    """The OpenTelemetry calls and attempts of injected outcomes carry seawall.injected=True."""
    with sdk_provider() as (provider, reader):
        handle = seawall.otel_metrics(provider)
        try:
            point = rehearsal("exported")
            run(point)
            points = read(reader)
        finally:
            handle.close()
    stats = point.stats()
    assert total(points, "seawall.calls", point="exported", injected=True) \
        == stats.injected_failures
    assert total(points, "seawall.calls", point="exported") == 60
    assert total(points, "seawall.attempts", point="exported", injected=True) \
        == stats.injected_attempts
    real = [attrs for attrs, _ in points["seawall.calls"] if "seawall.injected" not in attrs]
    assert real  # real series keep their attributes, without the key
