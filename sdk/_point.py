"""IntegrationPoint: one dependency's policy, its runtime state, and the two shells.

The pipeline is ``fallback -> total deadline -> retry (+ budget) -> circuit
breaker -> bulkhead -> attempt timeout -> the call``. Decisions are taken
by :class:`Execution` (no waiting, no I/O); the sync shell waits with the
clock's ``sleep`` and ``threading`` primitives, the async shell with
``asyncio``. Integrations drive the same :class:`Execution` with their own
classifiers, result checks, server hints and deadlines.

The decorator path (``call``/``acall``) inlines the first attempt: on the
success path it touches the breaker, the bulkhead and the counters once
each and allocates nothing but the event records hooks ask for.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import itertools
import math
import random
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, NamedTuple, ParamSpec, TypeVar, cast, overload

from ._breaker import CLOSED, REJECTED, BreakerRuntime, BreakerState
from ._bulkhead import BulkheadRuntime
from ._classify import (
    Category,
    Classification,
    Classifier,
    ExceptionRule,
    ResultRule,
    default_exception_classification,
    retry_on,
)
from ._clock import SYSTEM_CLOCK, Bounded, Clock
from ._deadline import DEADLINE, DONE, FIRED, TASK, watchdog
from ._errors import (
    BulkheadFullError,
    CircuitOpenError,
    ConfigurationError,
    DeadlineExceeded,
    RejectedError,
    SeawallError,
)
from ._events import (
    GLOBAL_HOOKS,
    AttemptEvent,
    BreakerTransition,
    CallEvent,
    HookSet,
    RejectionEvent,
    RetryEvent,
    emit,
    log,
)
from ._policies import Bulkhead, CircuitBreaker, Fallback, Retry, Timeout

P = ParamSpec("P")
T = TypeVar("T")

_wall = time.time
_new_tuple: Any = tuple.__new__
_monotonic = time.monotonic
_HAS_NOTES = sys.version_info >= (3, 11)


class ResultFailure(SeawallError):
    """A returned value that the classifier marked as a failure (an HTTP 503, say).

    Handed to a fallback handler in place of an exception; ``result`` is the value.
    """

    def __init__(self, result: Any, classification: Classification, *, point: str = "",
                 operation: str = "") -> None:
        super().__init__(f"result classified as {classification.category}", point=point,
                         operation=operation)
        self.result = result
        self.classification = classification


class PointStats(NamedTuple):
    """Counters of one point since it was created (or :meth:`IntegrationPoint.reset_stats`).

    ``calls`` = ``successes + failures + rejected + cancelled`` (rejected:
    refused before any attempt; cancelled: the caller cancelled, or the
    failure was classified ``cancelled``: never a failure, so
    ``failures_by_category`` has no ``cancelled`` key, as the metrics
    service has none). ``fallbacks`` counts calls answered by the fallback,
    which are also counted under their failure or rejection. ``timeouts``
    counts attempts in the ``timeout`` category, including sync attempts
    that returned after their deadline (see :class:`seawall.Timeout`).
    """

    calls: int
    successes: int
    failures: int
    rejected: int
    attempts: int
    retries: int
    fallbacks: int
    cancelled: int
    failures_by_category: dict[str, int]
    rejections: dict[str, int]
    timeouts: int = 0


def _add_note(exc: BaseException, note: str) -> None:
    if _HAS_NOTES:
        exc.add_note(note)  # type: ignore[attr-defined,unused-ignore]
    else:  # Python 3.10: keep the note where 3.11 would put it
        notes = getattr(exc, "__notes__", None)
        if notes is None:
            notes = []
            try:
                exc.__notes__ = notes  # type: ignore[attr-defined]
            except AttributeError:
                return
        notes.append(note)


class IntegrationPoint:
    """One dependency (a service, an API, a database) and its resilience policy.

    Use it as a decorator on ``def`` and ``async def``, or call through it
    with :meth:`call` / :meth:`acall`. Every policy is optional; ``None``
    turns it off. ``classifier`` rules are asked before the integration's
    own (or, for plain functions, before the defaults: timeouts and network
    errors transient, everything else permanent). ``clock`` replaces the
    monotonic clock and sleeps (tests); ``rand`` the jitter source.

    One point may be shared by any number of threads and event loops.
    """

    def __init__(
        self,
        name: str,
        *,
        retry: Retry | None = None,
        breaker: CircuitBreaker | None = None,
        bulkhead: Bulkhead | None = None,
        timeout: Timeout | None = None,
        fallback: Fallback | None = None,
        classifier: Classifier | None = None,
        clock: Clock | None = None,
        rand: Callable[[], float] | None = None,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ConfigurationError(f"IntegrationPoint.name must be a non-empty string, got {name!r}")
        for field, value, kind in (
            ("retry", retry, Retry), ("breaker", breaker, CircuitBreaker),
            ("bulkhead", bulkhead, Bulkhead), ("timeout", timeout, Timeout),
            ("fallback", fallback, Fallback), ("classifier", classifier, Classifier),
        ):
            if value is not None and not isinstance(value, kind):
                raise ConfigurationError(
                    f"IntegrationPoint.{field} must be a {kind.__name__} or None, got {value!r}"
                )
        self.name = name
        self.retry = retry
        self.breaker = breaker
        self.bulkhead = bulkhead
        self.timeout = timeout
        self.fallback = fallback
        self.classifier = classifier or Classifier()
        self.clock: Clock = clock or SYSTEM_CLOCK
        self._now: Callable[[], float] = self.clock.now
        self._rand = rand or random.random
        self.hooks = HookSet()

        rules: list[ExceptionRule] = list(self.classifier.exception_rules)
        if retry is not None and retry.on:
            rules.append(retry_on(retry.on))
        self._exc_rules: tuple[ExceptionRule, ...] = tuple(rules)
        self._result_rules: tuple[ResultRule, ...] = self.classifier.result_rules

        self.circuit: BreakerRuntime | None = (
            BreakerRuntime(breaker, self._on_transition) if breaker is not None else None
        )
        self._slow = breaker.slow_call_duration if breaker and breaker.slow_call_duration else math.inf
        self._permits: BulkheadRuntime | None = (
            BulkheadRuntime(bulkhead.max_concurrent) if bulkhead is not None else None
        )
        self._max_wait = bulkhead.max_wait if bulkhead is not None else 0.0
        self._attempt_timeout = timeout.attempt if timeout is not None else None
        self._total_timeout = timeout.total if timeout is not None else None
        self._first_timeout = (
            None if timeout is None
            else min(t for t in (timeout.attempt, timeout.total) if t is not None)
            if (timeout.attempt is not None or timeout.total is not None) else None
        )

        self._lock = threading.Lock()
        budget = retry.budget if retry is not None else None
        self._budget_on = budget is not None
        self._budget_ratio = budget.ratio if budget else 0.0
        self._budget_floor = budget.minimum_per_second * budget.period if budget else 0.0
        self._budget_width = budget.period / 10.0 if budget else 1.0
        # the budget needs no work per call: calls are counted anyway, and the
        # budget only notes the running total when a bucket boundary passes
        self._budget_next = 0.0 if budget else math.inf
        self._budget_index = 0
        self._budget_marks = [0] * 10
        self._budget_retries = [0] * 10
        self._budget_total_retries = 0
        self._reset_counters()

    # -- public helpers ----------------------------------------------------

    def __repr__(self) -> str:
        return f"IntegrationPoint({self.name!r})"

    @property
    def breaker_state(self) -> BreakerState | None:
        """The breaker's state, or ``None`` without a breaker."""
        return self.circuit.state if self.circuit is not None else None

    @property
    def permits(self) -> BulkheadRuntime | None:
        """The bulkhead's runtime (``None`` without a bulkhead), for integrations that take
        permits themselves: ``try_acquire()``, ``acquire(timeout)``, ``await
        acquire_async(timeout)``, ``release()``. Shared by every thread and event loop."""
        return self._permits

    def add_hook(self, hook: Callable[[Any], None]) -> None:
        """Receive this point's events (see :func:`seawall.add_hook`)."""
        self.hooks.add(hook)

    def remove_hook(self, hook: Callable[[Any], None]) -> None:
        """Stop a hook added with :meth:`add_hook`."""
        self.hooks.remove(hook)

    def stats(self) -> PointStats:
        """A consistent snapshot of this point's counters."""
        with self._lock:
            fast = _count_value(self._fast_ok) - self._base_fast
            return PointStats(
                calls=fast + self._c_calls - self._base_calls, successes=fast + self._c_successes,
                failures=self._c_failures, rejected=self._c_rejected,
                attempts=fast + self._c_attempts, retries=self._c_retries,
                fallbacks=self._c_fallbacks, cancelled=self._c_cancelled,
                failures_by_category=dict(self._c_by_category),
                rejections=dict(self._c_rejections), timeouts=self._c_timeouts,
            )

    def reset_stats(self) -> None:
        """Zero the in-memory counters (breaker and budget state are untouched)."""
        with self._lock:
            self._reset_counters()

    def _reset_counters(self) -> None:
        # successes on the first attempt are the hot path: an itertools.count
        # is incremented atomically by one C call, without the lock. It and the
        # call total are never reset (the retry budget reads their running
        # total, and hot paths hold the counter's bound method): a reset moves
        # the baselines that stats() subtracts
        if not hasattr(self, "_fast_ok"):
            self._fast_ok = itertools.count()
            self._c_calls = 0
        self._base_fast = _count_value(self._fast_ok)
        self._base_calls = self._c_calls
        self._c_successes = self._c_failures = self._c_rejected = 0
        self._c_attempts = self._c_retries = self._c_fallbacks = self._c_cancelled = 0
        self._c_timeouts = 0
        self._c_by_category: dict[str, int] = {c.value: 0 for c in Category
                                               if c is not Category.CANCELLED}
        self._c_rejections: dict[str, int] = {"breaker": 0, "bulkhead": 0, "budget": 0, "deadline": 0}

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

    # -- decorator and call/acall --------------------------------------------

    @overload
    def __call__(self, fn: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, Coroutine[Any, Any, T]]: ...

    @overload
    def __call__(self, fn: Callable[P, T]) -> Callable[P, T]: ...

    def __call__(self, fn: Callable[P, Any]) -> Callable[P, Any]:
        """Decorate ``fn`` (``def`` or ``async def``); signature and metadata are kept."""
        operation = getattr(fn, "__qualname__", None) or repr(fn)
        if inspect.iscoroutinefunction(fn):
            arun = self._arun

            @functools.wraps(fn)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                return await arun(lambda _t: fn(*args, **kwargs), operation, None, None, None,
                                  None, True)

            return async_wrapper
        run = self._run

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
            return run(lambda _t: fn(*args, **kwargs), operation, None, None, None, None, True)

        return wrapper

    def call(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Call ``fn(*args, **kwargs)`` through the pipeline (sync)."""
        return cast(T, self._call(fn, getattr(fn, "__qualname__", "call"), args, kwargs))

    async def acall(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Await ``fn(*args, **kwargs)`` through the pipeline (async)."""
        return cast(T, await self._acall(fn, getattr(fn, "__qualname__", "acall"), args, kwargs))

    def execution(self, operation: str, *, deadline: float | None = None) -> Execution:
        """Start the bookkeeping of one logical call (for integrations).

        ``deadline`` is an absolute time on this point's clock (for example
        the caller's gRPC ``timeout``), narrowed with the point's total timeout
        and any enclosing seawall deadline.
        """
        return Execution(self, operation, deadline)

    def _call(self, fn: Callable[..., Any], operation: str, args: tuple[Any, ...],
              kwargs: dict[str, Any]) -> Any:
        return self._run(lambda _t: fn(*args, **kwargs), operation, None, None, None, None, True)

    async def _acall(self, fn: Callable[..., Awaitable[Any]], operation: str,
                     args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        return await self._arun(lambda _t: fn(*args, **kwargs), operation, None, None, None,
                                None, True)

    # -- observing work that is not retried (integrations) ----------------------

    def admit(self, operation: str) -> int:
        """Let one observed operation past the breaker; returns a ticket for :meth:`record_success`.

        For work an integration observes but must not replay (a statement
        inside the caller's transaction): no retry and no bulkhead permit, only
        the breaker's verdict. Raises :class:`CircuitOpenError` when it refuses.
        Far cheaper than an :class:`Execution`. Thread-safe.
        """
        circuit = self.circuit
        if circuit is None:
            return 0
        if circuit.state is CLOSED:
            return circuit.generation
        ex = Execution(self, operation)
        try:
            ex.begin()
        except RejectedError as refused:
            ex.end_rejected(refused)
            raise
        return ex._ticket

    def record_success(self, operation: str, started: float, ticket: int = REJECTED) -> None:
        """Record an observed success that began at ``started`` (``point.clock.now()``).

        ``ticket`` comes from :meth:`admit`; the default feeds no breaker (for
        parts of a larger call that the breaker already judges as a whole).
        """
        next(self._fast_ok)
        if started >= self._budget_next:
            self._budget_tick(started)
        hooks = self.hooks.hooks or GLOBAL_HOOKS.hooks
        if ticket < 0:  # no breaker to tell (the common case of a hot path): only the hooks
            if hooks:
                self._emit_success(operation, self._now() - started)
            return
        circuit = self.circuit
        if circuit is not None and circuit.clean and self._slow == math.inf:
            ticket = REJECTED  # a success changes nothing in an all-success window
        if (circuit is not None and ticket >= 0) or hooks:
            t1 = self._now()
            duration = t1 - started
            if circuit is not None and ticket >= 0 \
                    and not (circuit.clean and duration < self._slow):
                circuit.record(ticket, t1, False, duration >= self._slow)
            if hooks:
                self._emit_success(operation, duration)

    def record_failure(self, operation: str, started: float, classification: Classification,
                       ticket: int = REJECTED) -> None:
        """Record an observed failure (not retried); see :meth:`record_success`."""
        ex = Execution(self, operation, None, started)
        ex._adopt_first(started, ticket)
        ex.failure(classification.with_retry(False) if classification.retry else classification)
        ex.end_failure(classification)

    def release(self, ticket: int) -> None:
        """Give back a ticket from :meth:`admit` whose work was cancelled (no outcome counted)."""
        if self.circuit is not None and ticket >= 0:
            self.circuit.release(ticket)

    def _emit_success(self, operation: str, duration: float) -> None:
        # the records are built with tuple.__new__: a NamedTuple's generated
        # __new__ costs twice as much, and this runs on every call a hook watches
        wall = _wall()
        name = self.name
        attempt = _new_tuple(AttemptEvent, (name, operation, 1, None, duration, wall))
        call = _new_tuple(CallEvent, (name, operation, None, 1, duration, wall, False, None))
        for hook in self.hooks.hooks + GLOBAL_HOOKS.hooks:
            try:
                hook(attempt)
                hook(call)
            except Exception:
                log.exception("seawall: event hook %r raised; the call is not affected", hook)

    # -- the general shells (integrations use these) ---------------------------

    def run(
        self,
        attempt: Callable[[float | None], T],
        *,
        operation: str,
        deadline: float | None = None,
        classify_exception: ExceptionRule | None = None,
        classify_result: ResultRule | None = None,
        discard: Callable[[T], None] | None = None,
    ) -> T:
        """Run ``attempt(timeout)`` through the whole pipeline, in this thread.

        ``timeout`` is the seconds this attempt may take (``None``: no
        limit); hand it to the transport. ``classify_exception`` and
        ``classify_result`` are the integration's rules, asked after the
        user's. ``discard(result)`` is called on a failed result before the
        next attempt (close an HTTP response, say). When retries run out on
        a failed result, that result is returned as it is; on an exception,
        the original is re-raised with a note. Rejections raise
        :class:`CircuitOpenError` / :class:`BulkheadFullError` unless a
        fallback takes them. A sync attempt cannot be interrupted: one that
        succeeds after its deadline is returned, and recorded as overrun (see
        :class:`seawall.Timeout`).
        """
        return cast(T, self._run(attempt, operation, deadline, classify_exception,
                                 classify_result, discard, True))

    def _run(self, attempt: Callable[[float | None], Any], operation: str,
             deadline: float | None, classify_exception: ExceptionRule | None,
             classify_result: ResultRule | None, discard: Callable[[Any], None] | None,
             enforce_timeout: bool) -> Any:
        # the first attempt takes the cheap path: no Execution unless it fails
        now = self._now
        t0 = now()
        circuit = self.circuit
        ticket = 0
        if circuit is not None:
            ticket = circuit.generation if circuit.state is CLOSED else circuit.admit(t0)
            if ticket == REJECTED:
                error, use_fallback = self._refuse(operation, t0)
                if use_fallback:
                    return _resolve_fallback(cast(Fallback, self.fallback), error)
                raise error
        timeout = self._first_timeout
        if deadline is None and DEADLINE.get() is None:
            # the common cases, no call: nothing to hand down, or the policy's own timeout
            limit = None if timeout is None else t0 + timeout
        else:
            limit, timeout = self._first_limit(t0, deadline)
        permits = self._permits
        pending: tuple[Exception | None, Any] | None = None
        if (timeout is not None and timeout <= 0.0) or \
                (permits is not None and not permits.try_acquire()):
            if circuit is not None:
                circuit.release(ticket)  # the loop admits it again, and waits or refuses
            ex = Execution(self, operation, deadline, t0)
        else:
            token = None if limit is None else DEADLINE.set((limit, now))
            try:
                result = attempt(timeout)
            except Exception as exc:
                failure: Exception | None = exc
                result = None
            except BaseException:
                if circuit is not None:
                    circuit.release(ticket)
                self._record_cancel(operation, t0)
                raise
            else:
                failure = None
            finally:
                if permits is not None:
                    permits.release()
                if token is not None:
                    DEADLINE.reset(token)
            if failure is None and not (
                    (self._result_rules or classify_result is not None)
                    and self.classify_result(result, classify_result) is not None):
                if limit is not None and enforce_timeout:
                    t1 = now()
                    if t1 > limit:  # it returned, but late: the value stands, the lateness counts
                        self._record_overrun(operation, t0, t0, 1, t1, ticket)
                        return result
                self.record_success(operation, t0, ticket)
                return result
            ex = Execution(self, operation, deadline, t0)
            ex._adopt_first(t0, ticket)
            pending = (failure, result)
        sleep = self.clock.sleep
        last: tuple[Classification, Exception | None, Any] | None = None
        while True:
            if pending is None:
                try:
                    timeout = ex.begin()
                    if permits is not None and not permits.acquire(self._max_wait):
                        raise ex.bulkhead_rejected()
                except (RejectedError, DeadlineExceeded) as rejection:  # refused, or no time left
                    if last is not None:
                        ex.stop_reason = f"retry refused: {rejection}"
                        return (self._final_failure(ex, *last))
                    return (self._final_rejection(ex, rejection))
                token = DEADLINE.set((ex.attempt_deadline, self._now)) \
                    if ex.attempt_deadline is not None else None
                try:
                    if last is not None and last[1] is None and discard is not None:
                        discard(last[2])  # a failed result is dropped once its retry is admitted
                    result = attempt(timeout)
                except Exception as exc:
                    failure = exc
                    result = None
                except BaseException:
                    ex.cancelled()
                    raise
                else:
                    failure = None
                finally:
                    if permits is not None:
                        permits.release()
                    if token is not None:
                        DEADLINE.reset(token)
            else:
                failure, result = pending
                pending = None
            if failure is not None:
                c = self.classify_exception(failure, classify_exception)
            else:
                found = self.classify_result(result, classify_result)
                if found is None:
                    late = ex.attempt_deadline
                    if late is not None and enforce_timeout:
                        t1 = self._now()
                        if t1 > late:
                            self._record_overrun(operation, ex.start, ex.attempt_start,
                                                 ex.attempts, t1, ex._ticket)
                            return (result)
                    ex.success()
                    return (result)
                c = found
            delay = ex.failure(c)
            if delay is None:
                return (self._final_failure(ex, c, failure, result))
            last = (c, failure, result)
            if delay > 0:
                try:
                    sleep(delay)
                except BaseException:
                    ex.cancelled()
                    raise

    async def arun(
        self,
        attempt: Callable[[float | None], Awaitable[T]],
        *,
        operation: str,
        deadline: float | None = None,
        classify_exception: ExceptionRule | None = None,
        classify_result: ResultRule | None = None,
        discard: Callable[[T], Awaitable[None] | None] | None = None,
        enforce_timeout: bool = True,
    ) -> T:
        """The async twin of :meth:`run`.

        With ``enforce_timeout`` (the default) an attempt still running at
        its deadline is cancelled and fails with :class:`DeadlineExceeded`;
        integrations whose transport enforces the timeout itself may pass
        ``False``. Cancelling the caller cancels the attempt and is never
        counted as a failure.
        """
        return cast(T, await self._arun(attempt, operation, deadline, classify_exception,
                                        classify_result, discard, enforce_timeout))

    async def _arun(self, attempt: Callable[[float | None], Awaitable[Any]], operation: str,
                    deadline: float | None, classify_exception: ExceptionRule | None,
                    classify_result: ResultRule | None,
                    discard: Callable[[Any], Awaitable[None] | None] | None,
                    enforce_timeout: bool) -> Any:
        now = self._now
        t0 = now()
        circuit = self.circuit
        ticket = 0
        if circuit is not None:
            ticket = circuit.generation if circuit.state is CLOSED else circuit.admit(t0)
            if ticket == REJECTED:
                error, use_fallback = self._refuse(operation, t0)
                if use_fallback:
                    value = _resolve_fallback(cast(Fallback, self.fallback), error)
                    return await value if inspect.isawaitable(value) else value
                raise error
        timeout = self._first_timeout
        if deadline is None and DEADLINE.get() is None:
            # the common cases, no call: nothing to hand down, or the policy's own timeout
            limit = None if timeout is None else t0 + timeout
        else:
            limit, timeout = self._first_limit(t0, deadline)
        permits = self._permits
        pending: tuple[Exception | None, Any] | None = None
        if (timeout is not None and timeout <= 0.0) or \
                (permits is not None and not permits.try_acquire()):
            if circuit is not None:
                circuit.release(ticket)
            ex = Execution(self, operation, deadline, t0)
        else:
            token = None
            watch = None
            if limit is not None:
                token = DEADLINE.set((limit, now))
                if enforce_timeout:
                    try:
                        loop = asyncio.get_running_loop()
                    except RuntimeError:  # not asyncio (trio): a cancel scope bounds each attempt
                        attempt = Bounded(attempt, functools.partial(self._deadline_error, operation))
                    else:
                        task = asyncio.current_task(loop)
                        if task is not None:
                            dog = watchdog(loop)
                            watch = dog.watch(task, limit if dog.same_clock and now is _monotonic
                                              else loop.time() + (limit - t0))
            try:
                result = await attempt(timeout)
            except asyncio.CancelledError:
                if watch is None or not (watch[FIRED] and _uncancel(watch[TASK])):
                    self._first_cancelled(operation, t0, ticket)
                    raise
                failure: Exception | None = self._deadline_error(operation, timeout)
                result = None
            except Exception as exc:
                failure = exc
                result = None
            except BaseException:
                self._first_cancelled(operation, t0, ticket)
                raise
            else:
                failure = None
                if watch is not None and watch[FIRED]:
                    _uncancel(watch[TASK])  # finished before the cancellation landed
            finally:
                if watch is not None:
                    watch[DONE] = True
                if permits is not None:
                    permits.release()
                if token is not None:
                    DEADLINE.reset(token)
            if failure is None and not (
                    (self._result_rules or classify_result is not None)
                    and self.classify_result(result, classify_result) is not None):
                self.record_success(operation, t0, ticket)
                return result
            ex = Execution(self, operation, deadline, t0)
            ex._adopt_first(t0, ticket)
            pending = (failure, result)
        asleep = self.clock.asleep
        last: tuple[Classification, Exception | None, Any] | None = None
        while True:
            if pending is None:
                try:
                    timeout = ex.begin()
                    if permits is not None and not permits.try_acquire():
                        try:
                            got = await permits.acquire_async(self._max_wait)
                        except BaseException:  # cancelled (asyncio's or trio's)
                            ex.cancelled()
                            raise
                        if not got:
                            raise ex.bulkhead_rejected()
                except (RejectedError, DeadlineExceeded) as rejection:  # refused, or no time left
                    if last is not None:
                        ex.stop_reason = f"retry refused: {rejection}"
                        return (await self._afinal_failure(ex, *last))
                    return (await self._afinal_rejection(ex, rejection))
                watch = None
                token = None
                if ex.attempt_deadline is not None:
                    token = DEADLINE.set((ex.attempt_deadline, self._now))
                    if enforce_timeout and timeout is not None:
                        try:
                            loop = asyncio.get_running_loop()
                        except RuntimeError:  # not asyncio (trio): a cancel scope bounds it
                            if type(attempt) is not Bounded:
                                attempt = Bounded(attempt,
                                                  functools.partial(self._deadline_error, operation))
                        else:
                            task = asyncio.current_task(loop)
                            if task is not None:
                                watch = watchdog(loop).watch(task, loop.time() + timeout)
                try:
                    if last is not None and last[1] is None and discard is not None:
                        closing = discard(last[2])  # dropped once its retry is admitted
                        if closing is not None:
                            await closing
                    result = await attempt(timeout)
                except asyncio.CancelledError:
                    if watch is not None:
                        watch[DONE] = True
                        if watch[FIRED] and _uncancel(watch[TASK]):
                            failure = self._deadline_error(operation, timeout)
                            result = None
                        else:
                            ex.cancelled()
                            raise
                    else:
                        ex.cancelled()
                        raise
                except Exception as exc:
                    failure = exc
                    result = None
                except BaseException:
                    ex.cancelled()
                    raise
                else:
                    failure = None
                finally:
                    if watch is not None:
                        watch[DONE] = True
                    if permits is not None:
                        permits.release()
                    if token is not None:
                        DEADLINE.reset(token)
            else:
                failure, result = pending
                pending = None
            if failure is not None:
                c = self.classify_exception(failure, classify_exception)
            else:
                found = self.classify_result(result, classify_result)
                if found is None:
                    ex.success()
                    return (result)
                c = found
            delay = ex.failure(c)
            if delay is None:
                return (await self._afinal_failure(ex, c, failure, result))
            last = (c, failure, result)
            if delay > 0:
                try:
                    await asleep(delay)
                except BaseException:
                    ex.cancelled()
                    raise

    # -- the first attempt of run/arun, without an Execution ------------------

    def _first_limit(self, t0: float, deadline: float | None) -> tuple[float | None, float | None]:
        """The first attempt's (absolute deadline, timeout): attempt, total, caller's, enclosing."""
        timeout = self._first_timeout
        limit = None if timeout is None else t0 + timeout
        if deadline is not None and (limit is None or deadline < limit):
            limit, timeout = deadline, deadline - t0
        outer = DEADLINE.get()
        if outer is not None and outer[1] is self._now and (limit is None or outer[0] < limit):
            limit, timeout = outer[0], outer[0] - t0
        return limit, timeout

    def _first_cancelled(self, operation: str, t0: float, ticket: int) -> None:
        if self.circuit is not None:
            self.circuit.release(ticket)
        self._record_cancel(operation, t0)

    # -- endings -----------------------------------------------------------

    def _deadline_error(self, operation: str, timeout: float | None) -> DeadlineExceeded:
        return DeadlineExceeded(
            f"{self.name}: {operation} did not finish within its {timeout:.3f} s deadline"
            if timeout is not None else f"{self.name}: {operation} ran out of time",
            point=self.name, operation=operation, timeout=timeout,
        )

    def _fallback_for(self, category: Category | None, rejected: bool) -> Fallback | None:
        fb = self.fallback
        if fb is None:
            return None
        if rejected:
            return fb if fb.on_rejection else None
        return fb if category in fb.on else None

    def _final_rejection(self, ex: Execution, rejection: RejectedError | DeadlineExceeded) -> Any:
        fb = self._fallback_for(None, True)
        ex.end_rejected(rejection, fallback=fb is not None)
        if fb is None:
            raise rejection
        return _resolve_fallback(fb, rejection)

    async def _afinal_rejection(self, ex: Execution,
                                rejection: RejectedError | DeadlineExceeded) -> Any:
        value = self._final_rejection(ex, rejection)
        return await value if inspect.isawaitable(value) else value

    def _final_failure(self, ex: Execution, c: Classification, failure: Exception | None,
                       result: Any) -> Any:
        fb = self._fallback_for(c.category, False)
        ex.end_failure(c, fallback=fb is not None)
        if fb is not None:
            return _resolve_fallback(
                fb, failure if failure is not None else
                ResultFailure(result, c, point=self.name, operation=ex.operation))
        if failure is None:
            return result
        if ex.attempts > 1 or ex.stop_reason:
            _add_note(failure, ex.describe(c))
        raise failure

    async def _afinal_failure(self, ex: Execution, c: Classification, failure: Exception | None,
                              result: Any) -> Any:
        value = self._final_failure(ex, c, failure, result)
        if self.fallback is not None and inspect.isawaitable(value):
            return await value
        return value

    # -- recording (the point's lock guards counters and the budget) -----------

    def _record_overrun(self, operation: str, started: float, attempt_started: float,
                        attempts: int, now: float, ticket: int) -> None:
        """A sync attempt succeeded after its deadline: a success, a timeout and a slow call.

        Its value was returned (it cannot be taken back); the breaker counts a
        slow call, the counters and the attempt's event a ``timeout``.
        """
        duration = now - attempt_started
        circuit = self.circuit
        if circuit is not None and ticket >= 0:
            circuit.record(ticket, now, False, True)
        if started >= self._budget_next:
            self._budget_tick(started)
        with self._lock:
            self._c_calls += 1
            self._c_successes += 1
            self._c_attempts += 1
            self._c_timeouts += 1
        hooks = self.hooks.hooks + GLOBAL_HOOKS.hooks
        if hooks:
            wall = _wall()
            emit(hooks, AttemptEvent(self.name, operation, attempts, Category.TIMEOUT, duration,
                                     wall))
            emit(hooks, CallEvent(self.name, operation, None, attempts, now - started, wall,
                                  False, None))

    def _record_cancel(self, operation: str, t0: float) -> None:
        with self._lock:
            self._c_calls += 1
            self._c_cancelled += 1
        hooks = self.hooks.hooks + GLOBAL_HOOKS.hooks
        if hooks:
            emit(hooks, CallEvent(self.name, operation, Category.CANCELLED, 1,
                                  self._now() - t0, _wall(), False, None))

    def _total_calls(self) -> int:
        return _count_value(self._fast_ok) + self._c_calls

    def _budget_tick(self, now: float) -> None:
        """A bucket boundary passed: note the running call total (rare; takes the lock)."""
        with self._lock:
            self._budget_roll(now)

    def _budget_roll(self, now: float) -> int:
        """Advance the budget's buckets to ``now`` (lock held); the current slot."""
        index = int(now / self._budget_width)
        current = self._budget_index
        if index > current:
            calls = self._total_calls()
            for k in range(1, min(index - current, 10) + 1):
                i = (current + k) % 10
                self._budget_marks[i] = calls
                self._budget_total_retries -= self._budget_retries[i]
                self._budget_retries[i] = 0
            self._budget_index = current = index
            self._budget_next = (index + 1) * self._budget_width
        return current % 10

    def _budget_withdraw(self, now: float) -> bool:
        """Take one retry from the budget if it allows (lock held)."""
        slot = self._budget_roll(now)
        calls = self._total_calls() - self._budget_marks[(slot + 1) % 10]
        if self._budget_total_retries + 1 > self._budget_ratio * calls + self._budget_floor:
            return False
        self._budget_retries[slot] += 1
        self._budget_total_retries += 1
        return True

    def _open_error(self, operation: str, now: float) -> CircuitOpenError:
        circuit = self.circuit
        assert circuit is not None
        retry_at = circuit.retry_at()
        after = None if retry_at is None else max(0.0, retry_at - now)
        if after is not None:
            when = f"for another {after:.3f} s"
        elif circuit.state is BreakerState.HALF_OPEN:
            when = "while its trial calls are in flight"
        else:
            when = "until reset"
        return CircuitOpenError(
            f"{self.name}: circuit {circuit.state.value}, {operation} refused {when}",
            point=self.name, operation=operation, retry_after=after, retry_at=retry_at,
        )

    def _refuse(self, operation: str, now: float) -> tuple[CircuitOpenError, bool]:
        """A new call refused by the breaker, counted at once: (the error, use the fallback?).

        The decorator's own path for the outage case, where refusals are the
        traffic: one lock, no Execution, no raise-and-catch inside seawall.
        """
        fb = self.fallback
        use_fallback = fb is not None and fb.on_rejection
        with self._lock:
            self._c_rejections["breaker"] += 1
            self._c_calls += 1
            self._c_rejected += 1
            self._c_fallbacks += use_fallback
        error = self._open_error(operation, now)
        if self.hooks.hooks or GLOBAL_HOOKS.hooks:
            hooks = self.hooks.hooks + GLOBAL_HOOKS.hooks
            wall = _wall()
            emit(hooks, RejectionEvent(self.name, operation, "breaker", wall))
            emit(hooks, CallEvent(self.name, operation, None, 0, 0.0, wall, use_fallback,
                                  "breaker"))
        return error, use_fallback

    def _count_rejection(self, operation: str, reason: str) -> None:
        with self._lock:
            self._c_rejections[reason] += 1
        hooks = self.hooks.hooks + GLOBAL_HOOKS.hooks
        if hooks:
            emit(hooks, RejectionEvent(self.name, operation, reason, _wall()))

    def _on_transition(self, old: BreakerState, new: BreakerState, reason: str) -> None:
        hooks = self.hooks.hooks + GLOBAL_HOOKS.hooks
        if hooks:
            emit(hooks, BreakerTransition(self.name, old.value, new.value, reason, _wall()))


def _count_value(counter: itertools.count[int]) -> int:
    """The next value an ``itertools.count`` would return, without advancing it."""
    return int(repr(counter)[6:-1])


def _uncancel(task: asyncio.Task[Any]) -> bool:
    """Undo our own cancellation; true when no other cancellation is pending."""
    uncancel = getattr(task, "uncancel", None)
    if uncancel is None:  # Python 3.10 keeps no count
        return True
    return bool(uncancel() == 0)


def _resolve_fallback(fb: Fallback, error: BaseException) -> Any:
    if fb.handler is not None:
        return fb.handler(error)
    return fb.value


class Execution:
    """Bookkeeping of one logical call through a point: admission, outcomes, retry decisions.

    Sans-IO: it reads the point's clock but never waits. A shell (or an
    integration) calls :meth:`begin` before each attempt, then exactly one
    of :meth:`success`, :meth:`failure` (which answers whether and after
    how long to retry) or :meth:`cancelled`; and ends a failed call with
    :meth:`end_failure` or :meth:`end_rejected`. Not shared between threads.
    """

    __slots__ = (
        "_ticket", "attempt_deadline", "attempt_start", "attempts", "deadline", "last_delay",
        "operation", "point", "start", "stop_reason",
    )

    def __init__(self, point: IntegrationPoint, operation: str, deadline: float | None = None,
                 start: float | None = None) -> None:
        self.point = point
        self.operation = operation
        now = point._now() if start is None else start
        self.start = now
        total = point._total_timeout
        limit = now + total if total is not None else None
        if deadline is not None:
            limit = deadline if limit is None else min(limit, deadline)
        outer = DEADLINE.get()
        if outer is not None and outer[1] is point._now:
            limit = outer[0] if limit is None else min(limit, outer[0])
        self.deadline = limit
        self.attempts = 0
        self.attempt_start = now
        self.attempt_deadline: float | None = None
        self.last_delay = 0.0
        self.stop_reason = ""
        self._ticket = REJECTED

    def _adopt_first(self, start: float, ticket: int) -> None:
        self.attempts = 1
        self.attempt_start = start
        self._ticket = ticket

    def remaining(self) -> float | None:
        """Seconds left of the total budget, ``None`` when unbounded."""
        if self.deadline is None:
            return None
        return max(0.0, self.deadline - self.point._now())

    def begin(self) -> float | None:
        """Admit the next attempt; returns its timeout in seconds (``None``: unbounded).

        Raises :class:`DeadlineExceeded` when the total deadline has passed and
        :class:`CircuitOpenError` when the breaker refuses. Takes no bulkhead
        permit: the shell does, and reports a refusal with :meth:`bulkhead_rejected`.
        """
        point = self.point
        now = point._now()
        if self.deadline is not None and now >= self.deadline:
            point._count_rejection(self.operation, "deadline")
            raise DeadlineExceeded(
                f"{point.name}: no time left for {self.operation}",
                point=point.name, operation=self.operation,
                timeout=self.deadline - self.start,
            )
        circuit = point.circuit
        if circuit is not None:
            ticket = circuit.generation if circuit.state is CLOSED else circuit.admit(now)
            if ticket == REJECTED:
                point._count_rejection(self.operation, "breaker")
                raise point._open_error(self.operation, now)
            self._ticket = ticket
        self.attempts += 1
        self.attempt_start = now
        timeout = point._attempt_timeout
        if self.deadline is not None:
            left = self.deadline - now
            timeout = left if timeout is None or left < timeout else timeout
        self.attempt_deadline = None if timeout is None else now + timeout
        return timeout

    def bulkhead_rejected(self) -> BulkheadFullError:
        """The admitted attempt found no bulkhead permit: undo admission, count, return the error."""
        point = self.point
        if point.circuit is not None:
            point.circuit.release(self._ticket)
        self.attempts -= 1
        point._count_rejection(self.operation, "bulkhead")
        bulkhead = point.bulkhead
        limit = bulkhead.max_concurrent if bulkhead is not None else 0
        return BulkheadFullError(
            f"{point.name}: bulkhead full ({limit} in flight), {self.operation} refused",
            point=point.name, operation=self.operation, max_concurrent=limit,
        )

    def success(self) -> None:
        """The current attempt succeeded; the call ends with success."""
        point = self.point
        if self.attempts == 1:  # the common case takes the lock-free path
            point.record_success(self.operation, self.attempt_start, self._ticket)
            return
        now = point._now()
        duration = now - self.attempt_start
        if point.circuit is not None:
            point.circuit.record(self._ticket, now, False, duration >= point._slow)
        with point._lock:
            point._c_calls += 1
            point._c_successes += 1
            point._c_attempts += 1
        if point.hooks.hooks or GLOBAL_HOOKS.hooks:
            hooks = point.hooks.hooks + GLOBAL_HOOKS.hooks
            wall = _wall()
            emit(hooks, AttemptEvent(point.name, self.operation, self.attempts, None, duration, wall))
            emit(hooks, CallEvent(point.name, self.operation, None, self.attempts,
                                  now - self.start, wall, False, None))

    def failure(self, c: Classification) -> float | None:
        """The current attempt failed as ``c``: the delay before the next attempt, or ``None`` to stop."""
        point = self.point
        now = point._now()
        duration = now - self.attempt_start
        if point.circuit is not None:
            point.circuit.record(self._ticket, now, c.breaker, c.breaker and duration >= point._slow)
            self._ticket = REJECTED  # recorded: a later cancel has no trial permit to give back
        with point._lock:
            point._c_attempts += 1
            point._c_timeouts += c.category is Category.TIMEOUT
        hooks = point.hooks.hooks + GLOBAL_HOOKS.hooks
        if hooks:
            emit(hooks, AttemptEvent(point.name, self.operation, self.attempts, c.category,
                                     duration, _wall()))
        retry = point.retry
        if retry is None or not c.retry:
            return None
        if self.attempts >= retry.attempts:
            self.stop_reason = "attempts exhausted"
            return None
        if c.delay is not None:
            delay = min(c.delay, retry.max_server_delay)
        else:
            delay = retry.backoff.delay(self.attempts, self.last_delay, point._rand)
        if self.deadline is not None and now + delay >= self.deadline:
            self.stop_reason = f"next wait of {delay:.3f} s would pass the deadline"
            point._count_rejection(self.operation, "deadline")
            return None
        if point._budget_on:
            with point._lock:
                allowed = point._budget_withdraw(now)
            if not allowed:
                self.stop_reason = "retry budget exhausted"
                point._count_rejection(self.operation, "budget")
                return None
        self.last_delay = delay
        with point._lock:
            point._c_retries += 1
        if hooks:
            emit(hooks, RetryEvent(point.name, self.operation, self.attempts + 1, delay,
                                   c.category, _wall()))
        return delay

    def cancelled(self) -> None:
        """The caller cancelled: give back the breaker ticket, count no failure."""
        point = self.point
        if point.circuit is not None:
            point.circuit.release(self._ticket)
        point._record_cancel(self.operation, self.start)

    def end_failure(self, c: Classification, *, fallback: bool = False) -> None:
        """The call ends in failure ``c`` (answered by the fallback when ``fallback``)."""
        point = self.point
        with point._lock:
            point._c_calls += 1
            if c.category is Category.CANCELLED:  # never a failure (the recorder agrees)
                point._c_cancelled += 1
            else:
                point._c_failures += 1
                point._c_by_category[c.category.value] += 1
            point._c_fallbacks += fallback
        hooks = point.hooks.hooks + GLOBAL_HOOKS.hooks
        if hooks:
            emit(hooks, CallEvent(point.name, self.operation, c.category, self.attempts,
                                  point._now() - self.start, _wall(), fallback, None))

    def end_rejected(self, rejection: RejectedError | DeadlineExceeded, *,
                     fallback: bool = False) -> None:
        """The call was refused before an attempt (or a retry) could run, or had no time left."""
        point = self.point
        reason = rejection.reason if isinstance(rejection, RejectedError) else "deadline"
        if self.attempts > 0:
            # a retry was refused: the call failed, the refusal is already counted
            self.stop_reason = f"retry refused ({reason})"
        with point._lock:
            point._c_calls += 1
            point._c_rejected += 1
            point._c_fallbacks += fallback
        hooks = point.hooks.hooks + GLOBAL_HOOKS.hooks
        if hooks:
            emit(hooks, CallEvent(point.name, self.operation, None, self.attempts,
                                  point._now() - self.start, _wall(), fallback, reason))

    def describe(self, c: Classification) -> str:
        """The note added to a re-raised exception."""
        elapsed = self.point._now() - self.start
        text = (f"seawall: {self.point.name} {self.operation}: {self.attempts} attempt(s) in "
                f"{elapsed:.3f} s, last failure {c.category.value}")
        if self.stop_reason:
            text += f"; stopped: {self.stop_reason}"
        return text

