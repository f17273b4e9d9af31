"""Every policy rejects bad input at construction, naming the field and the value."""

from __future__ import annotations

import math
from typing import Any

import pytest

import seawall
from seawall import (
    Backoff,
    Bulkhead,
    CircuitBreaker,
    Classification,
    Classifier,
    ConfigurationError,
    Fallback,
    IntegrationPoint,
    Retry,
    RetryBudget,
    Timeout,
)

BAD = [
    # (builder, field named in the message, value named in the message)
    (lambda: Backoff.constant(-1.0), "initial", "-1.0"),
    (lambda: Backoff.constant(math.nan), "initial", "nan"),
    (lambda: Backoff.constant(math.inf), "initial", "inf"),
    (lambda: Backoff.constant("1"), "initial", "'1'"),  # type: ignore[arg-type]
    (lambda: Backoff.constant(0.1, jitter="sometimes"), "jitter", "'sometimes'"),  # type: ignore[arg-type]
    (lambda: Backoff.linear(0.1, -0.5), "step", "-0.5"),
    (lambda: Backoff.linear(1.0, maximum=0.5), "maximum", "0.5"),
    (lambda: Backoff.exponential(initial=-0.1), "initial", "-0.1"),
    (lambda: Backoff.exponential(multiplier=0.5), "multiplier", "0.5"),
    (lambda: Backoff.exponential(multiplier=math.inf), "multiplier", "inf"),
    (lambda: Backoff.exponential(initial=1.0, maximum=0.5), "maximum", "0.5"),
    (lambda: Backoff.exponential(jitter="gaussian"), "jitter", "'gaussian'"),  # type: ignore[arg-type]
    (lambda: Backoff.custom(42), "function", "42"),  # type: ignore[arg-type]
    (lambda: Backoff(kind="fibonacci"), "kind", "'fibonacci'"),  # type: ignore[arg-type]
    (lambda: RetryBudget(ratio=1.5), "ratio", "1.5"),
    (lambda: RetryBudget(ratio=-0.1), "ratio", "-0.1"),
    (lambda: RetryBudget(minimum_per_second=-1), "minimum_per_second", "-1"),
    (lambda: RetryBudget(period=0), "period", "0"),
    (lambda: Retry(attempts=0), "attempts", "0"),
    (lambda: Retry(attempts=2.5), "attempts", "2.5"),  # type: ignore[arg-type]
    (lambda: Retry(attempts=True), "attempts", "True"),
    (lambda: Retry(backoff=0.1), "backoff", "0.1"),  # type: ignore[arg-type]
    (lambda: Retry(on=(ValueError, "boom")), "on", "'boom'"),  # type: ignore[arg-type]
    (lambda: Retry(on=(KeyboardInterrupt,)), "on", "KeyboardInterrupt"),
    (lambda: Retry(on="ValueError"), "on", "'ValueError'"),  # type: ignore[arg-type]
    (lambda: Retry(budget=0.2), "budget", "0.2"),  # type: ignore[arg-type]
    (lambda: Retry(max_server_delay=-1), "max_server_delay", "-1"),
    (lambda: CircuitBreaker(failure_rate=0), "failure_rate", "0"),
    (lambda: CircuitBreaker(failure_rate=1.01), "failure_rate", "1.01"),
    (lambda: CircuitBreaker(failure_rate=math.nan), "failure_rate", "nan"),
    (lambda: CircuitBreaker(minimum_calls=0), "minimum_calls", "0"),
    (lambda: CircuitBreaker(minimum_calls=11, window=10), "minimum_calls", "11"),
    (lambda: CircuitBreaker(window=0), "window", "0"),
    (lambda: CircuitBreaker(window=10.5), "window", "10.5"),
    (lambda: CircuitBreaker(window_kind="calls"), "window_kind", "'calls'"),  # type: ignore[arg-type]
    (lambda: CircuitBreaker(window_kind="time", window=-5), "window", "-5"),
    (lambda: CircuitBreaker(buckets=0), "buckets", "0"),
    (lambda: CircuitBreaker(slow_call_duration=0), "slow_call_duration", "0"),
    (lambda: CircuitBreaker(slow_call_rate=2), "slow_call_rate", "2"),
    (lambda: CircuitBreaker(open_for=-1), "open_for", "-1"),
    (lambda: CircuitBreaker(open_for_multiplier=0.5), "open_for_multiplier", "0.5"),
    (lambda: CircuitBreaker(open_for=10, open_for_max=5), "open_for_max", "5"),
    (lambda: CircuitBreaker(half_open_calls=0), "half_open_calls", "0"),
    (lambda: Bulkhead(max_concurrent=0), "max_concurrent", "0"),
    (lambda: Bulkhead(max_concurrent=4, max_wait=-0.1), "max_wait", "-0.1"),
    (lambda: Bulkhead(max_concurrent=4, max_wait=math.inf), "max_wait", "inf"),
    (lambda: Timeout(attempt=0), "attempt", "0"),
    (lambda: Timeout(total=-2), "total", "-2"),
    (lambda: Timeout(attempt=5, total=2), "attempt", "5"),
    (lambda: Fallback(), "Fallback", "value= or handler="),
    (lambda: Fallback(value=1, handler=lambda e: 2), "Fallback", "value= or handler="),
    (lambda: Fallback(handler=3), "handler", "3"),  # type: ignore[arg-type]
    (lambda: Fallback(value=1, on={"flaky"}), "on", "flaky"),
    (lambda: Classification("transient", True, True), "category", "'transient'"),  # type: ignore[arg-type]
    (lambda: Classification(seawall.Category.TRANSIENT, True, True, -1.0), "delay", "-1.0"),
    (lambda: Classifier().on(ValueError, "weird"), "classification", "'weird'"),
    (lambda: Classifier().on("ValueError", "transient"), "types", "'ValueError'"),  # type: ignore[arg-type]
    (lambda: IntegrationPoint(""), "name", "''"),
    (lambda: IntegrationPoint("p", retry=3), "retry", "3"),  # type: ignore[arg-type]
    (lambda: IntegrationPoint("p", bulkhead=Bulkhead), "bulkhead", "Bulkhead"),  # type: ignore[arg-type]
]


@pytest.mark.parametrize(("build", "field", "value"), BAD, ids=[f"{f}={v}" for _, f, v in BAD])
def test_bad_configuration_names_field_and_value(build: Any, field: str, value: str) -> None:
    """A bad value raises ConfigurationError whose message names the field and the value."""
    with pytest.raises(ConfigurationError) as info:
        build()
    message = str(info.value)
    assert field in message
    assert value in message


def test_configuration_error_is_a_value_error() -> None:
    """ConfigurationError is a ValueError and a SeawallError, so either handler catches it."""
    with pytest.raises(ValueError):
        Retry(attempts=0)
    assert issubclass(ConfigurationError, seawall.SeawallError)


def test_valid_values_are_kept_exactly() -> None:
    """Good values are stored as given: nothing is silently clamped or rounded."""
    breaker = CircuitBreaker(failure_rate=1.0, minimum_calls=7, window=7, open_for=0.25,
                             open_for_multiplier=3, open_for_max=0.25 * 9, half_open_calls=1)
    assert (breaker.failure_rate, breaker.minimum_calls, breaker.window) == (1.0, 7, 7)
    assert (breaker.open_for, breaker.open_for_multiplier, breaker.open_for_max) == (0.25, 3, 2.25)
    assert RetryBudget(ratio=0.0, minimum_per_second=0.0).ratio == 0.0
    assert Timeout(attempt=2.0, total=2.0) == Timeout(attempt=2.0, total=2.0)
    assert Bulkhead(max_concurrent=1, max_wait=0.0).max_wait == 0.0


def test_policies_are_frozen() -> None:
    """Policies are immutable values: assigning a field raises."""
    retry = Retry(attempts=3)
    with pytest.raises(AttributeError):
        retry.attempts = 5  # type: ignore[misc]


def test_retry_on_accepts_a_single_class() -> None:
    """Retry(on=SomeError) is normalised to a one-element tuple."""
    assert Retry(on=KeyError).on == (KeyError,)  # type: ignore[arg-type]


def test_custom_backoff_returning_a_bad_delay_is_reported() -> None:
    """A custom backoff function returning a negative or non-number delay raises with the value."""
    for bad in (-1.0, math.nan, "soon"):
        backoff = Backoff.custom(lambda n, bad=bad: bad)  # type: ignore[misc]
        with pytest.raises(ConfigurationError, match="function returned"):
            backoff.base(1)
