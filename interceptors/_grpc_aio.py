"""Mounting on a grpc.aio channel through ``interceptors=``: one interceptor object per call shape.

grpc.aio registers an interceptor for a single shape, hence four classes.
Each only adapts grpc.aio's continuation contract to the shared shells
(``_grpc_aio_unary``, ``_grpc_aio_streams``): an attempt is ``await
continuation(details, request)`` with the call details rebuilt by one
helper, and everything runs inside grpc.aio's interceptor task. The
channel wrapper (``_grpc_aio_channel``) drives the same shells without
that task and without gRPC's interceptor machinery.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio

from ._grpc_aio_hedge import hedged_unary, hedges
from ._grpc_aio_streams import StreamCall, StreamStreamCall, UnaryStreamCall
from ._grpc_aio_unary import single, unary
from ._grpc_chaos import aio_chaos_send
from ._grpc_replay import NoReplay, replayable
from ._grpc_routes import Router, Rule, operation_name
from ._grpc_status import ATTEMPT_HEADER

if TYPE_CHECKING:  # grpc-stubs makes these generic; grpc itself does not
    _UU = grpc.aio.UnaryUnaryClientInterceptor[Any, Any]
    _US = grpc.aio.UnaryStreamClientInterceptor[Any, Any]
    _SU = grpc.aio.StreamUnaryClientInterceptor[Any, Any]
    _SS = grpc.aio.StreamStreamClientInterceptor[Any, Any]
else:
    _UU = grpc.aio.UnaryUnaryClientInterceptor
    _US = grpc.aio.UnaryStreamClientInterceptor
    _SU = grpc.aio.StreamUnaryClientInterceptor
    _SS = grpc.aio.StreamStreamClientInterceptor


async def _send(args: tuple[Any, Any], request: Any, timeout: float | None,
                attempt: int) -> Any:
    """One attempt through the continuation: the caller's details, rebuilt when they change."""
    continuation, d = args
    if attempt == 1 and timeout == d.timeout:
        return await continuation(d, request)
    metadata = d.metadata
    if attempt > 1:  # a fresh Metadata: the caller's object must not grow per retry
        metadata = grpc.aio.Metadata(*tuple(metadata or ()), (ATTEMPT_HEADER, str(attempt)))
    return await continuation(grpc.aio.ClientCallDetails(
        d.method, timeout, metadata, d.credentials, d.wait_for_ready), request)


def _is_write_api(request_iterator: Any) -> bool:
    """grpc.aio's own queue behind ``call.write()``: it waits for the interceptor to return."""
    return "_proxy_writes_as_request_iterator" in getattr(request_iterator, "__qualname__", "")


async def _stream(kind: type[StreamCall], rule: Rule, continuation: Any, details: Any,
                  request: Any, buffer: Any) -> Any:
    ex = rule.execution(operation_name(details.method), details.timeout)
    stream = kind(rule, ex, aio_chaos_send(rule, ex, _send), (continuation, details), request,
                  buffer)
    refused = await stream.start()
    if refused is not None:
        raise refused
    return stream


class _Base:
    def __init__(self, router: Router) -> None:
        self._lookup = router.lookup


class AioUnaryUnary(_Base, _UU):
    """Unary-unary calls of a grpc.aio channel."""

    async def intercept_unary_unary(self, continuation: Any, client_call_details: Any,
                                    request: Any) -> Any:
        rule = self._lookup(client_call_details.method)
        if rule is None:
            return await continuation(client_call_details, request)
        if hedges(rule):
            return await hedged_unary(rule, operation_name(client_call_details.method),
                                      client_call_details.timeout, _send,
                                      (continuation, client_call_details), request, False)
        ex = rule.execution(operation_name(client_call_details.method),
                            client_call_details.timeout)
        send = _send if rule.point.chaos is None else aio_chaos_send(rule, ex, _send)
        return await unary(rule, ex, send, (continuation, client_call_details), request, None,
                           False)


class AioStreamUnary(_Base, _SU):
    """Client-streaming calls of a grpc.aio channel."""

    async def intercept_stream_unary(self, continuation: Any, client_call_details: Any,
                                     request_iterator: Any) -> Any:
        rule = self._lookup(client_call_details.method)
        if rule is None:
            return await continuation(client_call_details, request_iterator)
        ex = rule.execution(operation_name(client_call_details.method),
                            client_call_details.timeout)
        args = (continuation, client_call_details)
        send = aio_chaos_send(rule, ex, _send)
        if not rule.retries or _is_write_api(request_iterator):
            return await single(rule, ex, send, args, request_iterator)
        buffer, first = replayable(rule, request_iterator)
        return await unary(rule, ex, send, args, first, buffer, True)


class AioUnaryStream(_Base, _US):
    """Server-streaming calls of a grpc.aio channel."""

    async def intercept_unary_stream(self, continuation: Any, client_call_details: Any,
                                     request: Any) -> Any:
        rule = self._lookup(client_call_details.method)
        if rule is None:
            return await continuation(client_call_details, request)
        return await _stream(UnaryStreamCall, rule, continuation, client_call_details, request,
                             None)


class AioStreamStream(_Base, _SS):
    """Bidi-streaming calls of a grpc.aio channel."""

    async def intercept_stream_stream(self, continuation: Any, client_call_details: Any,
                                      request_iterator: Any) -> Any:
        rule = self._lookup(client_call_details.method)
        if rule is None:
            return await continuation(client_call_details, request_iterator)
        if _is_write_api(request_iterator):
            buffer, first = NoReplay(), request_iterator  # failures before a reply are final
        else:
            buffer, first = replayable(rule, request_iterator)
        return await _stream(StreamStreamCall, rule, continuation, client_call_details, first,
                             buffer)
