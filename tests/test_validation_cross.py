"""Cross-option validation: policies that contradict each other fail at construction.

Each message names both fields and both values; consistent neighbours of
each case (the boundary on the allowed side) are accepted.
"""

from __future__ import annotations

from typing import Any

import pytest

import seawall
from seawall import (
    Backoff,
    CircuitBreaker,
    ConfigurationError,
    Hedge,
    IntegrationPoint,
    RateLimit,
    Retry,
    Timeout,
)
from seawall._validation import check_point


def time_breaker(window: float) -> CircuitBreaker:
    return CircuitBreaker(window_kind="time", window=window, minimum_calls=5)


def test_attempt_longer_than_total_is_refused_naming_both() -> None:
    """Timeout.attempt > Timeout.total: both fields and values in the message."""
    # Timeout refuses it itself; the point-level check says the same for any Timeout it gets
    with pytest.raises(ConfigurationError, match=r"Timeout.attempt \(6.0\).*total \(5.0\)"):
        Timeout(attempt=6.0, total=5.0)
    bad = object.__new__(Timeout)
    object.__setattr__(bad, "attempt", 6.0)
    object.__setattr__(bad, "total", 5.0)
    with pytest.raises(ConfigurationError,
                       match=r"'svc': Timeout.attempt \(6.0 s\) must be <= Timeout.total \(5.0 s\)"):
        check_point("svc", None, None, bad)


def test_time_window_shorter_than_twice_the_attempt_timeout() -> None:
    """A 10 s time window with 6 s attempts: refused, naming window and attempt timeout."""
    with pytest.raises(ConfigurationError) as info:
        IntegrationPoint("svc", breaker=time_breaker(10.0), timeout=Timeout(attempt=6.0))
    text = str(info.value)
    assert "'svc'" in text
    assert "CircuitBreaker.window (10.0 s, a time window)" in text
    assert "2 x Timeout.attempt (6.0 s) = 12.0 s" in text


def test_time_window_checked_against_total_without_an_attempt_timeout() -> None:
    """Without Timeout.attempt, the total is how long an attempt may take."""
    with pytest.raises(ConfigurationError, match=r"2 x Timeout.total \(8.0 s\)"):
        IntegrationPoint("svc", breaker=time_breaker(10.0), timeout=Timeout(total=8.0))


@pytest.mark.parametrize("options", [
    {"breaker": time_breaker(12.0), "timeout": Timeout(attempt=6.0)},     # exactly 2x
    {"breaker": time_breaker(60.0), "timeout": Timeout(attempt=6.0, total=30.0)},
    {"breaker": CircuitBreaker(window=10, minimum_calls=5), "timeout": Timeout(attempt=60.0)},
    {"breaker": time_breaker(1.0)},                                         # no timeout
])
def test_consistent_breakers_are_accepted(options: dict[str, Any]) -> None:
    """A window of twice the attempt timeout or more, a count window, or no timeout: fine."""
    IntegrationPoint("svc", **options)


def test_retry_waits_that_do_not_fit_the_total() -> None:
    """5 attempts with waits of at least 2 s (8 s) in a 5 s total: refused, naming both."""
    with pytest.raises(ConfigurationError) as info:
        IntegrationPoint("svc", retry=Retry(attempts=5, backoff=Backoff.exponential(initial=2.0,
                                                                                  maximum=10.0)),
                         timeout=Timeout(total=5.0))
    text = str(info.value)
    assert "Retry.attempts (5)" in text and "4 waits" in text
    assert "Backoff.initial (2.0 s) = 8.0 s" in text and "Timeout.total (5.0 s)" in text


@pytest.mark.parametrize("backoff", [Backoff.constant(1.0), Backoff.linear(1.0, 0.5),
                                     Backoff.exponential(initial=1.0, maximum=4.0)])
def test_every_backoff_kind_is_checked(backoff: Backoff) -> None:
    """Constant, linear and exponential backoffs: waits filling the total exactly are refused."""
    with pytest.raises(ConfigurationError, match=r"Retry\.attempts"):
        IntegrationPoint("svc", retry=Retry(attempts=3, backoff=backoff),
                         timeout=Timeout(total=2.0))


@pytest.mark.parametrize("options", [
    {"retry": Retry(attempts=3, backoff=Backoff.constant(0.9)), "timeout": Timeout(total=2.0)},
    {"retry": Retry(attempts=1, backoff=Backoff.constant(100.0)), "timeout": Timeout(total=1.0)},
    {"retry": Retry(attempts=50, backoff=Backoff.constant(1.0)), "timeout": Timeout(attempt=1.0)},
    {"retry": Retry(attempts=5, backoff=Backoff.custom(lambda n: 100.0)),
     "timeout": Timeout(total=1.0)},
    {"retry": Retry(attempts=10, backoff=Backoff.constant(0.0)), "timeout": Timeout(total=0.1)},
])
def test_retries_that_fit_are_accepted(options: dict[str, Any]) -> None:
    """Waits that fit, no retry, no total, a custom backoff (not asked), zero waits: fine."""
    IntegrationPoint("svc", **options)


def test_the_default_policies_and_the_full_pipeline_point_are_consistent() -> None:
    """The defaults users start from pass, as does the benchmarks' point."""
    from seawall.testing import full_pipeline_point

    IntegrationPoint("svc", retry=Retry(), breaker=CircuitBreaker(), timeout=Timeout(total=5.0))
    full_pipeline_point("svc")


def test_the_error_is_a_configuration_error_and_a_seawall_error() -> None:
    """Callers catch it as ConfigurationError (a SeawallError, a ValueError)."""
    with pytest.raises(seawall.SeawallError):
        IntegrationPoint("svc", breaker=time_breaker(1.0), timeout=Timeout(attempt=1.0))


# -- hedging and the rate limit against the timeouts -------------------------------------------

def test_a_hedge_due_after_the_deadline_is_refused_naming_both() -> None:
    """delay 2 s x max_extra 3 = 6 s in a 5 s total: the third hedge could never be sent."""
    with pytest.raises(ConfigurationError) as info:
        IntegrationPoint("svc", hedge=Hedge(delay=2.0, max_extra=3), timeout=Timeout(total=5.0))
    text = str(info.value)
    assert "'svc'" in text
    assert "Hedge.delay (2.0 s) x Hedge.max_extra (3) = 6.0 s" in text
    assert "must be < Timeout.total (5.0 s)" in text


def test_a_hedge_due_exactly_at_the_deadline_is_refused() -> None:
    """0.1 s x 3 = 0.3 s (shown as written, not 0.30000000000000004) in 0.3 s: never sent."""
    with pytest.raises(ConfigurationError, match=r"= 0\.3 s must be < Timeout\.total \(0\.3 s\)"):
        IntegrationPoint("svc", hedge=Hedge(delay=0.1, max_extra=3), timeout=Timeout(total=0.3))


def test_a_hedge_not_due_before_the_attempt_times_out_is_refused() -> None:
    """Attempts of 0.5 s with a 0.5 s delay: the attempt fails first; naming both."""
    with pytest.raises(ConfigurationError) as info:
        IntegrationPoint("svc", hedge=Hedge(delay=0.5), timeout=Timeout(attempt=0.5, total=5.0))
    text = str(info.value)
    assert "'svc': Hedge.delay (0.5 s) must be < Timeout.attempt (0.5 s)" in text


@pytest.mark.parametrize("options", [
    {"hedge": Hedge(delay=0.05, max_extra=2), "timeout": Timeout(total=0.3)},
    {"hedge": Hedge(delay=0.1, max_extra=2), "timeout": Timeout(attempt=0.11, total=0.21)},
    {"hedge": Hedge(delay=0.0, max_extra=10), "timeout": Timeout(attempt=0.01, total=0.01)},
    {"hedge": Hedge(delay=30.0, max_extra=5)},                               # no timeout
    {"hedge": Hedge(delay=30.0), "timeout": Timeout(attempt=31.0)},         # no total
])
def test_hedges_that_can_be_sent_are_accepted(options: dict[str, Any]) -> None:
    """Every hedge due before the deadline and before its attempt's timeout: fine."""
    IntegrationPoint("svc", **options)


def test_a_rate_limit_wait_as_long_as_the_total_is_refused_naming_both() -> None:
    """max_wait 10 s in a 0.5 s total: the deadline always ends the wait first."""
    with pytest.raises(ConfigurationError) as info:
        IntegrationPoint("svc", rate_limit=RateLimit(rate=1, max_wait=10.0),
                         timeout=Timeout(total=0.5))
    text = str(info.value)
    assert "'svc': RateLimit.max_wait (10.0 s) must be < Timeout.total (0.5 s)" in text
    with pytest.raises(ConfigurationError, match=r"RateLimit\.max_wait \(2\.0 s\)"):
        IntegrationPoint("svc", rate_limit=RateLimit(rate=1, max_wait=2.0),
                         timeout=Timeout(total=2.0))


@pytest.mark.parametrize("options", [
    {"rate_limit": RateLimit(rate=1, max_wait=1.9), "timeout": Timeout(total=2.0)},
    {"rate_limit": RateLimit(rate=1), "timeout": Timeout(total=0.1)},       # max_wait 0
    {"rate_limit": RateLimit(rate=1, max_wait=60.0), "timeout": Timeout(attempt=1.0)},
    {"rate_limit": RateLimit(rate=1, max_wait=60.0)},
])
def test_rate_limit_waits_that_fit_are_accepted(options: dict[str, Any]) -> None:
    """A max_wait below the total, or no total at all: fine."""
    IntegrationPoint("svc", **options)


def test_the_new_checks_run_for_presets_and_overrides() -> None:
    """A preset with a hedge that its own attempt timeout outruns is refused like any point."""
    with pytest.raises(ConfigurationError, match=r"Hedge\.delay \(6\.0 s\).*Timeout\.attempt \(5\.0 s\)"):
        seawall.presets.http_api("svc", hedge=Hedge(delay=6.0))
    with pytest.raises(ConfigurationError, match=r"RateLimit\.max_wait \(15\.0 s\)"):
        seawall.presets.http_api("svc", rate_limit=RateLimit(rate=5, max_wait=15.0))
    seawall.presets.http_api("svc", hedge=Hedge(delay=1.0), rate_limit=RateLimit(rate=5))
