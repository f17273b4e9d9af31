"""Typed results shared by the store and the client."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from seawall import SeawallError

from . import _histogram as hist
from ._schema import (
    COUNTERS,
    FAILED,
    FAILURE_CATEGORIES,
    H0,
    LATENCY_SUM,
    LIMIT_SAMPLES,
    LIMIT_SUM,
    PLAIN,
    REFUSAL_REASONS,
    REFUSED,
    WAIT_REASONS,
    WAITED,
)

#: the :class:`Stats` fields that are a breakdown (a mapping), each with its keys in order
BREAKDOWNS: Mapping[str, Sequence[str]] = {
    "failures_by_category": FAILURE_CATEGORIES,
    "rejections_by_reason": REFUSAL_REASONS,
    "waits_by_reason": WAIT_REASONS,
}
_PLAIN = tuple((name, COUNTERS.index(name)) for name in PLAIN)


class MetricsQueryError(SeawallError, ValueError):
    """A query was out of range (a negative window, a zero step, start after end, ...).

    The message names the field and the value; the service answers it with
    ``INVALID_ARGUMENT``.
    """


class MetricsServiceError(SeawallError):
    """The metrics service answered with an error (or could not be reached).

    ``code`` is the ``grpc.StatusCode`` name (``"INVALID_ARGUMENT"``,
    ``"UNAUTHENTICATED"``, ``"UNAVAILABLE"``, ...); the original
    ``grpc.RpcError`` is chained as ``__cause__``.
    """

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True, kw_only=True)
class Stats:
    """Counters and latency percentiles of calls over some span of time.

    ``calls = successes + failures + rejected + cancelled``. ``rejected``
    counts calls refused before any attempt; ``rejections_by_reason``
    counts every local refusal, of calls and of retries (``budget`` only
    ever refuses retries). ``fallbacks`` are calls answered by the fallback,
    also counted under their failure or rejection. ``timeouts`` counts
    attempts that timed out, sync ones that returned after their deadline
    included (those calls count as successes; see :class:`seawall.Timeout`). Latencies cover whole calls (every attempt and
    wait) that ran, in milliseconds; 0.0 when there were none.

    Fault injection (:class:`seawall.Chaos`) is kept apart so a rehearsal
    never pollutes the real rates: ``injected_calls`` counts calls whose last
    attempt was injected, ``injected_failures`` those of them that failed;
    neither is in ``calls``, the other counters or the latencies.

    Rate limiting and server pacing: ``rejections_by_reason`` has
    ``rate_limit`` and ``paused`` refusals; ``waits_by_reason`` counts
    attempts that waited (``paused``: for a server's pause to end,
    ``rate_limit``: for a :class:`seawall.RateLimit` token). Hedging
    (:class:`seawall.Hedge`): ``hedges_sent`` counts the extra attempts
    started, ``hedges_won`` the calls one of them answered.
    ``concurrency_limit`` is the bulkhead's limit (an
    :class:`seawall.AdaptiveBulkhead`'s learned one) as a level: the mean
    of the limit each writing process sampled at its flushes over the span
    (per process, not summed over the fleet), 0.0 without a bulkhead.
    """

    calls: int = 0
    successes: int = 0
    failures: int = 0
    retries: int = 0
    rejected: int = 0
    cancelled: int = 0
    fallbacks: int = 0
    timeouts: int = 0
    failures_by_category: Mapping[str, int] = field(default_factory=dict)
    rejections_by_reason: Mapping[str, int] = field(default_factory=dict)
    p50_ms: float = 0.0
    p95_ms: float = 0.0
    p99_ms: float = 0.0
    mean_ms: float = 0.0
    injected_calls: int = 0
    injected_failures: int = 0
    waits_by_reason: Mapping[str, int] = field(default_factory=dict)
    hedges_sent: int = 0
    hedges_won: int = 0
    concurrency_limit: float = 0.0

    @property
    def success_rate(self) -> float | None:
        """``successes / calls``, or ``None`` without calls."""
        return self.successes / self.calls if self.calls else None

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for name in BREAKDOWNS:
            out[name] = dict(out[name])
        return out


#: the names of the :class:`Stats` fields, in their order
STATS_FIELDS = tuple(f.name for f in dataclasses.fields(Stats))


def stats_fields(vec: Sequence[float]) -> dict[str, Any]:
    """The :class:`Stats` fields of an aggregate vector (see ``_schema``)."""
    histogram = [int(v) for v in vec[H0:]]
    ran = sum(histogram)
    out: dict[str, Any] = {name: int(vec[i]) for name, i in _PLAIN}
    out.update(
        failures_by_category={c.value: int(vec[i]) for c, i in FAILED.items()},
        rejections_by_reason={r: int(vec[i]) for r, i in REFUSED.items()},
        waits_by_reason={r: int(vec[i]) for r, i in WAITED.items()},
        p50_ms=hist.percentile(histogram, 0.50) * 1000.0,
        p95_ms=hist.percentile(histogram, 0.95) * 1000.0,
        p99_ms=hist.percentile(histogram, 0.99) * 1000.0,
        mean_ms=(float(vec[LATENCY_SUM]) / ran * 1000.0) if ran else 0.0,
        concurrency_limit=(float(vec[LIMIT_SUM]) / float(vec[LIMIT_SAMPLES])
                           if vec[LIMIT_SAMPLES] else 0.0),
    )
    return out


@dataclass(frozen=True, slots=True, kw_only=True)
class Summary(Stats):
    """One point's :class:`Stats` over a window, with its breaker state.

    ``breaker_state`` is the state the breaker last moved to in any
    process writing the store (``"closed"`` when none was recorded).
    """

    point: str
    breaker_state: str = "closed"


@dataclass(frozen=True, slots=True, kw_only=True)
class SeriesBucket(Stats):
    """The :class:`Stats` of one step of a time series starting at ``start`` (epoch seconds)."""

    start: float


@dataclass(frozen=True, slots=True, kw_only=True)
class PointInfo:
    """A point the store has seen: its operations and when (epoch seconds)."""

    name: str
    operations: tuple[str, ...]
    first_seen: float
    last_seen: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Transition:
    """One breaker transition as stored: which process, when (epoch seconds), why."""

    point: str
    from_state: str
    to_state: str
    reason: str
    time: float
    host: str
    pid: int
    id: int = 0
