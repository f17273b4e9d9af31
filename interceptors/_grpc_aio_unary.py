"""grpc.aio unary responses (unary-unary, stream-unary): the retry loop and the single attempt.

Both aio mountings run these coroutines: the interceptors inside grpc.aio's
interceptor task, the channel wrapper inside the caller's own ``await``
(or a task of its own when nobody awaits). An attempt is ``await
send(args, request, timeout, attempt)``, which returns the started call
(``args``: the mounting's per-call data, as in ``_grpc_sync_unary.Send``). The
loop returns the call-like object that answers the caller: the last
attempt's call, or a :class:`DoneCall` (a fallback's value, the server's
real status, a refusal, a final failure carrying a note of the attempts).
Cancelling the waiting task cancels the attempt in flight on the wire too.

Sync and aio: the twin of ``_grpc_sync_unary`` (blocking calls) and
``_grpc_sync_future``, written apart for the shapes gRPC gives each; the
shared rules are in ``_grpc_commit``, ``_grpc_replay`` and ``_grpc_status``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from seawall import Classification, DeadlineExceeded, Execution, RejectedError, ResultFailure

from ._grpc_aio_status import (
    DoneCall,
    Status,
    Watch,
    classify,
    once,
    read_status,
    settle,
    status_now,
    value_of,
)
from ._grpc_commit import end_failure, refuse, resolve_fallback
from ._grpc_replay import close_draw, replay_view
from ._grpc_routes import Rule

_OK = grpc.StatusCode.OK

AioSend = Callable[[Any, Any, "float | None", int], Awaitable[Any]]
"""``await send(args, request, timeout, attempt)``: start one attempt, returning its call."""


async def admit(rule: Rule, ex: Execution) -> float | None:
    """Begin an attempt and take a bulkhead permit; raises the seawall refusal."""
    timeout = ex.begin(True)
    if ex.wait > 0.0:  # a server's pause or a rate-limit token (sans-IO: waited here)
        try:
            await rule.point.clock.asleep(ex.wait)
        except asyncio.CancelledError:
            ex.withdraw()
            ex.cancelled()
            raise
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


async def unary(rule: Rule, ex: Execution, send: AioSend, args: Any, request: Any,
                buffer: Any, wrap: bool, first: Any = None) -> Any:
    """The retry loop of a unary-response call; returns what answers the caller.

    ``wrap``: a fallback's value comes back as a :class:`DoneCall` (else as
    the value, which grpc.aio wraps itself). ``first`` is an attempt already
    admitted and started by the caller, whose permit its own done callback
    returns (the channel wrapper's first attempt).
    """
    permits = rule.permits
    last: tuple[Classification, Any] | None = None
    call = first
    while True:
        owned = call is None
        timeout = None
        if owned:
            try:
                timeout = await admit(rule, ex)
            except (RejectedError, DeadlineExceeded) as refusal:
                if last is not None:
                    ex.stop_reason = f"retry refused: {refusal}"
                    return await _failed(ex, *last, wrap=wrap)
                return await refused(ex, refusal, wrap)
        status: Status | None = None
        replaced = False
        try:
            if owned:
                call = await send(args, request, timeout, ex.attempts)
            if buffer is None:
                code = await call.code()
            else:
                status, replaced = await Watch(call).status()
                code = status.code
        except asyncio.CancelledError:
            if call is not None:
                call.cancel()  # else the RPC keeps running on the server
            close_draw(buffer)
            ex.cancelled()
            raise
        except Exception as exc:  # sending raised (an inner interceptor, a bad request): final
            send_raised(rule, ex, exc)
            raise
        finally:
            if owned and permits is not None:
                permits.release()
        if status is not None and replaced:  # the caller must see the server's status
            call = DoneCall(await call if code is _OK else None, status)
        if code is _OK:
            point = rule.point
            if rule.result_rules:
                response = await call
                rc = point.classify_result(response)
                if rc is not None:
                    failure = ResultFailure(response, rc, point=point.name, operation=ex.operation)
                    delay = ex.failure(rc)
                    if delay is None:
                        fb = end_failure(ex, rc, None)
                        if fb is not None:
                            value = await value_of(resolve_fallback(fb, failure))
                            return DoneCall(value) if wrap else value
                        return call
                    last = (rc, (call, None))
                    await _pause(rule, ex, delay)
                    call = None
                    continue
            ex.success()
            return call
        c, err = classify(rule, status if status is not None else await read_status(call))
        c, view = replay_view(rule, ex, c, buffer)
        if view is not None:
            request = view
        delay = ex.failure(c)
        if delay is None:
            return await _failed(ex, c, (call, err), wrap=wrap)
        last = (c, (call, err))
        await _pause(rule, ex, delay)
        call = None


def send_raised(rule: Rule, ex: Execution, exc: Exception) -> None:
    """Account for an attempt whose sending raised ``exc`` (a bad request, a closed channel,
    an inner interceptor): a final failure, never retried; the caller re-raises ``exc``."""
    c = rule.point.classify_exception(exc).with_retry(False)
    ex.failure(c)
    end_failure(ex, c, exc)


async def refused(ex: Execution, refusal: RejectedError | DeadlineExceeded, wrap: bool) -> Any:
    """End a call refused before its first attempt: a fallback's answer, else the refusal
    (a :class:`DoneCall` whose await raises the gRPC twin of ``refusal``)."""
    fb, err = refuse(ex, refusal, aio=True)
    if fb is None:
        return DoneCall.failing(err)
    value = await value_of(resolve_fallback(fb, refusal))
    return DoneCall(value) if wrap else value


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
        value = await value_of(resolve_fallback(fb, error))
        return DoneCall(value) if wrap else value
    if err is not None and (ex.attempts > 1 or ex.stop_reason):
        return DoneCall.failing(err)  # the final status, carrying the note of the attempts
    return call


async def single(rule: Rule, ex: Execution, send: AioSend, args: Any, request: Any) -> Any:
    """One attempt, accounted when it ends; returns its call at once (``call.write()``-style
    request streams cannot be replayed, and the caller writes to the attempt itself)."""
    try:
        timeout = await admit(rule, ex)
    except (RejectedError, DeadlineExceeded) as refusal:
        return await refused(ex, refusal, True)
    permits = rule.permits
    try:
        call = await send(args, request, timeout, 1)
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
        first = status_now(finished)  # before a failed write can overwrite it (see settle)
        task = asyncio.get_running_loop().create_task(_account(rule, ex, finished, first))
        _PENDING.add(task)
        task.add_done_callback(_PENDING.discard)

    call.add_done_callback(once(done))
    return call


_PENDING: set[asyncio.Task[None]] = set()


async def _account(rule: Rule, ex: Execution, call: Any, first: Status | None) -> None:
    status = settle(await read_status(call), first)
    if status.code is _OK:
        ex.success()
        return
    c, _err = classify(rule, status)
    ex.failure(c.with_retry(False))
    end_failure(ex, c, None)
