"""Backoff: every delay of every kind and jitter lies within its documented bounds."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from seawall import Backoff

seconds = st.floats(min_value=0.0, max_value=1e4, allow_nan=False, allow_infinity=False)
unit = st.floats(min_value=0.0, max_value=1.0, exclude_max=True)
retry_number = st.integers(min_value=1, max_value=2000)
huge_retry_number = st.integers(min_value=2**1024, max_value=10**400)  # past float range
multipliers = st.floats(min_value=1.0, max_value=100.0) | st.integers(min_value=1, max_value=100)
jitters = st.sampled_from(["none", "full", "equal", "decorrelated"])


def reference_exponential(initial: float, multiplier: float, maximum: float, n: int) -> float:
    """min(initial * multiplier ** (n - 1), maximum), computed in logs so it never overflows."""
    if initial == 0.0 or multiplier == 1:
        return min(initial, maximum)
    if math.log(initial) + (n - 1) * math.log(multiplier) >= math.log(maximum) if maximum > 0 else True:
        return maximum
    try:
        return initial * float(multiplier) ** (n - 1)
    except OverflowError:  # a subnormal initial times a power past the float range
        return math.exp(math.log(initial) + (n - 1) * math.log(multiplier))


@st.composite
def exponentials(draw: st.DrawFn) -> Backoff:
    initial = draw(seconds)
    maximum = draw(seconds.filter(lambda m: m >= initial))
    return Backoff.exponential(initial=initial, multiplier=draw(multipliers), maximum=maximum,
                               jitter=draw(jitters))


@st.composite
def linears(draw: st.DrawFn) -> Backoff:
    initial = draw(seconds)
    maximum = draw(seconds.filter(lambda m: m >= initial))
    return Backoff.linear(initial, draw(seconds), maximum=maximum, jitter=draw(jitters))


@st.composite
def constants(draw: st.DrawFn) -> Backoff:
    return Backoff.constant(draw(seconds), jitter=draw(jitters))


any_backoff = exponentials() | linears() | constants()


def assert_within_jitter_bounds(backoff: Backoff, n: int, previous: float, r: float) -> None:
    base = backoff.base(n)
    delay = backoff.delay(n, previous, lambda: r)
    assert math.isfinite(delay)
    if backoff.jitter == "none":
        assert delay == base
    elif backoff.jitter == "full":
        assert 0.0 <= delay <= base
    elif backoff.jitter == "equal":
        assert base / 2 <= delay <= base
    else:
        assert backoff.initial <= delay <= backoff.maximum
        if previous > 0 and previous * 3 >= backoff.initial:
            assert delay <= previous * 3 * (1 + 1e-12)


@given(any_backoff, retry_number, seconds, unit)
def test_every_delay_lies_within_its_jitter_bounds(backoff: Backoff, n: int, previous: float,
                                                   r: float) -> None:
    """none = base; full in [0, base]; equal in [base/2, base]; decorrelated in [initial, maximum]."""
    assert_within_jitter_bounds(backoff, n, previous, r)


@given(any_backoff, retry_number)
def test_base_never_exceeds_maximum(backoff: Backoff, n: int) -> None:
    """The base delay is capped at maximum and never negative."""
    assert 0.0 <= backoff.base(n) <= backoff.maximum


@given(exponentials(), retry_number | st.integers(min_value=2000, max_value=10**7))
def test_exponential_base_is_initial_times_multiplier_power(backoff: Backoff, n: int) -> None:
    """Exponential base = min(initial * multiplier ** (n - 1), maximum)."""
    expected = reference_exponential(backoff.initial, backoff.multiplier, backoff.maximum, n)
    assert math.isclose(backoff.base(n), expected, rel_tol=1e-9, abs_tol=1e-300)


@given(linears(), retry_number)
def test_linear_base_grows_by_step(backoff: Backoff, n: int) -> None:
    """Linear base = min(initial + step * (n - 1), maximum)."""
    expected = min(backoff.initial + backoff.step * (n - 1), backoff.maximum)
    assert math.isclose(backoff.base(n), expected, rel_tol=1e-12)


@given(constants(), retry_number)
def test_constant_base_is_the_delay(backoff: Backoff, n: int) -> None:
    """Constant base is the configured delay for every retry."""
    assert backoff.base(n) == backoff.initial


@given(exponentials() | linears(), huge_retry_number, seconds, unit)
def test_huge_retry_numbers_do_not_overflow(backoff: Backoff, n: int, previous: float,
                                            r: float) -> None:
    """Retry numbers far past float range give a bounded delay instead of OverflowError."""
    base = backoff.base(n)
    grows = (backoff.step > 0) if backoff.kind == "linear" else (
        backoff.initial > 0 and backoff.multiplier > 1)
    assert base == (backoff.maximum if grows else backoff.initial)
    assert_within_jitter_bounds(backoff, n, previous, r)


@given(st.lists(seconds, min_size=1, max_size=20), retry_number, unit)
def test_custom_function_gives_the_delay(values: list[float], n: int, r: float) -> None:
    """A custom function's return value is the delay, untouched by jitter."""
    backoff = Backoff.custom(lambda k: values[k % len(values)])
    assert backoff.delay(n, 0.0, lambda: r) == values[n % len(values)]


def test_decorrelated_delays_chain_on_the_previous_one() -> None:
    """Decorrelated jitter draws from [initial, 3 * previous], so a high draw lets delays grow."""
    backoff = Backoff.exponential(initial=0.1, maximum=100.0, jitter="decorrelated")
    previous = 0.0
    delays = []
    for n in range(1, 8):
        previous = backoff.delay(n, previous, lambda: 0.999)
        delays.append(previous)
    assert delays == sorted(delays)
    assert delays[0] <= 0.3
    assert 0.3 * 3**5 * 0.99 <= delays[-1] <= 100.0


def test_exponential_default_uses_full_jitter() -> None:
    """Backoff.exponential() defaults to full jitter, 50 ms initial, 2 s cap."""
    backoff = Backoff.exponential()
    assert (backoff.jitter, backoff.initial, backoff.multiplier, backoff.maximum) == (
        "full", 0.05, 2.0, 2.0)
