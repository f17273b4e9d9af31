"""The grpc.aio shell: one interceptor object per call shape (grpc.aio registers each once).

Unary responses retry inside the interceptor task; cancelling the caller's
call cancels the attempt in flight on the wire too. Response streams return
a call object that delegates to the current attempt and retries while no
message was delivered (grpc.aio would otherwise pin ``code()`` and
``cancel()`` to the first attempt, grpc/grpc#37208); a loop timer ends an
attempt that delivered nothing within ``Timeout.attempt``.

A request-streaming attempt is judged by the status it *first* finished
with: when the server ends such a call while a request write is still in
flight, grpc.aio's writer fails that write and overwrites the server's
status with ``INTERNAL`` "Internal error from Core" (grpc/grpc#36066).
That ``INTERNAL`` is a local artefact; classifying it would turn a
retryable ``UNAVAILABLE`` into a final failure, or a success into a failure.
"""

from __future__ import annotations

import asyncio
import inspect
import weakref
from collections.abc import AsyncIterable, AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, NamedTuple

import grpc
import grpc.aio
from grpc.aio import _base_call

from seawall import (
    Classification,
    DeadlineExceeded,
    Execution,
    RejectedError,
    ResultFailure,
)

from ._grpc_common import ATTEMPT_HEADER as _HEADER
from ._grpc_common import (
    EXHAUSTED,
    NEED_MORE,
    ReplayBuffer,
    ReplayState,
    Router,
    Rule,
    add_note,
    as_rpc_error,
    classify_status,
    end_failure,
    operation_name,
    refuse,
    replay_view,
    resolve_fallback,
    stream_limits,
)

_OK = grpc.StatusCode.OK
_INTERNAL = grpc.StatusCode.INTERNAL
_DEADLINE_EXCEEDED = grpc.StatusCode.DEADLINE_EXCEEDED
_AioRpcError = grpc.aio.AioRpcError
_EOF: Any = getattr(grpc.aio, "EOF")  # noqa: B009 (missing from grpc-stubs)

if TYPE_CHECKING:  # grpc-stubs makes these generic; grpc itself does not
    _UUCall = _base_call.UnaryUnaryCall[Any, Any]
    _SUCall = _base_call.StreamUnaryCall[Any, Any]
    _USCall = _base_call.UnaryStreamCall[Any, Any]
    _SSCall = _base_call.StreamStreamCall[Any, Any]
    _UU = grpc.aio.UnaryUnaryClientInterceptor[Any, Any]
    _US = grpc.aio.UnaryStreamClientInterceptor[Any, Any]
    _SU = grpc.aio.StreamUnaryClientInterceptor[Any, Any]
    _SS = grpc.aio.StreamStreamClientInterceptor[Any, Any]
else:
    _UUCall = _base_call.UnaryUnaryCall
    _SUCall = _base_call.StreamUnaryCall
    _USCall = _base_call.UnaryStreamCall
    _SSCall = _base_call.StreamStreamCall
    _UU = grpc.aio.UnaryUnaryClientInterceptor
    _US = grpc.aio.UnaryStreamClientInterceptor
    _SU = grpc.aio.StreamUnaryClientInterceptor
    _SS = grpc.aio.StreamStreamClientInterceptor


def _attempt_details(d: Any, timeout: float | None, attempt: int) -> Any:
    if attempt == 1 and timeout == d.timeout:
        return d
    metadata = d.metadata
    if attempt > 1:
        metadata = grpc.aio.Metadata(*tuple(metadata or ()), (_HEADER, str(attempt)))
    return grpc.aio.ClientCallDetails(d.method, timeout, metadata, d.credentials,
                                      d.wait_for_ready)


def _execution(rule: Rule, details: Any) -> Execution:
    point = rule.point
    timeout = details.timeout
    return point.execution(
        operation_name(details.method),
        deadline=None if timeout is None else point.clock.now() + timeout,
    )


async def _admit(rule: Rule, ex: Execution) -> float | None:
    """Begin an attempt and take a bulkhead permit; raises the seawall refusal."""
    timeout = ex.begin()
    permits = rule.permits
    if permits is not None and not permits.try_acquire():
        try:
            got = await permits.acquire_async(rule.max_wait) if rule.max_wait > 0 else False
        except asyncio.CancelledError:
            ex.cancelled()
            raise
        if not got:
            raise ex.bulkhead_rejected()
    return timeout


class _Status(NamedTuple):
    """How an attempt ended, read once from its call."""

    code: grpc.StatusCode
    initial: Any
    trailing: Any
    details: str
    debug: str
    note: str = ""  # added to the error: why seawall ended the attempt

    def error(self) -> Any:
        """The ``AioRpcError`` of this status."""
        err = _AioRpcError(self.code, self.initial, self.trailing, self.details, self.debug)
        if self.note:
            add_note(err, self.note)
        return err


async def _read_status(call: Any) -> _Status:
    """The status of ``call``, waiting until it ends."""
    code = await call.code()
    return _Status(code, await call.initial_metadata(), await call.trailing_metadata(),
                   await call.details(), await call.debug_error_string())


def _status_now(call: Any) -> _Status | None:
    """The status of a finished ``call`` read without yielding to the loop; None if it must wait.

    Called from a done callback when the status is first set, before
    anything can overwrite it (see :func:`_settle`).
    """
    reader = _read_status(call)
    try:
        reader.send(None)
    except StopIteration as finished:
        status: _Status = finished.value
        return status
    reader.close()
    return None


def _once(callback: Callable[[Any], None]) -> Callable[[Any], None]:
    """``callback`` as a done callback that runs once per call.

    grpc.aio runs done callbacks each time a call's status is set, which can
    happen twice (see :func:`_settle`); a permit must be released once.
    """
    fired = False

    def run(call: Any) -> None:
        nonlocal fired
        if not fired:
            fired = True
            callback(call)

    return run


def _settle(call_status: _Status, first: _Status | None) -> _Status:
    """The status an attempt really ended with.

    ``first`` is what the call said when it finished, ``call_status`` what
    it says now. grpc.aio replaces a server's status by ``INTERNAL`` when a
    request write fails because the server already ended the call
    (grpc/grpc#36066); in the rarer order the write failure lands first and
    the server's status replaces it. Either way the status that is not that
    ``INTERNAL`` is the server's.
    """
    if first is None or (first.code is _INTERNAL and call_status.code is not _INTERNAL):
        return call_status
    return first


class _Watch:
    """Finds the status a stream-unary attempt really ended with.

    Its first status is remembered from the done callback; the server's own
    status is in place once the response has arrived (grpc.aio sets it when
    the response batch completes, after a failed write may have set
    ``INTERNAL``).
    """

    __slots__ = ("call", "first")

    def __init__(self, call: Any) -> None:
        self.call = call
        self.first: _Status | None = None
        call.add_done_callback(self._done)

    def _done(self, call: Any) -> None:
        if self.first is None:  # the first status only (see _once)
            self.first = _status_now(call)

    async def status(self) -> tuple[_Status, bool]:
        """The attempt's real status (waits for its end); true when the call now says otherwise."""
        try:
            await self.call
        except Exception:  # the caller meets it when it awaits the call
            pass
        now = await _read_status(self.call)
        status = _settle(now, self.first)
        return status, status is not now


def _classify(rule: Rule, status: _Status) -> tuple[Classification, Any]:
    """Classify a failed attempt; returns the classification and an ``AioRpcError`` for it."""
    err = status.error()
    code, trailing = status.code, status.trailing

    def status_rule(_exc: BaseException) -> Classification | None:
        return classify_status(code, trailing, idempotent=rule.idempotent)

    return rule.point.classify_exception(err, status_rule), err


async def _value(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


class _DoneCall(_UUCall, _SUCall):
    """A finished call: a fallback value, or an attempt answered with its real ``status``.

    With a failed ``status``, awaiting it raises that status's ``AioRpcError``.
    """

    def __init__(self, value: Any, status: _Status | None = None) -> None:
        self._value = value
        self._status = status

    def cancel(self) -> bool:
        return False

    def cancelled(self) -> bool:
        return self._status is not None and self._status.code is grpc.StatusCode.CANCELLED

    def done(self) -> bool:
        return True

    def add_done_callback(self, callback: Any) -> None:
        callback(self)

    def time_remaining(self) -> float | None:
        return None

    async def initial_metadata(self) -> Any:
        return grpc.aio.Metadata() if self._status is None else self._status.initial

    async def trailing_metadata(self) -> Any:
        return grpc.aio.Metadata() if self._status is None else self._status.trailing

    async def code(self) -> grpc.StatusCode:
        return _OK if self._status is None else self._status.code

    async def details(self) -> str:
        return "" if self._status is None else self._status.details

    async def debug_error_string(self) -> str:
        return "" if self._status is None else self._status.debug

    async def wait_for_connection(self) -> None:
        return None

    async def write(self, request: Any) -> None:
        raise asyncio.InvalidStateError("the call already finished")

    async def done_writing(self) -> None:
        return None

    _done_writing_flag = True

    def __await__(self) -> Any:
        if False:  # pragma: no cover - makes this a generator
            yield None
        if self._status is not None and self._status.code is not _OK:
            raise self._status.error()
        return self._value


async def _unary(rule: Rule, continuation: Any, details: Any, request: Any,
                 buffer: ReplayBuffer | _AsyncReplay | None, wrap: bool) -> Any:
    """The retry loop for unary responses; returns the call grpc.aio hands to the caller."""
    ex = _execution(rule, details)
    permits = rule.permits
    last: tuple[Classification, Any] | None = None
    while True:
        try:
            timeout = await _admit(rule, ex)
        except (RejectedError, DeadlineExceeded) as refusal:
            if last is not None:
                ex.stop_reason = f"retry refused: {refusal}"
                return await _failed(ex, *last, wrap=wrap)
            fb, err = refuse(ex, refusal, aio=True)
            if fb is None:
                raise err from refusal
            value = await _value(resolve_fallback(fb, refusal))
            return _DoneCall(value) if wrap else value
        call = None
        status: _Status | None = None
        try:
            call = await continuation(_attempt_details(details, timeout, ex.attempts), request)
            if buffer is None:
                code = await call.code()
            else:
                status, replaced = await _Watch(call).status()
                code = status.code
        except asyncio.CancelledError:
            if call is not None:
                call.cancel()  # else the RPC keeps running on the server
            _close(buffer)
            ex.cancelled()
            raise
        except Exception as exc:  # an inner interceptor raised: final, never retried
            c = rule.point.classify_exception(exc).with_retry(False)
            ex.failure(c)
            end_failure(ex, c, exc)
            raise
        finally:
            if permits is not None:
                permits.release()
        if status is not None and replaced:  # the caller must see the server's status
            call = _DoneCall(await call if code is _OK else None, status)
        if code is _OK:
            point = rule.point
            if point.classifier.result_rules:
                response = await call
                rc = point.classify_result(response)
                if rc is not None:
                    failure = ResultFailure(response, rc, point=point.name, operation=ex.operation)
                    delay = ex.failure(rc)
                    if delay is None:
                        fb = end_failure(ex, rc, None)
                        if fb is not None:
                            value = await _value(resolve_fallback(fb, failure))
                            return _DoneCall(value) if wrap else value
                        return call
                    last = (rc, (call, None))
                    await _pause(rule, ex, delay)
                    continue
            ex.success()
            return call
        c, err = _classify(rule, status if status is not None else await _read_status(call))
        c, view = replay_view(rule, ex, c, buffer)
        if view is not None:
            request = view
        delay = ex.failure(c)
        if delay is None:
            return await _failed(ex, c, (call, err), wrap=wrap)
        last = (c, (call, err))
        await _pause(rule, ex, delay)


async def _pause(rule: Rule, ex: Execution, delay: float) -> None:
    if delay > 0:
        try:
            await rule.point.clock.asleep(delay)
        except asyncio.CancelledError:
            ex.cancelled()
            raise


async def _failed(ex: Execution, c: Classification, outcome: tuple[Any, Any], *,
                  wrap: bool) -> Any:
    call, err = outcome
    fb = end_failure(ex, c, err)
    if fb is not None:
        error = err if err is not None else ResultFailure(await call, c, point=ex.point.name,
                                                          operation=ex.operation)
        value = await _value(resolve_fallback(fb, error))
        return _DoneCall(value) if wrap else value
    if err is not None and (ex.attempts > 1 or ex.stop_reason):
        raise err  # the final status, carrying the note of the attempts
    return call


# --------------------------------------------------------------------------
# request streams


class _AsyncReplay(ReplayState):
    """The async twin of :class:`ReplayBuffer` for async request iterators.

    Nothing waits on the caller's iterator while holding anything the
    failure path needs: the caller's iterator may wait on a queue for as
    long as it likes, and a retry's view must still send the kept messages
    at once. Each draw runs as its own task, so cancelling a failed attempt
    (grpc.aio cancels its request consumer) does not throw into the caller's
    iterator and lose the message it was about to give: the retry gets it.
    Only :meth:`close` (the caller cancelled the call) cancels a draw, as
    plain grpc.aio would. Views wait on futures woken when a draw ends or a
    new view retires theirs. Loop-bound, like the call it serves.
    """

    def __init__(self, source: AsyncIterable[Any], limit: int) -> None:
        super().__init__(limit)
        self._source = source.__aiter__()
        self._waiters: list[asyncio.Future[None]] = []
        self._draw: asyncio.Task[Any] | None = None
        self._error: BaseException | None = None

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def view(self) -> _AsyncView | None:
        generation = self.next_generation()
        self._wake()  # a view waiting for the previous draw is retired now and ends
        return None if generation is None else _AsyncView(self, generation)

    def close(self) -> None:
        """The call was cancelled: stop a draw in progress (the caller's iterator sees it)."""
        if self._draw is not None:
            self._draw.cancel()

    async def _next(self) -> Any:
        try:
            return await self._source.__anext__()
        except StopAsyncIteration:
            return EXHAUSTED

    def _drawn(self, draw: asyncio.Task[Any]) -> None:
        self._draw = None
        self.pulling = False
        if draw.cancelled():
            self.exhausted = True
        elif draw.exception() is not None:
            self._error = draw.exception()
        else:
            item = draw.result()
            if item is EXHAUSTED:
                self.exhausted = True
            else:
                self.drawn(item)
        self._wake()

    async def pull(self, view: _AsyncView) -> Any:
        """The next message of ``view`` (``EXHAUSTED`` at the end or once retired)."""
        while True:
            item = self.cached(view)
            if item is not NEED_MORE:
                return item
            if self._error is not None:
                raise self._error  # the caller's iterator failed: grpc.aio cancels the call
            if self._draw is None:
                self.pulling = True
                self._draw = asyncio.get_running_loop().create_task(self._next())
                self._draw.add_done_callback(self._drawn)
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            await waiter


def _close(buffer: Any) -> None:
    """The caller cancelled: a draw from its async iterator in progress is cancelled too."""
    if isinstance(buffer, _AsyncReplay):
        buffer.close()


class _AsyncView:
    __slots__ = ("buffer", "generation", "index")

    def __init__(self, buffer: _AsyncReplay, generation: int) -> None:
        self.buffer = buffer
        self.generation = generation
        self.index = 0

    def __aiter__(self) -> _AsyncView:
        return self

    async def __anext__(self) -> Any:
        item = await self.buffer.pull(self)
        if item is EXHAUSTED:
            raise StopAsyncIteration
        return item


def _is_write_api(request_iterator: Any) -> bool:
    """grpc.aio's own queue behind ``call.write()``: it waits for the interceptor to return."""
    return "_proxy_writes_as_request_iterator" in getattr(request_iterator, "__qualname__", "")


class _NoReplay:
    """The request stream of a ``call.write()``-style call: its messages go straight to
    the attempt in flight and are never buffered, so no retry could resend them."""

    @staticmethod
    def view() -> None:
        return None


def _replayable(rule: Rule, request_iterator: Any) -> tuple[Any, Any]:
    if not rule.retries or request_iterator is None:
        return None, request_iterator
    buffer: ReplayBuffer | _AsyncReplay
    if isinstance(request_iterator, AsyncIterable):
        buffer = _AsyncReplay(request_iterator, rule.buffer)
    else:
        buffer = ReplayBuffer(request_iterator, rule.buffer)
    return buffer, buffer.view()


# --------------------------------------------------------------------------
# response streams


class _StreamBase:
    """Delegates to the current attempt; retries until the first message is delivered."""

    def __init__(self, rule: Rule, continuation: Any, details: Any, request: Any,
                 buffer: Any) -> None:
        self._rule = rule
        self._continuation = continuation
        self._details = details
        self._request = request
        self._buffer = buffer
        self._ex = _execution(rule, details)
        self._observe = asyncio.Lock()
        self._closed = False
        self._cancelled = False
        self._delivered = False
        self._current: Any = None
        self._first: tuple[Any, _Status | None] = (None, None)  # an attempt, its first status
        self._reader: AsyncIterator[Any] | None = None
        self._callbacks: list[Callable[[Any], None]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._timer: asyncio.TimerHandle | None = None  # the attempt's first-message limit
        self._limit = 0.0
        self._expired: Any = None  # the attempt that limit ended

    async def _launch(self) -> RejectedError | DeadlineExceeded | None:
        ex = self._ex
        try:
            timeout = await _admit(self._rule, ex)
        except (RejectedError, DeadlineExceeded) as refusal:
            return refusal
        permits = self._rule.permits
        wire, limit = stream_limits(ex, timeout)
        try:
            call = await self._continuation(
                _attempt_details(self._details, wire, ex.attempts), self._request)
        except BaseException:
            if permits is not None:
                permits.release()
            ex.cancelled()
            raise
        self._current = call
        if limit is not None:
            self._limit = limit
            self._timer = asyncio.get_running_loop().call_later(
                limit, _expire_first, weakref.ref(self), call)
        call.add_done_callback(_once(self._attempt_done))
        return None

    def _expire(self, call: Any) -> None:
        """The first-message limit passed: end ``call`` unless a message was delivered."""
        if self._delivered or self._closed or call is not self._current or call.done():
            return
        self._expired = call
        call.cancel()

    def _stop_timer(self) -> None:
        timer = self._timer
        if timer is not None:
            self._timer = None
            timer.cancel()

    def _attempt_done(self, call: Any) -> None:
        permits = self._rule.permits
        if permits is not None:
            permits.release()
        if call is self._current:
            self._stop_timer()
            self._first = (call, _status_now(call))
            if not call.cancelled():
                task = asyncio.get_running_loop().create_task(self._check_ok(call))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _status(self, call: Any) -> _Status:
        """How ``call`` really ended (waits for its end); see :func:`_settle`."""
        if call is self._expired:  # our first-message limit ended it: gRPC's deadline status
            return _Status(_DEADLINE_EXCEEDED, await call.initial_metadata(), grpc.aio.Metadata(),
                           "Deadline Exceeded",
                           "Deadline Exceeded (seawall: first response message not in time)",
                           f"seawall: no response message within Timeout.attempt "
                           f"({self._limit:g} s)")
        now = await _read_status(call)
        first_call, first = self._first
        return _settle(now, first if first_call is call else None)

    async def _check_ok(self, call: Any) -> None:
        if (await self._status(call)).code is _OK:
            self._close(success=True)

    def _close(self, *, success: bool = False) -> bool:
        if self._closed:
            return False
        self._closed = True
        self._stop_timer()
        if success:
            self._ex.success()
        callbacks, self._callbacks = self._callbacks, []
        for fn in callbacks:
            fn(self)
        return True

    async def _on_failure(self, call: Any) -> bool:
        """Decide a failed attempt; true when a new attempt is now current."""
        async with self._observe:
            if call is not self._current:
                return True
            if self._closed:
                return False
            ex = self._ex
            status = await self._status(call)
            if status.code is _OK:
                self._close(success=True)
                return False
            c, _err = _classify(self._rule, status)
            if self._delivered:
                c = c.with_retry(False)
            else:
                c, view = replay_view(self._rule, ex, c, self._buffer)
                if view is not None:
                    self._request = view
            delay = ex.failure(c)
            if delay is None:
                if self._close():
                    end_failure(ex, c, None)
                return False
            if delay > 0:
                try:
                    await self._rule.point.clock.asleep(delay)
                except asyncio.CancelledError:
                    if self._close():
                        ex.cancelled()
                    raise
            if self._closed:
                return False
            refusal = await self._launch()
            if refusal is not None:
                if self._close():
                    ex.stop_reason = f"retry refused: {refusal}"
                    end_failure(ex, c, None)
                return False
            return True

    async def _iterate(self) -> AsyncIterator[Any]:
        while True:
            call = self._current
            try:
                async for message in call:
                    if not self._delivered:
                        self._delivered = True
                        self._stop_timer()
                    yield message
            except _AioRpcError as exc:
                if await self._on_failure(call):
                    continue
                status = await self._status(call)
                if status.code is _OK:
                    return  # grpc.aio's INTERNAL for a write that lost the race with the end
                if status.code is exc.code():
                    raise
                raise status.error() from None
            except asyncio.CancelledError:
                if call is self._expired and not self._cancelled and not _cancel_requested():
                    # grpc.aio reports our own cancel of the attempt so: a failed attempt
                    if await self._on_failure(call):
                        continue
                    raise (await self._status(call)).error() from None
                call.cancel()
                _close(self._buffer)
                if self._close():
                    self._ex.cancelled()
                raise
            return

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._iterate()

    async def read(self) -> Any:
        if self._reader is None:
            self._reader = self._iterate()
        try:
            return await self._reader.__anext__()
        except StopAsyncIteration:
            return _EOF

    async def _settled(self) -> _Status:
        while True:
            call = self._current
            status = await self._status(call)
            if status.code is _OK or self._closed or not await self._on_failure(call):
                return await self._status(self._current)

    async def code(self) -> grpc.StatusCode:
        return (await self._settled()).code

    async def details(self) -> str:
        return (await self._settled()).details

    async def trailing_metadata(self) -> Any:
        return (await self._settled()).trailing

    async def debug_error_string(self) -> str:
        return (await self._settled()).debug

    async def initial_metadata(self) -> Any:
        return await self._current.initial_metadata()

    async def wait_for_connection(self) -> None:
        await self._current.wait_for_connection()

    def cancel(self) -> bool:
        if self._closed:
            return False
        self._cancelled = True
        self._current.cancel()
        _close(self._buffer)
        if self._close():
            self._ex.cancelled()
        return True

    def cancelled(self) -> bool:
        return self._cancelled

    def done(self) -> bool:
        return self._closed and bool(self._current.done())

    def add_done_callback(self, callback: Callable[[Any], None]) -> None:
        if self._closed:
            callback(self)
        else:
            self._callbacks.append(callback)

    def time_remaining(self) -> float | None:
        return self._ex.remaining()

    # stream-stream: grpc.aio routes write() through the request iterator; it only reads this flag
    @property
    def _done_writing_flag(self) -> bool:
        return bool(getattr(self._current, "_done_writing_flag", False))

    async def write(self, request: Any) -> None:
        await self._current.write(request)

    async def done_writing(self) -> None:
        await self._current.done_writing()


def _expire_first(owner: weakref.ref[_StreamBase], call: Any) -> None:
    stream = owner()
    if stream is not None:
        stream._expire(call)


def _cancel_requested() -> bool:
    """Whether the running task was asked to cancel (Python 3.11+; 3.10 cannot tell)."""
    task = asyncio.current_task()
    cancelling = getattr(task, "cancelling", None)
    return bool(cancelling()) if cancelling is not None else False


class _UnaryStream(_StreamBase, _USCall):
    """A server-streaming call over every attempt."""


class _StreamStream(_StreamBase, _SSCall):
    """A bidi-streaming call over every attempt."""


async def _stream(kind: type[_StreamBase], rule: Rule, continuation: Any, details: Any,
                  request: Any, buffer: Any) -> Any:
    stream = kind(rule, continuation, details, request, buffer)
    refusal = await stream._launch()
    if refusal is not None:
        stream._closed = True
        stream._ex.end_rejected(refusal)
        raise as_rpc_error(refusal, aio=True) from refusal
    return stream


async def _single(rule: Rule, continuation: Any, details: Any, request: Any) -> Any:
    """One attempt, accounted when it ends (write()-style request streams cannot be replayed)."""
    ex = _execution(rule, details)
    try:
        timeout = await _admit(rule, ex)
    except (RejectedError, DeadlineExceeded) as refusal:
        fb, err = refuse(ex, refusal, aio=True)
        if fb is None:
            raise err from refusal
        return _DoneCall(await _value(resolve_fallback(fb, refusal)))
    permits = rule.permits
    try:
        call = await continuation(_attempt_details(details, timeout, 1), request)
    except BaseException:
        if permits is not None:
            permits.release()
        ex.cancelled()
        raise

    def done(finished: Any) -> None:
        if permits is not None:
            permits.release()
        if finished.cancelled():
            ex.cancelled()
            return
        first = _status_now(finished)  # before a failed write can overwrite it (see _settle)
        task = asyncio.get_running_loop().create_task(_account(rule, ex, finished, first))
        _PENDING.add(task)
        task.add_done_callback(_PENDING.discard)

    call.add_done_callback(_once(done))
    return call


_PENDING: set[asyncio.Task[None]] = set()


async def _account(rule: Rule, ex: Execution, call: Any, first: _Status | None) -> None:
    status = _settle(await _read_status(call), first)
    if status.code is _OK:
        ex.success()
        return
    c, _err = _classify(rule, status)
    ex.failure(c.with_retry(False))
    end_failure(ex, c, None)


# --------------------------------------------------------------------------
# the four interceptors


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
        return await _unary(rule, continuation, client_call_details, request, None, False)


class AioStreamUnary(_Base, _SU):
    """Client-streaming calls of a grpc.aio channel."""

    async def intercept_stream_unary(self, continuation: Any, client_call_details: Any,
                                     request_iterator: Any) -> Any:
        rule = self._lookup(client_call_details.method)
        if rule is None:
            return await continuation(client_call_details, request_iterator)
        if not rule.retries or _is_write_api(request_iterator):
            return await _single(rule, continuation, client_call_details, request_iterator)
        buffer, first = _replayable(rule, request_iterator)
        return await _unary(rule, continuation, client_call_details, first, buffer, True)


class AioUnaryStream(_Base, _US):
    """Server-streaming calls of a grpc.aio channel."""

    async def intercept_unary_stream(self, continuation: Any, client_call_details: Any,
                                     request: Any) -> Any:
        rule = self._lookup(client_call_details.method)
        if rule is None:
            return await continuation(client_call_details, request)
        return await _stream(_UnaryStream, rule, continuation, client_call_details, request, None)


class AioStreamStream(_Base, _SS):
    """Bidi-streaming calls of a grpc.aio channel."""

    async def intercept_stream_stream(self, continuation: Any, client_call_details: Any,
                                      request_iterator: Any) -> Any:
        rule = self._lookup(client_call_details.method)
        if rule is None:
            return await continuation(client_call_details, request_iterator)
        if _is_write_api(request_iterator):
            buffer, first = _NoReplay(), request_iterator  # failures before a reply are final
        else:
            buffer, first = _replayable(rule, request_iterator)
        return await _stream(_StreamStream, rule, continuation, client_call_details, first,
                             buffer)
