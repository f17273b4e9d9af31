"""IntegrationPoint: one dependency's policy, its runtime state, and its public face.

The pipeline a call goes through, outermost first, as this module builds
it from the point's policies::

    fallback               _fallback.py     the answer when the call fails or is refused
    total deadline         _execution.py    Timeout.total, the caller's and any enclosing one
    retry (+ budget)       _execution.py    Retry, Backoff; RetryBudget in _budget.py
      or hedge             _hedge.py        Hedge (async calls): parallel attempts, each one
                                            admitted by every step below, on the same budget
    circuit breaker        _breaker.py      admits each attempt; judges its outcome
    server pacing          _pacing.py       a server's Retry-After / pushback pauses every caller
    rate limit             _rate_limit.py   RateLimit: a token per attempt, waited for by the shell
    bulkhead               _bulkhead.py     a permit per attempt, waited for by the shell
                           _adaptive.py     AdaptiveBulkhead: the same permits, a limit that moves
    attempt timeout        _execution.py    Timeout.attempt, handed to the attempt
    fault injection        _chaos.py        Chaos (off unless given): wraps the attempt
    the call               the shells       _async_shell.py (arun), _sync_shell.py (run)

Each policy is a frozen value (``_policies.py``); its runtime state (the
breaker's window, the bulkhead's permits, the budget's buckets, the
counters in ``_ledger.py``) is made here, once per point. The decisions
are taken by :class:`~._execution.Execution` (sans-IO); the two shells do
the waiting, and are the point's :meth:`run` and :meth:`arun` themselves.

Integrations reach the core only through the public names of this class
(see ARCHITECTURE.md): :meth:`run` / :meth:`arun` (the whole pipeline
around an attempt callable), :meth:`execution` (for integrations that
drive attempts themselves), :attr:`permits` and :meth:`observer` (work
that is watched, never replayed).
"""

from __future__ import annotations

import functools
import inspect
import random
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ParamSpec, TypeVar, overload

from ._adaptive import AdaptiveRuntime
from ._async_shell import arun as _arun
from ._breaker import REJECTED, BreakerRuntime, BreakerState
from ._bulkhead import BulkheadRuntime, Permits
from ._chaos import ChaosRuntime
from ._classify import (
    Classification,
    Classifier,
    ExceptionRule,
    ResultRule,
    default_exception_classification,
    retry_on,
)
from ._clock import SYSTEM_CLOCK, Clock, SystemClock
from ._errors import ConfigurationError
from ._events import HookSet
from ._execution import Execution
from ._execution import admit_first as _admit_first
from ._hedge import ahedged, sync_refusal
from ._hedge_futures import hedge_futures
from ._ledger import Ledger, PointStats
from ._observer import Observer
from ._pacing import Pacing
from ._policies import (
    AdaptiveBulkhead,
    Bulkhead,
    Chaos,
    CircuitBreaker,
    Fallback,
    Hedge,
    RateLimit,
    Retry,
    Timeout,
)
from ._rate_limit import TokenBucket
from ._registry import register as _register
from ._sync_shell import run as _run
from ._validation import check_point as _check_point

P = ParamSpec("P")
T = TypeVar("T")


class IntegrationPoint:
    """One dependency (a service, an API, a database) and its resilience policy.

    Use it as a decorator on ``def`` and ``async def``, or call through it
    with :meth:`call` / :meth:`acall`. Every policy is optional; ``None``
    turns it off. ``classifier`` rules are asked before the integration's
    own (or, for plain functions, before the defaults: timeouts and network
    errors transient, everything else permanent). ``clock`` replaces the
    monotonic clock and sleeps (tests); ``rand`` the jitter source;
    ``chaos`` injects faults, results and latency (rehearsals; see
    :class:`seawall.Chaos`), off unless given.

    One point may be shared by any number of threads and event loops.
    """

    def __init__(
        self,
        name: str,
        *,
        retry: Retry | None = None,
        breaker: CircuitBreaker | None = None,
        bulkhead: Bulkhead | AdaptiveBulkhead | None = None,
        timeout: Timeout | None = None,
        fallback: Fallback | None = None,
        classifier: Classifier | None = None,
        clock: Clock | None = None,
        rand: Callable[[], float] | None = None,
        chaos: Chaos | None = None,
        rate_limit: RateLimit | None = None,
        server_pacing: bool = True,
        hedge: Hedge | None = None,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ConfigurationError(f"IntegrationPoint.name must be a non-empty string, got {name!r}")
        for field, value, kind in (
            ("retry", retry, Retry), ("breaker", breaker, CircuitBreaker),
            ("timeout", timeout, Timeout),
            ("fallback", fallback, Fallback), ("classifier", classifier, Classifier),
            ("chaos", chaos, Chaos),
            ("rate_limit", rate_limit, RateLimit), ("hedge", hedge, Hedge),
        ):
            if value is not None and not isinstance(value, kind):
                raise ConfigurationError(
                    f"IntegrationPoint.{field} must be a {kind.__name__} or None, got {value!r}"
                )
        if bulkhead is not None and not isinstance(bulkhead, (Bulkhead, AdaptiveBulkhead)):
            raise ConfigurationError(
                f"IntegrationPoint.bulkhead must be a Bulkhead, an AdaptiveBulkhead or None, "
                f"got {bulkhead!r}"
            )
        if not isinstance(server_pacing, bool):
            raise ConfigurationError(
                f"IntegrationPoint.server_pacing must be True or False, got {server_pacing!r}"
            )
        self.name = name
        self.retry = retry
        self.breaker = breaker
        self.bulkhead = bulkhead
        self.timeout = timeout
        self.fallback = fallback
        self.classifier = classifier or Classifier()
        self.clock: Clock = clock or SYSTEM_CLOCK
        self.hooks = HookSet()
        self._now: Callable[[], float] = self.clock.now
        self._rand = rand or random.random

        # classification: the user's rules, then Retry(on=...), then the integration's
        rules: list[ExceptionRule] = list(self.classifier.exception_rules)
        if retry is not None and retry.on:
            rules.append(retry_on(retry.on))
        self._exc_rules: tuple[ExceptionRule, ...] = tuple(rules)
        self._result_rules: tuple[ResultRule, ...] = self.classifier.result_rules

        # the runtime state of each policy, in pipeline order (see the module docstring)
        self._total_timeout = timeout.total if timeout is not None else None
        self.circuit: BreakerRuntime | None = (
            BreakerRuntime(breaker, self._on_transition) if breaker is not None else None
        )
        """The breaker's runtime (state, ``force_open()``, ``reset()``...), ``None`` without one."""
        self.rate_limit = rate_limit
        self.hedge = hedge
        """The :class:`seawall.Hedge` of async calls (``acall``, decorated ``async def``), or ``None``."""
        self.pacing: Pacing | None = (
            Pacing(retry.max_server_delay if retry is not None else 30.0, self._pause_began)
            if server_pacing else None
        )
        """Server pacing's pause (``until``, ``remaining(now)``, ``resume()``); ``None`` when off."""
        self.bucket: TokenBucket | None = (
            TokenBucket(rate_limit, self._now()) if rate_limit is not None else None
        )
        """The rate limit's token bucket, shared by threads and event loops; ``None`` without one."""
        # None while the inline first attempts may skip server pacing and the rate limit: no
        # bucket, and no server pause ever began (then ``_pause_began``); read by them alone
        # (with _execution._outer: -0.75k instructions an admission, callgrind)
        self._gate: object | None = self.bucket
        self.permits: Permits | None = None
        """The bulkhead's permits, shared by threads and event loops; ``None`` without one.

        ``try_acquire()``, ``acquire(timeout)``, ``await acquire_async(timeout)``
        and ``release()`` (see :class:`~seawall._bulkhead.BulkheadRuntime`; an
        :class:`~seawall._adaptive.AdaptiveRuntime` for an adaptive bulkhead),
        for integrations that hold a permit across work of their own (a pooled
        connection); a refusal is counted through an :class:`Execution`.
        """
        if isinstance(bulkhead, AdaptiveBulkhead):
            self.permits = AdaptiveRuntime(bulkhead, self._now())
        elif bulkhead is not None:
            self.permits = BulkheadRuntime(bulkhead.max_concurrent)
        self._max_wait = bulkhead.max_wait if bulkhead is not None else 0.0
        self._attempt_timeout = timeout.attempt if timeout is not None else None
        self._first_timeout: float | None = None  # the first attempt's limit: min(attempt, total)
        if timeout is not None and (timeout.attempt is not None or timeout.total is not None):
            self._first_timeout = min(t for t in (timeout.attempt, timeout.total) if t is not None)
        self._ledger = Ledger(name, self._now, self.hooks, self.circuit,
                              breaker.slow_call_duration if breaker is not None else None,
                              retry.budget if retry is not None else None)
        if isinstance(self.permits, AdaptiveRuntime):
            self._ledger.sampler = self.permits.sample  # the limit learns from each outcome
        self._observer: Observer | None = None
        self.chaos: ChaosRuntime | None = ChaosRuntime(chaos) if chaos is not None else None
        """Fault injection (``enable()``, ``disable()``, ``draw()``), ``None`` without ``chaos=``.

        Off unless the point is given a :class:`seawall.Chaos`; see docs/chaos.md.
        """
        _register(self)  # for exporters of live state (seawall.otel_metrics' gauges)
        _check_point(name, retry, breaker, timeout,  # options that contradict each other
                     hedge=hedge, rate_limit=rate_limit)

    # -- public helpers ----------------------------------------------------

    def __repr__(self) -> str:
        return f"IntegrationPoint({self.name!r})"

    @property
    def breaker_state(self) -> BreakerState | None:
        """The breaker's state, or ``None`` without a breaker."""
        return self.circuit.state if self.circuit is not None else None

    def add_hook(self, hook: Callable[[Any], None]) -> None:
        """Receive this point's events (see :func:`seawall.add_hook`)."""
        self.hooks.add(hook)

    def remove_hook(self, hook: Callable[[Any], None]) -> None:
        """Stop a hook added with :meth:`add_hook`."""
        self.hooks.remove(hook)

    def stats(self) -> PointStats:
        """A consistent snapshot of this point's counters."""
        stats = self._ledger.stats()
        permits = self.permits
        if permits is not None:
            limit = permits.limit if isinstance(permits, AdaptiveRuntime) else permits.max_concurrent
            stats = stats._replace(concurrency_limit=limit)
        return stats

    def reset_stats(self) -> None:
        """Zero the in-memory counters (breaker and budget state are untouched)."""
        self._ledger.reset()

    def _on_transition(self, old: BreakerState, new: BreakerState, reason: str) -> None:
        self._ledger.transition(old, new, reason)

    # -- classification ----------------------------------------------------

    def classify_exception(self, exc: BaseException,
                           integration: ExceptionRule | None = None) -> Classification:
        """User rules, then ``Retry(on=...)``, then the integration's rule, then the defaults."""
        for rule in self._exc_rules:
            found = rule(exc)
            if found is not None:
                return found
        if integration is not None:
            found = integration(exc)
            if found is not None:
                return found
        return default_exception_classification(exc)

    def classify_result(self, result: Any,
                        integration: ResultRule | None = None) -> Classification | None:
        """User result rules, then the integration's; ``None`` means success."""
        for rule in self._result_rules:
            found = rule(result)
            if found is not None:
                return found
        if integration is not None:
            return integration(result)
        return None

    # -- the decorator and call/acall --------------------------------------------

    @overload
    def __call__(self, fn: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, Coroutine[Any, Any, T]]: ...

    @overload
    def __call__(self, fn: Callable[P, T]) -> Callable[P, T]: ...

    def __call__(self, fn: Callable[P, Any]) -> Callable[P, Any]:
        """Decorate ``fn`` (``def`` or ``async def``); signature and metadata are kept."""
        operation = getattr(fn, "__qualname__", None) or repr(fn)
        if inspect.iscoroutinefunction(fn):
            if self.hedge is not None:
                hedged = ahedged

                @functools.wraps(fn)
                async def hedged_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                    return await hedged(self, lambda _t: fn(*args, **kwargs), operation)

                return hedged_wrapper
            arun = self.arun

            @functools.wraps(fn)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                return await arun(lambda _t: fn(*args, **kwargs), operation)

            return async_wrapper
        if self.hedge is not None:
            raise sync_refusal(self, f"{operation}()")
        run = self.run

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
            return run(lambda _t: fn(*args, **kwargs), operation)

        return wrapper

    def call(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Call ``fn(*args, **kwargs)`` through the pipeline (sync; not with a hedge)."""
        if self.hedge is not None:
            raise sync_refusal(self, "call()")
        return self.run(lambda _t: fn(*args, **kwargs), getattr(fn, "__qualname__", "call"))

    async def acall(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Await ``fn(*args, **kwargs)`` through the pipeline (async; hedged with a hedge)."""
        if self.hedge is not None:
            return await ahedged(self, lambda _t: fn(*args, **kwargs),
                                 getattr(fn, "__qualname__", "acall"))
        return await self.arun(lambda _t: fn(*args, **kwargs), getattr(fn, "__qualname__", "acall"))

    # -- the public entry of integrations ------------------------------------------

    run = _run
    arun = _arun
    ahedged = ahedged
    """``await point.ahedged(attempt, operation, deadline=None, classify_exception=None,
    classify_result=None, discard=None)``: ``arun`` with the point's :class:`seawall.Hedge`
    (asyncio or trio; only for idempotent work). See :func:`seawall._hedge.ahedged`."""
    hedge_futures = hedge_futures
    """``point.hedge_futures(ex, start, judge) -> (future, classification | None)``: the
    point's :class:`seawall.Hedge` in the calling thread over attempts that are futures
    (sync gRPC ``.future()``). See :func:`seawall._hedge_futures.hedge_futures`."""

    def execution(self, operation: str, *, deadline: float | None = None,
                  first: tuple[float, int] | None = None) -> Execution:
        """Start the bookkeeping of one logical call (for integrations that drive attempts).

        ``deadline`` is an absolute time on this point's clock (for example
        the caller's gRPC ``timeout``), narrowed with the point's total timeout
        and any enclosing seawall deadline. ``first``: the ``(start, ticket)``
        of a first attempt admitted by :meth:`admit_first`, which this
        execution takes over (its outcome is then reported here).
        """
        if first is None:
            return Execution(self, operation, deadline)
        ex = Execution(self, operation, deadline, first[0])
        ex.adopt(*first)
        return ex

    admit_first = _admit_first

    def _pause_began(self) -> None:
        """Server pacing's ``on_pause``: from now on the inline first attempts check the pause."""
        self._gate = self.pacing

    def observer(self) -> Observer:
        """The observed-work path of this point (work watched, never replayed); see :class:`Observer`."""
        observer = self._observer
        if observer is None:
            observer = self._observer = Observer(self)
        return observer

    def _reclock(self) -> None:
        """The system clock was armed for ``seawall.testing.instant()`` (``_clock._skew``): re-bind."""
        if type(self.clock) is not SystemClock:
            return
        now = self.clock.now
        self._now = now
        self._ledger.now = now
        if self._observer is not None:
            self._observer.reclock(now)

    # the observer's functions under the names integrations used before observer()

    def admit(self, operation: str) -> int:
        """``observer().admit(operation)``: the breaker's ticket for observed work."""
        return self.observer().admit(operation)

    def record_success(self, operation: str, started: float, ticket: int = REJECTED) -> None:
        """``observer().succeeded(...)``; the default ticket feeds no breaker."""
        self._ledger.succeeded(operation, started, ticket)

    def record_failure(self, operation: str, started: float, classification: Classification,
                       ticket: int = REJECTED) -> None:
        """``observer().failed(...)``; the default ticket feeds no breaker."""
        self.observer().failed(operation, started, classification, ticket)

    def release(self, ticket: int) -> None:
        """``observer().release(ticket)``."""
        self.observer().release(ticket)
