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
from tests.metrics_support import unprivileged_prefix


@pytest.fixture
def unprivileged() -> list[str]:
    prefix = unprivileged_prefix()
    if prefix is None:
        pytest.skip("setpriv (util-linux) is needed to drop root for this test")
    return prefix


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

    hanging = asyncio.Event()

    async def hang() -> None:
        hanging.set()
        await asyncio.sleep(10)

    task = asyncio.ensure_future(point.acall(hang))
    await asyncio.wait_for(hanging.wait(), 5)  # the call is in its work
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
                           for k, v in stats.failures_by_category.items()}
    assert dict(summary.failures_by_category) == expected_categories
    # the store keeps the reasons it has columns for (not yet rate_limit / paused)
    stored = dict(summary.rejections_by_reason)
    assert stored == {reason: stats.rejections[reason] for reason in stored}
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
    """Beyond ``max_pending`` queued calls, events are dropped and counted; calls go on."""
    recorder = Recorder(store, flush_interval=60.0, drain_interval=60.0, max_pending=5)
    try:
        point = seawall.IntegrationPoint("search")
        for _ in range(100):
            # each success is an attempt event (not queued: the recorder reads only
            # timed-out attempts) and a call event
            point.call(lambda: None)
        assert recorder.dropped == 95
    finally:
        recorder.close()
    [summary] = store.summary("search")
    assert summary.calls == 5  # the five call events that fit


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


# -- a store that cannot be used is refused at once; a store that hangs delays exit boundedly --


def _not_a_database(tmp_path: Path) -> str:
    path = tmp_path / "notsqlite.db"
    path.write_text("these are not the tables you are looking for\n")
    return str(path)


@pytest.mark.parametrize(("make_url", "message"), [
    (_not_a_database, "notsqlite.db is not a SQLite database"),
    (lambda tmp: str(tmp / "missing" / "metrics.db"), "the folder .*missing does not exist"),
    (lambda tmp: "bogus://x", "bogus://x: SQLAlchemy knows no database 'bogus'"),
    (lambda tmp: "mysql://metrics@127.0.0.1/seawall",
     "needs the database driver 'MySQLdb', not installed: pip install mysqlclient"),
    (lambda tmp: "postgresql+psycopg2://metrics@127.0.0.1/seawall",
     "needs the database driver 'psycopg2'.*seawall\\[postgresql\\]"),
])
def test_persist_metrics_refuses_a_store_it_cannot_use_and_says_what_to_do(
        tmp_path: Path, make_url: object, message: str) -> None:
    """The URL is checked and the store opened when persist_metrics is called, not at exit."""
    url = make_url(tmp_path)  # type: ignore[operator]
    started = time.monotonic()
    with pytest.raises(seawall.ConfigurationError, match=message):
        seawall.persist_metrics(url)
    assert time.monotonic() - started < 5.0


def test_a_folder_this_user_cannot_write_is_refused_at_once(unprivileged: list[str]) -> None:
    """A read-only folder: persist_metrics raises naming the file and the permissions to fix."""
    import os
    import subprocess
    import sys
    import tempfile

    folder = tempfile.mkdtemp(prefix="seawall-ro-")
    try:
        os.chmod(folder, 0o555)
        script = ("import seawall\n"
                  "try:\n"
                  f"    seawall.persist_metrics({os.path.join(folder, 'metrics.db')!r})\n"
                  "except seawall.ConfigurationError as exc:\n"
                  "    print(exc)\n"
                  "else:\n"
                  "    print('accepted')\n")
        done = subprocess.run([*unprivileged, sys.executable, "-c", script], capture_output=True,
                              text=True, timeout=60, cwd=folder)
    finally:
        os.chmod(folder, 0o755)
        os.rmdir(folder)
    assert done.returncode == 0, done.stderr
    assert "cannot write the metrics store" in done.stdout
    assert "fix the permissions" in done.stdout


def test_close_waits_at_most_close_timeout_for_a_hung_store_and_counts_the_loss(
        tmp_path: Path) -> None:
    """A write stuck behind another process's lock delays close() by close_timeout, no more."""
    store = Store(f"sqlite:///{tmp_path / 'locked.db'}", busy_timeout=5.0)  # writes wait 5 s
    store.ensure_schema()
    recorder = Recorder(store, flush_interval=3600.0, close_timeout=0.5)
    point = seawall.IntegrationPoint("stuck")
    blocker = sqlite3.connect(store.engine.url.database, isolation_level=None)
    try:
        blocker.execute("BEGIN EXCLUSIVE")
        for _ in range(100):
            point.call(lambda: None)
        started = time.monotonic()
        recorder.close()
        assert time.monotonic() - started < 2.5  # 0.5 s asked; slack for a loaded machine
        assert recorder.dropped == 100
        blocker.execute("ROLLBACK")
        recorder._thread.join(30)  # the stuck write ends, one way or the other
        assert not recorder._thread.is_alive()
    finally:
        if blocker.in_transaction:
            blocker.execute("ROLLBACK")
        blocker.close()
    # every call is either in the store (the loss taken back) or counted as dropped
    stored = store.summary("stuck")
    assert recorder.dropped + (stored[0].calls if stored else 0) == 100
    store.close()


def test_giving_up_counts_the_queued_calls_and_breaker_transitions(store: Store) -> None:
    """What still waits in the queue when close() gives up counts: each call, each transition."""
    recorder = Recorder(store, flush_interval=3600.0, drain_interval=3600.0)  # never drains
    point = seawall.IntegrationPoint("queued")
    try:
        for _ in range(3):
            point.call(lambda: None)
        recorder.hook(seawall.BreakerTransition("queued", "closed", "open", "test", time.time()))
        with recorder._lock:
            recorder._give_up()  # what close() does when the store never answers
        assert recorder.dropped == 3 + 1
    finally:
        recorder.close()
    assert store.summary("queued") == []


def test_what_a_failing_store_never_took_is_counted_in_dropped(store: Store) -> None:
    """Writes that keep failing until close_timeout: every call not written is in ``dropped``."""
    store.ensure_schema()
    recorder = Recorder(store, flush_interval=3600.0, close_timeout=0.3)
    point = seawall.IntegrationPoint("lost")
    blocker = sqlite3.connect(store.engine.url.database, isolation_level=None)
    try:
        blocker.execute("BEGIN EXCLUSIVE")  # each write fails after the 0.05 s busy timeout
        for _ in range(40):
            point.call(lambda: None)
        recorder.close()
        assert recorder.dropped == 40
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert store.summary("lost") == []


def test_a_process_exits_promptly_when_its_store_is_locked(tmp_path: Path) -> None:
    """At exit a locked store costs close_timeout (default 2 s), and the loss is reported."""
    import subprocess
    import sys

    path = tmp_path / "exit.db"
    Store(f"sqlite:///{path}").ensure_schema()
    script = ("import seawall, sys\n"
              f"seawall.persist_metrics({str(path)!r}, flush_interval=3600.0)\n"
              "point = seawall.IntegrationPoint('exiting')\n"
              "for _ in range(100):\n"
              "    point.call(lambda: None)\n"
              "print('recorded', flush=True)\n"
              "sys.stdin.readline()\n")
    blocker = sqlite3.connect(str(path), isolation_level=None)
    try:
        blocker.execute("BEGIN EXCLUSIVE")
        proc = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert proc.stdout is not None and proc.stdout.readline() == "recorded\n"
        started = time.monotonic()
        _, err = proc.communicate("\n", timeout=60)  # the script ends: exit hooks run
        elapsed = time.monotonic() - started
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert proc.returncode == 0, err
    assert elapsed < 4.5  # 2 s of close_timeout, slack for a loaded machine
    assert "100 calls and transitions not recorded" in err


def test_the_defaults_bound_the_exit_delay() -> None:
    """close_timeout defaults to 2 s, for persist_metrics and for a Recorder."""
    import inspect

    assert inspect.signature(seawall.persist_metrics).parameters["close_timeout"].default == 2.0
    assert inspect.signature(Recorder).parameters["close_timeout"].default <= 2.0


def test_a_sync_overrun_is_stored_as_a_success_and_a_timeout(recorder: Recorder,
                                                             store: Store) -> None:
    """What the point counts for an overrun (a success, a timeout) is what the store holds."""
    clock = FakeClock()
    point = seawall.IntegrationPoint("late", clock=clock, timeout=seawall.Timeout(attempt=0.1))

    def work() -> str:
        clock.advance(0.25)
        return "done"

    assert point.call(work) == "done"
    assert recorder.flush()
    [summary] = store.summary("late")
    assert (summary.calls, summary.successes, summary.failures, summary.timeouts) == (1, 1, 0, 1)
    assert point.stats().timeouts == summary.timeouts
