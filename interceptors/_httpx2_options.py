# Generated from interceptors/_httpx_options.py by `python -m seawall.interceptors._httpx2_gen`: do not edit.
"""The httpx2 transports' settings, validated once, and the per-attempt timeout extension.

:class:`Options` holds what a transport was built with (its router, the
statuses to retry, ``retry_non_idempotent``, ``read_body``), the
classifiers handed to the point for the common request, and the last
narrowed ``timeout`` extension (a client sends the same one every time).
:func:`narrowed_timeout` hands an attempt's time to httpx2: no phase longer
than the attempt. Shared by the sync and the async transport; no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable
from functools import partial
from typing import Any

import httpx2

from seawall import Classification, ConfigurationError, IntegrationPoint
from seawall._classify import TRANSIENT, ExceptionRule, ResultRule

from ._httpx2_classify import (
    HINT_STATUSES,
    classify_exception,
    parse_retry_after,
    status_classification,
)
from ._httpx2_routes import Route, Router

ABSENT: Any = object()
"""The request had no ``timeout`` extension (restored as absent after the call)."""

_PHASES = ("connect", "read", "write", "pool")


def narrowed_timeout(current: Any, attempt: float) -> dict[str, float | None]:
    """The request's ``timeout`` extension with every phase at most ``attempt`` seconds."""
    if type(current) is not dict:
        return dict.fromkeys(_PHASES, attempt)
    out: dict[str, float | None] = current.copy()
    for phase in _PHASES:
        value = out.get(phase)
        if value is None or value > attempt:
            out[phase] = attempt
    return out


class Options:
    """The transport's settings, validated once; shared by the sync and async transports.

    Also the classifiers handed to the point for requests whose body can be
    sent again, built once so that a request on the common path allocates none.
    """

    __slots__ = ("exceptions", "narrowing", "read_body", "results", "retry_non_idempotent",
                 "retry_statuses", "router")

    def __init__(self, owner: str, point: IntegrationPoint | None, routes: Iterable[Route],
                 retry_statuses: Collection[int], retry_non_idempotent: bool,
                 read_body: int | None) -> None:
        self.router = Router(point, routes)
        statuses = frozenset(retry_statuses)
        for s in statuses:
            if isinstance(s, bool) or not isinstance(s, int) or not 400 <= s <= 599:
                raise ConfigurationError(
                    f"{owner}.retry_statuses must hold 4xx/5xx status codes, got {s!r}"
                )
        self.retry_statuses = statuses
        if not isinstance(retry_non_idempotent, bool):
            raise ConfigurationError(
                f"{owner}.retry_non_idempotent must be True or False, got {retry_non_idempotent!r}"
            )
        self.retry_non_idempotent = retry_non_idempotent
        if read_body is not None and (isinstance(read_body, bool) or not isinstance(read_body, int)
                                      or read_body < 0):
            raise ConfigurationError(
                f"{owner}.read_body must be a byte count >= 0 or None, got {read_body!r}"
            )
        self.read_body = read_body
        # indexed by "may this request be sent again?"
        self.results: tuple[ResultRule, ResultRule] = (self._final_result, self._resendable_result)
        self.exceptions: tuple[ExceptionRule, ExceptionRule] = (
            partial(classify_exception, idempotent=False),
            partial(classify_exception, idempotent=True),
        )
        # the last (attempt timeout, request timeouts, narrowed timeouts): the client
        # sends the same timeouts every time, and the first attempt's is the point's
        # (NaN equals no timeout, so the first request always computes)
        self.narrowing: tuple[float, Any, dict[str, float | None]] = (math.nan, ABSENT, {})

    def narrowed(self, original: Any, timeout: float) -> dict[str, float | None]:
        """A fresh copy of the request's ``timeout`` extension with no phase over ``timeout``."""
        last = self.narrowing
        if timeout == last[0] and original == last[1]:
            return last[2].copy()
        out = narrowed_timeout(None if original is ABSENT else original, timeout)
        # a dict is copied (its owner may change it later); anything else is ignored
        # by narrowed_timeout, so it may be kept as it is
        snapshot = original.copy() if type(original) is dict else original
        self.narrowing = (timeout, snapshot, out.copy())
        return out

    def _final_result(self, response: httpx2.Response) -> Classification | None:
        if response.status_code < 400:
            return None
        return self.status_outcome(response.status_code, response, False)

    def _resendable_result(self, response: httpx2.Response) -> Classification | None:
        if response.status_code < 400:
            return None
        return self.status_outcome(response.status_code, response, True)

    def status_outcome(self, status: int, response: httpx2.Response,
                       resendable: bool) -> Classification:
        """A failed status's classification; retried only if the request may be sent again.

        Its ``Retry-After`` (on 429, 503 or a status in ``retry_statuses``)
        is the server's delay whether or not this request is sent again: the
        point pauses every caller for it (server pacing), a POST too.
        """
        c = status_classification(status)
        assert c is not None
        retried = status in self.retry_statuses
        delay = parse_retry_after(response.headers.get("retry-after")) \
            if retried or status in HINT_STATUSES else None
        if resendable and retried:
            if not c.retry:  # a status the caller added (500, 409...)
                c = Classification(TRANSIENT.category, retry=True, breaker=c.breaker)
        elif c.retry:
            c = c.with_retry(False)
        return c if delay is None else c.with_delay(delay)
