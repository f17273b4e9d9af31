"""Events: frozen records delivered to hooks; a raising hook never breaks the call; stats()."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest

import seawall
from seawall import (
    AttemptEvent,
    Backoff,
    BreakerTransition,
    CallEvent,
    Category,
    CircuitBreaker,
    CircuitOpenError,
    IntegrationPoint,
    RejectionEvent,
    Retry,
    RetryBudget,
    RetryEvent,
)
from seawall.testing import FakeClock


def recording_point(**kwargs: Any) -> tuple[IntegrationPoint, list[Any], FakeClock]:
    clock = FakeClock()
    p = IntegrationPoint("events", clock=clock, **kwargs)
    events: list[Any] = []
    p.add_hook(events.append)
    return p, events, clock


def test_success_emits_an_attempt_and_a_call() -> None:
    """A successful call emits one AttemptEvent and one CallEvent with its duration."""
    p, events, clock = recording_point()

    def work() -> str:
        clock.advance(0.5)
        return "ok"

    p.call(work)
    attempt, call = events
    assert isinstance(attempt, AttemptEvent) and isinstance(call, CallEvent)
    assert attempt[:5] == ("events", work.__qualname__, 1, None, 0.5)
    assert call[:5] == ("events", work.__qualname__, None, 1, 0.5)
    assert (call.fallback, call.rejected) == (False, None)
    assert abs(call.time - time.time()) < 60  # wall-clock time, for the metrics store


def test_retries_emit_attempts_retries_and_the_outcome() -> None:
    """A failing call with retries emits attempt, retry, attempt, ..., then its CallEvent."""
    p, events, _ = recording_point(
        retry=Retry(attempts=3, backoff=Backoff.constant(0.25), budget=None))

    def down() -> None:
        raise ConnectionError

    with pytest.raises(ConnectionError):
        p.call(down)
    assert [type(e).__name__ for e in events] == [
        "AttemptEvent", "RetryEvent", "AttemptEvent", "RetryEvent", "AttemptEvent", "CallEvent"]
    assert [e.attempt for e in events if isinstance(e, AttemptEvent)] == [1, 2, 3]
    retries = [e for e in events if isinstance(e, RetryEvent)]
    assert [(r.attempt, r.delay, r.category) for r in retries] == [
        (2, 0.25, Category.TRANSIENT), (3, 0.25, Category.TRANSIENT)]
    call = events[-1]
    assert (call.category, call.attempts, call.duration) == (Category.TRANSIENT, 3, 0.5)


def test_rejection_emits_a_rejection_and_a_call() -> None:
    """A call refused by the breaker emits a RejectionEvent and a CallEvent marked rejected."""
    p, events, _ = recording_point(breaker=CircuitBreaker(minimum_calls=1, window=1))
    assert p.circuit is not None
    p.circuit.force_open()
    events.clear()
    with pytest.raises(CircuitOpenError):
        p.call(lambda: None)
    rejection, call = events
    assert isinstance(rejection, RejectionEvent)
    assert (rejection.point, rejection.reason) == ("events", "breaker")
    assert (call.rejected, call.attempts, call.category) == ("breaker", 0, None)


def test_budget_refusal_emits_a_rejection() -> None:
    """A retry refused by the budget is reported as a RejectionEvent with reason budget."""
    p, events, _ = recording_point(
        retry=Retry(attempts=3, budget=RetryBudget(ratio=0.0, minimum_per_second=0.0)))

    def down() -> None:
        raise ConnectionError

    with pytest.raises(ConnectionError):
        p.call(down)
    assert [e.reason for e in events if isinstance(e, RejectionEvent)] == ["budget"]


def test_breaker_transition_fields() -> None:
    """A BreakerTransition names the point, both states and a reason."""
    p, events, _ = recording_point(breaker=CircuitBreaker(minimum_calls=1, window=1))
    with pytest.raises(ConnectionError):
        p.call(lambda: (_ for _ in ()).throw(ConnectionError()))
    (transition,) = [e for e in events if isinstance(e, BreakerTransition)]
    assert transition[:3] == ("events", "closed", "open")
    assert "failure rate" in transition.reason


def test_fallback_call_event_says_so() -> None:
    """A call answered by the fallback has fallback=True and the failure's category."""
    p, events, _ = recording_point(fallback=seawall.Fallback(value=0))

    def down() -> None:
        raise ConnectionError

    assert p.call(down) == 0
    call = events[-1]
    assert (call.fallback, call.category) == (True, Category.TRANSIENT)


async def test_cancelled_call_event() -> None:
    """A cancelled call's CallEvent has the cancelled category and is no failure."""
    p, events, _ = recording_point()
    started = asyncio.Event()

    async def hang() -> None:
        started.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(p.acall(hang))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert events[-1].category is Category.CANCELLED


def test_events_are_immutable() -> None:
    """Event records cannot be changed by a hook."""
    p, events, _ = recording_point()
    p.call(lambda: None)
    with pytest.raises(AttributeError):
        events[0].point = "other"


def test_raising_hook_is_logged_and_never_breaks_the_call(caplog: pytest.LogCaptureFixture) -> None:
    """A hook that raises is logged; the call and the other hooks carry on."""
    p, events, _ = recording_point()

    def broken_hook(event: Any) -> None:
        raise RuntimeError("hook bug")

    p.add_hook(broken_hook)
    later: list[Any] = []
    p.add_hook(later.append)
    with caplog.at_level(logging.ERROR, logger="seawall"):
        assert p.call(lambda: "fine") == "fine"
    assert len(events) == len(later) == 2
    assert any("hook" in r.getMessage() and r.exc_info for r in caplog.records)


def test_global_hook_sees_every_point_until_removed() -> None:
    """seawall.add_hook receives every point's events until remove_hook."""
    seen: list[Any] = []
    seawall.add_hook(seen.append)
    try:
        IntegrationPoint("a").call(lambda: None)
        IntegrationPoint("b").call(lambda: None)
    finally:
        seawall.remove_hook(seen.append)
    IntegrationPoint("c").call(lambda: None)
    assert {e.point for e in seen} == {"a", "b"}


def test_removing_an_unknown_hook_raises() -> None:
    """remove_hook of a hook never added raises ValueError; add_hook needs a callable."""
    with pytest.raises(ValueError):
        seawall.remove_hook(print)
    with pytest.raises(TypeError):
        seawall.add_hook("not callable")  # type: ignore[arg-type]


def test_point_hook_removal() -> None:
    """point.remove_hook stops delivery to that hook."""
    p, events, _ = recording_point()
    p.remove_hook(events.append)
    p.call(lambda: None)
    assert events == []


def test_stats_counts_every_outcome() -> None:
    """stats() counts calls, successes, failures, rejections, attempts, retries and fallbacks."""
    p, _, _ = recording_point(retry=Retry(attempts=2, backoff=Backoff.constant(0.0), budget=None),
                              breaker=CircuitBreaker(minimum_calls=100, window=100))

    def down() -> None:
        raise ConnectionError

    def bug() -> None:
        raise ValueError

    p.call(lambda: 1)
    p.call(lambda: 2)
    with pytest.raises(ConnectionError):
        p.call(down)
    with pytest.raises(ValueError):
        p.call(bug)
    assert p.circuit is not None
    p.circuit.force_open()
    with pytest.raises(CircuitOpenError):
        p.call(lambda: 3)
    stats = p.stats()
    assert stats == seawall.PointStats(
        calls=5, successes=2, failures=2, rejected=1, attempts=5, retries=1, fallbacks=0,
        cancelled=0,
        failures_by_category={"transient": 1, "timeout": 0, "rate_limited": 0, "unavailable": 0,
                              "permanent": 1},
        rejections={"breaker": 1, "bulkhead": 0, "budget": 0, "deadline": 0, "rate_limit": 0,
                    "paused": 0},
    )
    assert stats.calls == stats.successes + stats.failures + stats.rejected


def test_reset_stats_zeroes_the_counters() -> None:
    """reset_stats() zeroes every counter."""
    p, _, _ = recording_point()
    for _ in range(3):
        p.call(lambda: None)
    p.reset_stats()
    stats = p.stats()
    assert (stats.calls, stats.successes, stats.attempts) == (0, 0, 0)
    p.call(lambda: None)
    assert p.stats().successes == 1
