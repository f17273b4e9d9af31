"""Retry: attempts, backoff delays, server hints, the total deadline, notes, and the retry budget."""

from __future__ import annotations

from typing import Any

import pytest

from seawall import (
    Backoff,
    Classifier,
    IntegrationPoint,
    Retry,
    RetryBudget,
    Timeout,
)
from seawall._classify import RATE_LIMITED, UNAVAILABLE
from seawall.testing import FakeClock


class AlwaysFails:
    """Raises a fresh ``ConnectionError`` on every call, advancing ``clock`` by ``cost`` first."""

    def __init__(self, clock: FakeClock | None = None, cost: float = 0.0) -> None:
        self.calls = 0
        self.clock = clock
        self.cost = cost
        self.raised: list[BaseException] = []

    def __call__(self) -> Any:
        self.calls += 1
        if self.clock is not None and self.cost:
            self.clock.advance(self.cost)
        exc = ConnectionError(f"down #{self.calls}")
        self.raised.append(exc)
        raise exc


def point(retry: Retry, **kwargs: Any) -> IntegrationPoint:
    return IntegrationPoint("retry", retry=retry, clock=kwargs.pop("clock", FakeClock()), **kwargs)


def test_attempts_counts_the_first_call() -> None:
    """Retry(attempts=3) calls the function three times in all."""
    p = point(Retry(attempts=3, backoff=Backoff.constant(0.1), budget=None))
    fn = AlwaysFails()
    with pytest.raises(ConnectionError):
        p.call(fn)
    assert fn.calls == 3
    stats = p.stats()
    assert (stats.calls, stats.attempts, stats.retries, stats.failures) == (1, 3, 2, 1)


def test_one_attempt_never_retries() -> None:
    """Retry(attempts=1) makes a single attempt."""
    p = point(Retry(attempts=1, budget=None))
    fn = AlwaysFails()
    with pytest.raises(ConnectionError):
        p.call(fn)
    assert fn.calls == 1


def test_delays_come_from_the_backoff() -> None:
    """The waits between attempts are the backoff's delays, in order."""
    clock = FakeClock()
    p = point(Retry(attempts=4, backoff=Backoff.linear(0.1, 0.2, maximum=10), budget=None),
              clock=clock)
    with pytest.raises(ConnectionError):
        p.call(AlwaysFails())
    assert clock.sleeps == pytest.approx([0.1, 0.3, 0.5])


def test_jittered_delays_use_the_points_random_source() -> None:
    """Full jitter multiplies the base by the point's rand()."""
    clock = FakeClock()
    p = point(Retry(attempts=4, backoff=Backoff.exponential(initial=1.0, maximum=3.0), budget=None),
              clock=clock, rand=lambda: 0.5)
    with pytest.raises(ConnectionError):
        p.call(AlwaysFails())
    assert clock.sleeps == pytest.approx([0.5, 1.0, 1.5])


async def test_async_delays_come_from_the_backoff() -> None:
    """acall waits with the clock's asleep, for the backoff's delays."""
    clock = FakeClock()
    p = point(Retry(attempts=3, backoff=Backoff.constant(0.25), budget=None), clock=clock)
    calls = 0

    async def down() -> None:
        nonlocal calls
        calls += 1
        raise ConnectionError

    with pytest.raises(ConnectionError):
        await p.acall(down)
    assert (calls, clock.sleeps) == (3, [0.25, 0.25])


def test_server_hint_overrides_the_backoff() -> None:
    """A classification's delay (Retry-After) replaces the computed delay."""
    clock = FakeClock()
    hint = Classifier().on(ConnectionError, RATE_LIMITED.with_delay(7.0))
    p = point(Retry(attempts=2, backoff=Backoff.constant(0.1), budget=None), clock=clock,
              classifier=hint)
    with pytest.raises(ConnectionError):
        p.call(AlwaysFails())
    assert clock.sleeps == [7.0]


def test_server_hint_is_clamped_at_max_server_delay() -> None:
    """A server hint longer than max_server_delay waits max_server_delay."""
    clock = FakeClock()
    hint = Classifier().on(ConnectionError, RATE_LIMITED.with_delay(3600.0))
    p = point(Retry(attempts=2, max_server_delay=10.0, budget=None), clock=clock, classifier=hint)
    with pytest.raises(ConnectionError):
        p.call(AlwaysFails())
    assert clock.sleeps == [10.0]


def test_server_hint_of_zero_retries_at_once() -> None:
    """A zero server hint retries without sleeping at all."""
    clock = FakeClock()
    hint = Classifier().on(ConnectionError, UNAVAILABLE.with_delay(0.0))
    p = point(Retry(attempts=3, backoff=Backoff.constant(5.0), budget=None), clock=clock,
              classifier=hint)
    fn = AlwaysFails()
    with pytest.raises(ConnectionError):
        p.call(fn)
    assert (fn.calls, clock.sleeps) == (3, [])


def test_retries_stop_before_the_next_wait_overruns_the_total_deadline() -> None:
    """With 1 s total and waits 0.1, 0.4, 1.6 s, attempts run at 0, 0.1, 0.5 s and then stop."""
    clock = FakeClock()
    growing = Backoff.exponential(initial=0.1, multiplier=4.0, maximum=10.0, jitter="none")
    p = point(Retry(attempts=4, backoff=growing, budget=None), clock=clock,
              timeout=Timeout(total=1.0))
    fn = AlwaysFails()
    with pytest.raises(ConnectionError) as info:
        p.call(fn)
    assert fn.calls == 3
    assert clock.sleeps == [0.1, 0.4]
    assert "would pass the deadline" in info.value.__notes__[0]
    assert p.stats().rejections["deadline"] == 1


def test_time_spent_in_attempts_counts_against_the_total_deadline() -> None:
    """Attempts that take time themselves use up the total budget too."""
    clock = FakeClock()
    p = point(Retry(attempts=10, backoff=Backoff.constant(0.1), budget=None), clock=clock,
              timeout=Timeout(total=1.0))
    fn = AlwaysFails(clock, cost=0.3)
    with pytest.raises(ConnectionError):
        p.call(fn)
    # attempts end at 0.3, 0.7, 1.1 > deadline: the third retry would start past it
    assert fn.calls == 3


def test_caller_deadline_also_bounds_retries() -> None:
    """A deadline handed to run() narrows the total budget."""
    clock = FakeClock()
    p = point(Retry(attempts=10, backoff=Backoff.constant(1.0), budget=None), clock=clock)
    fn = AlwaysFails()
    with pytest.raises(ConnectionError):
        p.run(lambda _t: fn(), operation="op", deadline=clock.now() + 2.5)
    assert fn.calls == 3


def test_original_exception_is_reraised_with_a_note() -> None:
    """The caller gets the last original exception, with attempts and elapsed time in a note."""
    clock = FakeClock()
    p = point(Retry(attempts=3, backoff=Backoff.constant(0.5), budget=None), clock=clock)
    fn = AlwaysFails(clock, cost=0.25)
    with pytest.raises(ConnectionError) as info:
        p.call(fn)
    assert info.value is fn.raised[-1]
    assert type(info.value) is ConnectionError
    (note,) = info.value.__notes__
    assert "3 attempt(s)" in note
    assert "1.750 s" in note  # 3 x 0.25 s of work + 2 x 0.5 s of waits
    assert "transient" in note
    assert note.startswith("seawall: retry call:")  # point and operation named


def test_permanent_failure_on_first_attempt_is_raised_untouched() -> None:
    """A first-attempt permanent failure is the caller's exception, with no note added."""
    p = point(Retry(attempts=3, budget=None))
    err = ValueError("no")

    def fail() -> None:
        raise err

    with pytest.raises(ValueError) as info:
        p.call(fail)
    assert info.value is err
    assert not hasattr(info.value, "__notes__")


def test_retry_budget_bounds_load_on_a_dead_dependency() -> None:
    """Across many failing calls, retries stay near ratio * calls + minimum_per_second * period."""
    budget = RetryBudget(ratio=0.1, minimum_per_second=1.0, period=10.0)  # floor: 10 retries
    p = point(Retry(attempts=3, backoff=Backoff.constant(0.0), budget=budget))
    fn = AlwaysFails()
    calls = 200
    for _ in range(calls):
        with pytest.raises(ConnectionError):
            p.call(fn)
    stats = p.stats()
    allowed = 0.1 * calls + 10
    assert allowed - 2 <= stats.retries <= allowed
    assert fn.calls == calls + stats.retries  # 230, where 3 attempts each would be 600
    assert stats.rejections["budget"] >= calls - stats.retries  # each refused call is counted


def test_retry_budget_refills_as_its_period_slides() -> None:
    """Once the period has passed, the floor of retries is available again."""
    clock = FakeClock()
    budget = RetryBudget(ratio=0.0, minimum_per_second=0.5, period=4.0)  # 2 retries per 4 s
    p = point(Retry(attempts=2, backoff=Backoff.constant(0.0), budget=budget), clock=clock)
    fn = AlwaysFails()
    for _ in range(5):
        with pytest.raises(ConnectionError):
            p.call(fn)
    assert p.stats().retries == 2
    clock.advance(5.0)
    for _ in range(5):
        with pytest.raises(ConnectionError):
            p.call(fn)
    assert p.stats().retries == 4


def test_reset_stats_leaves_the_retry_budget_as_it_was() -> None:
    """reset_stats() zeroes the counters reported, not the calls the budget has earned."""
    clock = FakeClock()
    budget = RetryBudget(ratio=0.5, minimum_per_second=0.0, period=10.0)
    p = point(Retry(attempts=2, backoff=Backoff.constant(0.0), budget=budget), clock=clock)
    for _ in range(3):  # successes across bucket boundaries: the budget takes its marks
        for _ in range(40):
            p.call(lambda: None)
        clock.advance(1.5)
    p.reset_stats()
    assert p.stats().calls == 0
    fn = AlwaysFails()
    with pytest.raises(ConnectionError):
        p.call(fn)
    assert fn.calls == 2  # the retry was paid for by the 120 earlier successes
    assert p.stats().calls == 1 and p.stats().retries == 1


def test_retry_budget_none_disables_it() -> None:
    """budget=None retries every retryable failure, however many."""
    p = point(Retry(attempts=3, backoff=Backoff.constant(0.0), budget=None))
    fn = AlwaysFails()
    for _ in range(100):
        with pytest.raises(ConnectionError):
            p.call(fn)
    assert p.stats().retries == 200
    assert fn.calls == 300
    assert p.stats().rejections["budget"] == 0


def test_budget_refusal_is_noted_on_the_exception() -> None:
    """When the budget refuses a retry, the note says so."""
    budget = RetryBudget(ratio=0.0, minimum_per_second=0.0)
    p = point(Retry(attempts=3, backoff=Backoff.constant(0.0), budget=budget))
    with pytest.raises(ConnectionError) as info:
        p.call(AlwaysFails())
    assert "retry budget exhausted" in info.value.__notes__[0]


def test_default_retry_has_a_budget() -> None:
    """Retry() comes with a retry budget switched on."""
    assert Retry().budget == RetryBudget()
