"""The async shell: ``IntegrationPoint.arun``, waiting with asyncio or trio.

The shell is only the waiting around the decisions: it admits an attempt
(:meth:`Execution.begin`, then the wait it asks for: a server's pause or a
rate-limit token, then a bulkhead permit, waited for), runs it
under its deadline, reports the outcome (:meth:`Execution.failure` answers
with a delay or a stop), waits the delay, and ends the call through
:mod:`._fallback`. Counting is the ledger's (:mod:`._ledger`).

This file is written once for both shells: the sync shell
(``_sync_shell.py``, ``IntegrationPoint.run``) is generated from it by
``python sdk/_unasync.py`` (``make lint`` and a test check that it is
current), as httpcore generates its sync code. The generator drops
``await`` and ``async``, renames the ``a``-twins (``asleep`` -> ``sleep``,
``acquire_async`` -> ``acquire``...), removes each statement marked
``# async only`` (with its block), and replaces each line marked
``# sync: <code>`` by that code (a block only the sync shell runs opens
with ``if False:  # sync: if <condition>:``). What differs is therefore
visible here, line by line: the async shell cancels an attempt at its
deadline (one watchdog timer per event loop, or a trio cancel scope), and
turns that cancellation into :class:`DeadlineExceeded`; the sync shell
cannot stop an attempt, and counts one that returns late as an *overrun*.

Four returns carry ``type: ignore[no-any-return]``: they may return a
fallback's value, which is typed ``Any`` (a :class:`seawall.Fallback`
holds any value) where the caller expects the attempt's type.

The first attempt is the hot path: it is admitted inline (breaker state,
no server pause, a rate-limit token if one is free, then a free bulkhead
permit) and takes no :class:`Execution` unless it
fails or must wait; its success costs the ledger one lock-free step.
"""

from __future__ import annotations

import asyncio  # async only
import time  # async only
from collections.abc import Awaitable, Callable  # sync: from collections.abc import Callable
from functools import partial  # async only
from typing import TYPE_CHECKING, Any, TypeVar

from ._breaker import CLOSED, REJECTED
from ._classify import Classification, ExceptionRule, ResultRule
from ._clock import SKEWED, Bounded  # async only
from ._deadline import (
    DEADLINE,
    DONE,  # async only
    FIRED,  # async only
    TASK,  # async only
    watchdog,  # async only
)
from ._errors import DeadlineExceeded, RejectedError
from ._execution import (
    Execution,
    deadline_error,  # async only
    first_limit,
    first_refund,
    open_error,
)
from ._fallback import aanswer, afinish_failure, afinish_rejection

if TYPE_CHECKING:
    from ._point import IntegrationPoint

T = TypeVar("T")

_monotonic = time.monotonic  # async only


async def arun(
    self: IntegrationPoint,
    attempt: Callable[[float | None], Awaitable[T]],
    operation: str,
    deadline: float | None = None,
    classify_exception: ExceptionRule | None = None,
    classify_result: ResultRule | None = None,
    discard: Callable[[T], Awaitable[None] | None] | None = None,  # sync: discard: Callable[[T], None] | None = None,
    enforce_timeout: bool = True,
    chaos_result: Callable[[Any], T] | None = None,
) -> T:
    """Run ``await attempt(timeout)`` through the whole pipeline, with retries, and return its value.

    ``timeout`` is the seconds this attempt may take (``None``: no limit);
    hand it to the transport. ``deadline`` is an absolute time on the
    point's clock (the caller's own deadline), narrowed with the point's
    timeouts and any enclosing seawall deadline. ``classify_exception``
    and ``classify_result`` are the integration's rules, asked after the
    user's. ``discard(result)`` is called on a failed result once its
    retry is admitted (close an HTTP response, say). When retries run out
    on a failed result, that result is returned as it is; on an exception,
    the original is re-raised with a note. Refusals raise
    :class:`CircuitOpenError` / :class:`BulkheadFullError` (no time left:
    :class:`DeadlineExceeded`) unless the fallback takes them.

    Deadlines (``enforce_timeout``, on by default): an async attempt still
    running at its deadline is cancelled and fails with
    :class:`DeadlineExceeded` (pass ``False`` when the transport enforces
    the timeout itself); a sync attempt cannot be interrupted, so one that
    succeeds after its deadline is returned and counted as an overrun (see
    :class:`seawall.Timeout`). Cancelling the caller (asyncio or trio) is
    never counted as a failure. Arguments may be passed positionally.
    Safe from any number of threads and tasks at once.

    Fault injection (the point's :class:`seawall.Chaos`, off unless given)
    wraps ``attempt`` innermost, inside its deadline; ``chaos_result``
    turns an injected ``Chaos.result`` into what this attempt returns (an
    integration's own shape: an HTTP response for a status code, say).
    """
    now = self._now
    t0 = now()
    circuit = self.circuit
    ticket = REJECTED  # the breaker's ticket of the first attempt (none without a breaker)
    if circuit is not None:
        ticket = circuit.generation if circuit.state is CLOSED else circuit.admit(t0)
        if ticket == REJECTED:  # the outage's own path: counted at once, no Execution
            fb = self.fallback
            if fb is not None and not fb.on_rejection:
                fb = None
            self._ledger.refused_call(operation, fb is not None)
            error = open_error(self, operation, t0)
            if fb is None:
                raise error
            return await aanswer(fb, error)  # type: ignore[no-any-return]
    timeout = self._first_timeout
    if deadline is None and DEADLINE.get() is None:
        # the common cases, no call: nothing to hand down, or the policy's own timeout
        limit = None if timeout is None else t0 + timeout
    else:
        limit, timeout = first_limit(self, t0, deadline)
    permits = self.permits
    chaos = self.chaos
    # the call's Execution: made only once the first attempt fails or cannot start at once
    ex: Execution | None = None
    admitted = chaos is None and (timeout is None or timeout > 0.0)
    if admitted and self._gate is not None:  # a server's pause, or no free token: the loop
        pacing = self.pacing
        bucket = self.bucket
        admitted = (pacing is None or pacing.until <= t0) and \
            (bucket is None or bucket.try_take(t0))
    if admitted and permits is not None and not permits.try_acquire():
        admitted = False
        first_refund(self)
    if not admitted:
        if circuit is not None:
            circuit.release(ticket)  # the loop admits it again, and waits or refuses
        ex = Execution(self, operation, deadline, t0)
        if chaos is not None:  # the innermost step: inside the attempt's deadline
            attempt = chaos.awrap(self, attempt, ex, chaos_result)  # sync: attempt = chaos.wrap(self, attempt, ex, chaos_result)
    # the last failure: its classification, and its exception or its failed result
    last: tuple[Classification, Exception | None, Any] | None = None
    failure: Exception | None
    c: Classification | None
    while True:
        if ex is not None:  # every attempt but a first one admitted at once
            try:
                timeout = ex.begin(True)
                if ex.wait > 0.0:  # a server's pause, a rate-limit token: wait, holding nothing
                    try:
                        await self.clock.asleep(ex.wait)
                    except BaseException:  # cancelled while waiting
                        ex.withdraw()
                        ex.cancelled()
                        raise
                if permits is not None:
                    try:
                        got = await permits.acquire_async(self._max_wait)
                    except BaseException:  # cancelled while waiting
                        ex.withdraw()
                        ex.cancelled()
                        raise
                    if not got:
                        raise ex.bulkhead_rejected()
                    if self._max_wait > 0.0:  # it may have queued: its latency counts from now
                        ex.attempt_start = now()
            except (RejectedError, DeadlineExceeded) as rejection:  # refused, or no time left
                if last is not None:
                    ex.stop_reason = f"retry refused: {rejection}"
                    return await afinish_failure(self, ex, *last)  # type: ignore[no-any-return]
                return await afinish_rejection(self, ex, rejection)  # type: ignore[no-any-return]
            limit = ex.attempt_deadline
        token = None
        watch = None  # async only
        if limit is not None:
            token = DEADLINE.set((limit, now))
            if enforce_timeout:  # async only
                try:
                    loop = asyncio.get_running_loop()
                except RuntimeError:  # not asyncio (trio): a cancel scope bounds each attempt
                    if type(attempt) is not Bounded:
                        attempt = Bounded(attempt, partial(deadline_error, self, operation))
                else:
                    task = asyncio.current_task(loop)
                    if task is not None:
                        dog = watchdog(loop)
                        # system clock times are loop times, unless a testing view skewed them
                        direct = dog.same_clock and now is _monotonic and not SKEWED[0]
                        watch = dog.watch(task, limit if direct
                                          else loop.time() + (limit - now()))
        try:
            if last is not None and last[1] is None and discard is not None:
                closing = discard(last[2])  # sync: discard(last[2])
                if closing is not None:  # async only
                    await closing
            result = await attempt(timeout)
        except asyncio.CancelledError:  # async only
            if watch is None or not (watch[FIRED] and _uncancel(watch[TASK])):
                if ex is None:
                    self._ledger.cancelled(operation, t0, ticket)
                else:
                    ex.cancelled()
                raise
            failure = deadline_error(self, operation, timeout)  # our watchdog cancelled it
        except Exception as exc:
            failure = exc
        except BaseException:  # cancelled: never a failure
            if ex is None:
                self._ledger.cancelled(operation, t0, ticket)
            else:
                ex.cancelled()
            raise
        else:
            failure = None
            if watch is not None and watch[FIRED]:  # async only
                _uncancel(watch[TASK])  # finished before the cancellation landed
        finally:
            if watch is not None:  # async only
                watch[DONE] = True
            if permits is not None:
                permits.release()
            if token is not None:
                DEADLINE.reset(token)
        if failure is None:
            c = None
            if classify_result is not None or self._result_rules:
                c = self.classify_result(result, classify_result)
            if c is None:
                if False:  # sync: if limit is not None and enforce_timeout:
                    # a sync attempt cannot be stopped: one that returned late is an overrun
                    t1 = now()
                    if t1 > limit:  # the value stands (it cannot be taken back), the lateness counts
                        if ex is None:
                            self._ledger.overran(operation, t0, t0, 1, t1, ticket)
                        else:
                            ex.overran(t1)
                        return result
                if ex is None:
                    self._ledger.succeeded(operation, t0, ticket)
                else:
                    ex.success()
                return result
        else:
            c = self.classify_exception(failure, classify_exception)
        if ex is None:
            ex = Execution(self, operation, deadline, t0)
            ex._adopt_first(t0, ticket)
        last = (c, failure, None if failure is not None else result)
        delay = ex.failure(c)
        if delay is None:
            return await afinish_failure(self, ex, *last)  # type: ignore[no-any-return]
        if delay > 0:
            try:
                await self.clock.asleep(delay)
            except BaseException:
                ex.cancelled()
                raise


def _uncancel(task: asyncio.Task[Any]) -> bool:  # async only
    """Undo our own cancellation; true when no other cancellation is pending."""
    uncancel = getattr(task, "uncancel", None)
    if uncancel is None:  # Python 3.10 keeps no count
        return True
    return bool(uncancel() == 0)
