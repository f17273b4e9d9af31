"""Hedging: more attempts in parallel when the first is slow; the first good answer wins.

:func:`ahedged` is the async shell of a point with a :class:`seawall.Hedge`,
for decorated ``async def`` functions and :meth:`IntegrationPoint.acall`
(asyncio: attempts are tasks; trio: tasks of a nursery, each in its own
cancel scope, :mod:`._hedge_trio`). The decisions stay
:class:`~._execution.Execution`'s and the ledger's; this module starts,
watches and cancels the attempts:

1. The first attempt is admitted like any (``Execution.begin(wait=True)``:
   deadline, breaker, server pacing, rate limit, then a bulkhead permit,
   waited for) and runs as a task.
2. When no attempt has answered ``delay`` seconds after the last one
   started, or at once when one fails with a non-fatal classification, a
   hedge is started if one is left (``max_extra``), no server delay hint
   was seen, the retry budget grants one, and the breaker, the pacing, the
   rate limit and the bulkhead admit it *without waiting* (a hedge that
   must wait would come too late to help).
3. The first success wins: the other attempts are cancelled (their
   breaker tickets given back, their failed results discarded), and the
   call ends with that success. A fatal failure cancels the others and
   ends the call; when every attempt has failed, the last failure ends it.

Each attempt's deadline is the smaller of ``Timeout.attempt`` and what is
left of the call's deadline; the caller's cancellation cancels every
attempt and is never counted as a failure.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from ._breaker import REJECTED
from ._classify import Classification, ExceptionRule, ResultRule
from ._clock import async_library
from ._deadline import DEADLINE
from ._errors import ConfigurationError, DeadlineExceeded, RejectedError
from ._execution import Execution, deadline_error
from ._fallback import afinish_failure, afinish_rejection
from ._pacing import note_outcome

if TYPE_CHECKING:
    from ._point import IntegrationPoint

T = TypeVar("T")


def sync_refusal(point: IntegrationPoint, what: str) -> ConfigurationError:
    """The error of a sync use of a hedged point (hedging needs tasks, not a thread per call)."""
    return ConfigurationError(
        f"{point.name}: Hedge needs async work ({what} is sync); decorate an async def or use "
        "point.acall, or build the point without hedge= for sync callers",
        point=point.name,
    )


class _Try:
    """One running attempt: its number, breaker ticket, start and deadline.

    ``injected`` (and ``operation``): what fault injection marks, as it marks
    an :class:`Execution` for an unhedged attempt (see :mod:`._chaos`).
    """

    __slots__ = ("injected", "limit", "number", "operation", "start", "ticket")

    def __init__(self, number: int, ticket: int, start: float, limit: float | None,
                 operation: str = "") -> None:
        self.number = number
        self.ticket = ticket
        self.start = start
        self.limit = limit
        self.operation = operation
        self.injected = False


async def _attempt(point: IntegrationPoint, attempt: Callable[[float | None], Awaitable[T]],
                   operation: str, timeout: float | None, limit: float | None) -> T:
    """Run one attempt under its deadline, holding a permit taken by the caller."""
    if limit is not None:
        DEADLINE.set((limit, point._now))  # this task's own context
    try:
        if timeout is None:
            return await attempt(None)
        try:
            return await asyncio.wait_for(attempt(timeout), timeout)
        except asyncio.TimeoutError:
            raise deadline_error(point, operation, timeout) from None
    finally:
        if point.permits is not None:
            point.permits.release()


class _Hedging:
    """The state of one hedged call (not shared)."""

    def __init__(self, point: IntegrationPoint, attempt: Callable[[float | None], Awaitable[Any]],
                 operation: str, ex: Execution, classify_exception: ExceptionRule | None,
                 classify_result: ResultRule | None,
                 chaos_result: Callable[[Any], Any] | None = None,
                 chaos_fault: Callable[[Exception], Any] | None = None) -> None:
        self.chaos_result = chaos_result
        self.chaos_fault = chaos_fault
        self.classify_exception = classify_exception
        self.classify_result = classify_result
        assert point.hedge is not None
        self.point = point
        self.hedge = point.hedge
        self.attempt = attempt
        self.operation = operation
        self.ex = ex
        self.tries: dict[Any, _Try] = {}  # its tasks (or a host's futures: _hedge_futures)
        self.sent = 0
        self.open = True  # more hedges may start
        self.next_at = 0.0
        self.last: tuple[Classification, Exception | None, Any] | None = None

    def new_try(self) -> _Try:
        """The record of the attempt ``ex`` just admitted; the next hedge is due ``delay`` on."""
        ex = self.ex
        self.next_at = self.point._now() + self.hedge.delay
        return _Try(ex.attempts, ex._ticket, ex.attempt_start, ex.attempt_deadline, self.operation)

    def work(self, tr: _Try) -> Callable[[float | None], Awaitable[Any]]:
        """The callable of attempt ``tr``: the point's fault injection innermost, hedges included."""
        chaos = self.point.chaos
        if chaos is None:
            return self.attempt
        return chaos.awrap(self.point, self.attempt, tr, self.chaos_result, self.chaos_fault)

    def launch(self, timeout: float | None) -> None:
        tr = self.new_try()
        task = asyncio.ensure_future(_attempt(self.point, self.work(tr), self.operation, timeout,
                                              tr.limit))
        self.tries[task] = tr

    def hedge_now(self) -> None:
        """Start a hedge if every rule allows it now; close hedging when none may follow."""
        point, ex = self.point, self.ex
        if not self.open or self.sent >= self.hedge.max_extra:
            self.open = False
            return
        ledger = point._ledger
        if not ledger.budget.withdraw(point._now()):
            ledger.rejected(self.operation, "budget")
            self.open = False
            return
        try:
            timeout = ex.begin()  # no waiting: a hedge that must wait is not sent
        except (RejectedError, DeadlineExceeded):  # counted by begin
            self.open = False
            return
        permits = point.permits
        if permits is not None and not permits.try_acquire():
            ex.bulkhead_rejected()  # counted; its ticket and token given back
            self.open = False
            return
        self.sent += 1
        ledger.hedged(self.operation, ex.attempts)
        self.launch(timeout)
        if self.sent >= self.hedge.max_extra:
            self.open = False

    async def watch(self, discard: Callable[[Any], Awaitable[None] | None] | None,
                    ) -> tuple[bool, Any]:
        """Wait for the attempts, hedging as the rules say: ``(True, answer)`` or ``(False, None)``.

        ``(False, None)``: the call failed; :attr:`last` holds its last failure.
        """
        point = self.point
        while self.tries:
            wait = max(0.0, self.next_at - point._now()) if self.open else None
            done, _ = await asyncio.wait(self.tries, timeout=wait,
                                         return_when=asyncio.FIRST_COMPLETED)
            if not done:
                self.hedge_now()  # the delay passed without an answer
                continue
            # successes first: one that failed at the same moment loses to them
            for task in sorted(done, key=lambda t: t.exception() is not None):
                tr = self.tries.pop(task)
                exc = task.exception()
                ended = await self.settle(tr, exc, task.result() if exc is None else None,
                                          discard)
                if ended is not None:
                    return ended
        return False, None

    async def settle(self, tr: _Try, exc: BaseException | None, result: Any,
                     discard: Callable[[Any], Awaitable[None] | None] | None,
                     ) -> tuple[bool, Any] | None:
        """Judge one ended attempt: the call's end (as :meth:`watch` returns), or ``None``."""
        point = self.point
        failure: Exception | None = None
        if exc is None:
            c = None
            if self.classify_result is not None or point._result_rules:
                c = point.classify_result(result, self.classify_result)
        elif isinstance(exc, Exception):
            failure = exc
            c = point.classify_exception(exc, self.classify_exception)
        else:  # a BaseException from the work: not ours to swallow
            raise exc
        ends = self.record(tr, c)
        if c is None:
            await self.cancel_all(discard)
            return True, result
        last = self.last
        if last is not None and last[1] is None and discard is not None:
            closing = discard(last[2])  # a failed result replaced by a later one
            if closing is not None:
                await closing
        self.last = (c, failure, result if failure is None else None)
        if ends:
            await self.cancel_all(discard)
            return False, None
        self.hedge_now()  # a non-fatal failure: the next hedge at once
        return None

    def record(self, tr: _Try, c: Classification | None) -> bool:
        """Count ended attempt ``tr`` (``c``: its failure, ``None``: a success), every driver's way.

        True when it ends the call: a success, or a failure that is not
        :meth:`non_fatal` (then ``ex.stop_reason`` says so). The caller
        cancels the others, or starts the next hedge (:meth:`hedge_now`).
        """
        point, ex, operation = self.point, self.ex, self.operation
        ledger = point._ledger
        # the attempt told of now (injected: counted apart, as unhedged)
        ex.attempt_start, ex._ticket, ex.injected = tr.start, tr.ticket, tr.injected
        if c is None:
            ex.success()
            if tr.number > 1:
                ledger.hedged(operation, tr.number, won=True)
            return True
        now = point._now()
        ledger.attempt_failed(operation, tr.number, now - tr.start, now, c, tr.ticket,
                              tr.injected)
        ex._ticket = REJECTED
        if note_outcome(point.pacing, point.retry, now, c, tr.number):
            self.open = False  # the server asked to slow down: no more hedges
        if self.non_fatal(c):
            return False
        ex.stop_reason = f"a {c.category.value} failure ends hedging"
        return True

    def abandoned(self) -> None:
        """End the call as cancelled by its caller (its attempts gone): no failure counted."""
        self.ex._ticket = REJECTED
        self.ex.cancelled()

    def non_fatal(self, c: Classification) -> bool:
        on = self.hedge.on
        return c.retry if on is None else c.category in on

    async def cancel_all(self, discard: Callable[[Any], Awaitable[None] | None] | None) -> None:
        """Cancel every running attempt and wait for them; give back their breaker tickets."""
        tries, self.tries = self.tries, {}
        for task in tries:
            task.cancel()
        if tries:
            await asyncio.wait(tries)
        circuit = self.point.circuit
        for task, tr in tries.items():
            if circuit is not None:
                circuit.release(tr.ticket)
            if discard is not None and not task.cancelled() and task.exception() is None:
                closing = discard(task.result())  # it finished as it was cancelled: drop it
                if closing is not None:
                    await closing


async def ahedged(
    point: IntegrationPoint,
    attempt: Callable[[float | None], Awaitable[T]],
    operation: str,
    deadline: float | None = None,
    classify_exception: ExceptionRule | None = None,
    classify_result: ResultRule | None = None,
    discard: Callable[[T], Awaitable[None] | None] | None = None,
    chaos_result: Callable[[Any], T] | None = None,
    chaos_fault: Callable[[Exception], T] | None = None,
) -> T:
    """Run ``await attempt(timeout)`` with ``point``'s :class:`seawall.Hedge` (see the module doc).

    ``IntegrationPoint.ahedged``: the arguments mean what they mean for
    ``arun``. When every attempt failed, a failed result is returned as it
    is and an exception re-raised; refusals raise their error (or the
    fallback answers). Each call of ``attempt`` is one attempt, in the order
    they start (number them to tell the dependency: ``seawall-attempt``).

    Fault injection (the point's :class:`seawall.Chaos`) wraps every
    attempt, hedges included, innermost, as in ``arun``: ``chaos_result``
    shapes an injected result, ``chaos_fault`` (optional) turns an injected
    fault into a returned value instead of raising it.
    """
    trio = async_library() == "trio"
    ex = Execution(point, operation, deadline)
    permits = point.permits
    try:
        timeout = ex.begin(True)
        if ex.wait > 0.0:
            try:
                await point.clock.asleep(ex.wait)
            except BaseException:
                ex.withdraw()
                ex.cancelled()
                raise
        if permits is not None:
            try:
                got = await permits.acquire_async(point._max_wait)
            except BaseException:
                ex.withdraw()
                ex.cancelled()
                raise
            if not got:
                raise ex.bulkhead_rejected()
    except (RejectedError, DeadlineExceeded) as rejection:
        return await afinish_rejection(point, ex, rejection)  # type: ignore[no-any-return]
    ex.attempt_start = point._now()
    if trio:  # a nursery and a cancel scope per attempt (imported only under trio)
        from ._hedge_trio import hedge_trio

        run, won, result = await hedge_trio(point, attempt, operation, ex, timeout,
                                            classify_exception, classify_result,
                                            chaos_result, chaos_fault, discard)
    else:
        run = _Hedging(point, attempt, operation, ex, classify_exception, classify_result,
                       chaos_result, chaos_fault)
        run.launch(timeout)
        try:
            won, result = await run.watch(discard)
        except BaseException:  # cancelled: every attempt goes, nothing counts as a failure
            if run.tries:
                await asyncio.shield(run.cancel_all(None))
            run.abandoned()
            raise
    if won:
        return result  # type: ignore[no-any-return]
    assert run.last is not None
    return await afinish_failure(point, ex, *run.last)  # type: ignore[no-any-return]
