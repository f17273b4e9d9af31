"""How a grpc.aio attempt ended, read once from its call, and the finished calls we answer with.

A request-streaming attempt is judged by the status it *first* finished
with: when the server ends such a call while a request write is still in
flight, grpc.aio's writer fails that write and overwrites the server's
status with ``INTERNAL`` "Internal error from Core" (grpc/grpc#36066).
That ``INTERNAL`` is a local artefact; classifying it would turn a
retryable ``UNAVAILABLE`` into a final failure, or a success into a failure.
Shared by both aio mountings (interceptors and the channel wrapper).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, NamedTuple

import grpc
import grpc.aio
from grpc.aio import _base_call

from seawall import Classification
from seawall._execution import add_note

from ._grpc_routes import Rule
from ._grpc_status import classify_status

_OK = grpc.StatusCode.OK
_INTERNAL = grpc.StatusCode.INTERNAL
_AioRpcError = grpc.aio.AioRpcError
_EOF: Any = getattr(grpc.aio, "EOF")  # noqa: B009 (missing from grpc-stubs)

if TYPE_CHECKING:  # grpc-stubs makes these generic; grpc itself does not
    UUCall = _base_call.UnaryUnaryCall[Any, Any]
    SUCall = _base_call.StreamUnaryCall[Any, Any]
    USCall = _base_call.UnaryStreamCall[Any, Any]
    SSCall = _base_call.StreamStreamCall[Any, Any]
else:
    UUCall = _base_call.UnaryUnaryCall
    SUCall = _base_call.StreamUnaryCall
    USCall = _base_call.UnaryStreamCall
    SSCall = _base_call.StreamStreamCall


class Status(NamedTuple):
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


async def read_status(call: Any) -> Status:
    """The status of ``call``, waiting until it ends."""
    code = await call.code()
    return Status(code, await call.initial_metadata(), await call.trailing_metadata(),
                  await call.details(), await call.debug_error_string())


def status_now(call: Any) -> Status | None:
    """The status of a finished ``call`` read without yielding to the loop; None if it must wait.

    Called from a done callback when the status is first set, before
    anything can overwrite it (see :func:`settle`): the reads of a finished
    call complete without suspending, so the coroutine is stepped by hand.
    """
    reader = read_status(call)
    try:
        reader.send(None)
    except StopIteration as finished:
        status: Status = finished.value
        return status
    reader.close()
    return None


def once(callback: Callable[[Any], None]) -> Callable[[Any], None]:
    """``callback`` as a done callback that runs once per call.

    grpc.aio runs done callbacks each time a call's status is set, which can
    happen twice (see :func:`settle`); a permit must be released once.
    """
    fired = False

    def run(call: Any) -> None:
        nonlocal fired
        if not fired:
            fired = True
            callback(call)

    return run


def settle(call_status: Status, first: Status | None) -> Status:
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


class Watch:
    """Finds the status a stream-unary attempt really ended with.

    Its first status is remembered from the done callback; the server's own
    status is in place once the response has arrived (grpc.aio sets it when
    the response batch completes, after a failed write may have set
    ``INTERNAL``).
    """

    __slots__ = ("call", "first")

    def __init__(self, call: Any) -> None:
        self.call = call
        self.first: Status | None = None
        call.add_done_callback(self._done)

    def _done(self, call: Any) -> None:
        if self.first is None:  # the first status only (see once)
            self.first = status_now(call)

    async def status(self) -> tuple[Status, bool]:
        """The attempt's real status (waits for its end); true when the call now says otherwise."""
        try:
            await self.call
        except Exception:  # the caller meets it when it awaits the call
            pass
        now = await read_status(self.call)
        status = settle(now, self.first)
        return status, status is not now


def classify(rule: Rule, status: Status) -> tuple[Classification, Any]:
    """Classify a failed attempt; returns the classification and an ``AioRpcError`` for it."""
    err = status.error()
    code, trailing = status.code, status.trailing

    def status_rule(_exc: BaseException) -> Classification | None:
        return classify_status(code, trailing, idempotent=rule.idempotent)

    return rule.point.classify_exception(err, status_rule), err


async def value_of(value: Any) -> Any:
    """A fallback's answer, awaited when its handler is async."""
    return await value if inspect.isawaitable(value) else value


class DoneCall(UUCall, SUCall):
    """A finished call: a fallback's value, an attempt answered with its real ``status``, or a
    failure (``failing``: a refusal, a final error carrying a note of the attempts).

    Awaiting it returns the value or raises the failure; as a response
    stream it ends at once or raises the failure.
    """

    def __init__(self, value: Any, status: Status | None = None,
                 error: BaseException | None = None) -> None:
        self._value = value
        self._status = status
        self._error = error

    @classmethod
    def failing(cls, err: Any) -> DoneCall:
        """The call whose await raises ``err`` (an ``AioRpcError``) and whose status is its."""
        return cls(None, Status(err.code(), err.initial_metadata(), err.trailing_metadata(),
                                err.details() or "", err.debug_error_string() or ""), err)

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error
        if self._status is not None and self._status.code is not _OK:
            raise self._status.error()

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
        self._raise()
        return self._value

    async def _messages(self) -> AsyncIterator[Any]:
        self._raise()
        return
        yield  # pragma: no cover - makes this an async generator

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._messages()

    async def read(self) -> Any:
        self._raise()
        return _EOF
