"""The store: rollups that add up, series, percentiles that merge, retention, schema version."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import update

import seawall
from seawall.storage import MetricsQueryError, Store
from seawall.storage import _histogram as hist
from seawall.storage._schema import CALLS, H0, LATENCY_SUM, SUCCESSES, WIDTH, schema_version
from seawall.storage._store import DAY, HOUR, MINUTE
from seawall.storage._store_query import split_minutes as _split

NOW = 1_700_000_000.0  # a fixed "now" (epoch seconds) for reproducible windows
NOW_MINUTE = int(NOW // 60)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(f"sqlite:///{tmp_path / 'metrics.db'}")
    yield s
    s.close()


def _vector(calls: int, latency: float = 0.002) -> list[float]:
    vec: list[float] = [0] * WIDTH
    vec[CALLS] = vec[SUCCESSES] = calls
    vec[LATENCY_SUM] = calls * latency
    vec[H0 + hist.bucket_of(latency)] = calls
    return vec


@given(st.integers(0, 10_000), st.integers(0, 10_000))
def test_a_window_is_covered_by_days_hours_and_minutes_exactly_once(a: int, width: int) -> None:
    """Every minute of a window is read from exactly one rollup row."""
    b = a + width
    covered: list[int] = []
    for size, lo, hi in _split(a, b):
        for bucket in range(lo, hi):
            covered.extend(range(bucket * size, (bucket + 1) * size))
    assert sorted(covered) == list(range(a, b))


def test_a_thirty_day_summary_reads_rollups_not_minutes() -> None:
    """Thirty days ending mid-day read whole days and hours, and only edge minutes."""
    pieces = _split(NOW_MINUTE - 30 * 1440, NOW_MINUTE + 1)
    minute_rows = sum(hi - lo for size, lo, hi in pieces if size == MINUTE)
    assert minute_rows < 120
    assert {size for size, _, _ in pieces} == {MINUTE, HOUR, DAY}


def test_summaries_over_any_window_equal_the_minute_by_minute_sum(store: Store) -> None:
    """Calls spread over three days sum the same through rollups as minute by minute."""
    rng = random.Random(7)
    minutes = {NOW_MINUTE - rng.randrange(0, 3 * 1440): rng.randrange(1, 50) for _ in range(400)}
    store.write({("orders", "get", m): _vector(n) for m, n in minutes.items()}, host="h", pid=1)
    for window in (60, 3599, 3600, 7 * 3600 + 17, 86400, 86400 + 5 * 3600, 3 * 86400):
        first = int((NOW - window) // 60)
        want = sum(n for m, n in minutes.items() if m >= first)
        found = store.summary("orders", window=window, now=NOW)
        assert (found[0].calls if found else 0) == want, window


def test_writers_are_told_apart_by_host_and_pid_and_add_up(store: Store) -> None:
    """Two processes writing the same minute keep their own rows; the summary adds them."""
    store.write({("orders", "get", NOW_MINUTE): _vector(3)}, host="a", pid=10)
    store.write({("orders", "get", NOW_MINUTE): _vector(4)}, host="b", pid=10)
    store.write({("orders", "get", NOW_MINUTE): _vector(5)}, host="a", pid=10)  # adds to its row
    [summary] = store.summary("orders", window=60, now=NOW)
    assert summary.calls == 12
    with store.engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT host, pid, calls FROM seawall_minute ORDER BY host")
        assert [tuple(r) for r in rows] == [("a", 10, 8), ("b", 10, 4)]


def test_percentiles_merge_across_processes(store: Store) -> None:
    """The fleet's p50/p99 come from the summed histograms, not from averaging percentiles."""
    store.write({("search", "q", NOW_MINUTE): _vector(90, latency=0.001)}, host="a", pid=1)
    store.write({("search", "q", NOW_MINUTE): _vector(10, latency=0.5)}, host="b", pid=2)
    [summary] = store.summary("search", window=60, now=NOW)
    assert summary.p50_ms == pytest.approx(1.0, rel=0.1)
    assert summary.p95_ms == summary.p99_ms == pytest.approx(500.0, rel=0.1)
    assert summary.mean_ms == pytest.approx((90 * 1.0 + 10 * 500.0) / 100)


def test_a_series_has_one_bucket_per_step_with_empty_ones(store: Store) -> None:
    """Per-minute, per-hour and per-day steps sum the right minutes; gaps are zero."""
    base = (NOW_MINUTE // 1440) * 1440  # midnight UTC
    counts = {base + 5: 1, base + 61: 2, base + 62: 4, base + 1440 + 30: 8}
    store.write({("ledger", "post", m): _vector(n) for m, n in counts.items()}, host="h", pid=1)
    minutes = store.series("ledger", start=(base + 60) * 60, end=(base + 64) * 60, step=60)
    assert [b.calls for b in minutes] == [0, 2, 4, 0]
    assert minutes[0].start == (base + 60) * 60
    hours = store.series("ledger", start=base * 60, end=(base + 180) * 60, step=3600)
    assert [b.calls for b in hours] == [1, 6, 0]
    days = store.series("ledger", start=base * 60, end=(base + 2880) * 60, step=86400)
    assert [b.calls for b in days] == [7, 8]
    unaligned = store.series("ledger", start=(base + 1) * 60, end=(base + 121) * 60, step=3600)
    assert [b.calls for b in unaligned] == [1, 6]  # minutes 1-60 and 61-120, from minute rows


def test_prune_deletes_what_is_older_than_the_cutoff(store: Store) -> None:
    """Rows older than ``older_than`` go, newer ones stay, in every rollup."""
    store.write({("mail", "send", NOW_MINUTE - 3 * 1440): _vector(5),
                 ("mail", "send", NOW_MINUTE): _vector(2)}, host="h", pid=1)
    assert store.summary("mail", window=4 * 86400, now=NOW)[0].calls == 7
    deleted = store.prune(2 * 86400, now=NOW)
    assert deleted >= 3  # the old minute, hour and day rows
    assert store.summary("mail", window=4 * 86400, now=NOW)[0].calls == 2
    with pytest.raises(MetricsQueryError, match="older_than"):
        store.prune(-1)


def test_a_store_written_by_a_newer_seawall_is_refused(tmp_path: Path) -> None:
    """A schema version above ours is refused with a message that says so."""
    url = f"sqlite:///{tmp_path / 'future.db'}"
    first = Store(url)
    first.ensure_schema()
    with first.engine.begin() as conn:
        conn.execute(update(schema_version).values(version=99))
    first.close()
    with pytest.raises(seawall.ConfigurationError, match="schema version 99"):
        Store(url).ensure_schema()


@pytest.mark.parametrize(("call", "message"), [
    (lambda s: s.summary(window=-1), "window must be >= 0"),
    (lambda s: s.summary(window=10**9), "at most"),
    (lambda s: s.summary(window=math.nan), "finite"),
    (lambda s: s.series("p", start=0, end=60, step=0), "step must be > 0"),
    (lambda s: s.series("p", start=0, end=60, step=90), "multiple of 60"),
    (lambda s: s.series("p", start=120, end=60, step=60), "must be before end"),
    (lambda s: s.series("p", start=0, end=10**9, step=60), "at most 10000"),
    (lambda s: s.series("", start=0, end=60, step=60), "point is required"),
    (lambda s: s.transitions(limit=5000), "limit must be between"),
    (lambda s: s.summary("x" * 500), "at most 200 characters"),
])
def test_out_of_range_queries_are_refused_with_a_message(store: Store, call: object,
                                                         message: str) -> None:
    """Each bad query raises MetricsQueryError naming what is wrong."""
    with pytest.raises(MetricsQueryError, match=message):
        call(store)  # type: ignore[operator]


def test_a_bare_path_is_a_sqlite_file_and_postgresql_uses_psycopg(tmp_path: Path) -> None:
    """URLs: a path means SQLite; postgresql:// picks the installed psycopg 3 driver."""
    from seawall.storage._store import resolve_url

    assert resolve_url(str(tmp_path / "m.db")) == f"sqlite:///{tmp_path / 'm.db'}"
    assert resolve_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"


def test_histogram_buckets_are_ordered_and_percentiles_stay_within_ten_percent() -> None:
    """Bucket bounds grow by 2**(1/4); a percentile is within ~9 % of the exact value."""
    assert hist.bucket_of(0.0) == 0
    assert hist.bucket_of(10_000.0) == hist.BUCKETS - 1
    for i in range(1, hist.BUCKETS - 1):
        assert hist.bucket_of(hist.lower_bound(i) * 1.0001) == i
    rng = random.Random(3)
    values = sorted(rng.lognormvariate(-5, 1.5) for _ in range(5000))
    counts = [0] * hist.BUCKETS
    for v in values:
        counts[hist.bucket_of(v)] += 1
    for q in (0.5, 0.95, 0.99):
        exact = values[math.ceil(q * len(values)) - 1]
        assert hist.percentile(counts, q) == pytest.approx(exact, rel=0.1)
    assert hist.percentile([0] * hist.BUCKETS, 0.5) == 0.0


@settings(max_examples=50)
@given(st.lists(st.floats(1e-6, 100.0), min_size=1, max_size=50),
       st.lists(st.floats(1e-6, 100.0), min_size=1, max_size=50))
def test_merged_histograms_equal_the_histogram_of_all_values(a: list[float],
                                                             b: list[float]) -> None:
    """Adding two processes' counts gives exactly the histogram of their combined calls."""
    def counts(values: list[float]) -> list[int]:
        out = [0] * hist.BUCKETS
        for v in values:
            out[hist.bucket_of(v)] += 1
        return out

    merged = [x + y for x, y in zip(counts(a), counts(b), strict=True)]
    assert merged == counts(a + b)
    assert hist.percentile(merged, 0.99) == hist.percentile(counts(a + b), 0.99)


def test_the_recorded_state_of_a_breaker_is_its_last_transition(store: Store) -> None:
    """``breaker_state`` is where the breaker last moved; closed when nothing was recorded."""
    store.write({("pay", "charge", NOW_MINUTE): _vector(1), ("mail", "send", NOW_MINUTE): _vector(1)},
                [seawall.BreakerTransition("pay", "closed", "open", "failure rate 0.8", NOW - 5)],
                host="h", pid=1)
    states = {s.point: s.breaker_state for s in store.summary(window=60, now=NOW)}
    assert states == {"pay": "open", "mail": "closed"}
