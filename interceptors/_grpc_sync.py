"""Mounting on a sync channel through ``grpc.intercept_channel``: one interceptor, four shapes.

The interceptor only adapts gRPC's continuation contract to the shared
shells (blocking unary, ``.future()``, response streams): each attempt is
``continuation(details, request)`` with the call details rebuilt by one
helper. The channel wrapper (``_grpc_sync_channel``) drives the same shells
without gRPC's interceptor machinery. Its aio twin, ``_grpc_aio``, is
written apart: grpc.aio's interceptor classes, continuation and call
details have other shapes.
"""

from __future__ import annotations

import collections
import types
from typing import TYPE_CHECKING, Any

import grpc

from ._grpc_chaos import chaos_send
from ._grpc_replay import replayable
from ._grpc_routes import Router, Rule, operation_name
from ._grpc_status import with_attempt
from ._grpc_sync_future import RetryingFuture
from ._grpc_sync_streams import ResponseStream
from ._grpc_sync_unary import OUTCOME, blocking

if TYPE_CHECKING:  # grpc-stubs makes these generic; grpc itself does not
    _UnaryUnary = grpc.UnaryUnaryClientInterceptor[Any, Any]
    _UnaryStream = grpc.UnaryStreamClientInterceptor[Any, Any]
    _StreamUnary = grpc.StreamUnaryClientInterceptor[Any, Any]
    _StreamStream = grpc.StreamStreamClientInterceptor[Any, Any]
else:
    _UnaryUnary = grpc.UnaryUnaryClientInterceptor
    _UnaryStream = grpc.UnaryStreamClientInterceptor
    _StreamUnary = grpc.StreamUnaryClientInterceptor
    _StreamStream = grpc.StreamStreamClientInterceptor


class _Details(
    collections.namedtuple(
        "_Details", ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression")
    ),
    grpc.ClientCallDetails,
):
    """Call details rebuilt for one attempt (the one helper every shape uses)."""


def _send(args: tuple[Any, grpc.ClientCallDetails], request: Any, timeout: float | None,
          attempt: int) -> Any:
    """One attempt through the continuation: the caller's details, rebuilt when they change."""
    continuation, d = args
    if attempt == 1 and timeout == d.timeout:
        return continuation(d, request)
    return continuation(_Details(
        d.method, timeout,
        d.metadata if attempt == 1 else with_attempt(d.metadata, attempt),
        getattr(d, "credentials", None), getattr(d, "wait_for_ready", None),
        getattr(d, "compression", None),
    ), request)



_FUTURE_PATH: dict[types.CodeType, bool] = {}


def _is_future_path(continuation: Any) -> bool:
    """Whether grpc called us for ``.future()`` (the continuation is that method's closure).

    grpc hands the interceptor a different closure for ``__call__``/``with_call``
    and for ``future``; telling them apart lets the blocking paths retry in
    the caller's thread without a proxy. Unknown continuations get the proxy,
    which is correct for both.
    """
    code = getattr(continuation, "__code__", None)
    if code is None:
        return True
    known = _FUTURE_PATH.get(code)
    if known is None:
        known = "_with_call" not in getattr(continuation, "__qualname__", "")
        if len(_FUTURE_PATH) < 256:
            _FUTURE_PATH[code] = known
    return known


def _unary_response(rule: Rule, continuation: Any, details: Any, request: Any,
                    buffer: Any) -> Any:
    ex = rule.execution(operation_name(details.method), details.timeout)
    send = _send if rule.point.chaos is None else chaos_send(rule, ex, _send)
    if _is_future_path(continuation):
        return RetryingFuture(rule, ex, send, (continuation, details), request, buffer).start()
    return blocking(rule, ex, send, (continuation, details), request, buffer, OUTCOME)


def _stream_response(rule: Rule, continuation: Any, details: Any, request: Any,
                     buffer: Any) -> Any:
    ex = rule.execution(operation_name(details.method), details.timeout)
    send = _send if rule.point.chaos is None else chaos_send(rule, ex, _send)
    return ResponseStream(rule, ex, send, (continuation, details), request, buffer).start()


class ClientInterceptor(_UnaryUnary, _UnaryStream, _StreamUnary, _StreamStream):
    """Applies the routed point's policy to every call shape of a sync channel. Thread-safe."""

    def __init__(self, router: Router) -> None:
        self._lookup = router.lookup

    def intercept_unary_unary(self, continuation: Any, client_call_details: Any,
                              request: Any) -> Any:
        rule = self._lookup(client_call_details.method)
        if rule is None:
            return continuation(client_call_details, request)
        return _unary_response(rule, continuation, client_call_details, request, None)

    def intercept_stream_unary(self, continuation: Any, client_call_details: Any,
                               request_iterator: Any) -> Any:
        rule = self._lookup(client_call_details.method)
        if rule is None:
            return continuation(client_call_details, request_iterator)
        buffer, first = replayable(rule, request_iterator)
        return _unary_response(rule, continuation, client_call_details, first, buffer)

    def intercept_unary_stream(self, continuation: Any, client_call_details: Any,
                               request: Any) -> Any:
        rule = self._lookup(client_call_details.method)
        if rule is None:
            return continuation(client_call_details, request)
        return _stream_response(rule, continuation, client_call_details, request, None)

    def intercept_stream_stream(self, continuation: Any, client_call_details: Any,
                                request_iterator: Any) -> Any:
        rule = self._lookup(client_call_details.method)
        if rule is None:
            return continuation(client_call_details, request_iterator)
        buffer, first = replayable(rule, request_iterator)
        return _stream_response(rule, continuation, client_call_details, first, buffer)
