"""Prometheus: /metrics and prometheus_collector() expose the store's totals, exactly and by the rules."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

import seawall
from seawall.storage import SeawallCollector, Store, prometheus_collector, serve_http
from seawall.storage._prometheus import BREAKER_STATES, bucket_bounds
from tests.web_support import vector

NOW = 1_700_000_000.0
MINUTE = int(NOW // 60)
# (host, pid, point, operation, minute, latencies in seconds of the calls that ran, vector options)
ROWS: list[tuple[str, int, str, str, int, list[float], dict[str, Any]]] = [
    ("web-1", 101, "payments", "charge", MINUTE, [0.004] * 7 + [0.2] * 2 + [150.0],
     {"successes": 7, "failures": {"transient": 2, "permanent": 1}, "rejected": 3,
      "retries": 4, "refused": {"breaker": 3, "budget": 1}, "fallbacks": 1, "timeouts": 2}),
    ("web-1", 102, "payments", "charge", MINUTE, [0.004] * 5, {"successes": 5}),
    ("web-1", 101, "payments", "charge", MINUTE - 3 * 1440, [0.01], {"successes": 1}),
    ("web-2", 201, "payments", "refund", MINUTE - 1, [0.03, 0.03], {"successes": 2}),
    ("web-2", 201, "search", "lookup", MINUTE, [0.0005] * 9 + [2.0],
     {"successes": 10, "cancelled": 1}),
]
TRANSITIONS = [  # (host, pid, point, from, to, time): stored in this order
    ("web-1", 102, "payments", "closed", "open", NOW - 90),
    ("web-2", 201, "search", "closed", "forced_open", NOW - 50),
    ("web-1", 101, "payments", "closed", "open", NOW - 100),
    ("web-1", 101, "payments", "open", "half_open", NOW - 70),  # stored last: the host's latest
]


def _fill(store: Store) -> None:
    for host, pid, point, operation, minute, latencies, options in ROWS:
        spread: dict[float, int] = {}
        for seconds in latencies:
            spread[seconds] = spread.get(seconds, 0) + 1
        store.write({(point, operation, minute): vector(latencies=spread, **options)},
                    host=host, pid=pid)
    for host, pid, point, old, new, when in TRANSITIONS:
        store.write({}, [seawall.BreakerTransition(point, old, new, "scripted", when)],
                    host=host, pid=pid)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(f"sqlite:///{tmp_path / 'metrics.db'}")
    _fill(s)
    yield s
    s.close()


def _families(body: str) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(body)}


def _value(family: Any, sample: str, **labels: str) -> float:
    found = [s.value for s in family.samples if s.name == sample and s.labels == labels]
    assert len(found) == 1, (sample, labels, [s.labels for s in family.samples][:5])
    return float(found[0])


def _expected(point: str, operation: str, host: str) -> dict[str, Any]:
    """Totals of ROWS for one label set, added up here without the store."""
    rows = [r for r in ROWS if r[2:4] == (point, operation) and r[0] == host]
    latencies = [s for r in rows for s in r[5]]
    out: dict[str, Any] = {"latencies": latencies}
    for key in ("successes", "rejected", "cancelled", "retries", "fallbacks", "timeouts"):
        out[key] = sum(r[6].get(key, 0) for r in rows)
    for key in ("failures", "refused"):
        merged: dict[str, int] = {}
        for r in rows:
            for name, n in r[6].get(key, {}).items():
                merged[name] = merged.get(name, 0) + n
        out[key] = merged
    return out


def _scrape(collector: SeawallCollector) -> str:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return generate_latest(registry).decode()


def test_counters_are_the_stores_totals_per_point_operation_and_host(store: Store) -> None:
    """Each counter equals the rows' sum over every minute, day and process of its labels."""
    families = _families(_scrape(SeawallCollector(store)))
    for point, operation, host in {(r[2], r[3], r[0]) for r in ROWS}:
        want = _expected(point, operation, host)
        labels = {"point": point, "operation": operation, "host": host}
        calls = families["seawall_calls"]
        assert _value(calls, "seawall_calls_total", **labels, outcome="success") == want["successes"]
        assert _value(calls, "seawall_calls_total", **labels, outcome="failure") == sum(
            want["failures"].values())
        assert _value(calls, "seawall_calls_total", **labels, outcome="rejected") == want["rejected"]
        assert _value(calls, "seawall_calls_total", **labels,
                      outcome="cancelled") == want["cancelled"]
        for category in ("transient", "timeout", "rate_limited", "unavailable", "permanent"):
            assert _value(families["seawall_failures"], "seawall_failures_total", **labels,
                          category=category) == want["failures"].get(category, 0)
        for reason in ("breaker", "bulkhead", "budget", "deadline"):
            assert _value(families["seawall_rejections"], "seawall_rejections_total", **labels,
                          reason=reason) == want["refused"].get(reason, 0)
        assert _value(families["seawall_retries"], "seawall_retries_total",
                      **labels) == want["retries"]
        assert _value(families["seawall_fallbacks"], "seawall_fallbacks_total",
                      **labels) == want["fallbacks"]
        assert _value(families["seawall_attempt_timeouts"], "seawall_attempt_timeouts_total",
                      **labels) == want["timeouts"]


def test_the_histogram_counts_exactly_at_every_boundary(store: Store) -> None:
    """Each ``le`` count is the number of calls that took at most that long; +Inf, sum and count too."""
    family = _families(_scrape(SeawallCollector(store)))["seawall_call_duration_seconds"]
    assert family.type == "histogram"
    for point, operation, host in {(r[2], r[3], r[0]) for r in ROWS}:
        latencies = _expected(point, operation, host)["latencies"]
        labels = {"point": point, "operation": operation, "host": host}
        buckets = [(s.labels["le"], s.value) for s in family.samples
                   if s.name.endswith("_bucket")
                   and {k: v for k, v in s.labels.items() if k != "le"} == labels]
        assert [le for le, _ in buckets] == [repr(b) for _, b in bucket_bounds()] + ["+Inf"]
        for le, value in buckets:
            bound = float("inf") if le == "+Inf" else float(le)
            assert value == sum(1 for s in latencies if s <= bound), (labels, le)
        assert _value(family, "seawall_call_duration_seconds_count", **labels) == len(latencies)
        assert _value(family, "seawall_call_duration_seconds_sum", **labels) == pytest.approx(
            sum(latencies))


def test_the_boundaries_are_one_per_doubling_from_10_microseconds() -> None:
    """The documented default: le = 10 µs * 2**k, k = 0..23, written exactly."""
    bounds = [b for _, b in bucket_bounds()]
    assert bounds == [float(f"{10e-6 * 2 ** k:.7g}") for k in range(24)]
    assert bounds[:3] == [1e-05, 2e-05, 4e-05] and bounds[-1] == 83.88608
    assert len(bucket_bounds(2)) == 48 and len(bucket_bounds(4)) == 95


@pytest.mark.parametrize("per_doubling", [2, 4])
def test_finer_histograms_count_exactly_too(store: Store, per_doubling: int) -> None:
    """With 2 or 4 boundaries per doubling every cumulative count is still exact."""
    collector = SeawallCollector(store, buckets_per_doubling=per_doubling)
    family = _families(_scrape(collector))["seawall_call_duration_seconds"]
    latencies = _expected("payments", "charge", "web-1")["latencies"]
    buckets = [s for s in family.samples if s.name.endswith("_bucket")
               and s.labels["point"] == "payments" and s.labels["host"] == "web-1"]
    assert len(buckets) == len(bucket_bounds(per_doubling)) + 1
    for s in buckets:
        assert s.value == sum(1 for x in latencies if x <= float(s.labels["le"]))


def test_a_bad_resolution_is_refused_with_its_value(store: Store) -> None:
    """buckets_per_doubling must be 1, 2 or 4."""
    with pytest.raises(seawall.ConfigurationError, match="buckets_per_doubling must be 1, 2 or 4, got 3"):
        SeawallCollector(store, buckets_per_doubling=3)


def test_breaker_state_is_the_latest_transition_of_each_host(store: Store) -> None:
    """One sample per state, 1 for the host's latest transition; closed where none was stored."""
    family = _families(_scrape(SeawallCollector(store)))["seawall_breaker_state"]
    assert family.type == "gauge"
    states = {}
    for s in family.samples:
        assert set(s.labels) == {"point", "host", "state"}
        if s.value == 1:
            states[(s.labels["point"], s.labels["host"])] = s.labels["state"]
    assert states == {("payments", "web-1"): "half_open", ("payments", "web-2"): "closed",
                      ("search", "web-2"): "forced_open"}
    assert len(family.samples) == 3 * len(BREAKER_STATES)


def test_a_pid_label_splits_every_process(store: Store) -> None:
    """With pid_label each process has its own counters and its own breaker state."""
    families = _families(_scrape(SeawallCollector(store, pid_label=True)))
    calls = families["seawall_calls"]
    labels = {"point": "payments", "operation": "charge", "host": "web-1"}
    assert _value(calls, "seawall_calls_total", **labels, pid="101", outcome="success") == 8
    assert _value(calls, "seawall_calls_total", **labels, pid="102", outcome="success") == 5
    states = {(s.labels["host"], s.labels["pid"]): s.labels["state"]
              for s in families["seawall_breaker_state"].samples
              if s.value == 1 and s.labels["point"] == "payments"}
    assert states == {("web-1", "101"): "half_open", ("web-1", "102"): "open",
                      ("web-2", "201"): "closed"}


def test_names_types_and_units_follow_the_prometheus_rules(store: Store) -> None:
    """Counters end in _total, the duration is in seconds, names and labels are snake case."""
    families = _families(_scrape(SeawallCollector(store)))
    types = {name: f.type for name, f in families.items()}
    assert types == {
        "seawall_calls": "counter", "seawall_failures": "counter", "seawall_retries": "counter",
        "seawall_rejections": "counter", "seawall_fallbacks": "counter",
        "seawall_attempt_timeouts": "counter", "seawall_call_duration_seconds": "histogram",
        "seawall_breaker_state": "gauge", "seawall_store_up": "gauge",
        "seawall_waits": "counter", "seawall_hedges": "counter",
        "seawall_concurrency_limit": "gauge",
    }
    for family in families.values():
        assert family.documentation
        for sample in family.samples:
            assert re.fullmatch(r"seawall_[a-z_]+", sample.name)
            assert all(re.fullmatch(r"[a-z_]+", label) for label in sample.labels)
            if family.type == "counter":
                assert sample.name == family.name + "_total"


def test_promtool_accepts_the_exposition(store: Store, tmp_path: Path) -> None:
    """``promtool check metrics`` (Debian's prometheus package) finds nothing to lint."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool (Debian package prometheus) is needed; .ci/browser-deps installs it")
    for collector in (SeawallCollector(store), SeawallCollector(store, pid_label=True)):
        done = subprocess.run([promtool, "check", "metrics"], input=_scrape(collector),
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0 and not done.stdout.strip(), done.stdout + done.stderr


def test_metrics_over_http_is_the_same_exposition(store: Store) -> None:
    """``GET /metrics`` answers the text format; OpenMetrics when asked; HEAD without a body."""
    with serve_http(store, "127.0.0.1:0") as web, httpx.Client(base_url=web.url) as client:
        answer = client.get("/metrics")
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
        assert _families(answer.text).keys() == _families(_scrape(SeawallCollector(store))).keys()
        assert _value(_families(answer.text)["seawall_calls"], "seawall_calls_total",
                      point="search", operation="lookup", host="web-2", outcome="cancelled") == 1
        open_metrics = client.get("/metrics", headers={"Accept": "application/openmetrics-text"})
        assert open_metrics.headers["content-type"].startswith("application/openmetrics-text")
        assert open_metrics.text.endswith("# EOF\n")
        names = {f.name for f in openmetrics_families(open_metrics.text)}
        assert {"seawall_calls", "seawall_call_duration_seconds"} <= names
        head = client.head("/metrics")
        assert head.status_code == 200 and head.content == b""


def test_a_failing_store_fails_the_scrape_with_503_and_the_server_goes_on(store: Store) -> None:
    """When the store cannot be read, /metrics answers 503 (the target is down), then recovers."""
    with serve_http(store, "127.0.0.1:0") as web, httpx.Client(base_url=web.url) as client:
        with store.engine.begin() as conn:
            conn.execute(text("ALTER TABLE seawall_day RENAME TO seawall_day_away"))
        answer = client.get("/metrics")
        assert answer.status_code == 503
        assert "metrics store unavailable" in answer.json()["error"]
        with store.engine.begin() as conn:
            conn.execute(text("ALTER TABLE seawall_day_away RENAME TO seawall_day"))
        assert client.get("/metrics").status_code == 200


def test_in_process_collector_reports_this_process_only(tmp_path: Path) -> None:
    """prometheus_collector() puts this host's and pid's rows on the given registry, nothing else."""
    url = f"sqlite:///{tmp_path / 'metrics.db'}"
    with closing(Store(url)) as store:
        store.write({("mine", "op", MINUTE): vector(successes=4)},
                    host=socket.gethostname(), pid=os.getpid())
        store.write({("theirs", "op", MINUTE): vector(successes=9)}, host="elsewhere", pid=1)
        registry = CollectorRegistry()
        collector = prometheus_collector(url, registry=registry)
        try:
            families = _families(generate_latest(registry).decode())
            points = {s.labels["point"] for s in families["seawall_calls"].samples}
            assert points == {"mine"}
            assert _value(families["seawall_calls"], "seawall_calls_total", point="mine",
                          operation="op", host=socket.gethostname(), outcome="success") == 4
            fleet = prometheus_collector(url, registry=CollectorRegistry(), fleet=True)
            assert {s.labels["point"] for s in
                    _families(_scrape(fleet))["seawall_calls"].samples} == {"mine", "theirs"}
        finally:
            registry.unregister(collector)
            collector.store.close()


def test_in_process_a_failing_store_reports_store_up_0_and_never_raises(tmp_path: Path,
                                                                         caplog: Any) -> None:
    """An application's own /metrics keeps working when the seawall store cannot be read."""
    missing = tmp_path / "no-such-folder" / "metrics.db"
    registry = CollectorRegistry()
    collector = prometheus_collector(f"sqlite:///{missing}", registry=registry)  # no read yet
    try:
        families = _families(generate_latest(registry).decode())
        assert set(families) == {"seawall_store_up"}
        assert _value(families["seawall_store_up"], "seawall_store_up") == 0
        assert "for Prometheus failed" in caplog.text
    finally:
        collector.store.close()


def test_the_default_registry_is_used_when_none_is_given(store: Store) -> None:
    """Without ``registry`` the collector lands on prometheus_client.REGISTRY (and can leave it)."""
    from prometheus_client import REGISTRY

    collector = prometheus_collector(store, fleet=True)
    try:
        body = generate_latest(REGISTRY).decode()
        assert 'seawall_calls_total{host="web-2",operation="lookup",outcome="success",point="search"} 10.0' in body
    finally:
        REGISTRY.unregister(collector)


def test_metrics_of_real_calls_match_the_points_own_counters(tmp_path: Path) -> None:
    """A point's calls recorded by a real Recorder come out of /metrics as the point counted them."""
    store = Store(f"sqlite:///{tmp_path / 'metrics.db'}")
    recorder = seawall.storage.Recorder(store, flush_interval=3600.0)
    point = seawall.IntegrationPoint(
        "inventory", retry=seawall.Retry(attempts=3, backoff=seawall.Backoff.constant(0.0),
                                         budget=None))
    failures = iter([True, False] * 20)

    def reserve(i: int) -> int:
        if i % 5 == 0 and next(failures):
            raise ConnectionError("flaky")
        if i % 7 == 0:
            raise ValueError("permanent")
        return i

    for i in range(40):
        try:
            point.call(reserve, i)
        except ValueError:
            pass
    recorder.close()
    stats = point.stats()
    try:
        with serve_http(store, "127.0.0.1:0") as web:
            families = _families(httpx.get(web.url + "metrics").text)
        labels = {"point": "inventory", "operation": reserve.__qualname__, "host": recorder.host}
        calls = families["seawall_calls"]
        assert _value(calls, "seawall_calls_total", **labels, outcome="success") == stats.successes
        assert _value(calls, "seawall_calls_total", **labels, outcome="failure") == stats.failures
        assert _value(families["seawall_retries"], "seawall_retries_total",
                      **labels) == stats.retries > 0
        assert _value(families["seawall_call_duration_seconds"],
                      "seawall_call_duration_seconds_count", **labels) == stats.calls
    finally:
        store.close()


def test_without_prometheus_client_metrics_says_how_to_get_it(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """prometheus_client missing: /metrics answers 501 naming the extra, the dashboard still works."""
    import sys

    for name in [m for m in sys.modules if m.startswith("prometheus_client")]:
        monkeypatch.setitem(sys.modules, name, None)  # `import` now raises ImportError
    with pytest.raises(seawall.ConfigurationError, match=r"pip install 'seawall\[prometheus\]'"):
        prometheus_collector(store)
    with serve_http(store, "127.0.0.1:0") as web:
        assert web.prometheus is False
        answer = httpx.get(web.url + "metrics", timeout=10)
        assert answer.status_code == 501 and "seawall[prometheus]" in answer.text
        assert httpx.get(web.url + "api/dashboard", timeout=10).status_code == 200
