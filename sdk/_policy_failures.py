"""Policies about failures themselves: the answer given instead of one (:class:`Fallback`)
and the rehearsal that injects them (:class:`Chaos`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Any

from ._classify import Category
from ._errors import ConfigurationError
from ._policy_checks import _check_rate, _check_seconds, refuse

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
            raise refuse("Fallback", "handler", "must be callable", self.handler)
        try:
            on = frozenset(Category(c) for c in self.on)
        except (ValueError, TypeError):
            raise refuse("Fallback", "on", f"must hold categories ({[c.value for c in Category]})",
                         self.on) from None
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
                    raise refuse("Chaos", "fault", "must be an Exception subclass", fault)
            elif isinstance(fault, BaseException):
                if not isinstance(fault, Exception):
                    raise refuse("Chaos", "fault",
                                 f"must be an Exception, not a {type(fault).__name__}", fault)
            elif not callable(fault):
                raise refuse("Chaos", "fault",
                             "must be an exception, an exception class or a factory", fault)
        if self.fault_rate > 0 and fault is None:
            raise refuse("Chaos", "fault",
                         f"is needed when fault_rate > 0 (fault_rate={self.fault_rate!r})", None)
        if self.latency_rate > 0 and self.latency == 0:
            raise refuse("Chaos", "latency", f"must be > 0 seconds when latency_rate > 0 "
                         f"(latency_rate={self.latency_rate!r})", self.latency)
        if self.result_rate > 0 and self.result is None:
            raise refuse("Chaos", "result",
                         f"is needed when result_rate > 0 (result_rate={self.result_rate!r})", None)
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int)):
            raise refuse("Chaos", "seed", "must be an integer or None", self.seed)
        if not isinstance(self.enabled, bool):
            raise refuse("Chaos", "enabled", "must be True or False", self.enabled)
