"""Hedging in the calling thread: attempts that are futures, no thread per attempt.

The sync twin of :mod:`._hedge` for integrations whose host starts an
attempt without blocking and hands back a future (sync gRPC's
``multicallable.future()``): each attempt is started by ``start(timeout,
number)``; its future's done callback wakes the calling thread, which
waits on a condition variable for the next answer or the next hedge's
time. The rules are :mod:`._hedge`'s (same :class:`_Hedging` state); the
endings (fallback, the error handed to the caller) stay the integration's.

Fault injection (the point's :class:`seawall.Chaos`) is the innermost step
of every attempt, hedges included: each attempt draws from the point's
sequence when it starts and is marked injected as an unhedged one is. An
injected latency is waited by the same loop (the attempt is a
:class:`_Delayed` entry until it is due, no thread, no sleep in the
caller), then the integration's ``inject`` answers with its own finished
future for a fault, a result or a latency past the attempt's timeout, or
the attempt is sent with what is left of its timeout.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._chaos import Injection
from ._classify import Classification
from ._execution import Execution
from ._hedge import _Hedging, _Try

if TYPE_CHECKING:
    from ._point import IntegrationPoint

Start = Callable[[float | None, int], Any]
"""``start(timeout, number)``: begin attempt ``number`` (1-based) and return its future
(``add_done_callback(fn)`` calling ``fn(future)`` once it ends, ``cancel()``)."""

Inject = Callable[[Injection, "float | None"], Any]
"""``inject(injection, timeout)``, once an injection's latency is over: the finished future
that stands for its fault, its result or a latency past ``timeout`` (the attempt's own
timeout), or ``None`` to send the attempt as usual."""


class _Delayed:
    """An attempt waiting out an injected latency (``due``, on the point's clock) before it starts."""

    __slots__ = ("due", "injection", "timeout")

    def __init__(self, due: float, injection: Injection, timeout: float | None) -> None:
        self.due = due
        self.injection = injection
        self.timeout = timeout


class _FutureHedging(_Hedging):
    """:class:`_Hedging` whose attempts are futures watched from the calling thread."""

    def __init__(self, point: IntegrationPoint, start: Start, ex: Execution,
                 inject: Inject | None = None) -> None:
        super().__init__(point, _never, ex.operation, ex, None, None)
        self.start = start
        self.inject = inject
        self.cond = threading.Condition()
        self.finished: deque[Any] = deque()

    def launch(self, timeout: float | None) -> None:
        point = self.point
        tr = self.new_try()
        now = point._now()
        chaos = point.chaos
        injection = None
        if chaos is not None and self.inject is not None:  # innermost, hedges included
            injection = chaos.draw()
            tr.injected = injection is not None
            if injection is not None and injection.latency:
                latency = injection.latency
                wait = latency if timeout is None else min(latency, timeout)
                self.tries[_Delayed(now + wait, injection, timeout)] = tr
                return
        self.send(tr, timeout, injection)

    def send(self, tr: _Try, timeout: float | None, injection: Injection | None) -> None:
        """Start attempt ``tr`` (or answer it with the injection's future); watch its end."""
        point = self.point
        future = None
        if injection is not None and self.inject is not None:
            future = self.inject(injection, timeout)
            if future is None and timeout is not None:
                timeout -= injection.latency  # the latency waited counts against it
        if future is None:
            try:
                future = self.start(timeout, tr.number)
            except BaseException:
                if point.permits is not None:
                    point.permits.release()
                raise
        self.tries[future] = tr
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
        point = self.point
        circuit = point.circuit
        for future, tr in tries.items():
            if type(future) is _Delayed:  # never sent: its permit is still held
                if point.permits is not None:
                    point.permits.release()
            else:
                future.cancel()
            if circuit is not None:
                circuit.release(tr.ticket)

    def next_finished(self) -> Any | None:
        """The next attempt to end, a :class:`_Delayed` one now due, or ``None`` when the
        next hedge is due first."""
        with self.cond:
            while True:
                while self.finished:
                    future = self.finished.popleft()
                    if future in self.tries:
                        return future
                now = self.point._now()
                due: _Delayed | None = None
                wake = self.next_at if self.open else None
                for key in self.tries:
                    if type(key) is _Delayed and (wake is None or key.due < wake):
                        due, wake = key, key.due
                if wake is None:
                    self.cond.wait()
                    continue
                wait = wake - now
                if wait <= 0.0:
                    return due
                if not self.cond.wait(wait) and not self.finished:
                    return due  # its time passed (timed by real time, as asyncio's)

    def run(self, judge: Callable[[Any], Classification | None]) -> tuple[Any, Classification | None]:
        last: tuple[Any, Classification] | None = None
        while self.tries:
            future = self.next_finished()
            if future is None:
                self.hedge_now()
                continue
            tr = self.tries.pop(future)
            if type(future) is _Delayed:  # its injected latency is over: answer or send it
                self.send(tr, future.timeout, future.injection)
                continue
            c = judge(future)
            if self.record(tr, c):
                self.cancel_futures()
                return future, c
            assert c is not None  # a success ends the call
            last = (future, c)
            self.hedge_now()
        assert last is not None
        return last


async def _never(_timeout: float | None) -> Any:  # the async attempt a future hedge never uses
    raise AssertionError("unreachable")


def hedge_futures(point: IntegrationPoint, ex: Execution, start: Start,
                  judge: Callable[[Any], Classification | None],
                  inject: Inject | None = None) -> tuple[Any, Classification | None]:
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
    work. ``inject``: the integration's shape of an injection (see
    :data:`Inject`); without it the point's :class:`seawall.Chaos` is not
    applied.
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
    run = _FutureHedging(point, start, ex, inject)
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
            run.abandoned()
        raise
