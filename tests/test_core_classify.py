"""Classification: plain-function defaults, Retry(on=...), user rules, result rules, categories."""

from __future__ import annotations

import asyncio
import errno
from typing import Any

import pytest

import seawall
from seawall import Category, Classification, Classifier, IntegrationPoint, Retry
from seawall._classify import (
    CLIENT_ERROR,
    PERMANENT,
    RATE_LIMITED,
    TIMEOUT,
    TRANSIENT,
    UNAVAILABLE,
    default_exception_classification,
)
from seawall.testing import FakeClock


class Flaky:
    """A callable that raises each of ``errors`` in turn, then returns ``value``."""

    def __init__(self, *errors: BaseException | Any, value: Any = "ok") -> None:
        self.outcomes = list(errors)
        self.value = value
        self.calls = 0

    def __call__(self) -> Any:
        self.calls += 1
        if self.outcomes:
            outcome = self.outcomes.pop(0)
            if isinstance(outcome, BaseException):
                raise outcome
            return outcome
        return self.value


def point(**kwargs: Any) -> IntegrationPoint:
    kwargs.setdefault("retry", Retry(attempts=3, budget=None))
    kwargs.setdefault("breaker", seawall.CircuitBreaker(minimum_calls=100, window=100))
    return IntegrationPoint("classify", clock=FakeClock(), **kwargs)


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (ConnectionError(), TRANSIENT),
        (ConnectionResetError(), TRANSIENT),
        (ConnectionRefusedError(), TRANSIENT),
        (BrokenPipeError(), TRANSIENT),
        (TimeoutError(), TIMEOUT),
        (asyncio.TimeoutError(), TIMEOUT),
        (seawall.DeadlineExceeded("late"), TIMEOUT),
        (OSError(errno.ECONNRESET, "reset"), TRANSIENT),
        (OSError(errno.EHOSTUNREACH, "no route"), TRANSIENT),
        (OSError(errno.ENETUNREACH, "no net"), TRANSIENT),
        (OSError(errno.ENOENT, "missing"), PERMANENT),
        (FileNotFoundError(), PERMANENT),
        (PermissionError(), PERMANENT),
        (ValueError("bad"), PERMANENT),
        (KeyError("k"), PERMANENT),
        (RuntimeError(), PERMANENT),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else v.category.value,
)
def test_plain_function_defaults(exc: BaseException, expected: Classification) -> None:
    """Timeouts are timeout, connection and network OSErrors transient, everything else permanent."""
    assert default_exception_classification(exc) == expected


def test_ready_made_classifications_say_what_they_mean() -> None:
    """Transient kinds retry and count; permanent counts without retry; client errors do neither."""
    for c in (TRANSIENT, TIMEOUT, RATE_LIMITED, UNAVAILABLE):
        assert (c.retry, c.breaker) == (True, True)
    assert (PERMANENT.retry, PERMANENT.breaker) == (False, True)
    assert (CLIENT_ERROR.category, CLIENT_ERROR.retry, CLIENT_ERROR.breaker) == (
        Category.PERMANENT, False, False)


def test_classification_message_text_is_never_read() -> None:
    """Two exceptions of one type classify the same whatever their message says."""
    assert default_exception_classification(ValueError("connection reset, timed out")) == PERMANENT
    assert default_exception_classification(ConnectionError("")) == TRANSIENT


@pytest.mark.parametrize("exc", [ConnectionError("down"), TimeoutError("slow"),
                                 OSError(errno.ECONNREFUSED, "refused")])
def test_transient_errors_are_retried_and_counted(exc: BaseException) -> None:
    """A transient default failure is retried and counted against the breaker."""
    p = point()
    fn = Flaky(exc, exc, value="done")
    assert p.call(fn) == "done"
    assert fn.calls == 3
    assert p.stats().retries == 2
    assert p.circuit is not None and p.circuit.window_counts() == (3, 2, 0)


def test_other_exceptions_are_permanent_counted_not_retried() -> None:
    """Any other exception is raised after one attempt and counted as a permanent failure."""
    p = point()
    fn = Flaky(ValueError("bad input"))
    with pytest.raises(ValueError, match="bad input"):
        p.call(fn)
    assert fn.calls == 1
    stats = p.stats()
    assert (stats.failures, stats.retries, stats.failures_by_category["permanent"]) == (1, 0, 1)
    assert p.circuit is not None and p.circuit.window_counts() == (1, 1, 0)


def test_retry_on_widens_the_default() -> None:
    """Retry(on=(KeyError,)) makes KeyError transient: retried and counted."""
    p = point(retry=Retry(attempts=3, on=(KeyError,), budget=None))
    fn = Flaky(KeyError("a"), KeyError("b"), value=1)
    assert p.call(fn) == 1
    assert fn.calls == 3


def test_retry_on_covers_subclasses() -> None:
    """Retry(on=(LookupError,)) also retries its subclasses."""
    p = point(retry=Retry(attempts=2, on=(LookupError,), budget=None))
    fn = Flaky(IndexError(), value=2)
    assert p.call(fn) == 2


def test_user_rules_win_over_defaults() -> None:
    """A user rule can make a default-transient error permanent: it is then not retried."""
    p = point(classifier=Classifier().on(ConnectionRefusedError, "permanent"))
    fn = Flaky(ConnectionRefusedError())
    with pytest.raises(ConnectionRefusedError):
        p.call(fn)
    assert fn.calls == 1


def test_user_rules_win_over_retry_on() -> None:
    """A user rule is asked before Retry(on=...)."""
    p = point(retry=Retry(attempts=3, on=(KeyError,), budget=None),
              classifier=Classifier().on(KeyError, CLIENT_ERROR))
    fn = Flaky(KeyError())
    with pytest.raises(KeyError):
        p.call(fn)
    assert fn.calls == 1


def test_client_errors_do_not_count_for_the_breaker() -> None:
    """A client-error classification fails the call but leaves the breaker's window clean."""
    p = point(classifier=Classifier().on(PermissionError, CLIENT_ERROR))
    with pytest.raises(PermissionError):
        p.call(Flaky(PermissionError()))
    assert p.circuit is not None and p.circuit.window_counts() == (1, 0, 0)


def test_first_matching_rule_wins() -> None:
    """Rules are asked in order; then() appends another classifier's rules after."""
    first = Classifier().on(ValueError, "rate_limited")
    second = Classifier().on(ValueError, "unavailable").on(KeyError, "timeout")
    both = first.then(second)
    assert both.classify_exception(ValueError()) == RATE_LIMITED
    assert both.classify_exception(KeyError()) == TIMEOUT
    assert both.classify_exception(RuntimeError()) is None


def test_on_exception_rule_sees_the_exception() -> None:
    """An on_exception rule decides from the exception's attributes (a code), never its text."""

    class ApiError(Exception):
        def __init__(self, code: int) -> None:
            super().__init__(f"api error {code}")
            self.code = code

    classifier = Classifier().on_exception(
        lambda e: UNAVAILABLE if isinstance(e, ApiError) and e.code == 503 else None)
    p = point(classifier=classifier)
    fn = Flaky(ApiError(503), value="up")
    assert p.call(fn) == "up"
    with pytest.raises(ApiError):
        p.call(Flaky(ApiError(400)))


def test_failed_result_is_retried() -> None:
    """A returned value classified as a failure is retried like an exception."""
    p = point(classifier=Classifier().on_result(lambda r: UNAVAILABLE if r == 503 else None))
    fn = Flaky(503, 503, value=200)
    assert p.call(fn) == 200
    assert fn.calls == 3
    assert p.stats().successes == 1


def test_failed_result_is_returned_when_retries_run_out() -> None:
    """When every attempt returns a failed result, the last one is returned as it is."""
    p = point(classifier=Classifier().on_result(lambda r: UNAVAILABLE if r == 503 else None))
    fn = Flaky(value=503)
    assert p.call(fn) == 503
    assert fn.calls == 3
    stats = p.stats()
    assert (stats.failures, stats.failures_by_category["unavailable"]) == (1, 1)


async def test_failed_result_is_retried_async() -> None:
    """acall retries a failed result too, and returns the last one when retries run out."""
    p = point(classifier=Classifier().on_result(lambda r: UNAVAILABLE if r == 503 else None))
    outcomes = [503, 503, 503, 200]

    async def fetch() -> int:
        return outcomes.pop(0)

    assert await p.acall(fetch) == 503
    assert await p.acall(fetch) == 200


def test_result_classified_permanent_is_not_retried() -> None:
    """A result classified permanent is returned after one attempt."""
    p = point(classifier=Classifier().on_result(lambda r: PERMANENT if r == "no" else None))
    fn = Flaky(value="no")
    assert p.call(fn) == "no"
    assert fn.calls == 1


@pytest.mark.parametrize("category", [c for c in Category if c is not Category.CANCELLED])
def test_failures_are_counted_by_category(category: Category) -> None:
    """A failure is counted under the category its classification names."""
    c = Classification(category, retry=False, breaker=True)
    p = point(classifier=Classifier().on(LookupError, c))
    with pytest.raises(LookupError):
        p.call(Flaky(LookupError()))
    by_category = p.stats().failures_by_category
    assert by_category[category.value] == 1
    assert sum(by_category.values()) == 1


def test_classifier_accepts_category_names() -> None:
    """Classifier.on takes a Classification, a Category or its name."""
    by_name = Classifier().on(KeyError, "rate_limited")
    by_enum = Classifier().on(KeyError, Category.RATE_LIMITED)
    assert by_name.classify_exception(KeyError()) == by_enum.classify_exception(KeyError()) == RATE_LIMITED


def test_with_delay_and_with_retry_make_new_values() -> None:
    """with_delay/with_retry return changed copies; the ready-made values stay as they were."""
    hinted = RATE_LIMITED.with_delay(2.5)
    assert (hinted.delay, RATE_LIMITED.delay) == (2.5, None)
    vetoed = TRANSIENT.with_retry(False)
    assert (vetoed.retry, TRANSIENT.retry, vetoed.category) == (False, True, Category.TRANSIENT)
