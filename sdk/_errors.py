"""seawall's own exceptions: one base, rejections and deadlines."""

from __future__ import annotations


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
    """A policy was built with an invalid value; the message names the field."""


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
