"""How a call that did not succeed ends: the fallback's answer, or the caller's own error.

A failed call ends with the point's :class:`seawall.Fallback` when it
answers the last failure's category (or, with ``on_rejection``, a
refusal), else the original exception of the last attempt, re-raised
with a note of the attempts, or the last failed result, returned as it
is (an HTTP 503 the caller can read). A refusal before any attempt ran
raises its :class:`seawall.RejectedError` (or :class:`DeadlineExceeded`).

Each ending is counted once, through the :class:`~._execution.Execution`.
The async twins (``a``-prefixed) await a fallback handler's coroutine;
the sync shell, generated from the async one, calls the plain ones.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

from ._classify import Category, Classification
from ._errors import DeadlineExceeded, RejectedError, ResultFailure
from ._execution import Execution
from ._policies import Fallback

if TYPE_CHECKING:
    from ._point import IntegrationPoint


def fallback_for(fb: Fallback | None, category: Category | None,
                 rejected: bool) -> Fallback | None:
    """``fb`` if it answers this ending (``rejected``: a local refusal), else ``None``."""
    if fb is None:
        return None
    if rejected:
        return fb if fb.on_rejection else None
    return fb if category in fb.on else None


def answer(fb: Fallback, error: BaseException) -> Any:
    """The fallback's value, or its handler's answer for ``error`` (maybe a coroutine)."""
    if fb.handler is not None:
        return fb.handler(error)
    return fb.value


def finish_rejection(point: IntegrationPoint, ex: Execution,
                     rejection: RejectedError | DeadlineExceeded) -> Any:
    """The call was refused before its first attempt (or had no time left): end it."""
    fb = fallback_for(point.fallback, None, True)
    ex.end_rejected(rejection, fallback=fb is not None)
    if fb is None:
        raise rejection
    return answer(fb, rejection)


def finish_failure(point: IntegrationPoint, ex: Execution, c: Classification,
                   failure: Exception | None, result: Any) -> Any:
    """The last attempt failed as ``c`` (with ``failure``, or a failed ``result``): end the call."""
    fb = fallback_for(point.fallback, c.category, False)
    ex.end_failure(c, fallback=fb is not None)
    if fb is not None:
        return answer(fb, failure if failure is not None else
                       ResultFailure(result, c, point=point.name, operation=ex.operation))
    if failure is None:
        return result
    ex.annotate(failure, c)
    raise failure


async def aanswer(fb: Fallback, error: BaseException) -> Any:
    """:func:`answer`, awaiting an async fallback handler."""
    value = answer(fb, error)
    return await value if inspect.isawaitable(value) else value


async def afinish_rejection(point: IntegrationPoint, ex: Execution,
                            rejection: RejectedError | DeadlineExceeded) -> Any:
    """:func:`finish_rejection`, awaiting an async fallback handler."""
    value = finish_rejection(point, ex, rejection)
    return await value if inspect.isawaitable(value) else value


async def afinish_failure(point: IntegrationPoint, ex: Execution, c: Classification,
                          failure: Exception | None, result: Any) -> Any:
    """:func:`finish_failure`, awaiting an async fallback handler (never a returned result)."""
    value = finish_failure(point, ex, c, failure, result)
    if point.fallback is not None and inspect.isawaitable(value):
        return await value
    return value
