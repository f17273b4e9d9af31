"""Sync unary responses, blocking paths: the retry loop of ``stub.M(req)`` and ``.with_call``.

One loop serves both mountings and both request shapes (a message, or a
replayable request stream). What differs is how one attempt is sent and
what it hands back, so the loop takes a ``send(args, request, timeout,
attempt)`` (``args``: what the mounting keeps of this call) and a
:class:`Shape`: behind ``grpc.intercept_channel`` an attempt returns
gRPC's outcome object; through the channel wrapper it returns the response
(``__call__``) or ``(response, call)`` (``with_call``). A failed attempt is
always its ``grpc.RpcError``, returned rather than raised. The loop retries
in the caller's thread; the waits between attempts are the point's clock's.

Also here: the finished-call objects every sync shell answers with (a
fallback's value, a cancellation, an attempt that raised) and how a
finished attempt is classified.

Sync and aio: its twin is ``_grpc_aio_unary``, written apart rather than
generated, because gRPC gives the two different shapes (here a blocking
call or an outcome object, there an awaitable call object whose status is
read asynchronously); what they share, the commit and ending rules, is in
``_grpc_commit``, ``_grpc_replay`` and ``_grpc_status``.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any, NamedTuple

import grpc

from seawall import Classification, DeadlineExceeded, Execution, RejectedError, ResultFailure

from ._grpc_commit import end_failure, refuse, resolve_fallback
from ._grpc_refusals import Finished, Future
from ._grpc_replay import ReplayBuffer, replay_view
from ._grpc_routes import Rule
from ._grpc_status import classify_status

_OK = grpc.StatusCode.OK
_CANCELLED = grpc.StatusCode.CANCELLED

Send = Callable[[Any, Any, "float | None", int], Any]
"""``send(args, request, timeout, attempt)``: one attempt (``timeout`` in seconds, ``None``:
unbounded; ``attempt`` 1-based), returning what the host hands back for it. ``args`` is
the mounting's own per-call data (gRPC's continuation and call details, or the inner
multicallable and the caller's arguments), handed through untouched: a tuple built per
call, where a closure per call cost ~2.4k more CPU instructions (callgrind, bench/grpc.py
--instructions measures the whole call)."""


class Done(Finished, grpc.Call, Future):
    """A finished, successful call carrying a value (a fallback's answer)."""

    def __init__(self, value: Any) -> None:
        self._value = value

    def initial_metadata(self) -> Any:
        return ()

    def trailing_metadata(self) -> Any:
        return ()

    def code(self) -> grpc.StatusCode:
        return _OK

    def details(self) -> str:
        return ""

    def result(self, timeout: float | None = None) -> Any:
        return self._value

    def exception(self, timeout: float | None = None) -> Exception | None:
        return None

    def traceback(self, timeout: float | None = None) -> types.TracebackType | None:
        return None


class Cancelled(Done):
    """The outcome of a call cancelled while waiting to retry."""

    def __init__(self) -> None:
        super().__init__(None)

    def code(self) -> grpc.StatusCode:
        return _CANCELLED

    def details(self) -> str:
        return "Locally cancelled by application!"

    def cancelled(self) -> bool:
        return True


class RaisedOutcome(Done):
    """An attempt whose sending raised: ``result()`` raises the original."""

    def __init__(self, exc: Exception) -> None:
        super().__init__(None)
        self._exc = exc

    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.INTERNAL

    def result(self, timeout: float | None = None) -> Any:
        raise self._exc

    def exception(self, timeout: float | None = None) -> Exception | None:
        return self._exc


class Shape(NamedTuple):
    """What an attempt hands back in one mounting, and how a fallback's value is handed on."""

    response: Callable[[Any], Any]
    """The response message inside what a successful attempt returned."""
    answer: Callable[[Any], Any]
    """What the call returns when a fallback answers with ``value``."""


OUTCOME = Shape(lambda out: out.result(), Done)
"""gRPC's outcome objects (behind ``grpc.intercept_channel``; also the futures)."""
VALUE = Shape(lambda out: out, lambda value: value)
"""The response itself (the wrapper's ``__call__``)."""
PAIR = Shape(lambda out: out[0], lambda value: (value, Done(value)))
"""``(response, call)`` (the wrapper's ``with_call``)."""


def classify_outcome(rule: Rule, out: Any, shape: Shape = OUTCOME,
                     ) -> tuple[Classification | None, BaseException | None]:
    """Classify a finished attempt: ``(None, None)`` on success, else the classification and
    the error to re-raise (``None`` when the failure is a result that a rule rejected)."""
    point = rule.point
    # through the wrapper's shapes only a failure is an object with a code
    code = out.code() if shape is OUTCOME or isinstance(out, grpc.RpcError) else _OK
    if code is _OK:
        if point.classifier.result_rules:
            result = shape.response(out)
            c = point.classify_result(result)
            if c is not None:
                return c, ResultFailure(result, c, point=point.name)
        return None, None
    err = out.exception()
    if isinstance(err, grpc.RpcError):
        def status_rule(_exc: BaseException) -> Classification | None:
            return classify_status(code, out.trailing_metadata(), idempotent=rule.idempotent)
        return point.classify_exception(err, status_rule), err
    if err is None:  # a failed call without an exception object: go by the code alone
        return classify_status(code, out.trailing_metadata(), idempotent=rule.idempotent), None
    return point.classify_exception(err), err


_UNSENT: Any = object()  # ``first`` of a call whose first attempt the loop sends itself


def blocking(rule: Rule, ex: Execution, send: Send, args: Any, request: Any,
             buffer: ReplayBuffer | None, shape: Shape, first: Any = _UNSENT) -> Any:
    """Run a blocking unary-response call to its end, retrying in this thread.

    Returns what the last attempt returned, a fallback's answer (through
    ``shape``), or the call's failure as a ``grpc.RpcError`` object: a
    refusal, or the last attempt's error with a note of the attempts. The
    interceptor returns that object to gRPC, which raises it; the channel
    wrapper raises it. ``first``: what a first attempt that the caller
    admitted and sent itself returned (``ex`` took it over, its permit given
    back); the loop judges it, then goes on.
    """
    permits = rule.permits
    last: tuple[Classification, Any, BaseException | None] | None = None
    out = first
    while True:
        if out is _UNSENT:
            try:
                timeout = ex.begin(True)
                if ex.wait > 0.0:  # a server's pause or a rate-limit token (sans-IO: waited here)
                    try:
                        rule.point.clock.sleep(ex.wait)
                    except BaseException:
                        ex.withdraw()
                        ex.cancelled()
                        raise
                if permits is not None and not permits.try_acquire() \
                        and not permits.acquire(rule.max_wait):
                    raise ex.bulkhead_rejected()
            except (RejectedError, DeadlineExceeded) as refusal:
                if last is not None:
                    ex.stop_reason = f"retry refused: {refusal}"
                    return failed(ex, shape, *last)
                fb, err = refuse(ex, refusal)
                return err if fb is None else shape.answer(resolve_fallback(fb, refusal))
            try:
                out = send(args, request, timeout, ex.attempts)
            except Exception as exc:  # sending raised (an inner interceptor, a bad request)
                send_raised(rule, ex, exc)
                raise
            except BaseException:
                ex.cancelled()
                raise
            finally:
                if permits is not None:
                    permits.release()
        # telling success by type spares code(), which takes the call's lock while gRPC's
        # thread may hold it
        if not isinstance(out, grpc.RpcError) and not rule.result_rules:
            ex.success()
            return out
        c, err = classify_outcome(rule, out, shape)
        if c is None:
            ex.success()
            return out
        c, view = replay_view(rule, ex, c, buffer)
        if view is not None:
            request = view
        delay = ex.failure(c)
        if delay is None:
            return failed(ex, shape, c, out, err)
        last = (c, out, err)
        out = _UNSENT
        if delay > 0:
            rule.point.clock.sleep(delay)


def send_raised(rule: Rule, ex: Execution, exc: Exception) -> None:
    """Account for an attempt whose sending raised ``exc`` (a bad request, a closed channel,
    an inner interceptor): a final failure, never retried; the caller re-raises ``exc``."""
    final = rule.point.classify_exception(exc).with_retry(False)
    ex.failure(final)
    end_failure(ex, final, exc)


def failed(ex: Execution, shape: Shape, c: Classification, out: Any,
           err: BaseException | None) -> Any:
    """End a failed call: a fallback's answer, else ``out`` (the failure, noted if retried)."""
    fb = end_failure(ex, c, err)
    if fb is not None:
        return shape.answer(resolve_fallback(fb, err if err is not None else ResultFailure(
            shape.response(out), c, point=ex.point.name, operation=ex.operation)))
    return out
