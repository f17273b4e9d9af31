"""Hedging in the calling thread: attempts that are futures, no thread per attempt.

The sync twin of :mod:`._hedge` for integrations whose host starts an
attempt without blocking and hands back a future (sync gRPC's
``multicallable.future()``): each attempt is started by ``start(timeout,
number)``; its future's done callback wakes the calling thread, which
waits on a condition variable for the next answer or the next hedge's
time. The rules are :mod:`._hedge`'s (same :class:`_Hedging` state); the
endings (fallback, the error handed to the caller) stay the integration's.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._breaker import REJECTED
from ._classify import Classification
from ._execution import Execution
from ._hedge import _Hedging, _Try
from ._pacing import note_outcome

if TYPE_CHECKING:
    from ._point import IntegrationPoint

Start = Callable[[float | None, int], Any]
"""``start(timeout, number)``: begin attempt ``number`` (1-based) and return its future
(``add_done_callback(fn)`` calling ``fn(future)`` once it ends, ``cancel()``)."""


class _FutureHedging(_Hedging):
    """:class:`_Hedging` whose attempts are futures watched from the calling thread."""

    def __init__(self, point: IntegrationPoint, start: Start, ex: Execution) -> None:
        super().__init__(point, _never, ex.operation, ex, None, None)
        self.start = start
        self.cond = threading.Condition()
        self.finished: deque[Any] = deque()

    def launch(self, timeout: float | None) -> None:
        ex, point = self.ex, self.point
        tr = _Try(ex.attempts, ex._ticket, ex.attempt_start, ex.attempt_deadline)
        try:
            future = self.start(timeout, tr.number)
        except BaseException:
            if point.permits is not None:
                point.permits.release()
            raise
        self.tries[future] = tr
        self.next_at = point._now() + self.hedge.delay
        permits = point.permits
        released = [False]

        def done(f: Any) -> None:
            if permits is not None and not released[0]:
                released[0] = True
                permits.release()
            with self.cond:
                self.finished.append(f)
                self.cond.notify()

        future.add_done_callback(done)

    def cancel_futures(self) -> None:
        tries, self.tries = self.tries, {}
        circuit = self.point.circuit
        for future, tr in tries.items():
            future.cancel()
            if circuit is not None:
                circuit.release(tr.ticket)

    def next_finished(self) -> Any | None:
        """The next attempt to end, or ``None`` when the next hedge is due first."""
        with self.cond:
            while True:
                while self.finished:
                    future = self.finished.popleft()
                    if future in self.tries:
                        return future
                if self.open:
                    wait = self.next_at - self.point._now()
                    if wait <= 0.0:
                        return None
                    if not self.cond.wait(wait) and not self.finished:
                        return None  # the delay passed (timed by real time, as asyncio's)
                else:
                    self.cond.wait()

    def run(self, judge: Callable[[Any], Classification | None]) -> tuple[Any, Classification | None]:
        point, ex = self.point, self.ex
        ledger = point._ledger
        last: tuple[Any, Classification] | None = None
        while self.tries:
            future = self.next_finished()
            if future is None:
                self.hedge_now()
                continue
            tr = self.tries.pop(future)
            c = judge(future)
            ex.attempt_start, ex._ticket = tr.start, tr.ticket
            if c is None:
                ex.success()
                if tr.number > 1:
                    ledger.hedged(ex.operation, tr.number, won=True)
                self.cancel_futures()
                return future, None
            now = point._now()
            ledger.attempt_failed(ex.operation, tr.number, now - tr.start, now, c, tr.ticket)
            ex._ticket = REJECTED
            if note_outcome(point._pacing, point.retry, now, c, tr.number):
                self.open = False  # the server asked to slow down: no more hedges
            last = (future, c)
            if not self.non_fatal(c):
                ex.stop_reason = f"a {c.category.value} failure ends hedging"
                self.cancel_futures()
                break
            self.hedge_now()
        assert last is not None
        return last


async def _never(_timeout: float | None) -> Any:  # the async attempt a future hedge never uses
    raise AssertionError("unreachable")


def hedge_futures(point: IntegrationPoint, ex: Execution, start: Start,
                  judge: Callable[[Any], Classification | None]) -> tuple[Any, Classification | None]:
    """Drive ``ex``'s attempts with ``point``'s :class:`seawall.Hedge`, in the calling thread.

    ``IntegrationPoint.hedge_futures``. ``judge(future)`` classifies an
    ended attempt (``None``: success). Returns ``(future, None)`` for the
    winner, or ``(future, classification)`` of the last failure, already
    counted as attempts but not ended: end the call with
    ``ex.end_failure`` (and the fallback) as for any failure. Raises the
    refusal of a first attempt that could not start (counted, not ended:
    ``ex.end_rejected``); an exception raised by the first ``start`` is
    counted as a failed attempt and propagates (end the call with
    ``ex.end_failure``). Cancels every losing attempt. Only for idempotent
    work.
    """
    timeout = ex.begin(True)
    if ex.wait > 0.0:
        try:
            point.clock.sleep(ex.wait)
        except BaseException:
            ex.withdraw()
            ex.cancelled()
            raise
    permits = point.permits
    if permits is not None and not permits.acquire(point._max_wait):
        raise ex.bulkhead_rejected()
    ex.attempt_start = point._now()
    run = _FutureHedging(point, start, ex)
    try:
        run.launch(timeout)
    except Exception as exc:  # starting raised (a bad request, a closed channel): final
        ex.failure(point.classify_exception(exc).with_retry(False))
        raise
    try:
        return run.run(judge)
    except BaseException:
        if run.tries:
            run.cancel_futures()
            ex._ticket = REJECTED
            ex.cancelled()
        raise
