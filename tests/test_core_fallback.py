"""Fallback: a value or a handler, on chosen categories and on rejections, sync and async."""

from __future__ import annotations

from typing import Any

import pytest

import seawall
from seawall import (
    Bulkhead,
    BulkheadFullError,
    Category,
    CircuitBreaker,
    CircuitOpenError,
    Classifier,
    Fallback,
    IntegrationPoint,
    ResultFailure,
    Retry,
)
from seawall._classify import UNAVAILABLE
from seawall.testing import FakeClock


def down() -> None:
    raise ConnectionError("down")


async def adown() -> None:
    raise ConnectionError("down")


def point(fallback: Fallback, **kwargs: Any) -> IntegrationPoint:
    kwargs.setdefault("retry", Retry(attempts=2, budget=None))
    return IntegrationPoint("fb", fallback=fallback, clock=FakeClock(), **kwargs)


def test_value_replaces_a_transient_failure() -> None:
    """Once retries run out on a transient failure, the fallback value is returned."""
    p = point(Fallback(value="cached"))
    assert p.call(down) == "cached"
    stats = p.stats()
    assert (stats.failures, stats.fallbacks, stats.attempts) == (1, 1, 2)


def test_handler_receives_the_original_exception() -> None:
    """A handler is called with the caller's original exception and its result returned."""
    seen: list[BaseException] = []

    def handler(exc: BaseException) -> str:
        seen.append(exc)
        return f"fallback for {type(exc).__name__}"

    p = point(Fallback(handler=handler))
    assert p.call(down) == "fallback for ConnectionError"
    assert isinstance(seen[0], ConnectionError)


def test_categories_outside_on_are_raised() -> None:
    """A permanent failure is not in the default categories: it is raised, not replaced."""
    p = point(Fallback(value="cached"))

    def bug() -> None:
        raise ValueError("bad")

    with pytest.raises(ValueError):
        p.call(bug)
    assert p.stats().fallbacks == 0


def test_on_chooses_the_categories() -> None:
    """Fallback(on={permanent}) answers permanent failures and lets transient ones raise."""
    p = point(Fallback(value=0, on=frozenset({Category.PERMANENT})))

    def bug() -> None:
        raise ValueError("bad")

    assert p.call(bug) == 0
    with pytest.raises(ConnectionError):
        p.call(down)


def test_on_accepts_category_names() -> None:
    """Fallback(on=...) accepts category names and normalises them."""
    assert Fallback(value=1, on={"timeout"}).on == frozenset({Category.TIMEOUT})  # type: ignore[arg-type]


def test_open_breaker_rejection_uses_the_fallback() -> None:
    """With on_rejection (the default), a call refused by an open breaker gets the fallback."""
    p = point(Fallback(handler=lambda e: type(e).__name__),
              breaker=CircuitBreaker(minimum_calls=1, window=1), retry=None)
    assert p.call(down) == "ConnectionError"
    assert p.call(lambda: "fresh") == "CircuitOpenError"
    stats = p.stats()
    assert (stats.rejected, stats.fallbacks) == (1, 2)


def test_full_bulkhead_rejection_uses_the_fallback() -> None:
    """A call refused by a full bulkhead gets the fallback, with the BulkheadFullError."""
    seen: list[BaseException] = []
    p = point(Fallback(handler=lambda e: seen.append(e) or "busy"),
              bulkhead=Bulkhead(max_concurrent=1))
    assert p.permits is not None and p.permits.try_acquire()
    assert p.call(lambda: "ran") == "busy"
    assert isinstance(seen[0], BulkheadFullError)
    p.permits.release()


def test_on_rejection_false_lets_rejections_raise() -> None:
    """With on_rejection=False, rejections raise even though failures fall back."""
    p = point(Fallback(value="cached", on_rejection=False),
              breaker=CircuitBreaker(minimum_calls=1, window=1), retry=None)
    assert p.call(down) == "cached"
    with pytest.raises(CircuitOpenError):
        p.call(lambda: "fresh")


async def test_async_handler_is_awaited_in_acall() -> None:
    """acall awaits an async handler."""
    async def handler(exc: BaseException) -> str:
        return "async fallback"

    p = point(Fallback(handler=handler))
    assert await p.acall(adown) == "async fallback"


async def test_async_handler_on_rejection_is_awaited() -> None:
    """acall awaits an async handler on a rejection too."""
    async def handler(exc: BaseException) -> str:
        return f"async {type(exc).__name__}"

    p = point(Fallback(handler=handler), breaker=CircuitBreaker(minimum_calls=1, window=1),
              retry=None)
    assert await p.acall(adown) == "async ConnectionError"
    assert await p.acall(adown) == "async CircuitOpenError"


async def test_value_fallback_in_acall() -> None:
    """acall returns the fallback value on failure."""
    p = point(Fallback(value=[]))
    assert await p.acall(adown) == []


def test_result_failure_is_handed_to_the_handler() -> None:
    """For a failed result, the handler gets a ResultFailure holding the result and classification."""
    seen: list[BaseException] = []

    def handler(error: BaseException) -> str:
        seen.append(error)
        return "stale copy"

    p = point(Fallback(handler=handler),
              classifier=Classifier().on_result(lambda r: UNAVAILABLE if r == 503 else None))
    assert p.call(lambda: 503) == "stale copy"
    (failure,) = seen
    assert isinstance(failure, ResultFailure)
    assert failure.result == 503
    assert failure.classification == UNAVAILABLE
    assert failure.point == "fb"
    assert isinstance(failure, seawall.SeawallError)


def test_success_never_calls_the_fallback() -> None:
    """A successful call returns its own value and leaves the fallback untouched."""
    called = []
    p = point(Fallback(handler=lambda e: called.append(e)))
    assert p.call(lambda: 42) == 42
    assert called == [] and p.stats().fallbacks == 0
