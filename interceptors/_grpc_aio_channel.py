"""Mounting on a grpc.aio channel without gRPC's interceptor machinery: ``aio_resilient_channel``.

A ``grpc.aio.Channel`` whose multicallables run the routed policy around
the inner channel's own multicallables, built once per stub method
(methods without a route get the inner multicallable itself). grpc.aio's
interceptors run every call in a task of their own; here a unary-unary
call starts its first attempt at once, in the caller's ``stub.M(req)``,
and a success is settled in the caller's own ``await``. A task is made
only when it is needed: a failed attempt (the shared retry loop of
``_grpc_aio_unary`` runs in it), a bulkhead wait, a client stream, a
response stream's launch. Every other rule is the interceptors' own:
the same coroutines decide, so both mountings behave alike.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio
from grpc.aio import _base_call

from seawall import DeadlineExceeded, Execution, RejectedError

from ._grpc_aio_status import DoneCall, Status
from ._grpc_aio_streams import StreamStreamCall, UnaryStreamCall
from ._grpc_aio_unary import refused, single, unary
from ._grpc_commit import end_failure, refuse
from ._grpc_replay import NoReplay, replayable
from ._grpc_routes import Router, Rule, operation_name
from ._grpc_status import with_attempt

if TYPE_CHECKING:  # grpc-stubs makes these generic; grpc itself does not
    _UUCall = _base_call.UnaryUnaryCall[Any, Any]
    _SUCall = _base_call.StreamUnaryCall[Any, Any]
    _UUCallable = grpc.aio.UnaryUnaryMultiCallable[Any, Any]
    _USCallable = grpc.aio.UnaryStreamMultiCallable[Any, Any]
    _SUCallable = grpc.aio.StreamUnaryMultiCallable[Any, Any]
    _SSCallable = grpc.aio.StreamStreamMultiCallable[Any, Any]
else:
    _UUCall = _base_call.UnaryUnaryCall
    _SUCall = _base_call.StreamUnaryCall
    _UUCallable = grpc.aio.UnaryUnaryMultiCallable
    _USCallable = grpc.aio.UnaryStreamMultiCallable
    _SUCallable = grpc.aio.StreamUnaryMultiCallable
    _SSCallable = grpc.aio.StreamStreamMultiCallable

_AioRpcError = grpc.aio.AioRpcError
_API_STYLE_ERROR = "The iterator and read/write APIs may not be mixed on a single RPC."


def _cancelled_call() -> DoneCall:
    """What a call cancelled before it settled answers: ``CANCELLED``; awaiting it raises
    ``CancelledError``, as a cancelled grpc.aio call does."""
    return DoneCall(None, Status(grpc.StatusCode.CANCELLED, grpc.aio.Metadata(),
                                 grpc.aio.Metadata(), "Locally cancelled by application!", ""),
                    asyncio.CancelledError())


async def _send(args: tuple[Any, ...], request: Any, timeout: float | None,
                attempt: int) -> Any:
    """One attempt through the inner multicallable; ``args`` is (it, metadata, credentials,
    wait_for_ready, compression), the caller's arguments."""
    fn, metadata, credentials, wait_for_ready, compression = args
    return fn(request, timeout=timeout,
              metadata=metadata if attempt == 1 else with_attempt(metadata, attempt),
              credentials=credentials, wait_for_ready=wait_for_ready, compression=compression)


_RUNNING, _AWAITED, _DRIVEN, _SETTLED = range(4)


class UnaryCall(_UUCall, _SUCall):
    """What the wrapper returns for a unary-response call: one call over every attempt.

    Its state: ``_RUNNING``, attempt 1 (started by the multicallable) is in
    flight and nobody waits on it; ``_AWAITED``, an ``await`` waits on it and
    settles a success itself; ``_DRIVEN``, a driver task runs the shared retry
    loop (after a failure, when nobody waited, for a bulkhead wait, a client
    stream); ``_SETTLED``, ``_final`` (the call-like that answers) is known.
    Whoever first sees attempt 1 end moves it on. Loop-bound.
    """

    # the state every call starts in, as class attributes: a call sets only what differs
    _state = _RUNNING
    _writes = False  # call.write()-style: requests go to the attempt itself
    _current: Any = None  # attempt 1
    _driver: asyncio.Task[Any] | None = None
    _final: Any = None
    _cancelled = False
    _callbacks: tuple[Callable[[Any], None], ...] = ()

    def __init__(self, rule: Rule, ex: Execution, args: tuple[Any, ...], request: Any) -> None:
        self._rule = rule
        self._ex = ex
        self._args = args
        self._request = request

    # -- how the call is answered -------------------------------------------------

    def _first_done(self, call: Any) -> None:
        permits = self._rule.permits
        if permits is not None:
            permits.release()
        if self._state is _RUNNING:
            self._take_over(call)  # nobody waits on it: decide now

    def _take_over(self, first: Any) -> None:
        self._drive(unary(self._rule, self._ex, _send, self._args, self._request, None, True,
                          first))

    def _drive(self, work: Coroutine[Any, Any, Any]) -> None:
        self._state = _DRIVEN
        self._driver = asyncio.get_running_loop().create_task(work)
        self._driver.add_done_callback(self._driven)

    def _driven(self, task: asyncio.Task[Any]) -> None:
        if task.cancelled():
            self._settle(_cancelled_call())
            return
        exc = task.exception()
        self._settle(task.result() if exc is None else DoneCall(None, None, exc))

    def _settle(self, final: Any) -> None:
        self._state = _SETTLED
        self._final = final
        callbacks, self._callbacks = self._callbacks, ()
        for callback in callbacks:
            self._notify(final, callback)

    def _notify(self, final: Any, callback: Callable[[Any], None]) -> None:
        if final.done():
            callback(self)
        else:  # a call.write()-style call answers from its attempt until that ends
            final.add_done_callback(lambda _call: callback(self))

    async def _outcome(self) -> Any:
        """The call-like that answers (waits for the call to settle; a reader's own
        cancellation leaves the call running)."""
        if self._state is _RUNNING or self._state is _AWAITED:
            call = self._current
            await call.code()  # attempt 1's end (never raises for an RPC failure)
            if self._state is _RUNNING or self._state is _AWAITED:
                self._take_over(call)  # an await still to resume finds the driver
        if self._state is _SETTLED:
            return self._final
        driver = self._driver
        assert driver is not None
        try:
            return await asyncio.shield(driver)
        except asyncio.CancelledError:
            if not driver.cancelled():
                raise  # the reader was cancelled, not the call
            return _cancelled_call()

    def __await__(self) -> Any:
        if self._state is _RUNNING:
            # the common case, settled here without a task: the caller awaits attempt 1
            self._state = _AWAITED
            call = self._current
            try:
                response = yield from call.__await__()
            except _AioRpcError:
                if self._state is _AWAITED:
                    self._take_over(call)  # retried, or the final failure: the loop decides
            except asyncio.CancelledError:
                if self._state is _AWAITED:  # the caller was cancelled, so is the attempt
                    self._cancelled = True
                    self._ex.cancelled()
                    self._settle(call)
                raise
            else:
                if self._state is _AWAITED:
                    if not self._rule.result_rules:
                        self._ex.success()
                        self._settle(call)
                        return response
                    self._take_over(call)
        if self._state is _SETTLED:
            final = self._final
        elif self._state is _DRIVEN:  # cancelling this await cancels the call, as in grpc.aio
            driver = self._driver
            assert driver is not None
            final = yield from driver.__await__()
        else:  # another await is settling attempt 1
            final = yield from self._outcome().__await__()
        return (yield from final.__await__())

    # -- grpc.aio.Call ----------------------------------------------------------------

    def cancel(self) -> bool:
        state = self._state
        if state is _SETTLED:
            return bool(self._final.cancel())
        if state is _DRIVEN:
            driver = self._driver
            assert driver is not None
            if driver.done():
                return False
            self._cancelled = True
            return driver.cancel()  # the retry loop cancels the attempt and counts it
        call = self._current
        if call.done():
            return False  # it ended; whoever waits on it settles the call
        self._cancelled = True
        self._ex.cancelled()
        self._settle(call)
        call.cancel()
        return True

    def cancelled(self) -> bool:
        final = self._final
        return self._cancelled or (final is not None and bool(final.cancelled()))

    def done(self) -> bool:
        return self._state is _SETTLED and bool(self._final.done())

    def add_done_callback(self, callback: Callable[[Any], None]) -> None:
        if self._state is _SETTLED:
            self._notify(self._final, callback)
        else:
            self._callbacks = (*self._callbacks, callback)

    def time_remaining(self) -> float | None:
        return self._ex.remaining()

    async def initial_metadata(self) -> Any:
        return await (await self._outcome()).initial_metadata()

    async def trailing_metadata(self) -> Any:
        return await (await self._outcome()).trailing_metadata()

    async def code(self) -> grpc.StatusCode:
        code: grpc.StatusCode = await (await self._outcome()).code()
        return code

    async def details(self) -> str:
        details: str = await (await self._outcome()).details()
        return details

    async def debug_error_string(self) -> str:
        debug: str = await (await self._outcome()).debug_error_string()
        return debug

    async def wait_for_connection(self) -> None:
        call = self._current if self._current is not None else await self._outcome()
        await call.wait_for_connection()

    async def write(self, request: Any) -> None:
        if not self._writes:
            raise grpc.aio.UsageError(_API_STYLE_ERROR)
        await (await self._outcome()).write(request)

    async def done_writing(self) -> None:
        if not self._writes:
            raise grpc.aio.UsageError(_API_STYLE_ERROR)
        await (await self._outcome()).done_writing()


class _Wrapped:
    __slots__ = ("_inner", "_operation", "_rule")

    def __init__(self, rule: Rule, inner: Any, method: str) -> None:
        self._rule = rule
        self._inner = inner
        self._operation = operation_name(method)


class _UnaryUnary(_Wrapped, _UUCallable):
    __slots__ = ()

    def __call__(self, request: Any, timeout: float | None = None, metadata: Any = None,
                 credentials: Any = None, wait_for_ready: bool | None = None,
                 compression: Any = None) -> Any:
        # the wrapper's hot path: every step is written out here
        rule = self._rule
        point = rule.point
        ex = point.execution(self._operation,
                             deadline=None if timeout is None else point.clock.now() + timeout)
        inner = self._inner
        args = (inner, metadata, credentials, wait_for_ready, compression)
        call = UnaryCall(rule, ex, args, request)
        permits = rule.permits
        if permits is not None and not permits.try_acquire():
            call._drive(unary(rule, ex, _send, args, request, None, True))  # wait, or refuse
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
        try:
            if metadata is None and credentials is None and wait_for_ready is None \
                    and compression is None:  # 2.8k instructions fewer than passing them all
                first = inner(request, timeout=attempt_timeout)
            else:
                first = inner(request, timeout=attempt_timeout, metadata=metadata,
                              credentials=credentials, wait_for_ready=wait_for_ready,
                              compression=compression)
        except Exception as exc:  # a bad request, a closed channel: raised here, as grpc.aio does
            if permits is not None:
                permits.release()
            c = rule.point.classify_exception(exc).with_retry(False)
            ex.failure(c)
            end_failure(ex, c, exc)
            raise
        call._current = first
        first.add_done_callback(call._first_done)
        return call


class _StreamUnary(_Wrapped, _SUCallable):
    __slots__ = ()

    def __call__(self, request_iterator: Any = None, timeout: float | None = None,
                 metadata: Any = None, credentials: Any = None,
                 wait_for_ready: bool | None = None, compression: Any = None) -> Any:
        rule = self._rule
        ex = rule.execution(self._operation, timeout)
        args = (self._inner, metadata, credentials, wait_for_ready, compression)
        call = UnaryCall(rule, ex, args, request_iterator)
        if request_iterator is None or not rule.retries:
            call._writes = request_iterator is None
            call._drive(single(rule, ex, _send, args, request_iterator))
        else:
            buffer, first = replayable(rule, request_iterator)
            call._drive(unary(rule, ex, _send, args, first, buffer, True))
        return call


class _UnaryStream(_Wrapped, _USCallable):
    __slots__ = ()

    def __call__(self, request: Any, timeout: float | None = None, metadata: Any = None,
                 credentials: Any = None, wait_for_ready: bool | None = None,
                 compression: Any = None) -> Any:
        rule = self._rule
        args = (self._inner, metadata, credentials, wait_for_ready, compression)
        stream = UnaryStreamCall(rule, rule.execution(self._operation, timeout), _send, args,
                                 request, None)
        stream.start_soon()
        return stream


class _StreamStream(_Wrapped, _SSCallable):
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
        stream = StreamStreamCall(rule, rule.execution(self._operation, timeout), _send, args,
                                  first, buffer)
        stream.start_soon()
        return stream


def _registered(flag: bool | None) -> dict[str, Any]:
    # generated stubs (grpcio >= 1.63) pass _registered_method=True; a channel that predates
    # it takes no such argument, so it is forwarded only when set
    return {"_registered_method": flag} if flag else {}


class AioResilientChannel(grpc.aio.Channel):
    """A ``grpc.aio.Channel`` that applies a routed seawall policy to every call (see
    :func:`seawall.interceptors.grpc.aio_resilient_channel`).

    ``close()``, the async context manager, ``get_state``,
    ``wait_for_state_change`` and ``channel_ready`` act on the wrapped
    channel. Bound to the wrapped channel's event loop.
    """

    def __init__(self, channel: grpc.aio.Channel, router: Router) -> None:
        self._channel = channel
        self._lookup = router.lookup

    async def __aenter__(self) -> AioResilientChannel:
        return self

    async def __aexit__(self, exc_type: Any, exc_val: Any, exc_tb: Any) -> None:
        await self._channel.close(None)

    async def close(self, grace: float | None = None) -> None:
        await self._channel.close(grace)

    def get_state(self, try_to_connect: bool = False) -> grpc.ChannelConnectivity:
        return self._channel.get_state(try_to_connect)

    async def wait_for_state_change(self, last_observed_state: grpc.ChannelConnectivity) -> None:
        await self._channel.wait_for_state_change(last_observed_state)

    async def channel_ready(self) -> None:
        await self._channel.channel_ready()

    def unary_unary(self, method: str, request_serializer: Any = None,
                    response_deserializer: Any = None,
                    _registered_method: bool | None = False) -> Any:
        inner = self._channel.unary_unary(method, request_serializer, response_deserializer,
                                          **_registered(_registered_method))
        rule = self._lookup(method)
        return inner if rule is None else _UnaryUnary(rule, inner, method)

    def unary_stream(self, method: str, request_serializer: Any = None,
                     response_deserializer: Any = None,
                     _registered_method: bool | None = False) -> Any:
        inner = self._channel.unary_stream(method, request_serializer, response_deserializer,
                                           **_registered(_registered_method))
        rule = self._lookup(method)
        return inner if rule is None else _UnaryStream(rule, inner, method)

    def stream_unary(self, method: str, request_serializer: Any = None,
                     response_deserializer: Any = None,
                     _registered_method: bool | None = False) -> Any:
        inner = self._channel.stream_unary(method, request_serializer, response_deserializer,
                                           **_registered(_registered_method))
        rule = self._lookup(method)
        return inner if rule is None else _StreamUnary(rule, inner, method)

    def stream_stream(self, method: str, request_serializer: Any = None,
                      response_deserializer: Any = None,
                      _registered_method: bool | None = False) -> Any:
        inner = self._channel.stream_stream(method, request_serializer, response_deserializer,
                                            **_registered(_registered_method))
        rule = self._lookup(method)
        return inner if rule is None else _StreamStream(rule, inner, method)
