"""Policies that bound the load a dependency sees: the circuit breaker (stop calling a
failing one), the bulkheads (fixed or adaptive: at most so many calls at once) and the
rate limit (at most so many attempts per second)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from ._errors import ConfigurationError
from ._policy_checks import _check_factor, _check_int, _check_rate, _check_seconds, refuse


@dataclass(frozen=True, slots=True, kw_only=True)
class CircuitBreaker:
    """Stop calling a dependency that is failing, then probe it.

    The window is the last ``window`` calls (``window_kind="count"``) or the
    last ``window`` seconds split into ``buckets`` (``window_kind="time"``).
    Once it holds ``minimum_calls``, the breaker opens when the failure rate
    reaches ``failure_rate`` or, with ``slow_call_duration`` set (seconds),
    when the share of calls slower than that reaches ``slow_call_rate``.
    It stays open ``open_for`` seconds, multiplied by ``open_for_multiplier``
    for each consecutive opening up to ``open_for_max``; then
    ``half_open_calls`` trial calls decide: below the failure rate it
    closes, otherwise it opens again. Only classifications that count for
    the breaker count (client errors and cancellations do not).
    """

    failure_rate: float = 0.5
    minimum_calls: int = 20
    window: float = 100
    window_kind: Literal["count", "time"] = "count"
    buckets: int = 10
    slow_call_duration: float | None = None
    slow_call_rate: float = 1.0
    open_for: float = 30.0
    open_for_multiplier: float = 1.0
    open_for_max: float = 300.0
    half_open_calls: int = 3

    def __post_init__(self) -> None:
        owner = "CircuitBreaker"
        _check_rate(owner, "failure_rate", self.failure_rate)
        _check_int(owner, "minimum_calls", self.minimum_calls, 1)
        if self.window_kind not in ("count", "time"):
            raise refuse(owner, "window_kind", "must be 'count' or 'time'", self.window_kind)
        if self.window_kind == "count":
            _check_int(owner, "window", self.window, 1)
            if self.minimum_calls > self.window:
                complaint = f"must be <= window ({self.window!r}) for a count window"
                raise ConfigurationError(
                    f"{owner}.minimum_calls ({self.minimum_calls!r}) {complaint}",
                    field="minimum_calls", value=self.minimum_calls, complaint=complaint)
        else:
            _check_seconds(owner, "window", self.window, positive=True)
        _check_int(owner, "buckets", self.buckets, 1)
        _check_seconds(owner, "slow_call_duration", self.slow_call_duration, allow_none=True,
                       positive=True)
        _check_rate(owner, "slow_call_rate", self.slow_call_rate)
        _check_seconds(owner, "open_for", self.open_for, positive=True)
        _check_factor(owner, "open_for_multiplier", self.open_for_multiplier, 1)
        _check_seconds(owner, "open_for_max", self.open_for_max, positive=True)
        if self.open_for_max < self.open_for:
            raise refuse(owner, "open_for_max", f"must be >= open_for ({self.open_for!r})",
                         self.open_for_max)
        _check_int(owner, "half_open_calls", self.half_open_calls, 1)


@dataclass(frozen=True, slots=True, kw_only=True)
class Bulkhead:
    """At most ``max_concurrent`` calls in flight; others wait up to ``max_wait`` seconds.

    Waiters are served first come, first served. One instance is shared
    correctly by threads and by several event loops calling the same point.
    """

    max_concurrent: int
    max_wait: float = 0.0

    def __post_init__(self) -> None:
        _check_int("Bulkhead", "max_concurrent", self.max_concurrent, 1)
        _check_seconds("Bulkhead", "max_wait", self.max_wait)


@dataclass(frozen=True, slots=True, kw_only=True)
class RateLimit:
    """At most ``rate`` attempts per second, in bursts of up to ``burst``: a token bucket.

    The bucket holds ``burst`` tokens (``None``: ``max(1, ceil(rate))``, one
    second's worth) and refills at ``rate`` tokens per second; each attempt
    (first call, retry or hedge) takes one. An attempt that finds the bucket
    empty waits for its token, in arrival order, up to ``max_wait`` seconds
    (and never past the call's deadline); beyond that it is refused with
    :class:`seawall.RateLimitedError`, whose ``retry_after`` says when a token
    will be free. One bucket per point, shared by every thread and event loop.
    """

    rate: float
    burst: int | None = None
    max_wait: float = 0.0

    def __post_init__(self) -> None:
        if isinstance(self.rate, bool) or not isinstance(self.rate, (int, float)) \
                or not (0 < self.rate < math.inf):
            raise refuse("RateLimit", "rate", "must be a finite number > 0 (attempts per second)",
                         self.rate)
        if self.burst is None:
            object.__setattr__(self, "burst", max(1, math.ceil(self.rate)))
        else:
            _check_int("RateLimit", "burst", self.burst, 1)
        _check_seconds("RateLimit", "max_wait", self.max_wait)


@dataclass(frozen=True, slots=True, kw_only=True)
class AdaptiveBulkhead:
    """A concurrency limit that follows the dependency's latency, between ``minimum`` and ``maximum``.

    Used as ``IntegrationPoint(bulkhead=AdaptiveBulkhead(...))``: like
    :class:`Bulkhead`, each attempt holds a permit, callers beyond the limit
    wait up to ``max_wait`` seconds (first come, first served) and then get
    :class:`seawall.BulkheadFullError`; one limit is shared by threads and
    event loops. The limit starts at ``initial`` and moves with every window
    of attempt latencies, after Netflix's Gradient2 (the formula and its
    constants are in ``seawall._adaptive``): it shrinks when latency rises
    above ``tolerance`` times the lowest latency seen (the dependency is
    queueing), and grows while it does not. ``smoothing`` (0, 1] is the
    share of each new estimate taken at once. Read the current limit from
    ``point.stats().concurrency_limit`` or ``point.permits.max_concurrent``.
    """

    initial: int = 16
    minimum: int = 1
    maximum: int = 256
    max_wait: float = 0.0
    tolerance: float = 1.1
    smoothing: float = 0.2

    def __post_init__(self) -> None:
        owner = "AdaptiveBulkhead"
        _check_int(owner, "minimum", self.minimum, 1)
        _check_int(owner, "maximum", self.maximum, 1)
        _check_int(owner, "initial", self.initial, 1)
        if self.maximum < self.minimum:
            raise refuse(owner, "maximum", f"must be >= minimum ({self.minimum!r})", self.maximum)
        if not (self.minimum <= self.initial <= self.maximum):
            raise refuse(owner, "initial", f"must be within [minimum, maximum] = "
                         f"[{self.minimum!r}, {self.maximum!r}]", self.initial)
        _check_seconds(owner, "max_wait", self.max_wait)
        _check_factor(owner, "tolerance", self.tolerance, 1)
        _check_rate(owner, "smoothing", self.smoothing)
