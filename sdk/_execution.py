"""The decisions of one call: may the next attempt run, and what a failure leads to.

Sans-IO: nothing here waits, sleeps, imports asyncio or does I/O. An
:class:`Execution` is told what happened (an attempt failed as ``c``, it
succeeded, the caller cancelled) and reads the time from the point's
clock; it answers with values: an attempt's timeout, a delay before the
next attempt or ``None`` to stop, the error of a refusal. Recording goes
to the point's ledger (:mod:`._ledger`). The two shells (:mod:`._async_shell`
and the generated :mod:`._sync_shell`) do the waiting around it; the gRPC
interceptors drive it themselves (``point.execution()``).

The admission of an attempt, in pipeline order (``begin``): the total
deadline, the circuit breaker, then server pacing (a pause a server asked
for, :mod:`._pacing`) and the rate limit (a token, :mod:`._rate_limit`),
then the bulkhead, whose permit the shell takes (it may have to wait for
one) and reports a refusal of with :meth:`Execution.bulkhead_rejected`.
A pause or a token may make the attempt wait: ``begin(wait=True)`` sets
:attr:`Execution.wait` (seconds) and the shell waits that long through the
point's clock before taking the permit; an integration that cannot wait
calls ``begin()``, and an attempt that would have to wait is refused.
"""

from __future__ import annotations

import sys
from contextvars import ContextVar
from typing import TYPE_CHECKING

from ._breaker import CLOSED, REJECTED, BreakerState
from ._classify import Classification
from ._deadline import DEADLINE
from ._errors import (
    BulkheadFullError,
    CircuitOpenError,
    DeadlineExceeded,
    RateLimitedError,
    RejectedError,
)
from ._pacing import note_outcome

if TYPE_CHECKING:
    from ._point import IntegrationPoint

ATTEMPT_CAP: ContextVar[int | None] = ContextVar("seawall_attempt_cap", default=None)
"""``seawall.testing.attempts(n)``: at most ``n`` attempts per call in this context (``None``: the policy's)."""


def first_limit(point: IntegrationPoint, t0: float,
                deadline: float | None) -> tuple[float | None, float | None]:
    """The first attempt's (absolute deadline, timeout): attempt, total, caller's, enclosing.

    The shells' first attempt, which takes no :class:`Execution` unless it
    fails, asks this only when a deadline is handed in or a seawall scope
    encloses the call; otherwise its limit is ``t0 + point``'s first timeout.
    """
    timeout = point._first_timeout
    limit = None if timeout is None else t0 + timeout
    if deadline is not None and (limit is None or deadline < limit):
        limit, timeout = deadline, deadline - t0
    outer = DEADLINE.get()
    if outer is not None and outer[1] is point._now and (limit is None or outer[0] < limit):
        limit, timeout = outer[0], outer[0] - t0
    return limit, timeout


_outer = DEADLINE.get  # an enclosing seawall deadline (bound once: -0.1k instructions a read)


def first_refund(point: IntegrationPoint) -> None:
    """Give back the token the shells' inline first attempt took (its bulkhead was full)."""
    if point.bucket is not None:
        point.bucket.refund()


def open_error(point: IntegrationPoint, operation: str, now: float) -> CircuitOpenError:
    """The error of a call the breaker refused at ``now``, saying until when."""
    circuit = point.circuit
    assert circuit is not None
    retry_at = circuit.retry_at()
    after = None if retry_at is None else max(0.0, retry_at - now)
    if after is not None:
        when = f"for another {after:.3f} s"
    elif circuit.state is BreakerState.HALF_OPEN:
        when = "while its trial calls are in flight"
    else:
        when = "until reset"
    return CircuitOpenError(
        f"{point.name}: circuit {circuit.state.value}, {operation} refused {when}",
        point=point.name, operation=operation, retry_after=after, retry_at=retry_at,
    )


def deadline_error(point: IntegrationPoint, operation: str,
                   timeout: float | None) -> DeadlineExceeded:
    """The error of an attempt cut short at its deadline (``timeout`` seconds)."""
    return DeadlineExceeded(
        f"{point.name}: {operation} did not finish within its {timeout:.3f} s deadline"
        if timeout is not None else f"{point.name}: {operation} ran out of time",
        point=point.name, operation=operation, timeout=timeout,
    )


class Execution:
    """Bookkeeping of one logical call through a point: admission, outcomes, retry decisions.

    Sans-IO: it reads the point's clock but never waits. A shell (or an
    integration) calls :meth:`begin` before each attempt, then exactly one
    of :meth:`success`, :meth:`failure` (which answers whether and after
    how long to retry) or :meth:`cancelled`; and ends a failed call with
    :meth:`end_failure` or :meth:`end_rejected`. ``deadline`` is an
    absolute time on the point's clock, narrowed with the point's total
    timeout and any enclosing seawall deadline. Not shared between threads.

    Attributes: ``attempts`` (begun so far), ``attempt_start`` and
    ``attempt_deadline`` (of the current attempt; ``None``: unbounded),
    ``wait`` (seconds the current attempt waits before it starts: a server's
    pause, a rate-limit token),
    ``start`` and ``deadline`` (of the call), ``stop_reason`` (why retries
    stopped early, ``""`` otherwise), ``injected`` (true when fault injection,
    :class:`seawall.Chaos`, shaped the current attempt: its outcome is then
    counted apart from real ones; an integration that injects sets it).
    """

    __slots__ = (
        "_ticket", "_token", "attempt_deadline", "attempt_start", "attempts", "deadline",
        "injected", "last_delay", "operation", "point", "start", "stop_reason", "wait",
    )

    def __init__(self, point: IntegrationPoint, operation: str, deadline: float | None = None,
                 start: float | None = None) -> None:
        self.point = point
        self.operation = operation
        now = point._now() if start is None else start
        self.start = now
        total = point._total_timeout
        limit = now + total if total is not None else None
        if deadline is not None:
            limit = deadline if limit is None else min(limit, deadline)
        outer = DEADLINE.get()
        if outer is not None and outer[1] is point._now:
            limit = outer[0] if limit is None else min(limit, outer[0])
        self.deadline = limit
        self.attempts = 0
        self.attempt_start = now
        self.attempt_deadline: float | None = None
        self.last_delay = 0.0
        self.stop_reason = ""
        self.injected = False
        self._ticket = REJECTED  # the breaker's ticket of the current attempt
        self._token = False  # the current attempt holds a rate-limit token not yet used
        self.wait = 0.0

    def _adopt_first(self, start: float, ticket: int) -> None:
        """Take over a first attempt that a shell began without an Execution."""
        self.attempts = 1
        self.attempt_start = start
        self._ticket = ticket

    def remaining(self) -> float | None:
        """Seconds left of the total budget, ``None`` when unbounded."""
        if self.deadline is None:
            return None
        return max(0.0, self.deadline - self.point._now())

    def begin(self, wait: bool = False) -> float | None:
        """Admit the next attempt; returns its timeout in seconds (``None``: unbounded).

        Raises :class:`DeadlineExceeded` when the total deadline has passed,
        :class:`CircuitOpenError` when the breaker refuses and
        :class:`RateLimitedError` when a server's pause or the rate limit
        would hold the attempt past its deadline or ``RateLimit.max_wait``
        (or at all, without ``wait``). With ``wait``, :attr:`wait` is the
        seconds to wait before the attempt starts; its timeout counts from
        then. Takes no bulkhead permit: the shell does, and reports a
        refusal with :meth:`bulkhead_rejected`.
        """
        point = self.point
        now = point._now()
        if self.deadline is not None and now >= self.deadline:
            point._ledger.rejected(self.operation, "deadline")
            raise DeadlineExceeded(
                f"{point.name}: no time left for {self.operation}",
                point=point.name, operation=self.operation,
                timeout=self.deadline - self.start,
            )
        circuit = point.circuit
        if circuit is not None:
            ticket = circuit.generation if circuit.state is CLOSED else circuit.admit(now)
            if ticket == REJECTED:
                point._ledger.rejected(self.operation, "breaker")
                raise open_error(point, self.operation, now)
            self._ticket = ticket
        self.wait = 0.0
        self._token = False
        if point.pacing is not None or point.bucket is not None:
            self.wait = self._pace(now, wait)
            now += self.wait
        self.attempts += 1
        self.attempt_start = now
        timeout = point._attempt_timeout
        if self.deadline is not None:
            left = self.deadline - now
            timeout = left if timeout is None or left < timeout else timeout
        self.attempt_deadline = None if timeout is None else now + timeout
        return timeout

    def _pace(self, now: float, can_wait: bool) -> float:
        """Server pacing, then the rate limit: the wait before the attempt, or a refusal."""
        point = self.point
        pacing, bucket = point.pacing, point.bucket
        paused = pacing.remaining(now) if pacing is not None else 0.0
        if paused > 0.0 and not can_wait:
            raise self._refuse(now, paused, True, "paused by the server")
        token = 0.0
        if bucket is not None:
            got = bucket.reserve(now + paused, bucket.max_wait if can_wait else 0.0)
            if got is None:
                after = paused + bucket.wait_for(now + paused)
                raise self._refuse(now, after, False, "rate limit reached")
            token = got
            self._token = True
        total = paused + token
        if total > 0.0 and self.deadline is not None and now + total >= self.deadline:
            if bucket is not None:
                bucket.refund()
                self._token = False
            raise self._refuse(now, total, paused >= token,
                               f"the wait of {total:.3f} s would pass the deadline")
        if total > 0.0:
            point._ledger.waited(self.operation, paused, token)
        return total

    def _refuse(self, now: float, after: float, paused: bool, why: str) -> RateLimitedError:
        """Undo the breaker's admission, count the refusal, return its error."""
        point = self.point
        if point.circuit is not None:
            point.circuit.release(self._ticket)
        self._ticket = REJECTED
        error = RateLimitedError(
            f"{point.name}: {self.operation} refused, {why} (next start in {after:.3f} s)",
            point=point.name, operation=self.operation, retry_after=after, paused=paused,
        )
        point._ledger.rejected(self.operation, error.reason)
        return error

    def withdraw(self) -> None:
        """The admitted attempt will not start (cancelled while waiting): give its token back."""
        if self._token:
            self._token = False
            bucket = self.point.bucket
            if bucket is not None:
                bucket.refund()

    def bulkhead_rejected(self) -> BulkheadFullError:
        """The admitted attempt found no bulkhead permit: undo admission, count, return the error."""
        point = self.point
        if point.circuit is not None:
            point.circuit.release(self._ticket)
        self.withdraw()
        self.attempts -= 1
        point._ledger.rejected(self.operation, "bulkhead")
        limit = point.permits.max_concurrent if point.permits is not None else 0
        return BulkheadFullError(
            f"{point.name}: bulkhead full ({limit} in flight), {self.operation} refused",
            point=point.name, operation=self.operation, max_concurrent=limit,
        )

    def success(self) -> None:
        """The current attempt succeeded; the call ends with success."""
        ledger = self.point._ledger
        if self.attempts == 1 and not self.injected:  # the common case: the lock-free path
            ledger.succeeded(self.operation, self.attempt_start, self._ticket)
        else:
            ledger.succeeded_after(self.operation, self.start, self.attempt_start,
                                   self.attempts, self._ticket, self.injected)

    def overran(self, now: float) -> None:
        """The current attempt succeeded at ``now``, after its deadline (a sync shell's overrun).

        The call ends with success; the attempt counts as a ``timeout`` and a
        slow call (see :class:`seawall.Timeout`).
        """
        self.point._ledger.overran(self.operation, self.start, self.attempt_start,
                                   self.attempts, now, self._ticket, self.injected)

    def failure(self, c: Classification) -> float | None:
        """The current attempt failed as ``c``: the delay before the next attempt, or ``None`` to stop."""
        point = self.point
        ledger = point._ledger
        now = point._now()
        ledger.attempt_failed(self.operation, self.attempts, now - self.attempt_start, now, c,
                              self._ticket, self.injected)
        self._ticket = REJECTED  # recorded: a later cancel has no trial permit to give back
        if point.pacing is not None:  # every caller of the point holds off, not only this one
            note_outcome(point.pacing, point.retry, now, c, self.attempts)
        retry = point.retry
        if retry is None or not c.retry:
            return None
        cap = ATTEMPT_CAP.get()
        if self.attempts >= retry.attempts or (cap is not None and self.attempts >= cap):
            self.stop_reason = "attempts exhausted"
            return None
        if c.delay is not None:
            delay = min(c.delay, retry.max_server_delay)
        else:
            delay = retry.backoff.delay(self.attempts, self.last_delay, point._rand)
        if self.deadline is not None and now + delay >= self.deadline:
            self.stop_reason = f"next wait of {delay:.3f} s would pass the deadline"
            ledger.rejected(self.operation, "deadline")
            return None
        if not ledger.budget.withdraw(now):
            self.stop_reason = "retry budget exhausted"
            ledger.rejected(self.operation, "budget")
            return None
        self.last_delay = delay
        ledger.retrying(self.operation, self.attempts + 1, delay, c.category)
        return delay

    def cancelled(self) -> None:
        """The caller cancelled: give back the breaker ticket, count no failure."""
        self.point._ledger.cancelled(self.operation, self.start, self._ticket)

    def end_failure(self, c: Classification, *, fallback: bool = False) -> None:
        """The call ends in failure ``c`` (answered by the fallback when ``fallback``)."""
        point = self.point
        point._ledger.ended_failure(self.operation, c.category, self.attempts,
                                    point._now() - self.start, fallback, self.injected)

    def end_rejected(self, rejection: RejectedError | DeadlineExceeded, *,
                     fallback: bool = False) -> None:
        """The call was refused before an attempt (or a retry) could run, or had no time left."""
        point = self.point
        reason = rejection.reason if isinstance(rejection, RejectedError) else "deadline"
        if self.attempts > 0:
            # a retry was refused: the call failed, the refusal is already counted
            self.stop_reason = f"retry refused ({reason})"
        point._ledger.ended_rejected(self.operation, reason, self.attempts,
                                     point._now() - self.start, fallback)

    def describe(self, c: Classification) -> str:
        """The note added to a re-raised exception."""
        elapsed = self.point._now() - self.start
        text = (f"seawall: {self.point.name} {self.operation}: {self.attempts} attempt(s) in "
                f"{elapsed:.3f} s, last failure {c.category.value}")
        if self.stop_reason:
            text += f"; stopped: {self.stop_reason}"
        return text

    def annotate(self, error: BaseException, c: Classification) -> None:
        """Add :meth:`describe`'s note to ``error`` when the call retried or stopped early.

        What an integration does before re-raising the caller's own exception
        (the note says how many attempts it took and why retries stopped).
        """
        if self.attempts > 1 or self.stop_reason:
            add_note(error, self.describe(c))

    def adopt(self, start: float, ticket: int = REJECTED) -> None:
        """Take work begun at ``start`` without :meth:`begin` as this call's first attempt.

        For an integration that admitted the work itself: ``ticket`` from
        ``point.observer().admit(...)``, or the default (no ticket) for work
        no breaker judges, such as a connect inside a retried unit of work.
        Then report the outcome as after :meth:`begin` (:meth:`success`,
        :meth:`failure`, :meth:`cancelled`, :meth:`end_failure`).
        """
        self._adopt_first(start, ticket)


if sys.version_info >= (3, 11):
    def add_note(exc: BaseException, note: str) -> None:
        """``exc.add_note(note)``."""
        exc.add_note(note)
else:
    def add_note(exc: BaseException, note: str) -> None:
        """Keep ``note`` where Python 3.11's ``add_note`` would (``__notes__``)."""
        notes = getattr(exc, "__notes__", None)
        if notes is None:
            notes = []
            try:
                exc.__notes__ = notes  # type: ignore[attr-defined]
            except AttributeError:
                return
        notes.append(note)


def admit_first(point: IntegrationPoint,
                deadline: float | None = None) -> tuple[float, int, float | None] | None:
    """Admit a call's first attempt inline, as the shells do: ``(start, ticket, timeout)``.

    ``IntegrationPoint.admit_first``: the fast path of integrations that
    drive attempts themselves, without an :class:`Execution` unless the
    first attempt fails. It asks the breaker (``ticket``: its ticket, or
    ``NO_TICKET`` without one), works out the attempt's ``timeout`` (as
    :meth:`Execution.begin` would: the attempt and total timeouts, the
    caller's absolute ``deadline``, an enclosing seawall deadline) and takes
    a rate-limit token if the point has one (no server pause may be in force)
    and a free bulkhead permit, which the caller gives back when the attempt
    ends. Then exactly one of: ``point.observer().succeeded(operation,
    start, ticket)``; ``point.execution(operation, deadline=deadline,
    first=(start, ticket))`` to report a failure or a cancellation and go on
    (retry, end) as with any execution. Returns ``None``, having taken and
    counted nothing, when the attempt cannot start at once (the breaker
    refuses, no time is left, a server's pause is in force, no token or
    permit is free) or the point injects faults
    (``Chaos``: its attempts go through an Execution, as in the shells): then
    take the general path, ``point.execution(operation, deadline=deadline)``,
    which admits again, waits or refuses, and counts. It mirrors the shells'
    inline first attempt (``_async_shell.arun``): a policy that joins one
    joins both.
    """
    if point.chaos is not None:
        return None
    now = point._now()
    circuit = point.circuit
    if circuit is None:
        ticket = REJECTED
    elif circuit.state is CLOSED:
        ticket = circuit.generation
    else:
        ticket = circuit.admit(now)
        if ticket == REJECTED:
            return None
    timeout = point._first_timeout  # > 0: Timeout's seconds are positive
    if deadline is not None or _outer() is not None:
        timeout = first_limit(point, now, deadline)[1]
        if timeout is not None and timeout <= 0.0:
            if circuit is not None:
                circuit.release(ticket)
            return None
    if point._gate is not None:  # a server's pause in force, or no free token: the general path
        pacing = point.pacing
        bucket = point.bucket
        if (pacing is not None and pacing.until > now) or \
                (bucket is not None and not bucket.try_take(now)):
            if circuit is not None:
                circuit.release(ticket)
            return None
    permits = point.permits
    if permits is not None and not permits.try_acquire():
        first_refund(point)
        if circuit is not None:
            circuit.release(ticket)
        return None
    return now, ticket, timeout
