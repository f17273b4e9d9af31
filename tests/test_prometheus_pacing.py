"""Prometheus: waits, hedges, pacing refusals and the bulkhead's limit, exactly and by the rules."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from seawall.storage import MetricsQueryError, SeawallCollector, Store
from seawall.storage._schema import (
    CALLS,
    HEDGES_SENT,
    HEDGES_WON,
    LIMIT_SAMPLES,
    LIMIT_SUM,
    REFUSED,
    REJECTED,
    SUCCESSES,
    WAITED,
    WIDTH,
)
from tests.test_store_pacing_hedges import record_workload

MINUTE = 28_333_333  # minutes since the epoch: November 2023


def _row(calls: int = 1, sent: int = 0, won: int = 0, paused: int = 0, rate: int = 0,
         refused_rate: int = 0, limit: tuple[int, int] = (0, 0)) -> list[float]:
    vec: list[float] = [0] * WIDTH
    vec[CALLS] = calls
    vec[SUCCESSES] = calls - refused_rate
    vec[REJECTED] = refused_rate
    vec[REFUSED["rate_limit"]] = refused_rate
    vec[HEDGES_SENT], vec[HEDGES_WON] = sent, won
    vec[WAITED["paused"]], vec[WAITED["rate_limit"]] = paused, rate
    vec[LIMIT_SUM], vec[LIMIT_SAMPLES] = limit
    return vec


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(f"sqlite:///{tmp_path / 'metrics.db'}")
    # host h1: two processes; the limit's latest minute is MINUTE (pid 1) and MINUTE - 5 (pid 2)
    s.write({("api", "get", MINUTE - 5): _row(sent=3, won=1, limit=(40, 4)),
             ("api", "get", MINUTE): _row(sent=2, won=2, paused=4, limit=(24, 2)),
             ("api", "put", MINUTE): _row(rate=5, refused_rate=2, limit=(12, 1))},
            host="h1", pid=1)
    s.write({("api", "get", MINUTE - 5): _row(sent=1, limit=(30, 3))}, host="h1", pid=2)
    s.write({("db", "q", MINUTE): _row(calls=3)}, host="h2", pid=7)
    yield s
    s.close()


def _families(collector: SeawallCollector) -> dict[str, Any]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    body = generate_latest(registry).decode()
    return {f.name: f for f in text_string_to_metric_families(body)}


def _samples(family: Any) -> dict[tuple[tuple[str, str], ...], float]:
    return {tuple(sorted(s.labels.items())): s.value for s in family.samples}


def _get(family: Any, **labels: str) -> float:
    return _samples(family)[tuple(sorted(labels.items()))]


def test_hedges_waits_and_refusals_are_the_stores_totals(store: Store) -> None:
    """seawall_hedges_total{outcome}, seawall_waits_total{reason}, new rejection reasons."""
    families = _families(SeawallCollector(store))
    hedges, waits = families["seawall_hedges"], families["seawall_waits"]
    get = {"point": "api", "operation": "get", "host": "h1"}
    assert _get(hedges, **get, outcome="sent") == 6 and _get(hedges, **get, outcome="won") == 3
    assert _get(waits, **get, reason="paused") == 4 and _get(waits, **get, reason="rate_limit") == 0
    put = {"point": "api", "operation": "put", "host": "h1"}
    assert _get(waits, **put, reason="rate_limit") == 5
    rejections = families["seawall_rejections"]
    assert _get(rejections, **put, reason="rate_limit") == 2
    assert _get(rejections, **put, reason="paused") == 0
    assert {s.name for s in hedges.samples} == {"seawall_hedges_total"}


def test_the_limit_is_the_mean_of_each_keys_latest_sampled_minute(store: Store) -> None:
    """Without pid: the host's latest minute (12 per sample, get and put alike); with pid: each."""
    limit = _families(SeawallCollector(store))["seawall_concurrency_limit"]
    assert _samples(limit) == {(("host", "h1"), ("point", "api")): 12.0}  # db has no bulkhead
    by_pid = _families(SeawallCollector(store, pid_label=True))["seawall_concurrency_limit"]
    assert _samples(by_pid) == {(("host", "h1"), ("pid", "1"), ("point", "api")): 12.0,
                                (("host", "h1"), ("pid", "2"), ("point", "api")): 10.0}


@pytest.mark.parametrize(("restrict", "field"), [
    ({"host": 5}, "host"), ({"host": "h" * 256}, "host"),
    ({"pid": "1"}, "pid"), ({"pid": True}, "pid"),
])
def test_latest_limits_checks_host_and_pid_as_breakdown_does(
        store: Store, restrict: dict[str, Any], field: str) -> None:
    """A host that is no string (or too long) or a pid that is no int is refused, naming it."""
    with pytest.raises(MetricsQueryError, match=f"^{field} must be") as limits:
        store.latest_limits(("point", "host"), **restrict)
    with pytest.raises(MetricsQueryError, match=f"^{field} must be") as breakdown:
        store.breakdown(("point", "host"), **restrict)
    assert str(limits.value) == str(breakdown.value)


def test_a_process_whose_samples_stopped_is_not_counted_with_the_live_ones(
        store: Store) -> None:
    """pid 2's more and larger samples (minute - 5) stay out of h1's level; its own remains."""
    assert store.latest_limits(("point", "host")) == [(("api", "h1"), MINUTE, 12.0)]
    assert store.latest_limits(("point", "host"), host="h1", pid=2) == [
        (("api", "h1"), MINUTE - 5, 10.0)]
    assert sorted(store.latest_limits(("point", "pid"))) == [
        (("api", 1), MINUTE, 12.0), (("api", 2), MINUTE - 5, 10.0)]
    # once pid 2 samples again in the latest minute, it is live: the mean of both processes
    store.write({("api", "get", MINUTE): _row(calls=0, limit=(36, 1))}, host="h1", pid=2)
    assert store.latest_limits(("point", "host")) == [(("api", "h1"), MINUTE, 18.0)]


def test_names_follow_the_rules_and_promtool_accepts_them(store: Store) -> None:
    """Counters end in _total, label names are snake case, promtool finds nothing to lint."""
    families = _families(SeawallCollector(store))
    assert families["seawall_hedges"].type == families["seawall_waits"].type == "counter"
    assert families["seawall_concurrency_limit"].type == "gauge"
    for name in ("seawall_hedges", "seawall_waits", "seawall_concurrency_limit"):
        assert families[name].documentation
        for sample in families[name].samples:
            assert all(re.fullmatch(r"[a-z_]+", label) for label in sample.labels)
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool (Debian package prometheus) is needed; .ci/browser-deps installs it")
    for collector in (SeawallCollector(store), SeawallCollector(store, pid_label=True)):
        registry = CollectorRegistry(auto_describe=False)
        registry.register(collector)
        done = subprocess.run([promtool, "check", "metrics"],
                              input=generate_latest(registry).decode(),
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0 and not done.stdout.strip(), done.stdout + done.stderr


def test_real_calls_reach_prometheus_exactly(tmp_path: Path) -> None:
    """The scripted workload -> recorder -> store -> collector: the points' own counts."""
    store = Store(f"sqlite:///{tmp_path / 'real.db'}")
    try:
        points = record_workload(store)
        families = _families(SeawallCollector(store, fleet=False))

        def total(family: str, point: str, **labels: str) -> float:
            return sum(s.value for s in families[family].samples
                       if s.labels["point"] == point
                       and all(s.labels.get(k) == v for k, v in labels.items()))

        for name, point in points.items():
            stats = point.stats()
            assert total("seawall_hedges", name, outcome="sent") == stats.hedges
            assert total("seawall_hedges", name, outcome="won") == stats.hedges_won
            assert total("seawall_waits", name, reason="paused") == stats.paused_waits
            assert total("seawall_waits", name, reason="rate_limit") == stats.rate_limit_waits
            for reason in ("rate_limit", "paused"):
                assert total("seawall_rejections", name, reason=reason) == \
                    stats.rejections[reason]
            assert total("seawall_concurrency_limit", name) == float(
                stats.concurrency_limit or 0)
        assert total("seawall_hedges", "hedged", outcome="sent") == 8
    finally:
        store.close()
