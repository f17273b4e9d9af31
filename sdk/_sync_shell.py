# Generated from sdk/_async_shell.py by `python sdk/_unasync.py`: do not edit.
"""The sync shell: ``IntegrationPoint.run``, waiting in the calling thread.

Generated from ``_async_shell.py``, where the logic is written once for
both shells and each difference is marked: read and change that file,
then run ``python sdk/_unasync.py``. This shell waits with the
point's clock (backoff) and blocks the thread for a bulkhead permit; it
cannot interrupt an attempt, so it counts one that succeeds after its
deadline as an overrun (a success, a ``timeout`` and a slow call).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from ._breaker import CLOSED, REJECTED
from ._classify import Classification, ExceptionRule, ResultRule
from ._deadline import (
    DEADLINE,
)
from ._errors import DeadlineExceeded, RejectedError
from ._execution import (
    Execution,
    first_limit,
    first_refund,
    open_error,
)
from ._fallback import answer, finish_failure, finish_rejection

if TYPE_CHECKING:
    from ._point import IntegrationPoint

T = TypeVar("T")


def run(
    self: IntegrationPoint,
    attempt: Callable[[float | None], T],
    operation: str,
    deadline: float | None = None,
    classify_exception: ExceptionRule | None = None,
    classify_result: ResultRule | None = None,
    discard: Callable[[T], None] | None = None,
    enforce_timeout: bool = True,
    chaos_result: Callable[[Any], T] | None = None,
) -> T:
    """Run ``attempt(timeout)`` through the whole pipeline, with retries, and return its value.

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
            return answer(fb, error)  # type: ignore[no-any-return]
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
            attempt = chaos.wrap(self, attempt, ex, chaos_result)
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
                        self.clock.sleep(ex.wait)
                    except BaseException:  # cancelled while waiting
                        ex.withdraw()
                        ex.cancelled()
                        raise
                if permits is not None:
                    try:
                        got = permits.acquire(self._max_wait)
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
                    return finish_failure(self, ex, *last)  # type: ignore[no-any-return]
                return finish_rejection(self, ex, rejection)  # type: ignore[no-any-return]
            limit = ex.attempt_deadline
        token = None
        if limit is not None:
            token = DEADLINE.set((limit, now))
        try:
            if last is not None and last[1] is None and discard is not None:
                discard(last[2])
            result = attempt(timeout)
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
        finally:
            if permits is not None:
                permits.release()
            if token is not None:
                DEADLINE.reset(token)
        if failure is None:
            c = None
            if classify_result is not None or self._result_rules:
                c = self.classify_result(result, classify_result)
            if c is None:
                if limit is not None and enforce_timeout:
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
            return finish_failure(self, ex, *last)  # type: ignore[no-any-return]
        if delay > 0:
            try:
                self.clock.sleep(delay)
            except BaseException:
                ex.cancelled()
                raise
