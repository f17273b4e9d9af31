"""seawall.otel_metrics() against the real OpenTelemetry SDK and its in-memory reader."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View

import seawall
from seawall._events import GLOBAL_HOOKS
from seawall._otel import DURATION_BOUNDARIES, OtelMetrics
from seawall.testing import FakeClock
from tests import metrics_support as ms
from tests.otel_support import Points, gauge, read, sdk_provider, series, total

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def sdk() -> Iterator[tuple[MeterProvider, InMemoryMetricReader]]:
    with sdk_provider() as found:
        yield found


@pytest.fixture
def otel(sdk: tuple[MeterProvider, InMemoryMetricReader]) -> Iterator[OtelMetrics]:
    handle = seawall.otel_metrics(sdk[0])
    yield handle
    handle.close()


def inventory(name: str) -> seawall.IntegrationPoint:
    """The metrics tests' point (3 attempts, no waits, no budget) under its own name."""
    return seawall.IntegrationPoint(name, retry=seawall.Retry(
        attempts=3, backoff=seawall.Backoff.constant(0.0), budget=None))


def run_inventory(point: seawall.IntegrationPoint, calls: int) -> None:
    @point
    def lookup(i: int, seen: dict[int, int]) -> int:
        return ms._attempt(i, seen)

    seen: dict[int, int] = {}
    for i in range(calls):
        try:
            lookup(i, seen)
        except (ValueError, ConnectionError):
            pass


def assert_inventory_counts(points: Points, name: str, t: ms.Totals) -> None:
    """Calls, attempts, retries and the duration counts of ``t`` for the point ``name``."""
    p = points
    assert total(p, "seawall.calls", point=name) == t.calls
    assert total(p, "seawall.calls", point=name, outcome="success") == t.successes
    assert total(p, "seawall.calls", point=name, outcome="failure",
                 category="transient") == t.transient
    assert total(p, "seawall.calls", point=name, outcome="failure",
                 category="permanent") == t.permanent
    assert total(p, "seawall.retries", point=name, category="transient") == t.retries
    assert total(p, "seawall.retries", point=name) == t.retries
    # every call made one attempt, plus one per retry
    assert total(p, "seawall.attempts", point=name) == t.calls + t.retries
    assert total(p, "seawall.attempts", point=name, outcome="success") == t.successes
    assert total(p, "seawall.call.duration", point=name) == t.calls
    assert total(p, "seawall.attempt.duration", point=name) == t.calls + t.retries
    assert total(p, "seawall.rejections", point=name) == 0


# -- no cost when not called ------------------------------------------------------


def test_nothing_is_imported_or_hooked_until_otel_metrics_is_called() -> None:
    """Importing seawall and calling through points loads no OpenTelemetry and adds no hook."""
    code = (
        "import sys\n"
        "import seawall\n"
        "from seawall._events import GLOBAL_HOOKS\n"
        "p = seawall.IntegrationPoint('quiet', breaker=seawall.CircuitBreaker(),\n"
        "                             bulkhead=seawall.Bulkhead(max_concurrent=2))\n"
        "p.call(len, 'abc')\n"
        "assert not [m for m in sys.modules if m.startswith('opentelemetry')], sys.modules\n"
        "assert GLOBAL_HOOKS.hooks == () and p.hooks.hooks == ()\n"
        "h = seawall.otel_metrics()\n"
        "assert 'opentelemetry.metrics' in sys.modules and len(GLOBAL_HOOKS.hooks) == 1\n"
        "h.close()\n"
        "assert GLOBAL_HOOKS.hooks == ()\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_without_the_api_installed_it_says_what_to_install() -> None:
    """No opentelemetry package: a ConfigurationError naming the extra, nothing hooked."""
    code = (
        "import sys\n"
        "sys.modules['opentelemetry'] = None  # what Python does for a package not installed\n"
        "import seawall\n"
        "from seawall._events import GLOBAL_HOOKS\n"
        "try:\n"
        "    seawall.otel_metrics()\n"
        "except seawall.ConfigurationError as exc:\n"
        "    print(exc)\n"
        "assert GLOBAL_HOOKS.hooks == ()\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "pip install 'seawall[otel]'" in done.stdout


# -- exact counts -------------------------------------------------------------------


def test_a_sync_workload_is_counted_exactly(otel: OtelMetrics, sdk: tuple[MeterProvider,
                                            InMemoryMetricReader]) -> None:
    """Calls by outcome and category, attempts, retries and durations match the script."""
    point = inventory("otel-sync")
    run_inventory(point, 100)
    found = read(sdk[1])
    assert_inventory_counts(found, "otel-sync", ms.expected(100))
    stats = point.stats()
    assert total(found, "seawall.calls", point="otel-sync") == stats.calls
    assert total(found, "seawall.attempts", point="otel-sync") == stats.attempts


def test_an_async_workload_is_counted_exactly(otel: OtelMetrics, sdk: tuple[MeterProvider,
                                              InMemoryMetricReader]) -> None:
    """Many asyncio tasks through one point: the same exact totals."""
    point = inventory("otel-async")

    @point
    async def alookup(i: int, seen: dict[int, int]) -> int:
        await asyncio.sleep(0)
        return ms._attempt(i, seen)

    async def worker() -> None:
        seen: dict[int, int] = {}
        for i in range(60):
            try:
                await alookup(i, seen)
            except (ValueError, ConnectionError):
                pass

    async def main() -> None:
        await asyncio.gather(*(worker() for _ in range(8)))

    asyncio.run(main())
    assert_inventory_counts(read(sdk[1]), "otel-async", ms.expected(60).times(8))


def test_threads_and_a_concurrent_reader_lose_and_double_nothing(
        otel: OtelMetrics, sdk: tuple[MeterProvider, InMemoryMetricReader]) -> None:
    """Eight threads call while another thread collects in a loop: the final totals are exact."""
    point = inventory("otel-threads")
    stop = threading.Event()
    collections = []

    def collector() -> None:
        while not stop.is_set() and len(collections) < 10_000:
            collections.append(total(read(sdk[1]), "seawall.calls", point="otel-threads"))

    reader_thread = threading.Thread(target=collector)
    reader_thread.start()
    workers = [threading.Thread(target=run_inventory, args=(point, 150)) for _ in range(8)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    stop.set()
    reader_thread.join()
    assert collections == sorted(collections)  # a cumulative counter never goes back
    assert_inventory_counts(read(sdk[1]), "otel-threads", ms.expected(150).times(8))
    assert otel.dropped == 0


def test_a_collection_records_what_is_queued_first(sdk: tuple[MeterProvider,
                                                   InMemoryMetricReader]) -> None:
    """With the background thread idle, a collection alone sees every call made before it."""
    with seawall.otel_metrics(sdk[0], drain_interval=3600.0):
        point = inventory("otel-collect")
        run_inventory(point, 30)
        assert_inventory_counts(read(sdk[1]), "otel-collect", ms.expected(30))


def test_the_breaker_opening_is_counted_and_its_state_shown(
        otel: OtelMetrics, sdk: tuple[MeterProvider, InMemoryMetricReader]) -> None:
    """Failures open the breaker (gauge 2); refusals are rejections; trials go 1, then 0."""
    clock = FakeClock()
    point = seawall.IntegrationPoint("otel-breaker", clock=clock, breaker=seawall.CircuitBreaker(
        failure_rate=0.5, minimum_calls=4, window=4, open_for=30.0, half_open_calls=2))
    down = True

    @point
    def charge() -> str:
        if down:
            raise ConnectionError("refused")
        return "ok"

    assert gauge(read(sdk[1]), "seawall.breaker.state", "otel-breaker") == 0
    for _ in range(4):
        with pytest.raises(ConnectionError):
            charge()
    for _ in range(3):
        with pytest.raises(seawall.CircuitOpenError):
            charge()
    found = read(sdk[1])
    assert gauge(found, "seawall.breaker.state", "otel-breaker") == 2
    assert total(found, "seawall.calls", point="otel-breaker", outcome="failure",
                 category="transient") == 4
    assert total(found, "seawall.calls", point="otel-breaker", outcome="rejected",
                 reason="breaker") == 3
    assert total(found, "seawall.rejections", point="otel-breaker", reason="breaker") == 3
    # refused calls never ran: no duration, no attempt
    assert total(found, "seawall.call.duration", point="otel-breaker") == 4
    assert total(found, "seawall.attempts", point="otel-breaker") == 4
    down = False
    clock.advance(30.0)
    assert charge() == "ok"
    assert gauge(read(sdk[1]), "seawall.breaker.state", "otel-breaker") == 1
    assert charge() == "ok"
    assert gauge(read(sdk[1]), "seawall.breaker.state", "otel-breaker") == 0


def test_points_without_a_breaker_or_bulkhead_report_no_gauge(
        otel: OtelMetrics, sdk: tuple[MeterProvider, InMemoryMetricReader]) -> None:
    """A gauge series exists only for a point that has the policy it shows."""
    point = seawall.IntegrationPoint("otel-plain")
    point.call(len, "x")
    found = read(sdk[1])
    assert gauge(found, "seawall.breaker.state", "otel-plain") is None
    assert gauge(found, "seawall.bulkhead.in_flight", "otel-plain") is None
    assert total(found, "seawall.calls", point="otel-plain") == 1


def test_points_of_one_name_show_the_worst_breaker_state(
        otel: OtelMetrics, sdk: tuple[MeterProvider, InMemoryMetricReader]) -> None:
    """Two live points named alike are one series: an open breaker shows over a closed one."""
    policy = seawall.CircuitBreaker(failure_rate=0.5, minimum_calls=1, window=1, open_for=60.0)
    closed = seawall.IntegrationPoint("otel-twins", breaker=policy)
    opened = seawall.IntegrationPoint("otel-twins", breaker=policy)

    def fail() -> None:
        raise ConnectionError("refused")

    with pytest.raises(ConnectionError):
        opened.call(fail)
    assert closed.breaker_state is seawall.BreakerState.CLOSED
    assert gauge(read(sdk[1]), "seawall.breaker.state", "otel-twins") == 2


def test_bulkhead_in_flight_counts_the_calls_holding_a_permit(
        otel: OtelMetrics, sdk: tuple[MeterProvider, InMemoryMetricReader]) -> None:
    """Three calls parked inside a bulkhead of 4 read 3; once they return, 0."""
    point = seawall.IntegrationPoint("otel-bulkhead",
                                     bulkhead=seawall.Bulkhead(max_concurrent=4, max_wait=0.0))
    inside = threading.Semaphore(0)
    release = threading.Event()

    @point
    def hold() -> None:
        inside.release()
        assert release.wait(30)

    threads = [threading.Thread(target=hold) for _ in range(3)]
    for t in threads:
        t.start()
    for _ in threads:
        assert inside.acquire(timeout=30)
    assert gauge(read(sdk[1]), "seawall.bulkhead.in_flight", "otel-bulkhead") == 3
    release.set()
    for t in threads:
        t.join()
    assert gauge(read(sdk[1]), "seawall.bulkhead.in_flight", "otel-bulkhead") == 0
    assert total(read(sdk[1]), "seawall.calls", point="otel-bulkhead", outcome="success") == 3


def test_fallback_and_cancelled_outcomes(otel: OtelMetrics, sdk: tuple[MeterProvider,
                                         InMemoryMetricReader]) -> None:
    """A call answered by the fallback and a cancelled task carry their own outcomes."""
    point = seawall.IntegrationPoint("otel-outcomes", fallback=seawall.Fallback(value="cached"))

    @point
    def lookup() -> str:
        raise ConnectionError("refused")

    assert lookup() == "cached"

    @point
    async def slow(started: asyncio.Event) -> None:
        started.set()
        await asyncio.sleep(60)

    async def cancel_one() -> None:
        started = asyncio.Event()
        task = asyncio.ensure_future(slow(started))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancel_one())
    found = read(sdk[1])
    [(attributes, dp)] = series(found, "seawall.calls", point="otel-outcomes", outcome="fallback")
    assert attributes["seawall.category"] == "transient" and dp.value == 1
    [(attributes, dp)] = series(found, "seawall.calls", point="otel-outcomes",
                                outcome="cancelled")
    assert "seawall.category" not in attributes and dp.value == 1
    assert total(found, "seawall.calls", point="otel-outcomes") == 2


# -- cardinality ----------------------------------------------------------------------


def test_operations_beyond_the_limit_fold_into_other_and_are_counted(
        sdk: tuple[MeterProvider, InMemoryMetricReader]) -> None:
    """With max_operations=3, the 4th and 5th operations are exported as ``_other``."""
    with seawall.otel_metrics(sdk[0], max_operations=3) as handle:
        point = seawall.IntegrationPoint("otel-fold")
        for i in range(5):
            for _ in range(i + 1):  # operation op{i} is called i + 1 times
                point.run(lambda _timeout: None, operation=f"op{i}")
        found = read(sdk[1])
        operations = {a["seawall.operation"]: dp.value
                      for a, dp in series(found, "seawall.calls", point="otel-fold")}
        assert operations == {"op0": 1, "op1": 2, "op2": 3, "_other": 4 + 5}
        durations = {a["seawall.operation"]
                     for a, _ in series(found, "seawall.attempt.duration", point="otel-fold")}
        assert durations == {"op0", "op1", "op2", "_other"}
        assert handle.folded == {"otel-fold": 9}
        assert total(found, "seawall.otel.folded_calls", point="otel-fold") == 9
        # a known operation stays itself after the limit is reached
        point.run(lambda _timeout: None, operation="op0")
        assert total(read(sdk[1]), "seawall.calls", point="otel-fold", operation="op0") == 2


def test_the_default_limit_is_100_operations_per_point(otel: OtelMetrics, sdk: tuple[
        MeterProvider, InMemoryMetricReader]) -> None:
    """101 operations: 100 keep their names, the last one is ``_other``; other points are apart."""
    point = seawall.IntegrationPoint("otel-hundred")
    other = seawall.IntegrationPoint("otel-hundred-b")
    for i in range(101):
        point.run(lambda _timeout: None, operation=f"op{i}")
    other.run(lambda _timeout: None, operation="op100")
    found = read(sdk[1])
    names = {a["seawall.operation"] for a, _ in series(found, "seawall.calls",
                                                       point="otel-hundred")}
    assert len(names) == 101 and "_other" in names and "op100" not in names
    assert otel.folded["otel-hundred"] == 1 and "otel-hundred-b" not in otel.folded
    assert total(found, "seawall.calls", point="otel-hundred-b", operation="op100") == 1


# -- histograms -------------------------------------------------------------------------


def test_durations_use_the_advised_boundaries_in_seconds(
        otel: OtelMetrics, sdk: tuple[MeterProvider, InMemoryMetricReader]) -> None:
    """Explicit buckets from 100 µs to 60 s; the unit is seconds; a 20 ms call lands by 25 ms."""
    clock = FakeClock()
    point = seawall.IntegrationPoint("otel-buckets", clock=clock)

    def work(_timeout: float | None) -> None:
        clock.advance(0.020)

    point.run(work, operation="work")
    data = sdk[1].get_metrics_data()
    assert data is not None
    metrics = {m.name: m for r in data.resource_metrics for s in r.scope_metrics
               for m in s.metrics if s.scope.name == "seawall"}
    assert metrics["seawall.call.duration"].unit == "s"
    [dp] = [dp for dp in metrics["seawall.call.duration"].data.data_points
            if dp.attributes["seawall.point"] == "otel-buckets"]
    assert tuple(dp.explicit_bounds) == DURATION_BOUNDARIES
    assert DURATION_BOUNDARIES[0] == 0.0001 and DURATION_BOUNDARIES[-1] == 60.0
    assert dp.count == 1 and dp.sum == pytest.approx(0.020)
    assert dp.bucket_counts[DURATION_BOUNDARIES.index(0.025)] == 1


def test_a_view_can_make_the_durations_exponential() -> None:
    """The SDK's exponential histogram, chosen by a View, receives the same counts."""
    view = View(instrument_name="seawall.*.duration",
                aggregation=ExponentialBucketHistogramAggregation(max_size=160))
    with sdk_provider(view) as (provider, reader), seawall.otel_metrics(provider):
        point = inventory("otel-exponential")
        run_inventory(point, 40)
        found = read(reader)
        [(_, dp)] = series(found, "seawall.call.duration", point="otel-exponential",
                           outcome="success")
        assert type(dp).__name__ == "ExponentialHistogramDataPoint"
        assert dp.count == ms.expected(40).successes
        assert_inventory_counts(found, "otel-exponential", ms.expected(40))


def test_durations_false_leaves_the_histograms_out(
        sdk: tuple[MeterProvider, InMemoryMetricReader]) -> None:
    """``durations=False``: counters as before, no duration data point."""
    with seawall.otel_metrics(sdk[0], durations=False):
        run_inventory(inventory("otel-nodur"), 20)
        found = read(sdk[1])
        assert total(found, "seawall.calls", point="otel-nodur") == 20
        assert series(found, "seawall.call.duration", point="otel-nodur") == []
        assert series(found, "seawall.attempt.duration", point="otel-nodur") == []


# -- the handle -------------------------------------------------------------------------


def test_the_same_provider_gets_the_same_handle(
        sdk: tuple[MeterProvider, InMemoryMetricReader]) -> None:
    """Idempotent: one hook, one count per call, however often it is called."""
    first = seawall.otel_metrics(sdk[0])
    try:
        assert seawall.otel_metrics(sdk[0]) is first
        assert seawall.otel_metrics(sdk[0], max_operations=100) is first
        hooks = [h for h in GLOBAL_HOOKS.hooks if "otel_metrics" in (h.__doc__ or "")]
        assert len(hooks) == 1
        seawall.IntegrationPoint("otel-once").call(len, "x")
        assert total(read(sdk[1]), "seawall.calls", point="otel-once") == 1
        with pytest.raises(seawall.ConfigurationError,
                           match=r"already running .* with max_operations=100"):
            seawall.otel_metrics(sdk[0], max_operations=5)
    finally:
        first.close()


def test_close_unhooks_silences_the_gauges_and_a_new_handle_starts_again(
        sdk: tuple[MeterProvider, InMemoryMetricReader]) -> None:
    """After close, calls are not counted and gauges report nothing; reopening counts again."""
    point = seawall.IntegrationPoint("otel-close", breaker=seawall.CircuitBreaker())
    first = seawall.otel_metrics(sdk[0])
    point.call(len, "x")
    first.close()
    first.close()  # idempotent
    assert first.closed and first._hook not in GLOBAL_HOOKS.hooks
    point.call(len, "x")
    found = read(sdk[1])
    assert total(found, "seawall.calls", point="otel-close") == 1  # counted before close
    assert gauge(found, "seawall.breaker.state", "otel-close") is None
    second = seawall.otel_metrics(sdk[0])
    try:
        assert second is not first
        point.call(len, "x")
        found = read(sdk[1])
        assert total(found, "seawall.calls", point="otel-close") == 2
        assert gauge(found, "seawall.breaker.state", "otel-close") == 0
    finally:
        second.close()


def test_two_providers_each_get_every_event() -> None:
    """Two providers, two handles: each counts every call once."""
    with sdk_provider() as (p1, r1), sdk_provider() as (p2, r2), \
            seawall.otel_metrics(p1) as h1, seawall.otel_metrics(p2) as h2:
        assert h1 is not h2
        point = seawall.IntegrationPoint("otel-two")
        for _ in range(5):
            point.call(len, "x")
        assert total(read(r1), "seawall.calls", point="otel-two") == 5
        assert total(read(r2), "seawall.calls", point="otel-two") == 5


def test_a_full_queue_drops_and_counts_never_blocks(
        sdk: tuple[MeterProvider, InMemoryMetricReader]) -> None:
    """``max_pending=10`` with the thread idle: 50 calls (100 events) drop 90, counted."""
    with seawall.otel_metrics(sdk[0], max_pending=10, drain_interval=3600.0) as handle:
        point = seawall.IntegrationPoint("otel-full")
        for _ in range(50):
            point.call(len, "x")
        assert handle.dropped == 90
        assert total(read(sdk[1]), "seawall.calls", point="otel-full") == 5


def test_the_global_provider_also_one_set_later() -> None:
    """``otel_metrics()`` before the application sets its global provider: exported there."""
    code = (
        "from opentelemetry import metrics\n"
        "from opentelemetry.sdk.metrics import MeterProvider\n"
        "from opentelemetry.sdk.metrics.export import InMemoryMetricReader\n"
        "import seawall\n"
        "handle = seawall.otel_metrics()\n"
        "reader = InMemoryMetricReader()\n"
        "provider = MeterProvider(metric_readers=[reader])\n"
        "metrics.set_meter_provider(provider)\n"
        "assert seawall.otel_metrics(provider) is handle is seawall.otel_metrics()\n"
        "point = seawall.IntegrationPoint('late')\n"
        "for _ in range(7):\n"
        "    point.call(len, 'x')\n"
        "data = reader.get_metrics_data()\n"
        "calls = [dp.value for r in data.resource_metrics for s in r.scope_metrics\n"
        "         for m in s.metrics if m.name == 'seawall.calls' for dp in m.data.data_points]\n"
        "print(calls)\n"
        "handle.close()\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[7]"


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"max_operations": 0}, "max_operations must be an int >= 1, got 0"),
    ({"max_operations": "100"}, "max_operations must be an int >= 1, got '100'"),
    ({"max_operations": True}, "max_operations must be an int >= 1, got True"),
    ({"max_pending": -1}, "max_pending must be an int >= 1, got -1"),
    ({"durations": "yes"}, "durations must be True or False, got 'yes'"),
    ({"drain_interval": 0}, "drain_interval must be > 0 seconds, got 0"),
    ({"drain_interval": float("nan")}, "drain_interval must be > 0 seconds, got nan"),
    ({"meter_provider": object()}, "meter_provider must be an OpenTelemetry MeterProvider"),
])
def test_bad_options_are_refused_naming_the_field(kwargs: dict[str, object],
                                                  message: str) -> None:
    """Each bad option raises ConfigurationError with its name and value; nothing is hooked."""
    before = GLOBAL_HOOKS.hooks
    with pytest.raises(seawall.ConfigurationError) as caught:
        seawall.otel_metrics(**kwargs)  # type: ignore[arg-type]
    assert message in str(caught.value)
    assert GLOBAL_HOOKS.hooks == before
