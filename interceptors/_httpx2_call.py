# Generated from interceptors/_httpx_call.py by `python -m seawall.interceptors._httpx2_gen`: do not edit.
"""A watched httpx2 request: one whose every attempt the transport must follow.

A request goes through :class:`Call` when its body cannot be sent twice
(once it started to go out, no retry) or when its point has a fallback
(whose value replaces the last response, which must then be closed). The
common request, replayable and without a fallback, needs none of this and
goes to the point directly. Each transport subclasses :class:`Call` with
its ``__call__`` (the attempt the point runs); :func:`checked` vets a
fallback's value. No I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx2

from seawall import Classification, IntegrationPoint

from ._httpx2_body import OnceStream
from ._httpx2_classify import classify_exception, is_idempotent
from ._httpx2_options import Options


class Call:
    """One request whose every attempt must be watched: a body that cannot be sent twice,
    or a point with a fallback (whose value replaces the last response, which is then closed).

    Shared by the request's attempts, never by two requests.
    """

    __slots__ = ("idempotent", "last", "once", "options", "request", "send")

    def __init__(self, options: Options, request: httpx2.Request, once: OnceStream | None,
                 send: Callable[[float | None], Any]) -> None:
        self.options = options
        self.request = request
        self.once = once
        self.send = send
        self.idempotent: bool | None = None
        self.last: httpx2.Response | None = None

    def restore(self) -> None:
        """Put the request's own body back, as the caller will see it."""
        if self.once is not None:
            self.request.stream = self.once.stream

    def _is_idempotent(self) -> bool:
        if self.idempotent is None:
            self.idempotent = is_idempotent(self.request, self.options.retry_non_idempotent)
        return self.idempotent

    def _body_spent(self) -> bool:
        return self.once is not None and self.once.started

    def classify_exception(self, exc: BaseException) -> Classification | None:
        c = classify_exception(exc, self._is_idempotent())
        if c is not None and c.retry and self._body_spent():
            return c.with_retry(False)
        return c

    def classify_result(self, response: httpx2.Response) -> Classification | None:
        status = response.status_code
        if status < 400:
            return None
        resendable = self._is_idempotent() and not self._body_spent()
        return self.options.status_outcome(status, response, resendable)


def checked(result: Any, point: IntegrationPoint) -> httpx2.Response:
    """The response to hand back: a fallback's value must be a response, and a fresh one."""
    if not isinstance(result, httpx2.Response):
        raise TypeError(
            f"seawall: the fallback of point {point.name!r} must give an httpx2.Response "
            f"when used with an httpx2 transport, got {type(result).__name__}"
        )
    fallback = point.fallback
    if fallback is not None and result is fallback.value:
        # one Response object must not be shared by several requests
        return httpx2.Response(result.status_code, headers=result.headers,
                              content=result.content, extensions=dict(result.extensions))
    return result
