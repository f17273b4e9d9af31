"""seawall's own exceptions: one base, rejections and deadlines.

The whole tree (each error's own attributes on the right)::

    Exception
    └── SeawallError                          point, operation
        ├── ConfigurationError (ValueError)   a policy built with a bad value
        ├── RejectedError                     reason: refused before reaching the dependency
        │   ├── CircuitOpenError              reason "breaker"; retry_after, retry_at
        │   ├── BulkheadFullError             reason "bulkhead"; max_concurrent
        │   └── RateLimitedError              reason "rate_limit" or "paused"; retry_after
        ├── DeadlineExceeded (TimeoutError)   timeout: no time left, or an attempt cut short
        └── ResultFailure                     result, classification: a failed *value*

What the caller sees: a refusal raises its :class:`RejectedError`; a call
that ran out of time raises :class:`DeadlineExceeded`; a call whose
attempts failed re-raises the *original* exception of the last attempt
(with a note of the attempts), never one of these. :class:`ResultFailure`
is never raised by seawall: it is what a fallback handler receives when
the failure was a returned value (an HTTP 503). A policy added later puts
its refusal under :class:`RejectedError` with its own ``reason`` (the
metrics' rejection key), as the breaker and the bulkhead do.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._classify import Classification


class SeawallError(Exception):
    """Base of every error seawall raises itself.

    ``point`` and ``operation`` name where it happened (``operation`` may be
    empty when the error is not about one call).
    """

    def __init__(self, message: str, *, point: str = "", operation: str = "") -> None:
        super().__init__(message)
        self.point = point
        self.operation = operation


class ConfigurationError(SeawallError, ValueError):
    """A policy was built with an invalid value; the message names the field.

    A policy's own check also gives the parts of its message: ``field``
    (the field's name: ``"attempts"``), ``value`` (the value refused) and
    ``complaint`` (``"must be >= 1"``), so the config file reader words the
    same refusal with the file and the key path. ``field`` is ``""`` (and
    ``value`` ``None``) when the error is not about one field.
    """

    def __init__(self, message: str, *, point: str = "", operation: str = "",
                 field: str = "", value: Any = None, complaint: str = "") -> None:
        super().__init__(message, point=point, operation=operation)
        self.field = field
        self.value = value
        self.complaint = complaint

    @classmethod
    def of_field(cls, owner: str, field: str, complaint: str, value: Any) -> ConfigurationError:
        """The error ``"{owner}.{field} {complaint}, got {value!r}"``, with its parts."""
        return cls(f"{owner}.{field} {complaint}, got {value!r}", field=field, value=value,
                   complaint=complaint)


class RejectedError(SeawallError):
    """The call was refused before it reached the dependency."""

    reason = "rejected"


class CircuitOpenError(RejectedError):
    """The point's circuit breaker is open (or forced open) and refused the call.

    ``retry_at`` is the monotonic time at which a trial call will be let
    through, ``retry_after`` the seconds from the moment of the rejection
    (``None`` when forced open until reset).
    """

    reason = "breaker"

    def __init__(
        self,
        message: str,
        *,
        point: str = "",
        operation: str = "",
        retry_after: float | None = None,
        retry_at: float | None = None,
    ) -> None:
        super().__init__(message, point=point, operation=operation)
        self.retry_after = retry_after
        self.retry_at = retry_at


class BulkheadFullError(RejectedError):
    """Every permit of the point's bulkhead was taken and none came free within ``max_wait``."""

    reason = "bulkhead"

    def __init__(
        self, message: str, *, point: str = "", operation: str = "", max_concurrent: int = 0
    ) -> None:
        super().__init__(message, point=point, operation=operation)
        self.max_concurrent = max_concurrent


class RateLimitedError(RejectedError):
    """The point would not start the attempt in time: its rate limit, or a server's pause.

    ``reason`` is ``"rate_limit"`` when the :class:`seawall.RateLimit` bucket
    had no token within ``max_wait`` (or before the call's deadline), and
    ``"paused"`` when the dependency asked the point to slow down (server
    pacing: a 429 / 503 ``Retry-After``, a gRPC pushback) and the pause
    outlasts the call's deadline. ``retry_after`` is the seconds from the
    refusal until an attempt could start.
    """

    reason = "rate_limit"

    def __init__(self, message: str, *, point: str = "", operation: str = "",
                 retry_after: float | None = None, paused: bool = False) -> None:
        super().__init__(message, point=point, operation=operation)
        self.retry_after = retry_after
        if paused:
            self.reason = "paused"


class DeadlineExceeded(SeawallError, TimeoutError):
    """A seawall deadline (attempt or total) ran out before the work finished.

    Also a :class:`TimeoutError`, so code that already handles timeouts keeps
    working. ``timeout`` is the budget in seconds that ran out.
    """

    def __init__(
        self, message: str, *, point: str = "", operation: str = "", timeout: float | None = None
    ) -> None:
        super().__init__(message, point=point, operation=operation)
        self.timeout = timeout


class ResultFailure(SeawallError):
    """A returned value that the classifier marked as a failure (an HTTP 503, say).

    Handed to a fallback handler in place of an exception; ``result`` is the value.
    """

    def __init__(self, result: Any, classification: Classification, *, point: str = "",
                 operation: str = "") -> None:
        super().__init__(f"result classified as {classification.category}", point=point,
                         operation=operation)
        self.result = result
        self.classification = classification
