"""Classification: what an outcome means for retry, breaker and metrics.

A classifier maps an exception, or a result that is a failure in disguise
(an HTTP 503 response, a gRPC status), to a :class:`Classification`. Rules
are consulted in order; the first that answers wins. Never by message text.
"""

from __future__ import annotations

import asyncio
import enum
import errno
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ._errors import ConfigurationError


class Category(str, enum.Enum):
    """The kind of failure, as metrics and policies see it."""

    TRANSIENT = "transient"
    TIMEOUT = "timeout"
    RATE_LIMITED = "rate_limited"
    UNAVAILABLE = "unavailable"
    PERMANENT = "permanent"
    CANCELLED = "cancelled"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class Classification:
    """What one failed outcome means.

    ``retry``: another attempt may succeed and is safe. ``breaker``: the
    outcome counts as a failure for the circuit breaker (client errors do
    not). ``delay``: a server's hint in seconds before the next attempt
    (``Retry-After``, ``grpc-retry-pushback-ms``); ``None`` when absent.
    """

    category: Category
    retry: bool
    breaker: bool
    delay: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.category, Category):
            raise ConfigurationError(
                f"Classification.category must be a Category, got {self.category!r}"
            )
        if self.delay is not None and not (self.delay >= 0.0):
            raise ConfigurationError(
                f"Classification.delay must be >= 0 seconds or None, got {self.delay!r}"
            )

    def with_delay(self, delay: float | None) -> Classification:
        """The same classification carrying a server delay hint."""
        return Classification(self.category, self.retry, self.breaker, delay)

    def with_retry(self, retry: bool) -> Classification:
        """The same classification with ``retry`` replaced."""
        return Classification(self.category, retry, self.breaker, self.delay)


TRANSIENT = Classification(Category.TRANSIENT, retry=True, breaker=True)
TIMEOUT = Classification(Category.TIMEOUT, retry=True, breaker=True)
RATE_LIMITED = Classification(Category.RATE_LIMITED, retry=True, breaker=True)
UNAVAILABLE = Classification(Category.UNAVAILABLE, retry=True, breaker=True)
PERMANENT = Classification(Category.PERMANENT, retry=False, breaker=True)
CLIENT_ERROR = Classification(Category.PERMANENT, retry=False, breaker=False)
CANCELLED = Classification(Category.CANCELLED, retry=False, breaker=False)

_BY_CATEGORY = {
    Category.TRANSIENT: TRANSIENT,
    Category.TIMEOUT: TIMEOUT,
    Category.RATE_LIMITED: RATE_LIMITED,
    Category.UNAVAILABLE: UNAVAILABLE,
    Category.PERMANENT: PERMANENT,
    Category.CANCELLED: CANCELLED,
}

ExceptionRule = Callable[[BaseException], "Classification | None"]
ResultRule = Callable[[Any], "Classification | None"]


def _as_classification(value: Classification | Category | str) -> Classification:
    if isinstance(value, Classification):
        return value
    try:
        return _BY_CATEGORY[Category(value)]
    except ValueError:
        raise ConfigurationError(
            f"classification must be a Classification or one of "
            f"{[c.value for c in Category]}, got {value!r}"
        ) from None


@dataclass(frozen=True, slots=True)
class Classifier:
    """An ordered list of rules for exceptions and for results.

    Rules return a :class:`Classification`, or ``None`` to pass. Build one
    with the fluent helpers, each returning a new classifier::

        Classifier().on(PaymentDeclined, "permanent").on(QuotaExceeded, "rate_limited")

    A point's classifier is consulted before the integration's own rules,
    so user rules win. Immutable and safe to share between threads.
    """

    exception_rules: tuple[ExceptionRule, ...] = ()
    result_rules: tuple[ResultRule, ...] = ()

    def on(
        self,
        types: type[BaseException] | tuple[type[BaseException], ...],
        classification: Classification | Category | str,
    ) -> Classifier:
        """Classify exceptions of ``types`` (subclasses included) as ``classification``."""
        resolved = _as_classification(classification)
        if isinstance(types, type):
            types = (types,)
        if not isinstance(types, (tuple, list, frozenset, set)):
            raise ConfigurationError(
                f"Classifier.on types must be an exception class or a tuple of them, got {types!r}"
            )
        for t in types:
            if not (isinstance(t, type) and issubclass(t, BaseException)):
                raise ConfigurationError(f"Classifier.on types must be exception classes, got {t!r}")
        matched = tuple(types)

        def rule(exc: BaseException) -> Classification | None:
            return resolved if isinstance(exc, matched) else None

        return Classifier((*self.exception_rules, rule), self.result_rules)

    def on_exception(self, rule: ExceptionRule) -> Classifier:
        """Add a rule called with the exception; it returns a classification or ``None``."""
        return Classifier((*self.exception_rules, rule), self.result_rules)

    def on_result(self, rule: ResultRule) -> Classifier:
        """Add a rule called with a returned value; a classification marks it a failure."""
        return Classifier(self.exception_rules, (*self.result_rules, rule))

    def then(self, other: Classifier) -> Classifier:
        """A classifier that asks this one first, then ``other``."""
        return Classifier(
            self.exception_rules + other.exception_rules, self.result_rules + other.result_rules
        )

    def classify_exception(self, exc: BaseException) -> Classification | None:
        """The first rule's answer for ``exc``, or ``None`` when no rule knows it."""
        for rule in self.exception_rules:
            found = rule(exc)
            if found is not None:
                return found
        return None

    def classify_result(self, result: Any) -> Classification | None:
        """The first rule's answer for ``result``; ``None`` means success."""
        for rule in self.result_rules:
            found = rule(result)
            if found is not None:
                return found
        return None


# errnos that mean the network or the peer failed, not the caller's input
NETWORK_ERRNOS = frozenset(
    getattr(errno, name)
    for name in (
        "ECONNREFUSED", "ECONNRESET", "ECONNABORTED", "EPIPE", "ETIMEDOUT", "EHOSTUNREACH",
        "ENETUNREACH", "ENETDOWN", "ENETRESET", "EHOSTDOWN", "ENOTCONN", "ESHUTDOWN",
        "EADDRNOTAVAIL",
    )
    if hasattr(errno, name)
)

_TIMEOUT_TYPES: tuple[type[BaseException], ...] = (TimeoutError, asyncio.TimeoutError)


def default_exception_classification(exc: BaseException) -> Classification:
    """The conservative default for plain functions.

    Timeouts are ``timeout``; ``ConnectionError`` and ``OSError`` with a
    network errno are ``transient``; both are retried and counted by the
    breaker. Anything else is ``permanent``: counted, never retried.
    """
    if isinstance(exc, _TIMEOUT_TYPES):
        return TIMEOUT
    if isinstance(exc, ConnectionError):
        return TRANSIENT
    if isinstance(exc, OSError) and exc.errno in NETWORK_ERRNOS:
        return TRANSIENT
    return PERMANENT


def retry_on(types: Iterable[type[BaseException]]) -> ExceptionRule:
    """A rule making ``types`` transient (used by ``Retry(on=...)``)."""
    matched = tuple(types)

    def rule(exc: BaseException) -> Classification | None:
        return TRANSIENT if isinstance(exc, matched) else None

    return rule
