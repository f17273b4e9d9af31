"""Prometheus exposition of a metrics store: one collector, read at every scrape.

The counters are the store's totals (the day rollups: everything kept, so
they only grow until ``--retention-days`` prunes a day). The latency
histogram is the store's own log-scale histogram (see ``_histogram``)
exposed at one boundary per doubling by default: ``le`` = 10 µs * 2**k for
k = 0..23 (10 µs .. 83.9 s) and ``+Inf``. Those boundaries are bucket
edges of the stored histogram, so every cumulative count is exact.

``prometheus_client`` is only needed here: ``pip install 'seawall[prometheus]'``.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from seawall import ConfigurationError

from . import _histogram as hist
from ._schema import (
    CANCELLED,
    FAILED,
    FAILURES,
    FALLBACKS,
    H0,
    HEDGES_SENT,
    HEDGES_WON,
    HOST_LENGTH,
    LATENCY_SUM,
    REFUSED,
    REJECTED,
    RETRIES,
    SUCCESSES,
    TIMEOUTS,
    WAITED,
)
from ._store import Store

log = logging.getLogger("seawall.storage")

#: The states ``seawall_breaker_state`` reports (one sample each, 1 for the current one).
BREAKER_STATES = ("closed", "open", "half_open", "forced_open", "disabled")
#: ``outcome`` label values of ``seawall_calls_total``: they add up to all calls.
OUTCOMES = (("success", SUCCESSES), ("failure", FAILURES), ("rejected", REJECTED),
            ("cancelled", CANCELLED))
#: ``outcome`` label values of ``seawall_hedges_total``: ``won`` is a part of ``sent``.
HEDGE_OUTCOMES = (("sent", HEDGES_SENT), ("won", HEDGES_WON))
_INSTALL = "Prometheus metrics need prometheus_client: pip install 'seawall[prometheus]'"


def _prometheus() -> Any:
    try:
        import prometheus_client.core as core
    except ImportError:
        raise ConfigurationError(_INSTALL) from None
    return core


def bucket_bounds(per_doubling: int = 1) -> list[tuple[int, float]]:
    """The ``le`` boundaries exposed: ``(stored bucket index, seconds)``, ``+Inf`` excluded.

    ``per_doubling`` (1, 2 or 4) picks every 4th, 2nd or every edge of the
    stored histogram (4 buckets per doubling from 10 µs): 24, 48 or 95
    boundaries. The cumulative count at boundary ``i`` is the sum of stored
    buckets ``0..i``. Values are rounded to 7 significant digits (10 µs *
    2**k is then written exactly: 0.00128, 83.88608).
    """
    if per_doubling not in (1, 2, 4):
        raise ConfigurationError(f"buckets_per_doubling must be 1, 2 or 4, got {per_doubling!r}")
    every = hist.PER_DOUBLING // per_doubling
    return [(i, float(f"{hist.upper_bound(i):.7g}"))
            for i in range(0, hist.BUCKETS - 1, every)]


class SeawallCollector:
    """A ``prometheus_client`` collector over a :class:`Store` (see :func:`prometheus_collector`).

    Every ``collect()`` (every scrape) runs three queries on the store.
    Thread-safe: scrapes may run concurrently. ``raise_errors`` decides
    what a store failure does: raise (the scrape fails: right for a
    dedicated exporter, Prometheus then marks the target down) or report
    ``seawall_store_up 0`` and no other seawall sample (right inside an
    application, whose own metrics must not vanish with the store).
    """

    def __init__(self, store: Store, *, fleet: bool = True, pid_label: bool = False,
                 buckets_per_doubling: int = 1, raise_errors: bool = True) -> None:
        _prometheus()
        self.store = store
        self.fleet = fleet
        self.pid_label = pid_label
        self.raise_errors = raise_errors
        self._bounds = bucket_bounds(buckets_per_doubling)
        self._labels = ("point", "operation", "host", *(("pid",) if pid_label else ()))
        self._last_error_log = 0.0
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        scope = "fleet" if self.fleet else "this process"
        return f"<SeawallCollector {self.store!r}, {scope}>"

    def _families(self, core: Any) -> dict[str, Any]:
        labels = list(self._labels)
        process = [lb for lb in labels if lb != "operation"]
        return {
            "calls": core.CounterMetricFamily(
                "seawall_calls", "Calls through a seawall integration point, by outcome "
                "(success, failure, rejected before any attempt, cancelled).",
                labels=[*labels, "outcome"]),
            "failures": core.CounterMetricFamily(
                "seawall_failures", "Failed calls by the category of their last error.",
                labels=[*labels, "category"]),
            "retries": core.CounterMetricFamily(
                "seawall_retries", "Retries scheduled (attempts after the first).", labels=labels),
            "rejections": core.CounterMetricFamily(
                "seawall_rejections", "Local refusals of calls and retries, by reason "
                "(breaker, bulkhead, budget, deadline, rate_limit, paused).",
                labels=[*labels, "reason"]),
            "waits": core.CounterMetricFamily(
                "seawall_waits", "Attempts that waited before they started, by reason (paused: "
                "a server's pause, rate_limit: a RateLimit token).", labels=[*labels, "reason"]),
            "hedges": core.CounterMetricFamily(
                "seawall_hedges", "Hedged attempts: sent (extra attempts a Hedge started) and "
                "won (calls one of them answered; a part of sent).",
                labels=[*labels, "outcome"]),
            "fallbacks": core.CounterMetricFamily(
                "seawall_fallbacks", "Calls answered by the fallback.", labels=labels),
            "timeouts": core.CounterMetricFamily(
                "seawall_attempt_timeouts", "Attempts that timed out.", labels=labels),
            "duration": core.HistogramMetricFamily(
                "seawall_call_duration_seconds", "Duration of whole calls that ran (every "
                "attempt and wait), in seconds; rejected and cancelled calls excluded.",
                labels=labels, unit="seconds"),
            "breaker": core.GaugeMetricFamily(
                "seawall_breaker_state", "1 for the state the circuit breaker last moved to, "
                "0 for the others (closed when it never moved).", labels=[*process, "state"]),
            "limit": core.GaugeMetricFamily(
                "seawall_concurrency_limit", "The bulkhead's limit (an AdaptiveBulkhead's "
                "learned one): the mean of the samples of the latest minute that has some, "
                "per process.", labels=process),
            "up": core.GaugeMetricFamily(
                "seawall_store_up", "1 when the last read of the seawall metrics store "
                "succeeded, 0 when it failed."),
        }

    def describe(self) -> Iterable[Any]:
        """The metric families, without samples (no store read at registration)."""
        return list(self._families(_prometheus()).values())

    def collect(self) -> Iterator[Any]:
        """Read the store and yield every seawall metric family."""
        core = _prometheus()
        families = self._families(core)
        up = families["up"]
        try:
            self._fill(families)
        except Exception as exc:
            if self.raise_errors:
                raise
            now = time.monotonic()
            with self._lock:
                if now - self._last_error_log >= 60.0:
                    self._last_error_log = now
                    log.warning("seawall.storage: reading %r for Prometheus failed (%s: %s)",
                                self.store, type(exc).__name__, exc)
            up.add_metric([], 0.0)
            yield up
            return
        up.add_metric([], 1.0)
        yield from families.values()

    def _fill(self, families: dict[str, Any]) -> None:
        host: str | None = None
        pid: int | None = None
        if not self.fleet:
            host, pid = socket.gethostname()[:HOST_LENGTH], os.getpid()
        by = ("point", "operation", "host", "pid")
        rows = self.store.breakdown(by if self.pid_label else by[:3], host=host, pid=pid)
        processes: dict[tuple[str, ...], str] = {}
        for key, vec in sorted(rows, key=lambda r: tuple(str(k) for k in r[0])):
            labels = [str(k) for k in key]
            self._add(families, labels, vec)
            processes.setdefault(tuple(lb for i, lb in enumerate(labels) if i != 1), "closed")
        # the latest transition per process; without a pid label the latest of the host's
        for t in sorted(self.store.last_transitions(), key=lambda t: t.id):
            if host is not None and (t.host != host or t.pid != pid):
                continue
            processes[(t.point, t.host, *((str(t.pid),) if self.pid_label else ()))] = t.to_state
        limit = families["limit"]
        by_limit = ("point", "host", "pid") if self.pid_label else ("point", "host")
        for key, _, mean in sorted(self.store.latest_limits(by_limit, host=host, pid=pid),
                                   key=lambda r: tuple(str(k) for k in r[0])):
            limit.add_metric([str(k) for k in key], mean)
        breaker = families["breaker"]
        for process, state in sorted(processes.items()):
            for candidate in BREAKER_STATES:
                breaker.add_metric([*process, candidate], 1.0 if candidate == state else 0.0)

    def _add(self, families: dict[str, Any], labels: list[str], vec: Sequence[float]) -> None:
        for outcome, index in OUTCOMES:
            families["calls"].add_metric([*labels, outcome], vec[index])
        for category, index in FAILED.items():
            families["failures"].add_metric([*labels, category.value], vec[index])
        families["retries"].add_metric(labels, vec[RETRIES])
        for reason, index in REFUSED.items():
            families["rejections"].add_metric([*labels, reason], vec[index])
        for reason, index in WAITED.items():
            families["waits"].add_metric([*labels, reason], vec[index])
        for outcome, index in HEDGE_OUTCOMES:
            families["hedges"].add_metric([*labels, outcome], vec[index])
        families["fallbacks"].add_metric(labels, vec[FALLBACKS])
        families["timeouts"].add_metric(labels, vec[TIMEOUTS])
        counts = vec[H0:]
        buckets: list[tuple[str, float]] = []
        seen = 0.0
        done = 0
        for index, bound in self._bounds:
            seen += sum(counts[done:index + 1])
            done = index + 1
            buckets.append((repr(bound), seen))
        buckets.append(("+Inf", float(sum(counts))))
        families["duration"].add_metric(labels, buckets, float(vec[LATENCY_SUM]))


def prometheus_collector(store: Store | str | None = None, *, registry: Any = None,
                         fleet: bool = False, pid_label: bool = False,
                         buckets_per_doubling: int = 1) -> SeawallCollector:
    """Register seawall's metrics on a ``prometheus_client`` registry and return the collector.

    For an application that already serves ``/metrics``: each scrape reads
    ``store`` (a :class:`Store`, a URL, or ``None`` for the one
    :func:`seawall.persist_metrics` writes by default: ``$SEAWALL_METRICS_URL``
    or ``sqlite:///seawall-metrics.db``). ``fleet=False`` (the default)
    reports only this process's rows (this host and pid), so every instance
    Prometheus scrapes reports its own calls; they reach the store at the
    recorder's ``flush_interval`` (1 s by default). ``fleet=True`` reports
    every process writing the store. ``registry`` defaults to
    ``prometheus_client.REGISTRY``; ``registry.unregister(collector)``
    removes it. A store failure does not break the scrape: it reports
    ``seawall_store_up 0`` and logs a warning (once a minute at most).
    ``pid_label`` adds a ``pid`` label; ``buckets_per_doubling`` (1, 2, 4)
    sets the histogram's resolution (see :func:`bucket_bounds`).
    """
    core = _prometheus()
    the_store = store if isinstance(store, Store) else Store(store)
    collector = SeawallCollector(the_store, fleet=fleet, pid_label=pid_label,
                                 buckets_per_doubling=buckets_per_doubling, raise_errors=False)
    (core.REGISTRY if registry is None else registry).register(collector)
    return collector


def exposition_registry(store: Store) -> Any:
    """A registry of its own holding a fleet-wide collector over ``store`` (for ``/metrics``).

    Raises :class:`seawall.ConfigurationError` when ``prometheus_client`` is missing.
    """
    registry = _prometheus().CollectorRegistry(auto_describe=False)
    registry.register(SeawallCollector(store, fleet=True, raise_errors=True))
    return registry


def exposition(registry: Any, accept: str | None = None) -> tuple[bytes, str]:
    """The text a scrape gets (Prometheus text format, or OpenMetrics when ``accept`` asks).

    Returns ``(body, content_type)``; a store failure raises.
    """
    from prometheus_client.exposition import choose_encoder

    encoder, content_type = choose_encoder(accept or "")
    return encoder(registry), content_type
