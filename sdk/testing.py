"""Test helpers: a testing mode without waits, an attempts cap, a fake clock, a pytest plugin.

* :func:`instant` (a context manager and a decorator, sync or async): every
  point, made before or inside, skips its waits (retry backoff, a bulkhead's
  ``max_wait``) and sees time move by what it skipped, so its decisions are
  those of a real run. The ``with`` gives the :class:`InstantView`, whose
  ``advance(seconds)`` moves time past a breaker's ``open_for``.
* :func:`attempts` caps every point's attempts per call (``attempts(1)``:
  no retries anywhere).
* :class:`FakeClock`, a manual clock for one point (``clock=``).
* A pytest plugin (``pytest -p seawall.testing``; installed, it loads by
  itself) with the fixtures ``seawall_instant``, ``seawall_points`` and
  ``seawall_events`` (see :mod:`seawall._pytest_plugin`).

Both modes are context variables, not process state: they hold in the
thread or task that enters them and in the tasks it starts (and threads
run in a copy of its context, such as ``asyncio.to_thread``), never in
unrelated threads, and they are undone on exit even when nested.
"""

from __future__ import annotations

import functools
import inspect
import threading
from collections.abc import Callable
from contextvars import ContextVar, Token
from types import TracebackType
from typing import Any, Generic, TypeVar

from ._clock import INSTANT, InstantView, checkpoint
from ._errors import ConfigurationError
from ._execution import ATTEMPT_CAP
from ._point import IntegrationPoint
from ._policies import Backoff, Bulkhead, CircuitBreaker, Retry, RetryBudget, Timeout

__all__ = ["FakeClock", "InstantView", "attempts", "full_pipeline_point", "instant"]

# loaded with this module by pytest (-p seawall.testing, or the pytest11 entry point);
# a plain import of seawall.testing never imports pytest
pytest_plugins = ["seawall._pytest_plugin"]

V = TypeVar("V")
F = TypeVar("F", bound=Callable[..., Any])


class _Scope(Generic[V]):
    """Sets a context variable for a ``with`` block or each call of a decorated function."""

    _var: ContextVar[Any]

    def __init__(self) -> None:
        self._tokens: list[Token[Any]] = []

    def _value(self) -> V:
        raise NotImplementedError

    def _fresh(self) -> _Scope[V]:
        raise NotImplementedError

    def __enter__(self) -> V:
        value = self._value()
        self._tokens.append(self._var.set(value))
        return value

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._var.reset(self._tokens.pop())

    def __call__(self, fn: F) -> F:
        """Decorate ``fn`` (``def`` or ``async def``): each call runs inside a fresh scope."""
        if inspect.iscoroutinefunction(fn):
            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                with self._fresh():
                    return await fn(*args, **kwargs)

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with self._fresh():
                return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]


class instant(_Scope[InstantView]):  # used like a function: instant()
    """No waits anywhere in this context, decisions unchanged: ``with instant() as view:``.

    Every point on the system clock (made before or inside the block)
    skips its retry backoffs and bulkhead waits; each skipped wait moves
    ``view``'s time forward by its length, so total deadlines, breaker
    windows and ``open_for``, and retry budgets see the time pass as in a
    real run. A full bulkhead refuses at once (as when no permit comes
    within ``max_wait``). ``view.advance(30)`` moves time by hand, past a
    breaker's ``open_for`` for example; ``view.skipped`` lists the waits.
    A point with its own clock (``clock=FakeClock()``) keeps it: its waits
    were already instant. The attempts themselves run as they are (an
    attempt timeout still cuts a slow async one short, in real time).

    Also a decorator, on ``def`` and ``async def``. Nested blocks share one
    view. The mode holds in this thread or task and in what runs in a copy
    of its context (tasks it starts, ``asyncio.to_thread``), not in other
    threads; it ends with the block.
    """

    _var = INSTANT

    def _value(self) -> InstantView:
        return INSTANT.get() or InstantView()

    def _fresh(self) -> instant:
        return instant()


class attempts(_Scope[int]):  # used like a function: attempts(1)
    """At most ``n`` attempts per call, through every point, in this context.

    ``attempts(1)`` turns every retry off; a point whose policy allows
    fewer keeps its own number. The call then stops as when its own
    attempts run out (the caller's exception, with its note). A context
    manager and a decorator; an inner ``attempts(m)`` replaces the outer
    cap until it exits. Held in a context variable, as :func:`instant` is.
    """

    _var = ATTEMPT_CAP

    def __init__(self, n: int) -> None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigurationError(f"seawall.testing.attempts: n must be an integer >= 1, got {n!r}")
        super().__init__()
        self.n = n

    def _value(self) -> int:
        return self.n

    def _fresh(self) -> attempts:
        return attempts(self.n)


class FakeClock:
    """A manual monotonic clock. ``sleep`` and ``asleep`` advance it instead of waiting.

    ``sleeps`` records every requested wait (seconds). Thread-safe.
    """

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._lock = threading.Lock()
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``."""
        if seconds < 0:
            raise ValueError(f"FakeClock.advance needs seconds >= 0, got {seconds!r}")
        with self._lock:
            self._now += seconds

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self._now += seconds

    async def asleep(self, seconds: float) -> None:
        self.sleep(seconds)
        await checkpoint()  # yields once, under asyncio or trio


def full_pipeline_point(name: str, **overrides: Any) -> IntegrationPoint:
    """A point with every policy on, as the benchmarks and many tests use it.

    Retry (3 attempts, exponential backoff, the default budget), a count
    breaker (50% of 100 calls, 20 minimum), a bulkhead of 64 with a 50 ms
    wait, and 1 s attempt / 5 s total timeouts. ``overrides`` replace any
    of the point's keyword arguments.
    """
    options: dict[str, Any] = {
        "retry": Retry(attempts=3, backoff=Backoff.exponential(), budget=RetryBudget()),
        "breaker": CircuitBreaker(failure_rate=0.5, minimum_calls=20, window=100),
        "bulkhead": Bulkhead(max_concurrent=64, max_wait=0.05),
        "timeout": Timeout(attempt=1.0, total=5.0),
    }
    options.update(overrides)
    return IntegrationPoint(name, **options)
