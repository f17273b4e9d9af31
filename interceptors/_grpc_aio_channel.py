"""Mounting on a grpc.aio channel without gRPC's interceptor machinery: ``aio_resilient_channel``.

A ``grpc.aio.Channel`` whose multicallables run the routed policy around
the inner channel's own multicallables, built once per stub method
(methods without a route get the inner multicallable itself). Unary
responses come back as :class:`._grpc_aio_call.UnaryCall` (attempt 1
started at once, no task per call); response streams as the shared
stream calls, launched in a task. Every rule is the interceptors' own: the
same coroutines decide, so both mountings behave alike. The routing of stub
methods is shared with the sync wrapper (``_grpc_routes.RoutedChannel``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio

from seawall import DeadlineExceeded, RejectedError

from ._grpc_aio_call import GRPC_UNARY_CALL, RUNNING, UnaryCall, send, watch_first
from ._grpc_aio_hedge import hedged_unary, hedges
from ._grpc_aio_status import DoneCall
from ._grpc_aio_streams import StreamStreamCall, UnaryStreamCall
from ._grpc_aio_unary import refused, send_raised, single, unary
from ._grpc_chaos import aio_chaos_send
from ._grpc_commit import refuse
from ._grpc_replay import NoReplay, replayable
from ._grpc_routes import RoutedChannel, Router, Rule, Wrapped

if TYPE_CHECKING:  # grpc-stubs makes these generic; grpc itself does not
    _UUCallable = grpc.aio.UnaryUnaryMultiCallable[Any, Any]
    _USCallable = grpc.aio.UnaryStreamMultiCallable[Any, Any]
    _SUCallable = grpc.aio.StreamUnaryMultiCallable[Any, Any]
    _SSCallable = grpc.aio.StreamStreamMultiCallable[Any, Any]
else:
    _UUCallable = grpc.aio.UnaryUnaryMultiCallable
    _USCallable = grpc.aio.UnaryStreamMultiCallable
    _SUCallable = grpc.aio.StreamUnaryMultiCallable
    _SSCallable = grpc.aio.StreamStreamMultiCallable


_new = object.__new__


def _not_inline(deadline: float | None) -> None:
    """``admit_first`` of a method whose attempts are never started inline (hedged)."""
    return None


class _UnaryUnary(Wrapped, _UUCallable):
    # what the hot path reads, bound once per stub method (UnaryCall reads _succeeded); the
    # sync wrapper binds the same: the two multicallables differ in every other step
    __slots__ = ("_admit", "_bare", "_hedged", "_now", "_succeeded")

    def __init__(self, rule: Rule, inner: Any, method: str) -> None:
        super().__init__(rule, inner, method)
        point = rule.point
        self._hedged = hedges(rule)
        # a hedged method never starts attempt 1 inline: its calls take the general path
        self._admit = _not_inline if self._hedged else point.admit_first
        self._now = point.clock.now
        self._succeeded = point.observer().succeeded
        # a call's ``args`` when the caller passes none of the four options (the common case)
        self._bare: tuple[Any, ...] = (inner, None, None, None, None)

    def __call__(self, request: Any, timeout: float | None = None, metadata: Any = None,
                 credentials: Any = None, wait_for_ready: bool | None = None,
                 compression: Any = None) -> Any:
        # the wrapper's hot path, every step written out (each helper frame is ~1-2 % of its
        # own cost, bench/grpc.py --instructions): attempt 1 admitted inline, no Execution
        # unless it fails or nobody awaits it (the core's admit_first, as its own shells do)
        deadline = None if timeout is None else self._now() + timeout
        first = self._admit(deadline)
        if metadata is None and credentials is None and wait_for_ready is None \
                and compression is None:
            args = self._bare
        else:
            args = (self._inner, metadata, credentials, wait_for_ready, compression)
        if first is None:  # the breaker refuses, no time, no token or permit, chaos, hedging
            return self._general(args, request, timeout, deadline)
        try:
            if args is self._bare:  # -2.8k instructions a call (callgrind)
                attempt = self._inner(request, timeout=first[2])
            else:
                attempt = self._inner(request, timeout=first[2], metadata=metadata,
                                      credentials=credentials, wait_for_ready=wait_for_ready,
                                      compression=compression)
        except BaseException as exc:  # a bad request, a closed channel: raised here, as grpc.aio does
            self._raised(exc, deadline, first)
            raise
        # UnaryCall's fields for an attempt 1 admitted inline, stored here without its
        # __init__ frame (-0.8k instructions a call, callgrind)
        call = _new(UnaryCall)
        call._source = self
        call._rule = self._rule
        call._ex = None
        call._args = args
        call._request = request
        call._deadline = deadline
        call._first = first
        call._current = attempt
        call._state = RUNNING
        call._callbacks = ()
        if type(attempt) is GRPC_UNARY_CALL:  # watch_first written out: a frame less (~0.7k)
            try:
                register = attempt._cython_call.add_done_callback
            except AttributeError:
                register = attempt.add_done_callback
        else:
            register = attempt.add_done_callback
        register(call._first_done)
        return call

    def _raised(self, exc: BaseException, deadline: float | None,
                first: tuple[float, int, float | None]) -> None:
        """Account for attempt 1 whose sending raised ``exc`` (the caller re-raises it)."""
        rule = self._rule
        if rule.permits is not None:
            rule.permits.release()
        ex = rule.point.execution(self._operation, deadline=deadline, first=(first[0], first[1]))
        if isinstance(exc, Exception):
            send_raised(rule, ex, exc)
        else:
            ex.cancelled()

    def _general(self, args: tuple[Any, ...], request: Any, timeout: float | None,
                 deadline: float | None) -> Any:
        """A call whose attempt 1 could not start at once (the breaker refused, no time was
        left, no token or permit was free), or whose point injects faults, or a hedged one:
        admitted again through an Execution, which waits or refuses."""
        rule = self._rule
        point = rule.point
        ex = point.execution(self._operation, deadline=deadline)
        call = UnaryCall(rule, ex, args, request)
        if self._hedged:  # parallel attempts: a driver task
            call._drive(hedged_unary(rule, self._operation, timeout, send, args, request, True))
            return call
        permits = rule.permits
        if point.chaos is not None:  # fault injection: every attempt through the loop
            call._drive(unary(rule, ex, aio_chaos_send(rule, ex, send), args, request, None,
                              True))
            return call
        pacing = point.pacing
        # a server's pause, a rate limit, a full bulkhead: the general path waits, or refuses
        if (pacing is not None and pacing.until > ex.start) or point.bucket is not None or \
                (permits is not None and not permits.try_acquire()):
            call._drive(unary(rule, ex, send, args, request, None, True))
            return call
        try:
            attempt_timeout = ex.begin()
        except (RejectedError, DeadlineExceeded) as refusal:
            if permits is not None:
                permits.release()
            if ex.point.fallback is None:
                call._settle(DoneCall.failing(refuse(ex, refusal, aio=True)[1]))
            else:  # a fallback may be async: answered in a task
                call._drive(refused(ex, refusal, True))
            return call
        inner, metadata, credentials, wait_for_ready, compression = args
        try:
            attempt = inner(request, timeout=attempt_timeout, metadata=metadata,
                            credentials=credentials, wait_for_ready=wait_for_ready,
                            compression=compression)
        except Exception as exc:  # a bad request, a closed channel: raised here, as grpc.aio does
            if permits is not None:
                permits.release()
            send_raised(rule, ex, exc)
            raise
        call._current = attempt
        watch_first(attempt, call)
        return call


class _StreamUnary(Wrapped, _SUCallable):
    __slots__ = ()

    def __call__(self, request_iterator: Any = None, timeout: float | None = None,
                 metadata: Any = None, credentials: Any = None,
                 wait_for_ready: bool | None = None, compression: Any = None) -> Any:
        rule = self._rule
        ex = rule.execution(self._operation, timeout)
        args = (self._inner, metadata, credentials, wait_for_ready, compression)
        call = UnaryCall(rule, ex, args, request_iterator)
        chaotic = aio_chaos_send(rule, ex, send)
        if request_iterator is None or not rule.retries:
            call._writes = request_iterator is None
            call._drive(single(rule, ex, chaotic, args, request_iterator))
        else:
            buffer, first = replayable(rule, request_iterator)
            call._drive(unary(rule, ex, chaotic, args, first, buffer, True))
        return call


class _UnaryStream(Wrapped, _USCallable):
    __slots__ = ()

    def __call__(self, request: Any, timeout: float | None = None, metadata: Any = None,
                 credentials: Any = None, wait_for_ready: bool | None = None,
                 compression: Any = None) -> Any:
        rule = self._rule
        args = (self._inner, metadata, credentials, wait_for_ready, compression)
        ex = rule.execution(self._operation, timeout)
        stream = UnaryStreamCall(rule, ex, aio_chaos_send(rule, ex, send), args, request, None)
        stream.start_soon()
        return stream


class _StreamStream(Wrapped, _SSCallable):
    __slots__ = ()

    def __call__(self, request_iterator: Any = None, timeout: float | None = None,
                 metadata: Any = None, credentials: Any = None,
                 wait_for_ready: bool | None = None, compression: Any = None) -> Any:
        rule = self._rule
        args = (self._inner, metadata, credentials, wait_for_ready, compression)
        if request_iterator is None:  # call.write()-style: failures before a reply are final
            buffer, first = NoReplay(), None
        else:
            buffer, first = replayable(rule, request_iterator)
        ex = rule.execution(self._operation, timeout)
        stream = StreamStreamCall(rule, ex, aio_chaos_send(rule, ex, send), args, first, buffer)
        stream.start_soon()
        return stream


class AioResilientChannel(RoutedChannel, grpc.aio.Channel):
    """A ``grpc.aio.Channel`` that applies a routed seawall policy to every call (see
    :func:`seawall.interceptors.grpc.aio_resilient_channel`).

    ``close()``, the async context manager, ``get_state``,
    ``wait_for_state_change`` and ``channel_ready`` act on the wrapped
    channel. Bound to the wrapped channel's event loop.
    """

    _unary_unary = _UnaryUnary
    _unary_stream = _UnaryStream
    _stream_unary = _StreamUnary
    _stream_stream = _StreamStream

    def __init__(self, channel: grpc.aio.Channel, router: Router) -> None:
        super().__init__(channel, router)

    async def __aenter__(self) -> AioResilientChannel:
        return self

    async def __aexit__(self, exc_type: Any, exc_val: Any, exc_tb: Any) -> None:
        await self._channel.close(None)

    async def close(self, grace: float | None = None) -> None:
        await self._channel.close(grace)

    def get_state(self, try_to_connect: bool = False) -> grpc.ChannelConnectivity:
        state: grpc.ChannelConnectivity = self._channel.get_state(try_to_connect)
        return state

    async def wait_for_state_change(self, last_observed_state: grpc.ChannelConnectivity) -> None:
        await self._channel.wait_for_state_change(last_observed_state)

    async def channel_ready(self) -> None:
        await self._channel.channel_ready()
