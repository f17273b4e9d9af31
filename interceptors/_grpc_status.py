"""How a gRPC status counts: the table every ``grpc.StatusCode`` has an entry in, and pushback.

Classification goes by code (never by details text); a test walks every
code. Shared by both mountings (interceptors and channel wrappers), sync
and aio; nothing here waits or does I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import grpc

from seawall import Classification
from seawall._classify import (
    CANCELLED,
    CLIENT_ERROR,
    PERMANENT,
    RATE_LIMITED,
    TIMEOUT,
    TRANSIENT,
    UNAVAILABLE,
    Category,
)
from seawall._pacing import Exhausted

ATTEMPT_HEADER = "seawall-attempt"
"""Request metadata key carrying the 1-based attempt number, sent on retries only (``"2"``, ``"3"``...)."""

PUSHBACK_TRAILER = "grpc-retry-pushback-ms"
"""Trailing metadata key a server sets to pace (``"250"``) or stop (``"-1"``) retries (gRFC A6)."""

REJECTED_TRAILER = "seawall-rejected"
"""Trailing metadata key on a local rejection: ``breaker``, ``bulkhead`` or ``deadline``."""

_OK = grpc.StatusCode.OK
_EXHAUSTED_CODE = grpc.StatusCode.RESOURCE_EXHAUSTED

EXHAUSTED = Exhausted(RATE_LIMITED.category, retry=True, breaker=True)
"""``RESOURCE_EXHAUSTED`` without a pushback trailer: rate limited, retried, and a pause of
the point for the backoff's base delay (``seawall._pacing.hintless_pause``)."""

# code -> (classification, retried only when the method is idempotent)
STATUS_TABLE: dict[grpc.StatusCode, tuple[Classification, bool]] = {
    grpc.StatusCode.CANCELLED: (CANCELLED, False),
    grpc.StatusCode.UNKNOWN: (TRANSIENT, True),
    grpc.StatusCode.INVALID_ARGUMENT: (CLIENT_ERROR, False),
    grpc.StatusCode.DEADLINE_EXCEEDED: (TIMEOUT, True),
    grpc.StatusCode.NOT_FOUND: (CLIENT_ERROR, False),
    grpc.StatusCode.ALREADY_EXISTS: (CLIENT_ERROR, False),
    grpc.StatusCode.PERMISSION_DENIED: (CLIENT_ERROR, False),
    grpc.StatusCode.RESOURCE_EXHAUSTED: (EXHAUSTED, False),
    grpc.StatusCode.FAILED_PRECONDITION: (CLIENT_ERROR, False),
    # a conflict between concurrent writers: the method may be re-run, the server is healthy
    grpc.StatusCode.ABORTED: (Classification(Category.TRANSIENT, retry=True, breaker=False), True),
    grpc.StatusCode.OUT_OF_RANGE: (CLIENT_ERROR, False),
    grpc.StatusCode.UNIMPLEMENTED: (CLIENT_ERROR, False),
    grpc.StatusCode.INTERNAL: (TRANSIENT, True),
    grpc.StatusCode.UNAVAILABLE: (UNAVAILABLE, False),
    grpc.StatusCode.DATA_LOSS: (PERMANENT, False),
    grpc.StatusCode.UNAUTHENTICATED: (CLIENT_ERROR, False),
}


def _build(idempotent: bool) -> dict[grpc.StatusCode, Classification]:
    table = {}
    for code, (c, needs_idempotent) in STATUS_TABLE.items():
        table[code] = c.with_retry(False) if needs_idempotent and not idempotent else c
    return table


BY_CODE = {False: _build(False), True: _build(True)}
"""The table resolved for non-idempotent (``False``) and idempotent (``True``) methods."""

_PUSHBACK = re.compile(r"[0-9]{1,9}")


def classify_status(code: grpc.StatusCode, trailing_metadata: Iterable[Any] | None = None,
                    *, idempotent: bool = False) -> Classification | None:
    """How a finished RPC's status counts: ``None`` for ``OK``, else its classification.

    ``UNAVAILABLE`` and ``RESOURCE_EXHAUSTED`` are retried for every method;
    ``DEADLINE_EXCEEDED``, ``ABORTED``, ``INTERNAL`` and ``UNKNOWN`` only when
    ``idempotent``; client errors never, and they do not count against the
    breaker; ``CANCELLED`` is neither. A ``grpc-retry-pushback-ms`` trailer
    with a non-negative integer sets the delay (milliseconds); a negative or
    malformed one vetoes the retry.

    Server pacing: a pushback delay pauses the point for exactly that long;
    ``RESOURCE_EXHAUSTED`` without the trailer is :data:`EXHAUSTED`, which
    pauses it for the retry backoff's base delay (see :mod:`seawall._pacing`),
    unless it is a seawall refusal relayed from further in (a
    ``seawall-rejected`` trailer: a local bulkhead, not the server).
    """
    if code is _OK:
        return None
    c = BY_CODE[idempotent].get(code, TRANSIENT.with_retry(idempotent))
    if trailing_metadata:
        for item in trailing_metadata:
            key, value = item[0], item[1]
            if key == PUSHBACK_TRAILER:
                if isinstance(value, bytes):
                    value = value.decode("ascii", "replace")
                value = value.strip()
                if _PUSHBACK.fullmatch(value):
                    c = c.with_delay(int(value) / 1000.0)
                else:  # a veto speaks of retries, not of pacing: no pause
                    c = _plain(c).with_retry(False)
                break
            if key == REJECTED_TRAILER and code is _EXHAUSTED_CODE:
                c = _plain(c)
    return c


def _plain(c: Classification) -> Classification:
    """``c`` without :class:`Exhausted`'s pause (same category, retry, breaker and delay)."""
    if type(c) is Exhausted:
        return Classification(c.category, c.retry, c.breaker, c.delay)
    return c


def with_attempt(metadata: Any, attempt: int) -> list[tuple[str, str | bytes]]:
    """The caller's metadata plus the attempt header (a fresh list; the caller's is untouched)."""
    md: list[tuple[str, str | bytes]] = [(item[0], item[1]) for item in metadata or ()]
    md.append((ATTEMPT_HEADER, str(attempt)))
    return md
