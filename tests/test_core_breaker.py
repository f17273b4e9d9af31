"""Circuit breaker: windows, rates, slow calls, opening and probing, manual control."""

from __future__ import annotations

from typing import Any

import pytest

import seawall
from seawall import (
    BreakerState,
    CircuitBreaker,
    CircuitOpenError,
    Classifier,
    IntegrationPoint,
)
from seawall._classify import CLIENT_ERROR
from seawall.testing import FakeClock


def ok() -> str:
    return "ok"


def boom() -> None:
    raise ConnectionError("down")


def point(breaker: CircuitBreaker, **kwargs: Any) -> tuple[IntegrationPoint, FakeClock]:
    clock = FakeClock()
    return IntegrationPoint("inventory", breaker=breaker, clock=clock, **kwargs), clock


def fail(p: IntegrationPoint, times: int = 1) -> None:
    for _ in range(times):
        with pytest.raises(ConnectionError):
            p.call(boom)


def test_count_window_opens_at_the_failure_rate() -> None:
    """With 4 calls in the window, the second failure of four (50 %) opens the breaker."""
    p, _ = point(CircuitBreaker(failure_rate=0.5, minimum_calls=4, window=4))
    p.call(ok)
    fail(p)
    p.call(ok)
    assert p.breaker_state is BreakerState.CLOSED
    fail(p)
    assert p.breaker_state is BreakerState.OPEN


def test_breaker_waits_for_minimum_calls() -> None:
    """Failures below minimum_calls never open the breaker, whatever the rate."""
    p, _ = point(CircuitBreaker(failure_rate=0.5, minimum_calls=5, window=10))
    fail(p, 4)
    assert p.breaker_state is BreakerState.CLOSED
    fail(p)
    assert p.breaker_state is BreakerState.OPEN


def test_count_window_forgets_the_oldest_calls() -> None:
    """Only the last `window` calls count: old failures slide out."""
    p, _ = point(CircuitBreaker(failure_rate=0.5, minimum_calls=4, window=4))
    fail(p)
    for _ in range(4):
        p.call(ok)
    assert p.circuit is not None and p.circuit.window_counts() == (4, 0, 0)
    fail(p)
    assert p.breaker_state is BreakerState.CLOSED  # 1 of 4, the first failure slid out


def test_time_window_forgets_calls_older_than_the_window() -> None:
    """A time window counts only the calls of the last `window` seconds."""
    p, clock = point(CircuitBreaker(failure_rate=0.5, minimum_calls=4, window=10.0,
                                    window_kind="time", buckets=10))
    fail(p, 3)
    clock.advance(11.0)
    fail(p)
    assert p.breaker_state is BreakerState.CLOSED
    assert p.circuit is not None and p.circuit.window_counts() == (1, 1, 0)
    fail(p, 3)
    assert p.breaker_state is BreakerState.OPEN


def test_time_window_keeps_recent_calls() -> None:
    """Calls still inside the time window keep counting toward the rate."""
    p, clock = point(CircuitBreaker(failure_rate=0.5, minimum_calls=4, window=10.0,
                                    window_kind="time", buckets=10))
    fail(p, 2)
    clock.advance(5.0)
    p.call(ok)
    clock.advance(4.0)
    fail(p)
    assert p.breaker_state is BreakerState.OPEN  # 3 failures of 4, all within 10 s


def test_failure_rate_below_threshold_stays_closed() -> None:
    """A failure rate under failure_rate keeps the breaker closed."""
    p, _ = point(CircuitBreaker(failure_rate=0.5, minimum_calls=10, window=10))
    for i in range(40):
        if i % 3 == 0:
            fail(p)
        else:
            p.call(ok)
    assert p.breaker_state is BreakerState.CLOSED


def test_slow_calls_open_the_breaker() -> None:
    """Successes slower than slow_call_duration open it at slow_call_rate."""
    p, clock = point(CircuitBreaker(minimum_calls=4, window=4, slow_call_duration=1.0,
                                    slow_call_rate=0.5))

    def slow() -> str:
        clock.advance(1.5)
        return "late"

    p.call(ok)
    p.call(slow)
    p.call(ok)
    assert p.breaker_state is BreakerState.CLOSED
    assert p.call(slow) == "late"
    assert p.breaker_state is BreakerState.OPEN
    assert p.circuit is not None


def test_fast_calls_are_not_slow() -> None:
    """Calls just under slow_call_duration are not counted as slow."""
    p, clock = point(CircuitBreaker(minimum_calls=2, window=2, slow_call_duration=1.0,
                                    slow_call_rate=0.5))

    def quick() -> str:
        clock.advance(0.9)
        return "fine"

    for _ in range(10):
        p.call(quick)
    assert p.breaker_state is BreakerState.CLOSED
    assert p.circuit is not None and p.circuit.window_counts() == (2, 0, 0)


def test_open_breaker_rejects_with_point_and_retry_after() -> None:
    """An open breaker raises CircuitOpenError naming the point, with seconds until a trial."""
    p, clock = point(CircuitBreaker(minimum_calls=1, window=1, open_for=30.0))
    fail(p)
    clock.advance(10.0)
    called = []
    with pytest.raises(CircuitOpenError) as info:
        p.call(lambda: called.append(1))
    err = info.value
    assert called == []
    assert err.point == "inventory"
    assert "inventory" in str(err)
    assert err.retry_after == pytest.approx(20.0)
    assert err.retry_at == pytest.approx(clock.now() + 20.0)
    assert err.reason == "breaker"
    assert isinstance(err, seawall.RejectedError) and isinstance(err, seawall.SeawallError)
    stats = p.stats()
    assert (stats.rejected, stats.rejections["breaker"]) == (1, 1)


async def test_open_breaker_rejects_async_calls() -> None:
    """acall is refused by an open breaker too, without running the function."""
    p, _ = point(CircuitBreaker(minimum_calls=1, window=1))
    fail(p)
    ran = False

    async def work() -> None:
        nonlocal ran
        ran = True

    with pytest.raises(CircuitOpenError):
        await p.acall(work)
    assert not ran


def test_open_for_elapsed_lets_trial_calls_through() -> None:
    """After open_for, half_open_calls successful trials close the breaker."""
    p, clock = point(CircuitBreaker(minimum_calls=1, window=1, open_for=5.0, half_open_calls=2))
    fail(p)
    clock.advance(5.0)
    assert p.call(ok) == "ok"
    assert p.breaker_state is BreakerState.HALF_OPEN
    p.call(ok)
    assert p.breaker_state is BreakerState.CLOSED


def test_half_open_admits_only_its_trial_permits() -> None:
    """In half-open, only half_open_calls attempts run at once; the next is refused."""
    p, clock = point(CircuitBreaker(minimum_calls=1, window=1, open_for=5.0, half_open_calls=2))
    fail(p)
    clock.advance(5.0)
    first, second, third = (p.execution("probe") for _ in range(3))
    first.begin()
    second.begin()
    with pytest.raises(CircuitOpenError):
        third.begin()
    first.success()
    assert p.breaker_state is BreakerState.HALF_OPEN
    second.success()
    assert p.breaker_state is BreakerState.CLOSED


def test_failed_trial_reopens() -> None:
    """A failing trial call opens the breaker again."""
    p, clock = point(CircuitBreaker(minimum_calls=1, window=1, open_for=5.0, half_open_calls=1))
    fail(p)
    clock.advance(5.0)
    fail(p)
    assert p.breaker_state is BreakerState.OPEN


def test_open_for_grows_and_is_capped() -> None:
    """Each consecutive opening lasts open_for * multiplier ** k, capped at open_for_max."""
    p, clock = point(CircuitBreaker(minimum_calls=1, window=1, open_for=1.0,
                                    open_for_multiplier=2.0, open_for_max=5.0, half_open_calls=1))
    circuit = p.circuit
    assert circuit is not None
    durations = []
    fail(p)
    for _ in range(5):
        durations.append(circuit.open_until - clock.now())
        clock.advance(durations[-1])
        fail(p)  # the trial fails: open again, for longer
    assert durations == [1.0, 2.0, 4.0, 5.0, 5.0]


def test_closing_forgets_the_opening_history() -> None:
    """After the breaker closes again, the next opening lasts open_for once more."""
    p, clock = point(CircuitBreaker(minimum_calls=1, window=1, open_for=1.0,
                                    open_for_multiplier=3.0, open_for_max=100.0,
                                    half_open_calls=1))
    circuit = p.circuit
    assert circuit is not None
    fail(p)
    clock.advance(1.0)
    fail(p)
    assert circuit.open_until - clock.now() == 3.0
    clock.advance(3.0)
    p.call(ok)
    assert p.breaker_state is BreakerState.CLOSED
    fail(p)
    assert circuit.open_until - clock.now() == 1.0


def test_huge_multiplier_is_capped_without_overflow() -> None:
    """A very large open_for_multiplier caps at open_for_max, however many openings."""
    p, clock = point(CircuitBreaker(minimum_calls=1, window=1, open_for=1.0,
                                    open_for_multiplier=1e200, open_for_max=60.0,
                                    half_open_calls=1))
    circuit = p.circuit
    assert circuit is not None
    fail(p)
    for _ in range(4):
        clock.advance(circuit.open_until - clock.now())
        fail(p)
        assert circuit.open_until - clock.now() == 60.0


def test_force_open_rejects_until_reset() -> None:
    """force_open refuses every call (retry_after None) until reset."""
    p, clock = point(CircuitBreaker(minimum_calls=5, window=5, open_for=1.0))
    assert p.circuit is not None
    p.circuit.force_open()
    clock.advance(1000.0)
    with pytest.raises(CircuitOpenError) as info:
        p.call(ok)
    assert info.value.retry_after is None
    assert p.breaker_state is BreakerState.FORCED_OPEN
    p.circuit.reset()
    assert p.call(ok) == "ok"
    assert p.breaker_state is BreakerState.CLOSED


def test_disable_lets_everything_through_and_records_nothing() -> None:
    """A disabled breaker never opens and records nothing until reset."""
    p, _ = point(CircuitBreaker(minimum_calls=1, window=1))
    assert p.circuit is not None
    p.circuit.disable()
    fail(p, 10)
    assert p.breaker_state is BreakerState.DISABLED
    assert p.circuit.window_counts() == (0, 0, 0)
    p.circuit.reset()
    fail(p)
    assert p.breaker_state is BreakerState.OPEN


def test_reset_closes_an_open_breaker_with_an_empty_window() -> None:
    """reset() moves an open breaker to CLOSED and empties its window."""
    p, _ = point(CircuitBreaker(minimum_calls=2, window=4))
    fail(p, 2)
    assert p.breaker_state is BreakerState.OPEN
    assert p.circuit is not None
    p.circuit.reset()
    assert p.breaker_state is BreakerState.CLOSED
    assert p.circuit.window_counts() == (0, 0, 0)


def test_client_errors_never_count() -> None:
    """Classifications with breaker=False never open the breaker."""
    p, _ = point(CircuitBreaker(minimum_calls=1, window=3),
                 classifier=Classifier().on(KeyError, CLIENT_ERROR))

    def bad_request() -> None:
        raise KeyError("no such item")

    for _ in range(20):
        with pytest.raises(KeyError):
            p.call(bad_request)
    assert p.breaker_state is BreakerState.CLOSED
    assert p.circuit is not None and p.circuit.window_counts() == (3, 0, 0)


def test_permanent_failures_count() -> None:
    """Permanent failures (the default for unknown errors) count against the breaker."""
    p, _ = point(CircuitBreaker(minimum_calls=2, window=2))

    def broken() -> None:
        raise RuntimeError("bug in the dependency")

    for _ in range(2):
        with pytest.raises(RuntimeError):
            p.call(broken)
    assert p.breaker_state is BreakerState.OPEN


def test_transitions_are_announced() -> None:
    """Every state change is delivered to hooks as a BreakerTransition."""
    p, clock = point(CircuitBreaker(minimum_calls=1, window=1, open_for=2.0, half_open_calls=1))
    seen: list[seawall.BreakerTransition] = []
    p.add_hook(lambda e: seen.append(e) if isinstance(e, seawall.BreakerTransition) else None)
    fail(p)
    clock.advance(2.0)
    p.call(ok)
    assert p.circuit is not None
    p.circuit.force_open()
    p.circuit.disable()
    p.circuit.reset()
    assert [(t.from_state, t.to_state) for t in seen] == [
        ("closed", "open"), ("open", "half_open"), ("half_open", "closed"),
        ("closed", "forced_open"), ("forced_open", "disabled"), ("disabled", "closed")]
    assert all(t.point == "inventory" and t.reason for t in seen)


def test_rejected_call_does_not_extend_the_opening() -> None:
    """Calls refused while open do not push back the time of the first trial."""
    p, clock = point(CircuitBreaker(minimum_calls=1, window=1, open_for=10.0))
    fail(p)
    assert p.circuit is not None
    until = p.circuit.open_until
    for _ in range(5):
        clock.advance(1.0)
        with pytest.raises(CircuitOpenError):
            p.call(ok)
    assert p.circuit.open_until == until


def test_breaker_opening_mid_call_stops_retries() -> None:
    """When the breaker opens between attempts, the call ends with its original exception."""
    p, _ = point(CircuitBreaker(minimum_calls=2, window=2),
                 retry=seawall.Retry(attempts=5, backoff=seawall.Backoff.constant(0.0), budget=None))
    calls = 0

    def down() -> None:
        nonlocal calls
        calls += 1
        raise ConnectionError("down")

    with pytest.raises(ConnectionError) as info:
        p.call(down)
    assert calls == 2
    assert "retry refused" in info.value.__notes__[0]
    stats = p.stats()
    assert (stats.failures, stats.rejected, stats.rejections["breaker"]) == (1, 0, 1)
