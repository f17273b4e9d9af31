"""Timeouts and cancellation: attempt and total deadlines, remaining(), the caller's cancel."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

import seawall
from seawall import (
    Backoff,
    CircuitBreaker,
    CircuitOpenError,
    DeadlineExceeded,
    IntegrationPoint,
    Retry,
    Timeout,
)
from seawall.testing import FakeClock


class Hang:
    """An async callable that never finishes by itself; notes whether it was cancelled."""

    def __init__(self, finish_after: int | None = None) -> None:
        self.calls = 0
        self.cancelled = 0
        self.started = asyncio.Event()
        self.finish_after = finish_after

    async def __call__(self) -> str:
        self.calls += 1
        self.started.set()
        if self.finish_after is not None and self.calls > self.finish_after:
            return f"done on attempt {self.calls}"
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        return "unreachable"


class BlockingSleepClock(FakeClock):
    """A fake clock whose async sleeps block until cancelled (to cancel a caller mid-wait)."""

    def __init__(self) -> None:
        super().__init__()
        self.sleeping = asyncio.Event()

    async def asleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.sleeping.set()
        await asyncio.Event().wait()


class OversleepingClock(FakeClock):
    """A fake clock whose sleeps overshoot, as real sleeps do on a loaded machine."""

    def sleep(self, seconds: float) -> None:
        super().sleep(seconds + 0.15)


async def test_async_attempt_timeout_cancels_the_work() -> None:
    """An async attempt past its deadline is cancelled and DeadlineExceeded (a TimeoutError) raised."""
    p = IntegrationPoint("t", timeout=Timeout(attempt=0.05))
    work = Hang()
    start = time.monotonic()
    with pytest.raises(DeadlineExceeded) as info:
        await p.acall(work)
    assert time.monotonic() - start < 5.0
    assert work.cancelled == 1
    assert isinstance(info.value, TimeoutError)
    assert (info.value.point, info.value.operation) == ("t", "acall")
    stats = p.stats()
    assert (stats.failures, stats.failures_by_category["timeout"], stats.cancelled) == (1, 1, 0)


async def test_timed_out_attempts_are_retried() -> None:
    """A timed-out attempt is a timeout failure, retried per the retry policy."""
    p = IntegrationPoint("t", timeout=Timeout(attempt=0.05),
                         retry=Retry(attempts=3, backoff=Backoff.constant(0.0), budget=None))
    work = Hang(finish_after=2)
    assert await p.acall(work) == "done on attempt 3"
    assert work.cancelled == 2
    stats = p.stats()
    assert (stats.successes, stats.attempts, stats.retries) == (1, 3, 2)


async def test_every_attempt_timing_out_raises_deadline_exceeded_with_a_note() -> None:
    """When every attempt times out, DeadlineExceeded is raised with the attempts noted."""
    p = IntegrationPoint("t", timeout=Timeout(attempt=0.03),
                         retry=Retry(attempts=2, backoff=Backoff.constant(0.0), budget=None))
    with pytest.raises(DeadlineExceeded) as info:
        await p.acall(Hang())
    assert "2 attempt(s)" in info.value.__notes__[0]


async def test_total_deadline_bounds_all_attempts() -> None:
    """The total deadline cuts the last attempt short and stops further retries."""
    p = IntegrationPoint("t", timeout=Timeout(attempt=0.2, total=0.3),
                         retry=Retry(attempts=10, backoff=Backoff.constant(0.0), budget=None))
    work = Hang()
    start = time.monotonic()
    with pytest.raises(DeadlineExceeded):
        await p.acall(work)
    elapsed = time.monotonic() - start
    assert work.calls == 2  # 0.2 s, then the 0.1 s left
    assert 0.29 <= elapsed < 5.0


async def test_remaining_inside_async_work() -> None:
    """seawall.remaining() inside async work gives the seconds left of the attempt."""
    p = IntegrationPoint("t", timeout=Timeout(attempt=10.0))

    async def read() -> float | None:
        return seawall.remaining()

    left = await p.acall(read)
    assert left is not None and 9.0 < left <= 10.0


def test_remaining_inside_sync_work() -> None:
    """seawall.remaining() inside sync work counts down on the point's clock."""
    clock = FakeClock()
    p = IntegrationPoint("t", timeout=Timeout(attempt=2.0), clock=clock)

    def work() -> tuple[float | None, float | None]:
        before = seawall.remaining()
        clock.advance(0.5)
        return before, seawall.remaining()

    assert p.call(work) == (2.0, 1.5)


def test_remaining_is_the_smaller_of_attempt_and_total() -> None:
    """On a retry, remaining() is the attempt timeout or what is left of the total, if less."""
    clock = FakeClock()
    p = IntegrationPoint("t", timeout=Timeout(attempt=2.0, total=3.0), clock=clock,
                         retry=Retry(attempts=3, backoff=Backoff.constant(0.25), budget=None))
    seen: list[float | None] = []

    def work() -> str:
        seen.append(seawall.remaining())
        clock.advance(1.0)
        if len(seen) < 3:
            raise ConnectionError
        return "ok"

    assert p.call(work) == "ok"
    assert seen == pytest.approx([2.0, 1.75, 0.5])


def test_remaining_is_none_outside_and_without_timeout() -> None:
    """remaining() is None outside any point, and inside a point without a Timeout."""
    assert seawall.remaining() is None
    assert IntegrationPoint("free").call(seawall.remaining) is None
    p = IntegrationPoint("t", timeout=Timeout(total=5.0))
    p.call(lambda: None)
    assert seawall.remaining() is None


def test_nested_points_see_the_tighter_deadline() -> None:
    """A call through a point inside another point's call keeps the outer, tighter deadline."""
    outer = IntegrationPoint("outer", timeout=Timeout(attempt=1.0))
    inner = IntegrationPoint("inner", timeout=Timeout(attempt=30.0))
    left = outer.call(inner.call, seawall.remaining)
    assert left is not None and left <= 1.0


async def test_caller_cancellation_is_not_a_failure() -> None:
    """Cancelling the caller cancels the work; it is counted as cancelled, not failed, not retried."""
    p = IntegrationPoint("c", retry=Retry(attempts=3, budget=None),
                         breaker=CircuitBreaker(minimum_calls=1, window=1))
    work = Hang()
    task = asyncio.create_task(p.acall(work))
    await asyncio.wait_for(work.started.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (work.calls, work.cancelled) == (1, 1)
    stats = p.stats()
    assert (stats.cancelled, stats.failures, stats.retries, stats.calls) == (1, 0, 0, 1)
    assert p.breaker_state is seawall.BreakerState.CLOSED
    assert p.circuit is not None and p.circuit.window_counts() == (0, 0, 0)


async def test_cancellation_with_a_timeout_running_is_still_the_callers() -> None:
    """A caller's cancel during an attempt that has a timeout propagates as CancelledError."""
    p = IntegrationPoint("c", timeout=Timeout(attempt=30.0), retry=Retry(attempts=3, budget=None))
    work = Hang()
    task = asyncio.create_task(p.acall(work))
    await asyncio.wait_for(work.started.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    stats = p.stats()
    assert (stats.cancelled, stats.failures, work.calls) == (1, 0, 1)


async def test_cancellation_during_the_retry_wait_stops_the_call() -> None:
    """A caller cancelled while waiting to retry is cancelled, with no further attempt."""
    clock = BlockingSleepClock()
    p = IntegrationPoint("c", clock=clock, retry=Retry(attempts=3, budget=None))
    calls = 0

    async def down() -> None:
        nonlocal calls
        calls += 1
        raise ConnectionError

    task = asyncio.create_task(p.acall(down))
    await asyncio.wait_for(clock.sleeping.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert calls == 1
    stats = p.stats()
    assert (stats.cancelled, stats.failures, stats.calls) == (1, 0, 1)


async def test_cancelled_trial_call_gives_back_its_permit() -> None:
    """A half-open trial cancelled mid-attempt frees its trial permit for another caller."""
    clock = FakeClock()
    p = IntegrationPoint("c", clock=clock,
                         breaker=CircuitBreaker(minimum_calls=1, window=1, open_for=1.0,
                                                half_open_calls=1))
    with pytest.raises(ConnectionError):
        p.call(lambda: (_ for _ in ()).throw(ConnectionError()))
    clock.advance(1.0)
    work = Hang()
    task = asyncio.create_task(p.acall(work))
    await asyncio.wait_for(work.started.wait(), 10)
    with pytest.raises(CircuitOpenError):
        p.execution("probe").begin()  # the only trial permit is taken
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    p.execution("probe").begin()  # given back


async def test_cancel_after_a_failed_trial_does_not_free_an_extra_permit() -> None:
    """Cancelling a caller whose trial already failed does not hand its trial permit out again."""
    clock = BlockingSleepClock()
    p = IntegrationPoint("c", clock=clock, retry=Retry(attempts=3, budget=None),
                         breaker=CircuitBreaker(failure_rate=1.0, minimum_calls=1, window=1,
                                                open_for=1.0, half_open_calls=2))
    circuit = p.circuit
    assert circuit is not None
    circuit.record(circuit.admit(clock.now()), clock.now(), True, False)
    clock.advance(1.0)

    async def down() -> None:
        raise ConnectionError

    task = asyncio.create_task(p.acall(down))  # trial 1 of 2 fails, then waits to retry
    await asyncio.wait_for(clock.sleeping.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert p.breaker_state is seawall.BreakerState.HALF_OPEN
    p.execution("probe").begin()  # trial 2 of 2
    with pytest.raises(CircuitOpenError):
        p.execution("probe").begin()


def test_overslept_wait_still_raises_the_original_exception() -> None:
    """If a retry wait overshoots the total deadline, the caller still gets the original error."""
    clock = OversleepingClock()
    p = IntegrationPoint("t", clock=clock, timeout=Timeout(total=1.0),
                         retry=Retry(attempts=3, backoff=Backoff.constant(0.4), budget=None))
    raised: list[Exception] = []

    def down() -> None:
        raised.append(ConnectionError(f"down #{len(raised) + 1}"))
        raise raised[-1]

    with pytest.raises(ConnectionError) as info:
        p.call(down)
    assert info.value is raised[-1]
    assert len(raised) == 2
    stats = p.stats()
    assert (stats.calls, stats.failures) == (1, 1)


def test_caller_deadline_already_passed_is_refused_and_counted() -> None:
    """A call whose deadline has already passed raises DeadlineExceeded and is counted."""
    clock = FakeClock()
    p = IntegrationPoint("t", clock=clock)
    ran: list[Any] = []
    with pytest.raises(DeadlineExceeded):
        p.run(lambda t: ran.append(t), operation="late", deadline=clock.now() - 1.0)
    assert ran == []
    stats = p.stats()
    assert (stats.calls, stats.rejected, stats.rejections["deadline"]) == (1, 1, 1)


# -- sync work that overruns its attempt deadline ----------------------------------


def _overrunning(clock: FakeClock, seconds: float) -> Any:
    def work() -> str:
        clock.advance(seconds)  # the work took this long (sync work cannot be interrupted)
        return "late but done"

    return work


def test_a_sync_success_past_its_deadline_is_returned_and_counted_as_a_timeout() -> None:
    """Timeout(attempt=0.1) and a 0.25 s function: the value is returned, the call is overrun."""
    clock = FakeClock()
    point = IntegrationPoint("slow", clock=clock, timeout=Timeout(attempt=0.1))
    events: list[Any] = []
    point.add_hook(events.append)
    assert point.call(_overrunning(clock, 0.25)) == "late but done"
    stats = point.stats()
    assert (stats.calls, stats.successes, stats.failures, stats.timeouts) == (1, 1, 0, 1)
    attempt, call = events
    assert isinstance(attempt, seawall.AttemptEvent) and attempt.category is seawall.Category.TIMEOUT
    assert attempt.duration == pytest.approx(0.25)
    assert isinstance(call, seawall.CallEvent) and call.category is None


def test_a_sync_success_within_its_deadline_is_a_plain_success() -> None:
    """The same function under its deadline: no timeout counted."""
    clock = FakeClock()
    point = IntegrationPoint("quick", clock=clock, timeout=Timeout(attempt=0.5))
    assert point.call(_overrunning(clock, 0.25)) == "late but done"
    assert point.stats().timeouts == 0


def test_overruns_are_slow_calls_for_the_breaker() -> None:
    """Overruns count toward the slow-call rate whatever slow_call_duration says."""
    clock = FakeClock()
    point = IntegrationPoint(
        "slow", clock=clock, timeout=Timeout(attempt=0.1),
        breaker=CircuitBreaker(minimum_calls=4, window=4, slow_call_duration=30.0,
                               slow_call_rate=0.5))
    for _ in range(4):
        assert point.call(_overrunning(clock, 0.25)) == "late but done"
    assert point.breaker_state is seawall.BreakerState.OPEN
    with pytest.raises(CircuitOpenError):
        point.call(lambda: "refused")


def test_an_overrun_after_a_retry_is_counted_once_with_its_attempts() -> None:
    """A retried call whose last attempt overruns: one success, one timeout, two attempts."""
    clock = FakeClock()
    point = IntegrationPoint("retried", clock=clock, timeout=Timeout(attempt=0.1),
                             retry=Retry(attempts=3, backoff=Backoff.constant(0.0), budget=None))
    events: list[Any] = []
    point.add_hook(events.append)
    tries: list[int] = []

    def work() -> str:
        tries.append(1)
        if len(tries) == 1:
            raise ConnectionError("reset")
        clock.advance(0.3)
        return "second time"

    assert point.call(work) == "second time"
    stats = point.stats()
    assert (stats.successes, stats.failures, stats.attempts, stats.timeouts) == (1, 0, 2, 1)
    [call] = [e for e in events if isinstance(e, seawall.CallEvent)]
    assert call.attempts == 2 and call.category is None


def test_a_real_sync_overrun_on_the_system_clock() -> None:
    """With the real clock: a function sleeping 0.25 s under a 0.1 s attempt timeout."""
    point = IntegrationPoint("real", timeout=Timeout(attempt=0.1))

    @point
    def slow() -> int:
        time.sleep(0.25)  # the work itself, not a wait for an event
        return 42

    assert slow() == 42
    assert point.stats().timeouts == 1
