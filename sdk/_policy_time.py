"""Policies in time: deadlines for attempts and calls (:class:`Timeout`), and a parallel
attempt sent when the first is slow to answer (:class:`Hedge`)."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from ._classify import Category
from ._errors import ConfigurationError
from ._policy_checks import _check_int, _check_seconds, refuse


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
            complaint = f"must be <= total ({self.total!r})"
            raise ConfigurationError(f"Timeout.attempt ({self.attempt!r}) {complaint}",
                                     field="attempt", value=self.attempt, complaint=complaint)


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
            raise refuse("Hedge", "max_extra", "must be <= 10", self.max_extra)
        if self.on is not None:
            try:
                if isinstance(self.on, (str, bytes)):
                    raise TypeError
                on = frozenset(Category(c) for c in self.on)
            except (ValueError, TypeError):
                raise refuse("Hedge", "on", f"must hold categories "
                             f"({[c.value for c in Category]}) or be None", self.on) from None
            object.__setattr__(self, "on", on)
