"""The observed-work path (``point.observer()``): work watched, never replayed, counted by the core."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

import seawall
from seawall import CircuitBreaker, IntegrationPoint, Retry, RetryBudget, Timeout
from seawall._classify import PERMANENT, TRANSIENT
from seawall.testing import FakeClock


def breaker_point(clock: FakeClock, **breaker: object) -> IntegrationPoint:
    options: dict[str, object] = {"failure_rate": 0.5, "minimum_calls": 4, "window": 4,
                                  "open_for": 10.0, "half_open_calls": 2}
    options.update(breaker)
    return IntegrationPoint("db", clock=clock, breaker=CircuitBreaker(**options))  # type: ignore[arg-type]


def test_one_observer_per_point_with_its_clock_and_first_timeout() -> None:
    """observer() is the same object each time; now() is the point's clock; first_timeout = min(attempt, total)."""
    clock = FakeClock(50.0)
    p = IntegrationPoint("db", clock=clock, timeout=Timeout(attempt=2.0, total=5.0))
    obs = p.observer()
    assert p.observer() is obs
    assert obs.now() == 50.0
    assert obs.first_timeout == 2.0
    assert IntegrationPoint("db", timeout=Timeout(total=3.0)).observer().first_timeout == 3.0
    assert IntegrationPoint("db").observer().first_timeout is None


def test_without_a_breaker_admit_gives_no_ticket_and_successes_count() -> None:
    """No breaker: admit() answers NO_TICKET; succeeded() counts one call, one attempt, one success."""
    p = IntegrationPoint("db", clock=FakeClock())
    obs = p.observer()
    ticket = obs.admit("SELECT t")
    assert ticket == obs.NO_TICKET < 0
    obs.succeeded("SELECT t", obs.now(), ticket)
    s = p.stats()
    assert (s.calls, s.successes, s.attempts, s.failures) == (1, 1, 1, 0)


def test_counted_counts_only_when_nobody_needs_to_hear() -> None:
    """counted() counts and says True with no hook and no ticket; with a hook it counts nothing."""
    p = IntegrationPoint("db", clock=FakeClock())
    obs = p.observer()
    assert obs.counted(obs.now(), obs.NO_TICKET) is True
    assert p.stats().successes == 1
    seen: list[seawall.Event] = []
    p.add_hook(seen.append)
    assert obs.counted(obs.now(), obs.NO_TICKET) is False
    assert p.stats().successes == 1 and seen == []
    obs.succeeded("SELECT t", obs.now(), obs.NO_TICKET)  # what the caller then does
    assert p.stats().successes == 2
    assert [type(e).__name__ for e in seen] == ["AttemptEvent", "CallEvent"]
    assert seen[1].operation == "SELECT t"  # type: ignore[union-attr]


def test_counted_leaves_a_breaker_ticket_to_succeeded_until_the_window_is_clean() -> None:
    """A ticket of a window holding failures needs succeeded(); once only fast successes fill it, counted() will do."""
    clock = FakeClock()
    p = breaker_point(clock, minimum_calls=4, window=4, failure_rate=1.0)
    obs = p.observer()
    ticket = obs.admit("q")
    obs.failed("q", obs.now(), TRANSIENT, ticket)
    for _ in range(4):  # the failure leaves the window after four successes
        ticket = obs.admit("q")
        if not obs.counted(obs.now(), ticket):
            obs.succeeded("q", obs.now(), ticket)
    assert p.circuit is not None and p.circuit.window_counts() == (4, 0, 0)
    assert obs.counted(obs.now(), obs.admit("q")) is True
    assert p.stats().successes == 5


def test_an_open_breaker_refuses_admission_and_counts_it() -> None:
    """Failures open the breaker; admit() then raises CircuitOpenError, counted as a rejected call."""
    clock = FakeClock()
    p = breaker_point(clock)
    obs = p.observer()
    for _ in range(4):
        started = obs.now()
        obs.failed("UPDATE t", started, TRANSIENT, obs.admit("UPDATE t"))
    assert p.breaker_state is seawall.BreakerState.OPEN
    with pytest.raises(seawall.CircuitOpenError) as refused:
        obs.admit("UPDATE t")
    assert refused.value.operation == "UPDATE t" and refused.value.retry_after == 10.0
    s = p.stats()
    assert (s.calls, s.failures, s.rejected, s.rejections["breaker"]) == (5, 4, 1, 1)


def test_a_failure_is_never_retried_whatever_its_classification() -> None:
    """failed() with a retryable classification counts one attempt and no retry."""
    p = IntegrationPoint("db", clock=FakeClock(), retry=Retry(attempts=5, budget=None))
    obs = p.observer()
    obs.failed("q", obs.now(), TRANSIENT, obs.NO_TICKET)
    obs.failed("q", obs.now(), PERMANENT, obs.NO_TICKET)
    s = p.stats()
    assert (s.calls, s.failures, s.attempts, s.retries) == (2, 2, 2, 0)
    assert s.failures_by_category["transient"] == 1 and s.failures_by_category["permanent"] == 1


def test_half_open_trials_are_judged_by_observed_outcomes() -> None:
    """After open_for, two admitted trials that succeed close the breaker again."""
    clock = FakeClock()
    p = breaker_point(clock)
    obs = p.observer()
    for _ in range(4):
        obs.failed("q", obs.now(), TRANSIENT, obs.admit("q"))
    clock.advance(10.0)
    first, second = obs.admit("q"), obs.admit("q")
    assert first >= 0 and second >= 0
    with pytest.raises(seawall.CircuitOpenError):
        obs.admit("q")  # only two trials at a time
    obs.succeeded("q", obs.now(), first)
    obs.succeeded("q", obs.now(), second)
    assert p.breaker_state is seawall.BreakerState.CLOSED


def test_cancelled_and_released_trials_give_their_permit_back() -> None:
    """A cancelled trial is counted as cancelled and frees its slot; a released one frees it uncounted."""
    clock = FakeClock()
    p = breaker_point(clock)
    obs = p.observer()
    for _ in range(4):
        obs.failed("q", obs.now(), TRANSIENT, obs.admit("q"))
    clock.advance(10.0)
    a, b = obs.admit("q"), obs.admit("q")
    obs.cancelled("q", obs.now(), a)
    obs.release(b)
    c, d = obs.admit("q"), obs.admit("q")  # both slots are free again
    assert c >= 0 and d >= 0
    s = p.stats()
    assert (s.cancelled, s.failures, s.calls) == (1, 4, 5)


def test_observed_successes_count_toward_the_retry_budget() -> None:
    """Calls seen only through counted() let a later call retry under a budget with no floor."""
    def point() -> IntegrationPoint:
        return IntegrationPoint("db", clock=FakeClock(), retry=Retry(
            attempts=2, backoff=seawall.Backoff.constant(0.0),
            budget=RetryBudget(ratio=0.5, minimum_per_second=0.0)))

    def failing_once() -> Callable[[], str]:
        attempts: list[int] = []

        def work() -> str:
            attempts.append(1)
            if len(attempts) == 1:
                raise ConnectionError("blip")
            return "ok"

        return work

    alone = point()
    with pytest.raises(ConnectionError):
        alone.call(failing_once())  # no calls yet: the budget allows no retry
    assert alone.stats().rejections["budget"] == 1

    busy = point()
    obs = busy.observer()
    for _ in range(10):
        assert obs.counted(obs.now(), obs.NO_TICKET)
    assert busy.call(failing_once()) == "ok"
    assert busy.stats().retries == 1


def test_threads_observing_at_once_lose_no_count() -> None:
    """16 threads, each 2 000 observed successes (half through counted) and 100 failures: exact totals."""
    p = IntegrationPoint("db", breaker=CircuitBreaker(failure_rate=1.0, minimum_calls=100,
                                                      window=1000))
    obs = p.observer()
    start = threading.Barrier(16)

    def worker() -> None:
        start.wait()
        for i in range(2000):
            started = obs.now()
            ticket = obs.admit("q")
            if i % 2 or not obs.counted(started, ticket):
                obs.succeeded("q", started, ticket)
            if i % 20 == 0:
                obs.failed("q", obs.now(), TRANSIENT, obs.admit("q"))

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    s = p.stats()
    assert (s.successes, s.failures) == (16 * 2000, 16 * 100)
    assert s.calls == s.attempts == 16 * 2100
    assert p.breaker_state is seawall.BreakerState.CLOSED


def test_the_point_methods_of_before_are_the_observers() -> None:
    """point.admit / record_success / record_failure / release count as the observer does."""
    clock = FakeClock()
    p = breaker_point(clock)
    ticket = p.admit("q")
    p.record_success("q", clock.now(), ticket)
    p.record_failure("q", clock.now(), TRANSIENT)
    p.release(p.admit("q"))
    s = p.stats()
    assert (s.calls, s.successes, s.failures) == (2, 1, 1)


def test_start_gives_the_time_the_first_timeout_and_a_quiet_ticket() -> None:
    """start(): now(), first_timeout itself, and NO_TICKET / the closed breaker's ticket / None when it must judge."""
    clock = FakeClock(7.0)
    plain = IntegrationPoint("db", clock=clock, timeout=Timeout(attempt=2.0))
    obs = plain.observer()
    started, timeout, ticket = obs.start()
    assert started == 7.0 and timeout is obs.first_timeout and ticket == obs.NO_TICKET
    p = breaker_point(clock)
    obs = p.observer()
    assert obs.start()[2] == obs.admit("q") >= 0  # closed: the same ticket admit() gives
    for _ in range(4):
        obs.failed("q", obs.now(), TRANSIENT, obs.admit("q"))
    assert p.breaker_state is seawall.BreakerState.OPEN
    assert obs.start()[2] is None  # the breaker must judge: admit() refuses
    with pytest.raises(seawall.CircuitOpenError):
        obs.admit("q")


def test_start_narrows_the_timeout_to_an_enclosing_deadline_on_the_points_clock() -> None:
    """Inside a call with 2 s per attempt, start() after 0.5 s gives 1.5 s; after 2.5 s a timeout <= 0."""
    clock = FakeClock()
    p = IntegrationPoint("db", clock=clock, timeout=Timeout(attempt=2.0, total=30.0))
    obs = p.observer()
    seen: list[float | None] = []

    def work(step: float) -> None:
        clock.advance(step)
        seen.append(obs.start()[1])

    p.call(work, 0.5)
    p.call(work, 2.5)
    assert seen[0] == pytest.approx(1.5) and seen[1] is not None and seen[1] <= 0.0
    other = IntegrationPoint("other", clock=FakeClock(), timeout=Timeout(attempt=9.0))
    p.call(lambda: seen.append(other.observer().start()[1]))  # another clock's deadline: not its
    assert seen[2] == 9.0


def test_an_adopted_first_attempt_is_counted_as_one() -> None:
    """Execution.adopt: work begun outside begin() fails once, is not retried when told so, and counts one attempt."""
    clock = FakeClock()
    p = IntegrationPoint("db", clock=clock, retry=Retry(attempts=3, budget=None))
    ex = p.execution("connect")
    ex.adopt(ex.start)
    clock.advance(0.25)
    assert ex.failure(TRANSIENT.with_retry(False)) is None
    ex.end_failure(TRANSIENT)
    s = p.stats()
    assert (s.calls, s.failures, s.attempts, s.retries) == (1, 1, 1, 0) and ex.attempts == 1
