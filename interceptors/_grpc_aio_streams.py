"""grpc.aio response streams (server-streaming and bidi): one call object over every attempt.

It delegates to the current attempt and retries while no message was
delivered; grpc.aio on its own would pin ``code()`` and ``cancel()`` to the
first attempt (grpc/grpc#37208). The caller drives retries by reading
(``async for``, ``read()``) or by asking for the status. A loop timer ends
an attempt that delivered nothing within ``Timeout.attempt`` (the wire
deadline is the call's own). Both aio mountings use it: behind the
interceptors the first attempt is launched before the call is handed to
grpc.aio; the channel wrapper launches it in a task and every reader waits
for that launch first.

Sync and aio: the twin of ``_grpc_sync_streams``, written apart (see
there why); the shared decisions are ``_grpc_commit.stream_retry`` and
``stream_limits``.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import grpc.aio

from seawall import DeadlineExceeded, Execution, RejectedError

from ._grpc_aio_status import (
    DoneCall,
    SSCall,
    Status,
    USCall,
    classify,
    once,
    read_status,
    settle,
    status_now,
)
from ._grpc_aio_unary import AioSend, admit
from ._grpc_commit import end_failure, stream_limits, stream_retry
from ._grpc_refusals import as_rpc_error
from ._grpc_replay import close_draw
from ._grpc_routes import Rule

_OK = grpc.StatusCode.OK
_DEADLINE_EXCEEDED = grpc.StatusCode.DEADLINE_EXCEEDED
_AioRpcError = grpc.aio.AioRpcError
_EOF: Any = getattr(grpc.aio, "EOF")  # noqa: B009 (missing from grpc-stubs)


_CANCELLED_STATUS = Status(grpc.StatusCode.CANCELLED, grpc.aio.Metadata(), grpc.aio.Metadata(),
                           "Locally cancelled by application!", "")


class StreamCall:
    """Delegates to the current attempt; retries until the first message is delivered."""

    def __init__(self, rule: Rule, ex: Execution, send: AioSend, args: Any, request: Any,
                 buffer: Any) -> None:
        self._rule = rule
        self._ex = ex
        self._send = send
        self._args = args
        self._request = request
        self._buffer = buffer
        self._pending: asyncio.Task[Any] | None = None  # the wrapper's launch of attempt 1
        self._observe = asyncio.Lock()
        self._closed = False
        self._cancelled = False
        self._delivered = False
        self._current: Any = None
        self._first: tuple[Any, Status | None] = (None, None)  # an attempt, its first status
        self._reader: AsyncIterator[Any] | None = None
        self._callbacks: list[Callable[[Any], None]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._timer: asyncio.TimerHandle | None = None  # the attempt's first-message limit
        self._limit = 0.0
        self._expired: Any = None  # the attempt that limit ended

    async def start(self) -> Any:
        """Launch the first attempt; returns ``None``, or the refusal as an ``AioRpcError``
        (the stream is then over, and its reads raise that error)."""
        refusal = await self._launch()
        if refusal is None:
            return None
        self._closed = True
        self._ex.end_rejected(refusal)
        err = as_rpc_error(refusal, aio=True)
        self._current = DoneCall.failing(err)
        return err

    def start_soon(self) -> None:
        """Launch the first attempt in a task of its own; every reader waits for it."""
        self._pending = asyncio.get_running_loop().create_task(self.start())

    async def _ready(self) -> None:
        pending = self._pending
        if pending is None:
            return
        try:
            await asyncio.shield(pending)
        except asyncio.CancelledError:
            if not pending.cancelled():
                raise  # the reader itself was cancelled; the launch goes on
        self._pending = None
        if self._current is None:  # cancelled before the attempt started
            self._closed = True
            self._current = DoneCall(None, _CANCELLED_STATUS, asyncio.CancelledError())

    async def _launch(self) -> RejectedError | DeadlineExceeded | None:
        ex = self._ex
        try:
            timeout = await admit(self._rule, ex)
        except (RejectedError, DeadlineExceeded) as refusal:
            return refusal
        permits = self._rule.permits
        wire, limit = stream_limits(ex, timeout)
        try:
            call = await self._send(self._args, self._request, wire, ex.attempts)
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
        call.add_done_callback(once(self._attempt_done))
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
            self._first = (call, status_now(call))
            if not call.cancelled():
                task = asyncio.get_running_loop().create_task(self._check_ok(call))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _status(self, call: Any) -> Status:
        """How ``call`` really ended (waits for its end); see :func:`settle`."""
        if call is self._expired:  # our first-message limit ended it: gRPC's deadline status
            return Status(_DEADLINE_EXCEEDED, await call.initial_metadata(), grpc.aio.Metadata(),
                           "Deadline Exceeded",
                           "Deadline Exceeded (seawall: first response message not in time)",
                           f"seawall: no response message within Timeout.attempt "
                           f"({self._limit:g} s)")
        now = await read_status(call)
        first_call, first = self._first
        return settle(now, first if first_call is call else None)

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
            c, _err = classify(self._rule, status)
            delay, view = stream_retry(self._rule, ex, c, self._delivered, self._buffer)
            if view is not None:
                self._request = view
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
        await self._ready()
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
                close_draw(self._buffer)
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

    async def _settled(self) -> Status:
        await self._ready()
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
        await self._ready()
        return await self._current.initial_metadata()

    async def wait_for_connection(self) -> None:
        await self._ready()
        await self._current.wait_for_connection()

    def cancel(self) -> bool:
        if self._closed:
            return False
        self._cancelled = True
        if self._current is None:  # the wrapper's launch has not sent attempt 1 yet
            self._closed = True
            if self._pending is not None:
                self._pending.cancel()  # a launch waiting for a permit counts its cancellation
            return True
        self._current.cancel()
        close_draw(self._buffer)
        if self._close():
            self._ex.cancelled()
        return True

    def cancelled(self) -> bool:
        return self._cancelled

    def done(self) -> bool:
        current = self._current
        return self._closed and (current is None or bool(current.done()))

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
        await self._ready()
        await self._current.write(request)

    async def done_writing(self) -> None:
        await self._ready()
        await self._current.done_writing()


def _expire_first(owner: weakref.ref[StreamCall], call: Any) -> None:
    stream = owner()
    if stream is not None:
        stream._expire(call)


def _cancel_requested() -> bool:
    """Whether the running task was asked to cancel (Python 3.11+; 3.10 cannot tell)."""
    task = asyncio.current_task()
    cancelling = getattr(task, "cancelling", None)
    return bool(cancelling()) if cancelling is not None else False


class UnaryStreamCall(StreamCall, USCall):
    """A server-streaming call over every attempt."""


class StreamStreamCall(StreamCall, SSCall):
    """A bidi-streaming call over every attempt."""
