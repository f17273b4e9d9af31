"""seawall for gRPC: sync channels and grpc.aio, all four call shapes, two ways to mount.

::

    import grpc
    import seawall
    from seawall.interceptors import grpc as sw_grpc

    payments = seawall.IntegrationPoint("payments", retry=seawall.Retry(attempts=3))

    # the channel wrappers: the policy around the channel's own calls (the cheap way)
    channel = sw_grpc.resilient_channel(grpc.insecure_channel(target), payments)
    achannel = sw_grpc.aio_resilient_channel(grpc.aio.insecure_channel(target), payments)

    # or gRPC's interceptor machinery, e.g. to sit in a chain with other interceptors
    channel = grpc.intercept_channel(grpc.insecure_channel(target),
                                     *sw_grpc.client_interceptors(payments))
    achannel = grpc.aio.insecure_channel(target,
                                         interceptors=sw_grpc.aio_client_interceptors(payments))

Both mountings apply the same rules (they run the same shells; the tests
run every case over both). ``target`` is one point (or :class:`Route`)
for every method, or a routing table from method patterns
(``"/pkg.Service/Method"``, ``"/pkg.Service/*"``, ``"*"``; the most
specific wins) to points or routes. Methods that match no pattern pass
through untouched.

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

The modules behind this one, one concept each: ``_grpc_status`` (the
status table), ``_grpc_routes`` (routing), ``_grpc_refusals`` (refusals
that are gRPC errors), ``_grpc_replay`` (request-stream replay),
``_grpc_commit`` (when a call may still be retried, how it ends); the sync
shells ``_grpc_sync_unary``, ``_grpc_sync_future``, ``_grpc_sync_streams``
(waiting helpers in ``_grpc_sync_wait``) and the aio shells
``_grpc_aio_status``, ``_grpc_aio_unary``, ``_grpc_aio_streams``; the
mountings ``_grpc_sync`` / ``_grpc_aio`` (interceptors) and
``_grpc_sync_channel`` / ``_grpc_aio_channel`` (channel wrappers; the aio wrapper's
unary call in ``_grpc_aio_call``). Sync
and aio are written apart, not generated one from the other: gRPC gives
them different shapes (a blocking call, a future and an iterator in sync;
an awaitable call object in aio), so only the rules are shared.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Union, cast

import grpc
import grpc.aio

from seawall import IntegrationPoint

from ._grpc_aio import AioStreamStream, AioStreamUnary, AioUnaryStream, AioUnaryUnary
from ._grpc_aio_channel import AioResilientChannel
from ._grpc_refusals import (
    AioBulkheadFullRpcError,
    AioCircuitOpenRpcError,
    AioDeadlineExceededRpcError,
    AioRateLimitedRpcError,
    BulkheadFullRpcError,
    CircuitOpenRpcError,
    DeadlineExceededRpcError,
    RateLimitedRpcError,
)
from ._grpc_routes import DEFAULT_REQUEST_BUFFER, Route, Router
from ._grpc_status import (
    ATTEMPT_HEADER,
    PUSHBACK_TRAILER,
    REJECTED_TRAILER,
    STATUS_TABLE,
    classify_status,
)
from ._grpc_sync import ClientInterceptor
from ._grpc_sync_channel import ResilientChannel

Target = Union[IntegrationPoint, Route, Mapping[str, Union[IntegrationPoint, Route]]]  # noqa: UP007 (a runtime alias on 3.10)
"""One point or route for every method, or a table of method patterns to points or routes."""


def client_interceptors(target: Target, *, idempotent: bool = False,
                        request_buffer: int = DEFAULT_REQUEST_BUFFER) -> list[Any]:
    """Interceptors for ``grpc.intercept_channel(channel, *interceptors)`` applying ``target``.

    ``idempotent`` and ``request_buffer`` are the defaults for bare points
    (a :class:`Route` carries its own). One list may be used for any number
    of channels; it is thread-safe, and the state it touches lives in the
    points. :func:`resilient_channel` applies the same policy for less.
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


def resilient_channel(channel: grpc.Channel, target: Target, *, idempotent: bool = False,
                      request_buffer: int = DEFAULT_REQUEST_BUFFER) -> grpc.Channel:
    """``channel`` with ``target``'s policy on every call, without gRPC's interceptor machinery.

    A ``grpc.Channel`` to build stubs on: each stub method's multicallable
    runs the policy directly around ``channel``'s own, with every behaviour
    of :func:`client_interceptors` (the same options) at about the plain
    channel's cost. ``channel`` may be any ``grpc.Channel``, an intercepted
    one included; ``close()``, ``subscribe``/``unsubscribe`` and the context
    manager act on it. Thread-safe.
    """
    return ResilientChannel(channel, Router(target, idempotent=idempotent,
                                            request_buffer=request_buffer))


def aio_resilient_channel(channel: grpc.aio.Channel, target: Target, *,
                          idempotent: bool = False,
                          request_buffer: int = DEFAULT_REQUEST_BUFFER) -> grpc.aio.Channel:
    """The grpc.aio twin of :func:`resilient_channel`: a ``grpc.aio.Channel`` around ``channel``.

    Every behaviour of :func:`aio_client_interceptors` (the same options),
    without grpc.aio's interceptor task per call: a unary-unary call starts
    at once and a success is settled in the caller's ``await``. ``close()``,
    ``async with``, ``get_state``, ``wait_for_state_change`` and
    ``channel_ready`` act on ``channel``. Use it on ``channel``'s event loop.
    """
    return AioResilientChannel(channel, Router(target, idempotent=idempotent,
                                               request_buffer=request_buffer))


__all__ = [
    "ATTEMPT_HEADER",
    "AioBulkheadFullRpcError",
    "AioCircuitOpenRpcError",
    "AioDeadlineExceededRpcError",
    "AioRateLimitedRpcError",
    "BulkheadFullRpcError",
    "CircuitOpenRpcError",
    "DEFAULT_REQUEST_BUFFER",
    "DeadlineExceededRpcError",
    "PUSHBACK_TRAILER",
    "REJECTED_TRAILER",
    "RateLimitedRpcError",
    "Route",
    "STATUS_TABLE",
    "Target",
    "aio_client_interceptors",
    "aio_resilient_channel",
    "classify_status",
    "client_interceptors",
    "resilient_channel",
]
