"""The commit and ending rules every gRPC shell shares: sync and aio, interceptors and wrappers.

When a call may still be retried is decided in three places: the status
table (:mod:`._grpc_status`), the replay buffer for request streams
(:func:`._grpc_replay.replay_view`), and here for response streams, whose
retryable phase ends when the first message reaches the caller
(:func:`stream_limits`). How a call ends (a refusal, a final failure, a
fallback's answer) is accounted here too, so every shell only waits.
"""

from __future__ import annotations

from typing import Any

from seawall import (
    Classification,
    DeadlineExceeded,
    Execution,
    Fallback,
    IntegrationPoint,
    RejectedError,
)
from seawall._classify import Category
from seawall._execution import add_note

from ._grpc_refusals import as_rpc_error
from ._grpc_replay import replay_view
from ._grpc_routes import Rule


def fallback_for(point: IntegrationPoint, category: Category | None,
                 rejected: bool) -> Fallback | None:
    """The point's fallback if it answers this failure (``rejected``: a local refusal)."""
    fb = point.fallback
    if fb is None:
        return None
    if rejected:
        return fb if fb.on_rejection else None
    return fb if category in fb.on else None


def resolve_fallback(fb: Fallback, error: BaseException) -> Any:
    """The fallback's value, or its handler's answer for ``error`` (may be awaitable)."""
    if fb.handler is not None:
        return fb.handler(error)
    return fb.value


def refuse(ex: Execution, exc: RejectedError | DeadlineExceeded, *,
           aio: bool = False) -> tuple[Fallback | None, Any]:
    """Account for a refusal before any attempt ran; returns ``(fallback, rpc_error)``."""
    fb = fallback_for(ex.point, None, True)
    ex.end_rejected(exc, fallback=fb is not None)
    return fb, as_rpc_error(exc, aio=aio)


def end_failure(ex: Execution, c: Classification, error: BaseException | None) -> Fallback | None:
    """Account for a failed call; returns the fallback to use, else notes ``error``."""
    fb = fallback_for(ex.point, c.category, False)
    ex.end_failure(c, fallback=fb is not None)
    if fb is None and error is not None and (ex.attempts > 1 or ex.stop_reason):
        add_note(error, ex.describe(c))
    return fb


def stream_retry(rule: Rule, ex: Execution, c: Classification, delivered: bool,
                 buffer: Any) -> tuple[float | None, Any]:
    """Account for a failed response-stream attempt: ``(delay before the retry, or None when
    the failure is final; the request view the retry sends, or None to send the same)``.

    Once a message was delivered to the caller the call is committed: a
    retry would repeat or skip messages, so the failure is final.
    """
    if delivered:
        return ex.failure(c.with_retry(False)), None
    c, view = replay_view(rule, ex, c, buffer)
    return ex.failure(c), view


def stream_limits(ex: Execution, timeout: float | None) -> tuple[float | None, float | None]:
    """A response-streaming attempt's gRPC timeout and its first-message limit, in seconds.

    ``timeout`` is what :meth:`Execution.begin` granted (``Timeout.attempt``
    narrowed by the call's deadline). For a response stream the attempt
    timeout bounds only the phase that can still be retried, until the first
    message reaches the caller; the wire gets the call's own deadline (the
    caller's ``timeout=`` and ``Timeout.total``; ``None``: unbounded). The
    limit is ``None`` when that deadline comes first anyway.
    """
    left = ex.remaining()
    if timeout is None or (left is not None and timeout >= left):
        return left, None
    return left, timeout
