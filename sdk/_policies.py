"""Policies: immutable, validated values. Runtime state lives in the point."""

from __future__ import annotations

import math
import random
from collections.abc import Awaitable, Callable, Collection, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from ._classify import Category
from ._errors import ConfigurationError

JITTERS = ("none", "full", "equal", "decorrelated")
Jitter = Literal["none", "full", "equal", "decorrelated"]


def _check_seconds(owner: str, name: str, value: object, *, allow_none: bool = False,
                   positive: bool = False) -> None:
    if value is None:
        if allow_none:
            return
        raise ConfigurationError(f"{owner}.{name} must be a number of seconds, got None")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigurationError(f"{owner}.{name} must be a number of seconds, got {value!r}")
    if math.isnan(value) or math.isinf(value):
        raise ConfigurationError(f"{owner}.{name} must be finite, got {value!r}")
    if positive and value <= 0:
        raise ConfigurationError(f"{owner}.{name} must be > 0 seconds, got {value!r}")
    if value < 0:
        raise ConfigurationError(f"{owner}.{name} must be >= 0 seconds, got {value!r}")


def _check_int(owner: str, name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigurationError(f"{owner}.{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ConfigurationError(f"{owner}.{name} must be >= {minimum}, got {value!r}")


def _check_rate(owner: str, name: str, value: object, *, allow_zero: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise ConfigurationError(f"{owner}.{name} must be a number in (0, 1], got {value!r}")
    low_ok = value >= 0 if allow_zero else value > 0
    if not (low_ok and value <= 1):
        bounds = "[0, 1]" if allow_zero else "(0, 1]"
        raise ConfigurationError(f"{owner}.{name} must be in {bounds}, got {value!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Backoff:
    """How long to wait before retry number ``n`` (1 for the first retry), in seconds.

    Build with :meth:`constant`, :meth:`linear`, :meth:`exponential` or
    :meth:`custom`. Jitter spreads retries of many clients apart:

    * ``none``: the base delay.
    * ``full``: uniform in ``[0, base]``.
    * ``equal``: uniform in ``[base/2, base]``.
    * ``decorrelated``: uniform in ``[initial, 3 * previous delay]``, capped at ``maximum``.
    """

    kind: Literal["constant", "linear", "exponential", "custom"]
    initial: float = 0.0
    step: float = 0.0
    multiplier: float = 2.0
    maximum: float = 0.0
    jitter: Jitter = "none"
    function: Callable[[int], float] | None = None

    def __post_init__(self) -> None:
        owner = "Backoff"
        if self.kind not in ("constant", "linear", "exponential", "custom"):
            raise ConfigurationError(f"{owner}.kind must be constant, linear, exponential or custom, got {self.kind!r}")
        if self.jitter not in JITTERS:
            raise ConfigurationError(f"{owner}.jitter must be one of {', '.join(JITTERS)}, got {self.jitter!r}")
        if self.kind == "custom":
            if not callable(self.function):
                raise ConfigurationError(f"{owner}.function must be callable, got {self.function!r}")
            return
        _check_seconds(owner, "initial", self.initial)
        _check_seconds(owner, "step", self.step)
        _check_seconds(owner, "maximum", self.maximum)
        if isinstance(self.multiplier, bool) or not isinstance(self.multiplier, (int, float)) \
                or not (1.0 <= self.multiplier < math.inf):
            raise ConfigurationError(f"{owner}.multiplier must be a finite number >= 1, got {self.multiplier!r}")
        if self.maximum < self.initial:
            raise ConfigurationError(
                f"{owner}.maximum must be >= initial ({self.initial!r}), got {self.maximum!r}"
            )

    @classmethod
    def constant(cls, delay: float, *, jitter: Jitter = "none") -> Backoff:
        """The same ``delay`` before every retry."""
        return cls(kind="constant", initial=delay, maximum=delay, jitter=jitter)

    @classmethod
    def linear(cls, initial: float, step: float | None = None, *, maximum: float = 30.0,
               jitter: Jitter = "none") -> Backoff:
        """``initial + step * (n - 1)``, capped at ``maximum``; ``step`` defaults to ``initial``."""
        return cls(kind="linear", initial=initial, step=initial if step is None else step,
                   maximum=maximum, jitter=jitter)

    @classmethod
    def exponential(cls, initial: float = 0.05, multiplier: float = 2.0, maximum: float = 2.0,
                    jitter: Jitter = "full") -> Backoff:
        """``initial * multiplier ** (n - 1)``, capped at ``maximum``, with ``jitter`` (full by default)."""
        return cls(kind="exponential", initial=initial, multiplier=multiplier, maximum=maximum,
                   jitter=jitter)

    @classmethod
    def custom(cls, function: Callable[[int], float]) -> Backoff:
        """``function(n)`` gives the delay in seconds; it must return a finite number >= 0."""
        return cls(kind="custom", function=function)

    def base(self, n: int) -> float:
        """The delay before jitter for retry ``n`` (1-based)."""
        if self.kind == "constant":
            return self.initial
        if self.kind == "linear":
            try:
                return min(self.initial + self.step * (n - 1), self.maximum)
            except OverflowError:  # n beyond float range
                return self.maximum if self.step > 0 else self.initial
        if self.kind == "exponential":
            try:
                return min(self.initial * float(self.multiplier) ** (n - 1), self.maximum)
            except OverflowError:  # the growth passed float range: capped, unless it never grows
                return self.maximum if self.initial > 0 and self.multiplier > 1 else self.initial
        assert self.function is not None
        value = self.function(n)
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not (0.0 <= value < math.inf):
            raise ConfigurationError(
                f"Backoff.function returned {value!r} for retry {n}; it must return seconds >= 0"
            )
        return float(value)

    def delay(self, n: int, previous: float, rand: Callable[[], float] = random.random) -> float:
        """The delay before retry ``n``; ``previous`` is the delay used before the last one."""
        base = self.base(n)
        jitter = self.jitter
        if jitter == "none" or self.kind == "custom":
            return base
        if jitter == "full":
            return base * rand()
        if jitter == "equal":
            return base / 2.0 + (base / 2.0) * rand()
        low = self.initial
        high = max(low, (previous if previous > 0 else low) * 3.0)
        return min(self.maximum, low + (high - low) * rand())


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryBudget:
    """Caps retries to a share of calls so a dead dependency never sees N x load.

    Over the last ``period`` seconds, retries are allowed while
    ``retries < ratio * calls + minimum_per_second * period``. State is per
    point, shared by all its callers; thread- and task-safe.
    """

    ratio: float = 0.2
    minimum_per_second: float = 10.0
    period: float = 10.0

    def __post_init__(self) -> None:
        _check_rate("RetryBudget", "ratio", self.ratio, allow_zero=True)
        if isinstance(self.minimum_per_second, bool) or not isinstance(self.minimum_per_second, (int, float)) \
                or not (0 <= self.minimum_per_second < math.inf):
            raise ConfigurationError(
                f"RetryBudget.minimum_per_second must be a finite number >= 0, got {self.minimum_per_second!r}"
            )
        _check_seconds("RetryBudget", "period", self.period, positive=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class Retry:
    """Retry failed attempts that are classified as retryable.

    ``attempts`` counts the first call (``attempts=1`` never retries).
    ``backoff`` gives the delays; a server hint (``Retry-After``, gRPC
    pushback) replaces the computed delay, capped at ``max_server_delay``
    seconds. ``on`` adds exception types to retry beyond the classifier's.
    ``budget`` (on by default) limits retries across calls; ``None`` turns
    it off. Retries stop early when the next wait would overrun the total
    deadline.
    """

    attempts: int = 3
    backoff: Backoff = field(default_factory=Backoff.exponential)
    on: tuple[type[BaseException], ...] = ()
    budget: RetryBudget | None = field(default_factory=RetryBudget)
    max_server_delay: float = 30.0

    def __post_init__(self) -> None:
        _check_int("Retry", "attempts", self.attempts, 1)
        if not isinstance(self.backoff, Backoff):
            raise ConfigurationError(f"Retry.backoff must be a Backoff, got {self.backoff!r}")
        on = self.on
        if isinstance(on, type):
            on = (on,)
            object.__setattr__(self, "on", on)
        if isinstance(on, (str, bytes)) or not isinstance(on, Iterable):
            raise ConfigurationError(f"Retry.on must be a tuple of exception classes, got {on!r}")
        on = tuple(on)
        object.__setattr__(self, "on", on)
        for t in on:
            if not (isinstance(t, type) and issubclass(t, Exception)):
                raise ConfigurationError(f"Retry.on must hold Exception subclasses, got {t!r}")
        if self.budget is not None and not isinstance(self.budget, RetryBudget):
            raise ConfigurationError(f"Retry.budget must be a RetryBudget or None, got {self.budget!r}")
        _check_seconds("Retry", "max_server_delay", self.max_server_delay)


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
            raise ConfigurationError(f"{owner}.window_kind must be 'count' or 'time', got {self.window_kind!r}")
        if self.window_kind == "count":
            _check_int(owner, "window", self.window, 1)
            if self.minimum_calls > self.window:
                raise ConfigurationError(
                    f"{owner}.minimum_calls ({self.minimum_calls!r}) must be <= window "
                    f"({self.window!r}) for a count window"
                )
        else:
            _check_seconds(owner, "window", self.window, positive=True)
        _check_int(owner, "buckets", self.buckets, 1)
        _check_seconds(owner, "slow_call_duration", self.slow_call_duration, allow_none=True,
                       positive=True)
        _check_rate(owner, "slow_call_rate", self.slow_call_rate)
        _check_seconds(owner, "open_for", self.open_for, positive=True)
        if isinstance(self.open_for_multiplier, bool) or not isinstance(self.open_for_multiplier, (int, float)) \
                or not (1.0 <= self.open_for_multiplier < math.inf):
            raise ConfigurationError(
                f"{owner}.open_for_multiplier must be a finite number >= 1, got {self.open_for_multiplier!r}"
            )
        _check_seconds(owner, "open_for_max", self.open_for_max, positive=True)
        if self.open_for_max < self.open_for:
            raise ConfigurationError(
                f"{owner}.open_for_max must be >= open_for ({self.open_for!r}), got {self.open_for_max!r}"
            )
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
class Timeout:
    """Deadlines in seconds: ``attempt`` for each attempt, ``total`` for the call with all retries.

    ``None`` means no limit. Async work is cancelled when its deadline
    passes and :class:`seawall.DeadlineExceeded` is raised; sync work cannot
    be interrupted and reads :func:`seawall.remaining` instead (the
    integrations hand it to gRPC, httpx and the database).

    A sync attempt that succeeds after its deadline (a decorated function,
    :meth:`IntegrationPoint.call`, an httpx request or a SQLAlchemy unit of
    work that took too long) is **overrun**: its value is returned, since it
    cannot be taken back, and the call counts as a success, but the attempt
    counts as a ``timeout`` (``stats().timeouts``, the metrics' ``timeouts``,
    its :class:`seawall.AttemptEvent` has category ``timeout``) and as a
    slow call for the breaker (toward ``slow_call_rate``, whatever
    ``slow_call_duration`` says; a half-open trial that overruns fails).
    """

    attempt: float | None = None
    total: float | None = None

    def __post_init__(self) -> None:
        _check_seconds("Timeout", "attempt", self.attempt, allow_none=True, positive=True)
        _check_seconds("Timeout", "total", self.total, allow_none=True, positive=True)
        if self.attempt is not None and self.total is not None and self.attempt > self.total:
            raise ConfigurationError(
                f"Timeout.attempt ({self.attempt!r}) must be <= total ({self.total!r})"
            )


_FALLBACK_DEFAULT_ON = frozenset(
    {Category.TRANSIENT, Category.TIMEOUT, Category.RATE_LIMITED, Category.UNAVAILABLE}
)

_NO_VALUE: Any = object()


@dataclass(frozen=True, slots=True, kw_only=True)
class Fallback:
    """What the caller gets instead of a failure.

    Either a fixed ``value`` or a ``handler(error)`` (sync, or async for
    async calls) whose return value is used. It applies when the final
    failure's category is in ``on`` (categories or their names, in any
    collection, stored as a ``frozenset[Category]``; by default the
    recoverable ones: transient, timeout, rate_limited, unavailable) and, when
    ``on_rejection`` is true, when the breaker or bulkhead refused the call.
    For a failure carried by a result (an HTTP 503), ``error`` is a
    :class:`seawall.ResultFailure` holding the result.
    """

    value: Any = _NO_VALUE
    handler: Callable[[BaseException], Any] | Callable[[BaseException], Awaitable[Any]] | None = None
    # any collection of categories or their names ("transient", ...); kept as a frozenset
    on: Collection[Category | str] = _FALLBACK_DEFAULT_ON
    on_rejection: bool = True

    def __post_init__(self) -> None:
        if (self.value is _NO_VALUE) == (self.handler is None):
            raise ConfigurationError("Fallback needs exactly one of value= or handler=")
        if self.handler is not None and not callable(self.handler):
            raise ConfigurationError(f"Fallback.handler must be callable, got {self.handler!r}")
        try:
            on = frozenset(Category(c) for c in self.on)
        except (ValueError, TypeError):
            raise ConfigurationError(
                f"Fallback.on must hold categories ({[c.value for c in Category]}), got {self.on!r}"
            ) from None
        object.__setattr__(self, "on", on)


@dataclass(frozen=True, slots=True, kw_only=True)
class Chaos:
    """Fault injection: rehearse an outage through the point's own policies.

    The innermost step of the pipeline (inside the attempt timeout): each
    attempt draws from one random sequence and, with ``latency_rate``,
    first waits ``latency`` seconds on the point's clock (longer than the
    attempt's timeout: it waits that long and fails as a ``timeout``);
    then, with ``fault_rate``, raises ``fault`` instead of calling (an
    exception instance, copied for each injection; an exception class; or
    a zero-argument factory returning one); else, with ``result_rate``,
    returns ``result`` instead of calling, for the classifier to judge (an
    integration turns it into its own shape: ``503`` becomes an httpx
    response, a ``grpc.StatusCode`` a failed RPC). Every policy (retry,
    breaker, bulkhead, fallback) reacts as to a real fault; events and
    metrics mark the injected outcomes (``injected=True``).

    ``seed`` makes the sequence reproducible (``None``: a random one);
    ``enabled=False`` starts it switched off (``point.chaos.enable()``
    turns it on), and ``SEAWALL_CHAOS=off`` in the environment turns every
    injection off. Rates are in ``[0, 1]``; a rate above zero needs its
    ``fault``, ``latency`` or ``result``.
    """

    fault_rate: float = 0.0
    fault: BaseException | type[BaseException] | Callable[[], BaseException] | None = None
    latency_rate: float = 0.0
    latency: float = 0.0
    result_rate: float = 0.0
    result: Any = None
    seed: int | None = None
    enabled: bool = True

    def __post_init__(self) -> None:
        for name in ("fault_rate", "latency_rate", "result_rate"):
            _check_rate("Chaos", name, getattr(self, name), allow_zero=True)
        _check_seconds("Chaos", "latency", self.latency)
        fault = self.fault
        if fault is not None:
            if isinstance(fault, type):
                if not issubclass(fault, Exception):
                    raise ConfigurationError(
                        f"Chaos.fault must be an Exception subclass, got {fault!r}")
            elif isinstance(fault, BaseException):
                if not isinstance(fault, Exception):
                    raise ConfigurationError(
                        f"Chaos.fault must be an Exception, not a {type(fault).__name__}, "
                        f"got {fault!r}")
            elif not callable(fault):
                raise ConfigurationError(
                    f"Chaos.fault must be an exception, an exception class or a factory, "
                    f"got {fault!r}")
        if self.fault_rate > 0 and fault is None:
            raise ConfigurationError(
                f"Chaos.fault is needed when fault_rate > 0 (fault_rate={self.fault_rate!r}), "
                f"got None")
        if self.latency_rate > 0 and self.latency == 0:
            raise ConfigurationError(
                f"Chaos.latency must be > 0 seconds when latency_rate > 0 "
                f"(latency_rate={self.latency_rate!r}), got {self.latency!r}")
        if self.result_rate > 0 and self.result is None:
            raise ConfigurationError(
                f"Chaos.result is needed when result_rate > 0 "
                f"(result_rate={self.result_rate!r}), got None")
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int)):
            raise ConfigurationError(f"Chaos.seed must be an integer or None, got {self.seed!r}")
        if not isinstance(self.enabled, bool):
            raise ConfigurationError(f"Chaos.enabled must be True or False, got {self.enabled!r}")


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
            raise ConfigurationError(
                f"RateLimit.rate must be a finite number > 0 (attempts per second), got {self.rate!r}"
            )
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
            raise ConfigurationError(
                f"{owner}.maximum must be >= minimum ({self.minimum!r}), got {self.maximum!r}"
            )
        if not (self.minimum <= self.initial <= self.maximum):
            raise ConfigurationError(
                f"{owner}.initial must be within [minimum, maximum] = "
                f"[{self.minimum!r}, {self.maximum!r}], got {self.initial!r}"
            )
        _check_seconds(owner, "max_wait", self.max_wait)
        if isinstance(self.tolerance, bool) or not isinstance(self.tolerance, (int, float)) \
                or not (1.0 <= self.tolerance < math.inf):
            raise ConfigurationError(
                f"{owner}.tolerance must be a finite number >= 1, got {self.tolerance!r}"
            )
        _check_rate(owner, "smoothing", self.smoothing)


@dataclass(frozen=True, slots=True, kw_only=True)
class Hedge:
    """Send another attempt when the first has not answered within ``delay`` seconds.

    After gRFC A6's hedging policy and Polly's hedging strategy: if no
    attempt has answered ``delay`` seconds after the last one started, one
    more starts, up to ``max_extra`` extra attempts (1 to 10); the first
    answer that is not a failure wins and every other attempt is cancelled.
    A failure whose category is in ``on`` (by default: any failure the
    classifier marks retryable) starts the next hedge at once; any other
    failure ends the call. Hedges are withdrawn from the retry budget (no
    hedge when it is spent), each one is an attempt for the breaker, the
    bulkhead and the rate limit (taken without waiting: a hedge that cannot
    start at once is not sent), a server's delay hint (``Retry-After``,
    pushback) stops further hedges, and the total deadline bounds them all.
    With a hedge, a call makes at most ``1 + max_extra`` attempts (a
    :class:`Retry` lends its budget, not its attempts). Only for idempotent
    work: the dependency may see every attempt. Async only (decorated
    ``async def`` functions and :meth:`IntegrationPoint.acall`, under
    asyncio); decorating a ``def`` or calling :meth:`IntegrationPoint.call`
    through a hedged point raises :class:`seawall.ConfigurationError`.
    """

    delay: float
    max_extra: int = 1
    on: Collection[Category | str] | None = None

    def __post_init__(self) -> None:
        _check_seconds("Hedge", "delay", self.delay)
        _check_int("Hedge", "max_extra", self.max_extra, 1)
        if self.max_extra > 10:
            raise ConfigurationError(f"Hedge.max_extra must be <= 10, got {self.max_extra!r}")
        if self.on is not None:
            try:
                if isinstance(self.on, (str, bytes)):
                    raise TypeError
                on = frozenset(Category(c) for c in self.on)
            except (ValueError, TypeError):
                raise ConfigurationError(
                    f"Hedge.on must hold categories ({[c.value for c in Category]}) or be None, "
                    f"got {self.on!r}"
                ) from None
            object.__setattr__(self, "on", on)
