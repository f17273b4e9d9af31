# Generated from interceptors/_httpx_classify.py by `python -m seawall.interceptors._httpx2_gen`: do not edit.
"""How the httpx2 transports classify a request's outcome, without doing any I/O.

Whether a request may be sent twice (the method, an ``Idempotency-Key``,
the ``seawall.idempotent`` extension), what each response status means
(and ``Retry-After``), and the table of every public httpx2 exception.
Shared by the sync and the async transport; nothing here sends, sleeps or
reads.
"""

from __future__ import annotations

import datetime
import email.utils
from collections.abc import Callable

import httpx2

from seawall import Classification
from seawall._classify import (
    CLIENT_ERROR,
    PERMANENT,
    RATE_LIMITED,
    TIMEOUT,
    TRANSIENT,
    UNAVAILABLE,
)

# -- methods --------------------------------------------------------------------

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
"""Methods that RFC 9110 defines as idempotent: safe to send twice."""

IDEMPOTENCY_HEADER = "idempotency-key"

# per-request opt-in (``extensions={"seawall.idempotent": True}``) or opt-out (False)
IDEMPOTENT_EXTENSION = "seawall.idempotent"


def is_idempotent(request: httpx2.Request, retry_non_idempotent: bool) -> bool:
    """Whether sending ``request`` twice is safe.

    A request extension ``seawall.idempotent`` decides when present; then
    the method, then an ``Idempotency-Key`` header, then the transport's
    ``retry_non_idempotent`` option.
    """
    explicit = request.extensions.get(IDEMPOTENT_EXTENSION)
    if explicit is not None:
        return bool(explicit)
    if request.method in IDEMPOTENT_METHODS:
        return True
    return retry_non_idempotent or IDEMPOTENCY_HEADER in request.headers


# -- statuses -------------------------------------------------------------------

RETRY_STATUSES = frozenset({429, 502, 503, 504})
"""Statuses retried by default (for idempotent requests)."""

HINT_STATUSES = frozenset({429, 503})
"""Statuses whose ``Retry-After`` asks the client to slow down (RFC 9110 section 10.2.3,
RFC 6585): it pauses the point (server pacing) whatever the method, retried or not."""

_RATE_LIMITED_4XX = Classification(RATE_LIMITED.category, retry=True, breaker=False)
_TIMEOUT_4XX = Classification(TIMEOUT.category, retry=True, breaker=False)


def status_classification(status: int) -> Classification | None:
    """What a response status means before the method is considered; ``None`` = success.

    502/503 are unavailable and 504 a timeout: retryable, counted by the
    breaker. Any other 5xx is a server failure counted by the breaker but
    not retried. 4xx never count against the breaker: 429 is rate limited
    and 408 a timeout (both retryable: the caller is over its quota or was
    slow, the server is healthy), any other 4xx is the caller's error and
    permanent. 1xx-3xx are successes. Whether a retryable status is retried
    also depends on the method and the transport's ``retry_statuses``.
    """
    if status < 400:
        return None
    if status >= 500:
        if status in (502, 503):
            return UNAVAILABLE
        return TIMEOUT if status == 504 else PERMANENT
    if status == 429:
        return _RATE_LIMITED_4XX
    return _TIMEOUT_4XX if status == 408 else CLIENT_ERROR


def parse_retry_after(value: str | None, *, now: Callable[[], float] | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value, or ``None`` when absent or malformed.

    Accepts the two forms of RFC 9110 section 10.2.3: a non-negative whole
    number of seconds, or an HTTP-date (a date in the past means 0). ``now``
    returns wall-clock seconds since the epoch (tests pin it). Clamping to
    the maximum is the point's ``Retry(max_server_delay=...)``.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if text.isdigit():  # ASCII digits only: "-1", "1.5" and non-ASCII digits are malformed
        return float(int(text)) if text.isascii() else None
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110: HTTP-dates are UTC
        when = when.replace(tzinfo=datetime.timezone.utc)
    wall = now() if now is not None else datetime.datetime.now(datetime.timezone.utc).timestamp()
    return max(0.0, when.timestamp() - wall)


# -- exceptions -----------------------------------------------------------------

# exception class -> (classification, retried only for idempotent requests?)
# Every public httpx2 exception is listed on purpose (a test walks httpx2.__all__).
EXCEPTION_TABLE: dict[type[BaseException], tuple[Classification, bool]] = {
    # the request never left: safe to retry for any method
    httpx2.ConnectError: (TRANSIENT, False),
    httpx2.ConnectTimeout: (TIMEOUT, False),
    httpx2.ProxyError: (UNAVAILABLE, False),
    # no free connection in our own pool: local saturation, not the remote's
    # fault, so retried but never counted by the breaker
    httpx2.PoolTimeout: (Classification(TIMEOUT.category, retry=True, breaker=False), False),
    # the request may have been processed: only idempotent requests are retried
    httpx2.ReadTimeout: (TIMEOUT, True),
    httpx2.WriteTimeout: (TIMEOUT, True),
    httpx2.ReadError: (TRANSIENT, True),
    httpx2.WriteError: (TRANSIENT, True),
    httpx2.CloseError: (TRANSIENT, True),
    httpx2.RemoteProtocolError: (TRANSIENT, True),
    # bases, raised as such only by custom transports: the cautious reading
    httpx2.TimeoutException: (TIMEOUT, True),
    httpx2.NetworkError: (TRANSIENT, True),
    httpx2.ProtocolError: (TRANSIENT, True),
    httpx2.TransportError: (TRANSIENT, True),
    # the server sent a body we cannot decode: its fault, retrying will not help
    httpx2.DecodingError: (PERMANENT, False),
    # our own mistakes (bad URL, bad request, misuse of streams): never retried,
    # never the dependency's fault
    httpx2.LocalProtocolError: (CLIENT_ERROR, False),
    httpx2.UnsupportedProtocol: (CLIENT_ERROR, False),
    httpx2.InvalidURL: (CLIENT_ERROR, False),
    httpx2.CookieConflict: (CLIENT_ERROR, False),
    httpx2.StreamError: (CLIENT_ERROR, False),
    httpx2.StreamConsumed: (CLIENT_ERROR, False),
    httpx2.StreamClosed: (CLIENT_ERROR, False),
    httpx2.ResponseNotRead: (CLIENT_ERROR, False),
    httpx2.RequestNotRead: (CLIENT_ERROR, False),
    # raised above the transport (redirect loop, raise_for_status); should one
    # reach us through a custom transport, it is not retried
    httpx2.TooManyRedirects: (CLIENT_ERROR, False),
    httpx2.HTTPStatusError: (PERMANENT, False),
    httpx2.RequestError: (PERMANENT, False),
    httpx2.HTTPError: (PERMANENT, False),
}
# httpx2's Server-Sent Events raise SSEError (a TransportError) above the transport when
# the server answered with another content type or an oversized event: not transient
_SSE_ERROR = getattr(httpx2, "SSEError", None)
if _SSE_ERROR is not None:
    EXCEPTION_TABLE[_SSE_ERROR] = (PERMANENT, False)

_BY_TYPE: dict[type[BaseException], tuple[Classification, bool] | None] = {}


def exception_rule(exc_type: type[BaseException]) -> tuple[Classification, bool] | None:
    """The table entry for ``exc_type`` or its nearest listed base; ``None`` for non-httpx errors."""
    try:
        return _BY_TYPE[exc_type]
    except KeyError:
        pass
    found = None
    for klass in exc_type.__mro__:
        found = EXCEPTION_TABLE.get(klass)
        if found is not None:
            break
    if len(_BY_TYPE) < 1024:
        _BY_TYPE[exc_type] = found
    return found


def classify_exception(exc: BaseException, idempotent: bool) -> Classification | None:
    """How an exception from the inner transport is classified for a request.

    ``None`` (exceptions that are not httpx2's) leaves the point's defaults
    in charge. An HTTPStatusError is classified by its response's status.
    """
    entry = exception_rule(type(exc))
    if entry is None:
        return None
    c, needs_idempotent = entry
    if isinstance(exc, httpx2.HTTPStatusError):
        by_status = status_classification(exc.response.status_code)
        c = (by_status or PERMANENT).with_retry(False)
    if needs_idempotent and not idempotent and c.retry:
        return c.with_retry(False)
    return c
