"""The observed-work path: work an integration watches but never replays.

A statement inside the caller's own transaction cannot be sent again by
seawall, nor held back by a bulkhead: it can only be let past the breaker
and have its outcome counted. :class:`Observer` is that path, with all of
its counting in the core (the ledger), so an integration copies none of it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar

from ._breaker import CLOSED, REJECTED, BreakerRuntime
from ._classify import Classification
from ._deadline import DEADLINE
from ._execution import Execution, open_error

if TYPE_CHECKING:
    from ._point import IntegrationPoint


class Observer:
    """What an integration needs to observe work on a point (``point.observer()``).

    Every attribute is a plain value or a callable bound once, so a hot hook
    binds the ones it uses once. Thread-safe; one per point.

    * ``now() -> float``: the point's clock (monotonic seconds); take
      ``started = now()`` before the work.
    * ``first_timeout``: the first attempt's own limit in seconds,
      ``min(attempt, total)`` of the point's :class:`seawall.Timeout`, or
      ``None``; a caller inside an enclosing seawall deadline narrows it
      with :func:`seawall.remaining`.
    * ``start() -> (started, timeout, ticket)``: the three of them in one
      call, for a hook that runs on every statement: ``now()``;
      ``first_timeout`` narrowed by an enclosing seawall deadline on this
      point's clock (the very ``first_timeout`` object when nothing
      narrows it; ``<= 0`` when that deadline has passed); and the ticket
      of a breaker that admits without a word (``NO_TICKET`` without a
      breaker, a ticket while it is closed), or ``None`` when the breaker
      must judge: then call ``admit(operation)``, which may refuse.
    * ``admit(operation) -> ticket``: the breaker's verdict. Raises
      :class:`seawall.CircuitOpenError` (counted as a rejected call) when it
      refuses; the ticket is :data:`NO_TICKET` without a breaker.
    * ``succeeded(operation, started, ticket)``: the work succeeded.
    * ``counted(started, ticket) -> bool``: the cheapest success. It counts
      the success and returns true when neither the breaker (no ticket, or
      a window of fast successes only) nor any event hook needs to hear of
      it, so the caller need not work out an operation name; false counts
      nothing: then call ``succeeded(operation, started, ticket)``.
    * ``failed(operation, started, classification, ticket)``: the work
      failed (counted with no retry, whatever the classification says).
    * ``cancelled(operation, started, ticket)``: the caller cancelled; the
      ticket goes back, no failure is counted.
    * ``release(ticket)``: give a ticket back without an outcome (the work
      never ran).

    Pass :data:`NO_TICKET` for work the breaker already judges as part of a
    larger call (a statement inside a retried unit of work).
    """

    NO_TICKET: ClassVar[int] = REJECTED
    """The ticket of work no breaker judges (``< 0``; any ticket ``>= 0`` is the breaker's)."""

    __slots__ = ("_clock", "_point", "cancelled", "counted", "first_timeout", "now", "start",
                 "succeeded")

    def __init__(self, point: IntegrationPoint) -> None:
        ledger = point._ledger
        self._point = point
        self.now: Callable[[], float] = point._now
        self.first_timeout: float | None = point._first_timeout
        self._clock = [self.now]  # start's clock, re-bound by reclock()
        self.start: Callable[[], tuple[float, float | None, int | None]] = _starter(
            self._clock, self.first_timeout, point.circuit)
        self.succeeded: Callable[[str, float, int], None] = ledger.succeeded
        self.counted: Callable[[float, int], bool] = ledger.counted
        self.cancelled: Callable[[str, float, int], None] = ledger.cancelled

    def reclock(self, now: Callable[[], float]) -> None:
        """Read time through ``now`` from here on (the point's clock was re-bound).

        ``start`` reads the clock through a cell, so a hook that bound
        ``observer.start`` once sees the new clock too.
        """
        self.now = now
        self._clock[0] = now

    def admit(self, operation: str) -> int:
        """Let one piece of work past the breaker; returns its ticket (see the class doc)."""
        point = self._point
        circuit = point.circuit
        if circuit is None:
            return REJECTED
        if circuit.state is CLOSED:
            return circuit.generation
        now = point._now()
        ticket = circuit.admit(now)
        if ticket == REJECTED:
            point._ledger.refused_call(operation, False)
            raise open_error(point, operation, now)
        return ticket

    def failed(self, operation: str, started: float, classification: Classification,
               ticket: int) -> None:
        """The work that began at ``started`` failed as ``classification`` (never retried)."""
        ex = Execution(self._point, operation, None, started)
        ex.adopt(started, ticket)
        c = classification
        ex.failure(c.with_retry(False) if c.retry else c)
        ex.end_failure(c)

    def release(self, ticket: int) -> None:
        """Give back a ticket from :meth:`admit` whose work never ran (no outcome counted)."""
        circuit = self._point.circuit
        if circuit is not None and ticket >= 0:
            circuit.release(ticket)


def _starter(clock: list[Callable[[], float]], first: float | None,
             circuit: BreakerRuntime | None) -> Callable[[], tuple[float, float | None, int | None]]:
    """:attr:`Observer.start` of a point: a closure, as it runs once per statement.

    Its names are the closure's own rather than an observer's attributes:
    ~600 CPU instructions less per call (callgrind), a quarter of its cost.
    The clock is read through a one-item list the observer may re-bind.
    """

    enclosing = DEADLINE.get

    def start() -> tuple[float, float | None, int | None]:
        now = clock[0]
        started = now()
        timeout = first
        outer = enclosing()
        if outer is not None and outer[1] is now:  # an enclosing deadline on this clock
            left = outer[0] - started
            if timeout is None or left < timeout:
                timeout = left
        if circuit is None:
            return started, timeout, REJECTED
        if circuit.state is CLOSED:
            return started, timeout, circuit.generation
        return started, timeout, None  # the breaker must judge: admit(operation)

    return start
