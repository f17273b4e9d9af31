"""Mounting on a sync channel without gRPC's interceptor machinery: ``resilient_channel``.

A ``grpc.Channel`` whose multicallables run the routed policy directly
around the inner channel's own multicallables, built once per stub method
(no ``grpc.intercept_channel``, no call details rebuilt per call, no route
lookup per call; methods without a route get the inner multicallable
itself). The shells are the interceptor's (blocking unary, ``.future()``,
response streams), so both mountings behave alike; only the host's shape
differs: here an attempt is the inner multicallable's ``__call__``,
``with_call`` or ``future``. A blocking ``stub.M(req)`` admits attempt 1
inline (``point.admit_first``, as the core's own shells do) and makes an
:class:`seawall.Execution` only if that attempt fails. The routing of stub methods is shared with
the aio wrapper (``_grpc_routes.RoutedChannel``); the rest is written apart
from ``_grpc_aio_channel``: the two channel classes and their
multicallables have different shapes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import grpc

from ._grpc_chaos import chaos_send
from ._grpc_replay import replayable
from ._grpc_routes import RoutedChannel, Router, Rule, Wrapped
from ._grpc_status import with_attempt
from ._grpc_sync_future import RetryingFuture
from ._grpc_sync_hedge import hedged_blocking, hedges
from ._grpc_sync_streams import ResponseStream
from ._grpc_sync_unary import PAIR, VALUE, Shape, blocking, send_raised

if TYPE_CHECKING:  # grpc-stubs makes these generic; grpc itself does not
    _UUCallable = grpc.UnaryUnaryMultiCallable[Any, Any]
    _USCallable = grpc.UnaryStreamMultiCallable[Any, Any]
    _SUCallable = grpc.StreamUnaryMultiCallable[Any, Any]
    _SSCallable = grpc.StreamStreamMultiCallable[Any, Any]
else:
    _UUCallable = grpc.UnaryUnaryMultiCallable
    _USCallable = grpc.UnaryStreamMultiCallable
    _SUCallable = grpc.StreamUnaryMultiCallable
    _SSCallable = grpc.StreamStreamMultiCallable


# ``args`` of an attempt here: (the inner multicallable's method, metadata, credentials,
# wait_for_ready, compression), the caller's arguments

def _send(args: tuple[Any, ...], request: Any, timeout: float | None, attempt: int) -> Any:
    """One attempt through the inner multicallable (``__call__`` or ``future``)."""
    fn, metadata, credentials, wait_for_ready, compression = args
    return fn(request, timeout, metadata if attempt == 1 else with_attempt(metadata, attempt),
              credentials, wait_for_ready, compression)


def _send_blocking(args: tuple[Any, ...], request: Any, timeout: float | None,
                   attempt: int) -> Any:
    """Like :func:`_send` for a blocking call: a failed attempt comes back as its error."""
    fn, metadata, credentials, wait_for_ready, compression = args
    try:
        return fn(request, timeout, metadata if attempt == 1 else with_attempt(metadata, attempt),
                  credentials, wait_for_ready, compression)
    except grpc.RpcError as err:
        return err


def _not_inline(deadline: float | None) -> None:
    """``admit_first`` of a method whose attempts are never started inline (hedged)."""
    return None


def _finish(out: Any) -> Any:
    """What a blocking call gives its caller: the answer, or the failure raised."""
    if isinstance(out, grpc.RpcError):
        raise out
    return out


class _Shapes(Wrapped):
    """The sync shells driven through the inner multicallable, one helper per shell."""

    __slots__ = ()

    def _blocking(self, fn: Callable[..., Any], shape: Shape, request: Any, timeout: Any,
                  metadata: Any, credentials: Any, wait_for_ready: Any, compression: Any,
                  streaming: bool) -> Any:
        rule = self._rule
        buffer, request = replayable(rule, request) if streaming else (None, request)
        ex = rule.execution(self._operation, timeout)
        return _finish(blocking(rule, ex, chaos_send(rule, ex, _send_blocking),
                                (fn, metadata, credentials, wait_for_ready, compression),
                                request, buffer, shape))

    def _future(self, request: Any, timeout: Any, metadata: Any, credentials: Any,
                wait_for_ready: Any, compression: Any, streaming: bool) -> Any:
        rule = self._rule
        buffer, request = replayable(rule, request) if streaming else (None, request)
        args = (self._inner.future, metadata, credentials, wait_for_ready, compression)
        ex = rule.execution(self._operation, timeout)
        return RetryingFuture(rule, ex, chaos_send(rule, ex, _send), args, request,
                              buffer).start()

    def _stream(self, request: Any, timeout: Any, metadata: Any, credentials: Any,
                wait_for_ready: Any, compression: Any, streaming: bool) -> Any:
        rule = self._rule
        buffer, request = replayable(rule, request) if streaming else (None, request)
        args = (self._inner, metadata, credentials, wait_for_ready, compression)
        ex = rule.execution(self._operation, timeout)
        return ResponseStream(rule, ex, chaos_send(rule, ex, _send), args, request,
                              buffer).start()


class _UnaryUnary(_Shapes, _UUCallable):
    # what the hot path reads, bound once per stub method
    __slots__ = ("_admit", "_hedged", "_judged", "_now", "_succeeded")

    def __init__(self, rule: Rule, inner: Any, method: str) -> None:
        super().__init__(rule, inner, method)
        point = rule.point
        self._hedged = hedges(rule)
        # a hedged method never starts attempt 1 inline: its calls take the general path
        self._admit = _not_inline if self._hedged else point.admit_first
        self._now = point.clock.now
        self._succeeded = point.observer().succeeded
        # whether a successful response must be shown to the point's result rules
        self._judged = rule.result_rules

    def __call__(self, request: Any, timeout: float | None = None, metadata: Any = None,
                 credentials: Any = None, wait_for_ready: bool | None = None,
                 compression: Any = None) -> Any:
        # the wrapper's hot path, every step written out (each helper frame is ~1-2 % of its
        # own cost, bench/grpc.py --instructions): attempt 1 admitted inline, no Execution
        # unless it fails (the core's admit_first, as its own shells do)
        deadline = None if timeout is None else self._now() + timeout
        first = self._admit(deadline)
        rule = self._rule
        if first is None:  # the breaker refuses, no time, no token or permit, chaos, hedging
            if self._hedged:  # parallel attempts, as futures
                return hedged_blocking(rule, self._operation, timeout, self._inner, request,
                                       metadata, credentials, wait_for_ready, compression)
            ex = rule.point.execution(self._operation, deadline=deadline)
            out = blocking(rule, ex, chaos_send(rule, ex, _send_blocking),
                           (self._inner, metadata, credentials, wait_for_ready, compression),
                           request, None, VALUE)
        else:
            start, ticket, attempt_timeout = first
            try:
                out = self._inner(request, attempt_timeout, metadata, credentials,
                                  wait_for_ready, compression)
            except grpc.RpcError as err:
                out = err
            except BaseException as exc:
                if rule.permits is not None:
                    rule.permits.release()
                ex = rule.point.execution(self._operation, deadline=deadline,
                                          first=(start, ticket))
                if not isinstance(exc, Exception):
                    ex.cancelled()
                    raise
                send_raised(rule, ex, exc)  # a bad request, a closed channel: final
                raise
            if rule.permits is not None:
                rule.permits.release()
            if not self._judged and not isinstance(out, grpc.RpcError):
                self._succeeded(self._operation, start, ticket)
                return out
            # attempt 1 failed, or the result rules judge it: the loop takes it over
            out = blocking(rule, rule.point.execution(self._operation, deadline=deadline,
                                                      first=(start, ticket)),
                           _send_blocking,
                           (self._inner, metadata, credentials, wait_for_ready, compression),
                           request, None, VALUE, out)
        if isinstance(out, grpc.RpcError):
            raise out
        return out

    def with_call(self, request: Any, timeout: float | None = None, metadata: Any = None,
                  credentials: Any = None, wait_for_ready: bool | None = None,
                  compression: Any = None) -> Any:
        return self._blocking(self._inner.with_call, PAIR, request, timeout, metadata,
                              credentials, wait_for_ready, compression, False)

    def future(self, request: Any, timeout: float | None = None, metadata: Any = None,
               credentials: Any = None, wait_for_ready: bool | None = None,
               compression: Any = None) -> Any:
        return self._future(request, timeout, metadata, credentials, wait_for_ready,
                            compression, False)


class _UnaryStream(_Shapes, _USCallable):
    __slots__ = ()

    def __call__(self, request: Any, timeout: float | None = None, metadata: Any = None,
                 credentials: Any = None, wait_for_ready: bool | None = None,
                 compression: Any = None) -> Any:
        return self._stream(request, timeout, metadata, credentials, wait_for_ready,
                            compression, False)


class _StreamUnary(_Shapes, _SUCallable):
    __slots__ = ()

    def __call__(self, request_iterator: Any, timeout: float | None = None,
                 metadata: Any = None, credentials: Any = None,
                 wait_for_ready: bool | None = None, compression: Any = None) -> Any:
        return self._blocking(self._inner, VALUE, request_iterator, timeout, metadata,
                              credentials, wait_for_ready, compression, True)

    def with_call(self, request_iterator: Any, timeout: float | None = None,
                  metadata: Any = None, credentials: Any = None,
                  wait_for_ready: bool | None = None, compression: Any = None) -> Any:
        return self._blocking(self._inner.with_call, PAIR, request_iterator, timeout, metadata,
                              credentials, wait_for_ready, compression, True)

    def future(self, request_iterator: Any, timeout: float | None = None,
               metadata: Any = None, credentials: Any = None,
               wait_for_ready: bool | None = None, compression: Any = None) -> Any:
        return self._future(request_iterator, timeout, metadata, credentials, wait_for_ready,
                            compression, True)


class _StreamStream(_Shapes, _SSCallable):
    __slots__ = ()

    def __call__(self, request_iterator: Any, timeout: float | None = None,
                 metadata: Any = None, credentials: Any = None,
                 wait_for_ready: bool | None = None, compression: Any = None) -> Any:
        return self._stream(request_iterator, timeout, metadata, credentials, wait_for_ready,
                            compression, True)


class ResilientChannel(RoutedChannel, grpc.Channel):
    """A ``grpc.Channel`` that applies a routed seawall policy to every call (see
    :func:`seawall.interceptors.grpc.resilient_channel`).

    Connectivity (``subscribe``/``unsubscribe``), ``close()`` and the context
    manager act on the wrapped channel. Thread-safe, like the channel it wraps.
    """

    _unary_unary = _UnaryUnary
    _unary_stream = _UnaryStream
    _stream_unary = _StreamUnary
    _stream_stream = _StreamStream

    def __init__(self, channel: grpc.Channel, router: Router) -> None:
        super().__init__(channel, router)

    def subscribe(self, callback: Callable[[grpc.ChannelConnectivity], None],
                  try_to_connect: bool = False) -> None:
        self._channel.subscribe(callback, try_to_connect=try_to_connect)

    def unsubscribe(self, callback: Callable[[grpc.ChannelConnectivity], None]) -> None:
        self._channel.unsubscribe(callback)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> ResilientChannel:
        return self

    def __exit__(self, exc_type: Any, exc_val: Any, exc_tb: Any) -> None:
        self._channel.close()
