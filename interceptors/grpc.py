"""seawall for gRPC: client interceptors for sync channels and grpc.aio, all four call shapes.

::

    import grpc
    import seawall
    from seawall.interceptors import grpc as sw_grpc

    payments = seawall.IntegrationPoint("payments", retry=seawall.Retry(attempts=3))
    channel = grpc.intercept_channel(grpc.insecure_channel(target),
                                     *sw_grpc.client_interceptors(payments))
    achannel = grpc.aio.insecure_channel(target,
                                         interceptors=sw_grpc.aio_client_interceptors(payments))

``target`` is one point (or :class:`Route`) for every method, or a routing
table from method patterns (``"/pkg.Service/Method"``, ``"/pkg.Service/*"``,
``"*"``; the most specific wins) to points or routes. Methods that match no
pattern pass through untouched.

What each call gets: the caller's ``timeout=`` is the total budget, each
attempt of a unary-response call gets ``min(Timeout.attempt, remaining)``
as its gRPC timeout (a response stream: see below);
status codes are classified by :func:`classify_status`; the server's
``grpc-retry-pushback-ms`` trailer paces or stops retries; retries carry
the ``seawall-attempt`` request header (1-based attempt number, absent on
the first attempt); breaker and bulkhead refusals are gRPC errors
(:class:`CircuitOpenRpcError`, :class:`BulkheadFullRpcError`; in aio
:class:`AioCircuitOpenRpcError`, :class:`AioBulkheadFullRpcError`) raised
without touching the network; every attempt is an event whose
``operation`` is the full method name.

Streams: a response stream is retried only until its first message was
delivered to the caller, and ``Timeout.attempt`` bounds that phase only
(no message in time: ``DEADLINE_EXCEEDED``); after it only the caller's
``timeout=`` and ``Timeout.total`` apply. A request stream is retried only
while it fits the route's ``request_buffer`` (messages kept for replay),
otherwise its first failure is final; request iterators may block as long
as they like, a failed attempt is decided without waiting for them.
Fallbacks answer unary-response calls only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Union, cast

import grpc.aio

from seawall import IntegrationPoint

from ._grpc_aio import AioStreamStream, AioStreamUnary, AioUnaryStream, AioUnaryUnary
from ._grpc_common import (
    ATTEMPT_HEADER,
    DEFAULT_REQUEST_BUFFER,
    PUSHBACK_TRAILER,
    REJECTED_TRAILER,
    STATUS_TABLE,
    AioBulkheadFullRpcError,
    AioCircuitOpenRpcError,
    AioDeadlineExceededRpcError,
    BulkheadFullRpcError,
    CircuitOpenRpcError,
    DeadlineExceededRpcError,
    Route,
    Router,
    classify_status,
)
from ._grpc_sync import ClientInterceptor

Target = Union[IntegrationPoint, Route, Mapping[str, Union[IntegrationPoint, Route]]]  # noqa: UP007 (a runtime alias on 3.10)
"""One point or route for every method, or a table of method patterns to points or routes."""


def client_interceptors(target: Target, *, idempotent: bool = False,
                        request_buffer: int = DEFAULT_REQUEST_BUFFER) -> list[Any]:
    """Interceptors for ``grpc.intercept_channel(channel, *interceptors)`` applying ``target``.

    ``idempotent`` and ``request_buffer`` are the defaults for bare points
    (a :class:`Route` carries its own). One list may be used for any number
    of channels; it is thread-safe, and the state it touches lives in the
    points.
    """
    return [ClientInterceptor(Router(target, idempotent=idempotent,
                                     request_buffer=request_buffer))]


def aio_client_interceptors(target: Target, *, idempotent: bool = False,
                            request_buffer: int = DEFAULT_REQUEST_BUFFER,
                            ) -> list[grpc.aio.ClientInterceptor]:
    """Interceptors for ``grpc.aio.insecure_channel(..., interceptors=...)`` (or ``secure_channel``).

    The same options as :func:`client_interceptors`; one object per call
    shape (unary-unary, unary-stream, stream-unary, stream-stream, in that
    order), because grpc.aio registers an interceptor for a single shape.
    Each is a ``grpc.aio.ClientInterceptor``, the type the channel's
    ``interceptors`` parameter takes, so the list passes type checks as it is.
    """
    router = Router(target, idempotent=idempotent, request_buffer=request_buffer)
    interceptors = [AioUnaryUnary(router), AioUnaryStream(router), AioStreamUnary(router),
                    AioStreamStream(router)]
    # grpc-stubs declares ClientInterceptor as a placeholder class that nothing subclasses;
    # at run time it is the base of the four shapes (each object here is one)
    return cast("list[grpc.aio.ClientInterceptor]", interceptors)


__all__ = [
    "ATTEMPT_HEADER",
    "AioBulkheadFullRpcError",
    "AioCircuitOpenRpcError",
    "AioDeadlineExceededRpcError",
    "BulkheadFullRpcError",
    "CircuitOpenRpcError",
    "DEFAULT_REQUEST_BUFFER",
    "DeadlineExceededRpcError",
    "PUSHBACK_TRAILER",
    "REJECTED_TRAILER",
    "Route",
    "STATUS_TABLE",
    "Target",
    "aio_client_interceptors",
    "classify_status",
    "client_interceptors",
]
