"""The call the grpc.aio channel wrapper returns for unary responses: one call over every attempt.

grpc.aio's interceptors run every call in a task of their own. This call
starts attempt 1 at once, in the caller's ``stub.M(req)``, and settles a
success in the caller's own ``await``; a task is made only when needed (a
failed attempt: the shared retry loop of ``_grpc_aio_unary`` runs in it;
nobody waiting when attempt 1 ends; a bulkhead wait; a client stream).
Attempt 1 of a unary-unary call is admitted by ``point.admit_first``, as the
core's own shells admit theirs: no :class:`seawall.Execution` is made unless
that attempt fails, is cancelled, or nobody awaits it (then one takes it over:
``point.execution(..., first=...)``); a success is one lock-free count.
aio only: the sync wrapper needs no call object of its own (a blocking
call returns the response; ``.future()`` is ``_grpc_sync_future``'s).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import grpc
import grpc.aio

from seawall import Execution

from ._grpc_aio_status import DoneCall, Status, SUCall, UUCall
from ._grpc_aio_unary import unary
from ._grpc_routes import Rule
from ._grpc_status import with_attempt

_AioRpcError = grpc.aio.AioRpcError
_API_STYLE_ERROR = "The iterator and read/write APIs may not be mixed on a single RPC."


def _cancelled_call() -> DoneCall:
    """What a call cancelled before it settled answers: ``CANCELLED``; awaiting it raises
    ``CancelledError``, as a cancelled grpc.aio call does."""
    return DoneCall(None, Status(grpc.StatusCode.CANCELLED, grpc.aio.Metadata(),
                                 grpc.aio.Metadata(), "Locally cancelled by application!", ""),
                    asyncio.CancelledError())


async def send(args: tuple[Any, ...], request: Any, timeout: float | None,
                attempt: int) -> Any:
    """One attempt through the inner multicallable; ``args`` is (it, metadata, credentials,
    wait_for_ready, compression), the caller's arguments."""
    fn, metadata, credentials, wait_for_ready, compression = args
    return fn(request, timeout=timeout,
              metadata=metadata if attempt == 1 else with_attempt(metadata, attempt),
              credentials=credentials, wait_for_ready=wait_for_ready, compression=compression)


_RUNNING, _AWAITED, _DRIVEN, _SETTLED = range(4)
RUNNING = _RUNNING  # the state a call made without __init__ starts in (_grpc_aio_channel)

# grpc.aio's own unary-unary call: ``add_done_callback(fn)`` is ``self._cython_call
# .add_done_callback(functools.partial(fn, self))``, which watch_first calls itself
GRPC_UNARY_CALL: Any = getattr(getattr(grpc.aio, "_call", None), "UnaryUnaryCall", None)


def watch_first(attempt: Any, call: UnaryCall) -> None:
    """Have ``call`` told when its attempt 1, ``attempt``, ends (``UnaryCall._first_done``)."""
    if type(attempt) is GRPC_UNARY_CALL:
        # the same registration as attempt.add_done_callback's, without its frame and the
        # partial it wraps the callback in (-3.5k instructions a call, callgrind)
        # only the look-up is guarded: grpc calls the callback at once when the attempt is
        # already done, and an AttributeError of its own must not register it a second time
        try:
            register = attempt._cython_call.add_done_callback
        except AttributeError:  # a grpc.aio whose call is built otherwise: the public way
            register = attempt.add_done_callback
    else:
        register = attempt.add_done_callback
    register(call._first_done)


class UnaryCall(UUCall, SUCall):
    """What the wrapper returns for a unary-response call: one call over every attempt.

    Its state: ``_RUNNING``, attempt 1 (started by the multicallable) is in
    flight and nobody waits on it; ``_AWAITED``, an ``await`` waits on it and
    settles a success itself; ``_DRIVEN``, a driver task runs the shared retry
    loop (after a failure, when nobody waited, for a bulkhead wait, a client
    stream); ``_SETTLED``, ``_final`` (the call-like that answers) is known.
    Whoever first sees attempt 1 end moves it on. Loop-bound. The Execution
    (``_ex``) is made on first need when attempt 1 was admitted without one:
    in the caller's context, or in grpc.aio's done callback, which runs in the
    context the call was made in (an enclosing seawall deadline still applies).
    """

    # the state every call starts in, as class attributes: a call sets only what differs
    _state = _RUNNING
    _writes = False  # call.write()-style: requests go to the attempt itself
    _current: Any = None  # attempt 1
    _driver: asyncio.Task[Any] | None = None
    _final: Any = None
    _cancelled = False
    _callbacks: tuple[Callable[[Any], None], ...] = ()
    # attempt 1 admitted by ``point.admit_first`` (``_first``) for the multicallable
    # ``_source``, without an Execution: the multicallable sets these (and ``_ex = None``,
    # ``_current``, ``_state``, ``_callbacks``) on a call made without ``__init__``
    _source: Any = None
    _deadline: float | None = None
    _first: tuple[float, int, float | None] | None = None

    def __init__(self, rule: Rule, ex: Execution | None, args: tuple[Any, ...],
                 request: Any) -> None:
        self._rule = rule
        self._ex = ex
        self._args = args
        self._request = request

    def _execution(self) -> Execution:
        """The call's Execution, taking over attempt 1 when it was admitted without one."""
        ex = self._ex
        if ex is None:
            first = self._first
            assert first is not None
            ex = self._ex = self._rule.point.execution(
                self._source._operation, deadline=self._deadline, first=(first[0], first[1]))
        return ex

    # -- how the call is answered -------------------------------------------------

    def _first_done(self, _attempt: Any = None) -> None:
        """Attempt 1 (``_current``) ended: its permit back, and if nobody waits, decide now.

        A done callback of attempt 1 (see :func:`watch_first`), with or without the call."""
        permits = self._rule.permits
        if permits is not None:
            permits.release()
        if self._state == _RUNNING:
            self._take_over(self._current)  # nobody waits on it: decide now

    def _take_over(self, first: Any) -> None:
        self._drive(unary(self._rule, self._execution(), send, self._args, self._request, None,
                          True, first))

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
        if self._state == _RUNNING or self._state == _AWAITED:
            call = self._current
            await call.code()  # attempt 1's end (never raises for an RPC failure)
            if self._state == _RUNNING or self._state == _AWAITED:
                self._take_over(call)  # an await still to resume finds the driver
        if self._state == _SETTLED:
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
        if self._state == _RUNNING:
            # the common case, settled here without a task: the caller awaits attempt 1
            self._state = _AWAITED
            call = self._current
            try:
                response = yield from call.__await__()
            except _AioRpcError:
                if self._state == _AWAITED:
                    self._take_over(call)  # retried, or the final failure: the loop decides
            except asyncio.CancelledError:
                if self._state == _AWAITED:  # the caller was cancelled, so is the attempt
                    self._cancelled = True
                    self._execution().cancelled()
                    self._settle(call)
                raise
            else:
                if self._state == _AWAITED:
                    if self._rule.result_rules:
                        self._take_over(call)
                    else:
                        if self._ex is None:  # the common case: one lock-free count
                            source, first = self._source, self._first
                            assert first is not None
                            source._succeeded(source._operation, first[0], first[1])
                        else:
                            self._ex.success()
                        self._state = _SETTLED
                        self._final = call
                        if self._callbacks:
                            self._settle(call)
                        return response
        if self._state == _SETTLED:
            final = self._final
        elif self._state == _DRIVEN:  # cancelling this await cancels the call, as in grpc.aio
            driver = self._driver
            assert driver is not None
            final = yield from driver.__await__()
        else:  # another await is settling attempt 1
            final = yield from self._outcome().__await__()
        return (yield from final.__await__())

    # -- grpc.aio.Call ----------------------------------------------------------------

    def cancel(self) -> bool:
        state = self._state
        if state == _SETTLED:
            return bool(self._final.cancel())
        if state == _DRIVEN:
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
        self._execution().cancelled()
        self._settle(call)
        call.cancel()
        return True

    def cancelled(self) -> bool:
        final = self._final
        return self._cancelled or (final is not None and bool(final.cancelled()))

    def done(self) -> bool:
        return self._state == _SETTLED and bool(self._final.done())

    def add_done_callback(self, callback: Callable[[Any], None]) -> None:
        if self._state == _SETTLED:
            self._notify(self._final, callback)
        else:
            self._callbacks = (*self._callbacks, callback)

    def time_remaining(self) -> float | None:
        return self._execution().remaining()

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
