"""The recorder: every event counted once, bounded memory, a failing store never hurts the app."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import seawall
from seawall.storage import Recorder, Store
from seawall.testing import FakeClock


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(f"sqlite:///{tmp_path / 'metrics.db'}", busy_timeout=0.05)
    yield s
    s.close()


@pytest.fixture
def recorder(store: Store) -> Iterator[Recorder]:
    # a long interval: the tests flush explicitly
    r = Recorder(store, flush_interval=60.0)
    yield r
    r.close()


def _timeouts(events: list[seawall.Event]) -> int:
    return sum(1 for e in events
               if isinstance(e, seawall.AttemptEvent) and e.category is seawall.Category.TIMEOUT)


async def test_every_outcome_is_stored_exactly_as_the_point_counts_it(
        recorder: Recorder, store: Store) -> None:
    """Successes, failures by category, retries, every refusal, fallbacks, cancellations, timeouts."""
    seen: list[seawall.Event] = []
    clock = FakeClock()
    point = seawall.IntegrationPoint(
        "catalog",
        retry=seawall.Retry(attempts=3, backoff=seawall.Backoff.constant(0.0),
                            budget=seawall.RetryBudget(ratio=0.0, minimum_per_second=0.2)),
        breaker=seawall.CircuitBreaker(failure_rate=0.5, minimum_calls=10, window=10, open_for=30.0),
        bulkhead=seawall.Bulkhead(max_concurrent=1),
        clock=clock,
    )
    point.add_hook(seen.append)
    budgeted = iter(range(100))

    def flaky() -> str:
        if next(budgeted) % 2 == 0:
            raise ConnectionError("reset")
        return "ok"

    def slow() -> None:
        raise TimeoutError("read timed out")

    def broken() -> None:
        raise ValueError("bad request")

    assert point.call(flaky) == "ok"  # one retry
    assert point.call(lambda: "fine") == "fine"
    with pytest.raises(TimeoutError):
        point.call(slow)  # three timed-out attempts; the budget may refuse a retry
    with pytest.raises(ValueError):
        point.call(broken)

    # the bulkhead's only permit is held by a call in another thread
    inside, release = threading.Event(), threading.Event()
    holder = threading.Thread(target=point.call, args=(lambda: (inside.set(), release.wait(5)),))
    holder.start()
    assert inside.wait(5)
    with pytest.raises(seawall.BulkheadFullError):
        point.call(lambda: "never runs")
    release.set()
    holder.join(5)

    async def hang() -> None:
        await asyncio.sleep(10)

    task = asyncio.ensure_future(point.acall(hang))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    for _ in range(10):  # fail until the breaker opens and refuses one call
        try:
            point.call(broken)
        except ValueError:
            continue
        except seawall.CircuitOpenError:
            break
    assert point.breaker_state is seawall.BreakerState.OPEN

    with_fallback = seawall.IntegrationPoint("catalog", fallback=seawall.Fallback(value="cached"))
    with_fallback.add_hook(seen.append)
    assert with_fallback.call(slow) == "cached"

    assert recorder.flush()
    [summary] = store.summary("catalog")
    stats = point.stats()
    extra = with_fallback.stats()
    assert summary.calls == stats.calls + extra.calls
    assert summary.successes == stats.successes
    assert summary.failures == stats.failures + extra.failures
    assert summary.retries == stats.retries
    assert summary.rejected == stats.rejected
    assert summary.cancelled == stats.cancelled == 1
    assert summary.fallbacks == extra.fallbacks == 1
    assert summary.timeouts == _timeouts(seen) >= 2
    expected_categories = {k: v + extra.failures_by_category[k]
                           for k, v in stats.failures_by_category.items() if k != "cancelled"}
    assert dict(summary.failures_by_category) == expected_categories
    assert dict(summary.rejections_by_reason) == stats.rejections
    assert stats.rejections["breaker"] == stats.rejections["bulkhead"] == 1
    assert stats.rejections["budget"] >= 1
    assert summary.breaker_state == "open"
    assert summary.p99_ms >= summary.p50_ms > 0


def test_breaker_transitions_are_stored_with_their_reason(recorder: Recorder,
                                                          store: Store) -> None:
    """Each transition becomes a row: from, to, reason, and the process that saw it."""
    clock = FakeClock()
    point = seawall.IntegrationPoint(
        "ledger", breaker=seawall.CircuitBreaker(failure_rate=0.5, minimum_calls=2, window=2,
                                                 open_for=5.0, half_open_calls=1), clock=clock)

    def fail() -> None:
        raise ConnectionError("down")

    for _ in range(2):
        with pytest.raises(ConnectionError):
            point.call(fail)
    clock.advance(6.0)
    point.call(lambda: None)  # the trial call closes it again
    recorder.flush()
    rows = store.transitions("ledger")
    assert [(t.from_state, t.to_state) for t in rows] == [
        ("closed", "open"), ("open", "half_open"), ("half_open", "closed")]
    assert all(t.reason and t.pid == recorder.pid and t.host == recorder.host for t in rows)


def test_a_full_queue_drops_and_counts_without_blocking(store: Store) -> None:
    """Beyond ``max_pending`` queued events, events are dropped and counted; calls go on."""
    recorder = Recorder(store, flush_interval=60.0, drain_interval=60.0, max_pending=5)
    try:
        point = seawall.IntegrationPoint("search")
        for _ in range(100):
            point.call(lambda: None)  # each success is an attempt event and a call event
        assert recorder.dropped == 195
    finally:
        recorder.close()
    [summary] = store.summary("search")
    assert summary.calls == 2  # the calls among the five events that fit


def test_a_failing_store_is_logged_retried_and_loses_nothing(
        recorder: Recorder, store: Store, caplog: pytest.LogCaptureFixture) -> None:
    """While another connection holds the database, flushes fail quietly; the next one catches up."""
    store.ensure_schema()
    point = seawall.IntegrationPoint("billing")
    blocker = sqlite3.connect(store.engine.url.database, isolation_level=None)
    try:
        blocker.execute("BEGIN EXCLUSIVE")
        for _ in range(10):
            point.call(lambda: None)
        with caplog.at_level(logging.WARNING, logger="seawall.storage"):
            assert recorder.flush() is False
        assert recorder.failed_flushes == 1
        assert "keeping them for the next attempt" in caplog.text
        for _ in range(5):
            point.call(lambda: None)  # the application never noticed
        blocker.execute("ROLLBACK")
    finally:
        blocker.close()
    assert recorder.flush() is True
    [summary] = store.summary("billing")
    assert summary.calls == summary.successes == 15


def test_close_flushes_everything_and_stops_recording(recorder: Recorder, store: Store) -> None:
    """``close()`` writes what is pending, unsubscribes, and may be called twice."""
    point = seawall.IntegrationPoint("mailer")
    for _ in range(7):
        point.call(lambda: None)
    recorder.close()
    recorder.close()
    point.call(lambda: None)  # no longer recorded
    [summary] = store.summary("mailer")
    assert summary.calls == 7
    assert recorder.closed


def test_persist_metrics_reads_the_url_from_the_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a URL, ``SEAWALL_METRICS_URL`` names the store; asking twice returns the same recorder."""
    url = f"sqlite:///{tmp_path / 'env.db'}"
    monkeypatch.setenv("SEAWALL_METRICS_URL", url)
    recorder = seawall.persist_metrics(flush_interval=0.05)
    try:
        assert recorder.store.url == url
        assert seawall.persist_metrics(url) is recorder
        point = seawall.IntegrationPoint("env")
        point.call(lambda: None)
    finally:
        recorder.close()
    [summary] = Store(url).summary("env")
    assert summary.calls == 1


def test_the_background_thread_flushes_every_interval(store: Store) -> None:
    """Without any explicit flush, data reaches the store within a few intervals."""
    recorder = Recorder(store, flush_interval=0.05)
    try:
        seawall.IntegrationPoint("tick").call(lambda: None)
        for _ in range(200):  # bounded: 200 checks, each after at least one interval
            if recorder.flushes:
                break
            threading.Event().wait(0.05)
        assert store.summary("tick")[0].calls == 1
    finally:
        recorder.close()


def test_bad_options_are_refused_with_the_field_name(store: Store) -> None:
    """Options are validated up front with a message naming the option."""
    with pytest.raises(seawall.ConfigurationError, match="flush_interval"):
        Recorder(store, flush_interval=0)
    with pytest.raises(seawall.ConfigurationError, match="max_pending"):
        Recorder(store, max_pending=0)


def test_latencies_land_in_the_histogram_bucket_of_their_duration(recorder: Recorder,
                                                                  store: Store) -> None:
    """The aggregation's inlined bucketing agrees with the histogram module, at both ends too."""
    from seawall.storage import _histogram as hist
    from seawall.storage._schema import H0

    durations = [0.0, 5e-6, 1e-5, 0.0123, 0.5, 7.0, 1e6]
    now = time.time()
    for d in durations:
        recorder.hook(seawall.CallEvent("timing", "op", None, 1, d, now, False, None))
    recorder.hook(seawall.CallEvent("x" * 300, "op", None, 1, 0.1, now, False, None))
    assert recorder.flush()
    with store.engine.connect() as conn:
        row = conn.exec_driver_sql(
            "SELECT * FROM seawall_minute WHERE point = 'timing'").mappings().one()
    histogram = [row[f"h{i:02d}"] for i in range(hist.BUCKETS)]
    want = [0] * hist.BUCKETS
    for d in durations:
        want[hist.bucket_of(d)] += 1
    assert histogram == want
    assert H0 > 0
    assert [p.name for p in store.points() if p.name.startswith("x")] == ["x" * 200]
