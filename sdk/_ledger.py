"""The ledger: where every outcome of a point's calls is recorded.

An outcome is told once, here, and goes to everyone who keeps count of
it: the breaker's window (``circuit.record`` / ``release``), the retry
budget's bucket marks, the point's counters (:class:`PointStats`) and the
event hooks (records built only when a hook listens). The decisions
(:mod:`._execution`) and the shells call it; so does observed work
(:mod:`._observer`). Nothing here decides or waits.

Counting is cheap where calls are many. A call that succeeds at its first
attempt is the common case: it is counted by one lock-free step of a
:class:`~._tally.Tally`, and the breaker hears of it only when that can
change something (a window holding anything but fast successes, or a
half-open trial). Every other outcome takes the ledger's lock once.

Thread-safe: counters under ``lock``; the breaker and budget have their own.
The snapshot it hands out, :class:`PointStats`, is in ``_point_stats.py``.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Any

from ._breaker import BreakerRuntime, BreakerState
from ._budget import BudgetRuntime
from ._classify import Category, Classification
from ._events import (
    GLOBAL_HOOKS,
    AttemptEvent,
    BreakerTransition,
    CallEvent,
    HedgeEvent,
    HookSet,
    RejectionEvent,
    RetryEvent,
    WaitEvent,
    emit,
    log,
)
from ._point_stats import PointStats
from ._policies import RetryBudget
from ._tally import Tally

__all__ = ["REJECTION_REASONS", "Ledger", "PointStats"]

_wall = time.time
# the success path's two records are built with tuple.__new__, skipping the NamedTuple's
# own __new__ (a Python function): -290 ns per successful call a hook watches (make bench,
# bench/metrics.py "do-nothing hook": +580 ns instead of +870), which keeps "recorder
# running" under its 1000 ns target (980 ns instead of 1350)
_record: Any = tuple.__new__


REJECTION_REASONS = ("breaker", "bulkhead", "budget", "deadline", "rate_limit", "paused")


class Ledger:
    """The counters, breaker window, budget marks and hooks of one point (see the module doc).

    ``ticket`` arguments are breaker tickets: ``>= 0`` from an admission,
    ``< 0`` (``REJECTED``) when there is no breaker to tell.
    """

    __slots__ = (
        "_attempts", "_base_calls", "_base_ok", "_by_category", "_calls", "_cancelled",
        "_extra", "_failures", "_fallbacks", "_injected_attempts", "_injected_failures", "_ok",
        "_rejected", "_rejections", "_retries", "_step", "_successes", "_timeouts", "budget",
        "circuit", "hooks", "lock", "name", "never_slow", "now", "sampler",
        "slow",
    )

    def __init__(self, name: str, now: Callable[[], float], hooks: HookSet,
                 circuit: BreakerRuntime | None, slow: float | None,
                 budget: RetryBudget | None) -> None:
        self.name = name
        self.now = now
        self.hooks = hooks
        self.circuit = circuit
        self.slow = slow if slow else math.inf  # a call this long or longer is slow
        self.never_slow = self.slow == math.inf
        self.lock = threading.Lock()
        # one-attempt successes, lock-free; it and _calls are never reset (the budget
        # reads their running total): reset() moves the baselines stats() subtracts
        self._ok = Tally()
        self._step = self._ok.step
        self._calls = 0
        self.budget = BudgetRuntime(budget, self.total_calls)
        # told (now, latency) of each success and timed-out attempt: an adaptive limit's input
        self.sampler: Callable[[float, float], None] | None = None
        self.reset()

    # -- the success path ------------------------------------------------------

    def succeeded(self, operation: str, started: float, ticket: int) -> None:
        """A call of one attempt that began at ``started`` succeeded (the hot path)."""
        self._step()
        if started >= self.budget.next:
            self.budget.tick(started)
        if self.sampler is not None:
            t = self.now()
            self.sampler(t, t - started)
        hooks = self.hooks.hooks or GLOBAL_HOOKS.hooks
        if ticket >= 0:
            circuit = self.circuit
            # a success changes nothing in a window of fast successes only: no word of it then
            if circuit is not None and not (circuit.clean and self.never_slow):
                t1 = self.now()
                duration = t1 - started
                if not (circuit.clean and duration < self.slow):
                    circuit.record(ticket, t1, False, duration >= self.slow)
                if hooks:
                    self._emit_success(operation, duration)
                return
        if hooks:
            self._emit_success(operation, self.now() - started)

    def counted(self, started: float, ticket: int) -> bool:
        """Count a one-attempt success if no breaker and no hook needs to hear of it.

        False (nothing counted): call :meth:`succeeded` with the operation.
        """
        if ticket >= 0:
            circuit = self.circuit
            if circuit is not None and not (circuit.clean and self.never_slow):
                return False
        if self.hooks.hooks or GLOBAL_HOOKS.hooks or self.sampler is not None:
            return False
        self._step()
        if started >= self.budget.next:
            self.budget.tick(started)
        return True

    def _emit_success(self, operation: str, duration: float) -> None:
        wall = _wall()
        name = self.name
        attempt = _record(AttemptEvent, (name, operation, 1, None, duration, wall, False))
        call = _record(CallEvent, (name, operation, None, 1, duration, wall, False, None, False))
        for hook in self.hooks.hooks + GLOBAL_HOOKS.hooks:
            try:
                hook(attempt)
                hook(call)
            except Exception:
                log.exception("seawall: event hook %r raised; the call is not affected", hook)

    # -- outcomes of calls that took more than the hot path -------------------------

    def succeeded_after(self, operation: str, start: float, attempt_start: float,
                        attempts: int, ticket: int, injected: bool = False) -> None:
        """A call succeeded at attempt number ``attempts`` (> 1, or an ``injected`` one).

        The attempt began at ``attempt_start``; ``injected``: fault injection
        shaped it (an injected latency, or a result judged a success).
        """
        now = self.now()
        duration = now - attempt_start
        if self.sampler is not None:
            self.sampler(now, duration)
        if self.circuit is not None:
            self.circuit.record(ticket, now, False, duration >= self.slow)
        if injected and start >= self.budget.next:
            self.budget.tick(start)  # a first attempt that left the hot path
        with self.lock:
            self._calls += 1
            self._successes += 1
            self._attempts += 1
            self._injected_attempts += injected
        hooks = self.hooks.hooks + GLOBAL_HOOKS.hooks
        if hooks:
            wall = _wall()
            emit(hooks, AttemptEvent(self.name, operation, attempts, None, duration, wall,
                                     injected))
            emit(hooks, CallEvent(self.name, operation, None, attempts, now - start, wall,
                                  False, None, injected))

    def overran(self, operation: str, start: float, attempt_start: float, attempts: int,
                now: float, ticket: int, injected: bool = False) -> None:
        """A sync attempt succeeded after its deadline: a success, a timeout and a slow call.

        Its value was returned (it cannot be taken back); the breaker counts a
        slow call, the counters and the attempt's event a ``timeout``.
        """
        if self.sampler is not None:
            self.sampler(now, now - attempt_start)
        circuit = self.circuit
        if circuit is not None and ticket >= 0:
            circuit.record(ticket, now, False, True)
        if start >= self.budget.next:
            self.budget.tick(start)
        with self.lock:
            self._calls += 1
            self._successes += 1
            self._attempts += 1
            self._timeouts += not injected
            self._injected_attempts += injected
        hooks = self.hooks.hooks + GLOBAL_HOOKS.hooks
        if hooks:
            wall = _wall()
            emit(hooks, AttemptEvent(self.name, operation, attempts, Category.TIMEOUT,
                                     now - attempt_start, wall, injected))
            emit(hooks, CallEvent(self.name, operation, None, attempts, now - start, wall,
                                  False, None, injected))

    def attempt_failed(self, operation: str, attempt: int, duration: float, now: float,
                       c: Classification, ticket: int, injected: bool = False) -> None:
        """Attempt number ``attempt`` failed as ``c`` after ``duration`` seconds.

        ``injected``: fault injection made the failure; the breaker counts it
        as any other, the counters apart (``injected_attempts``, no timeout).
        """
        if self.sampler is not None and c.category is Category.TIMEOUT:
            self.sampler(now, duration)
        if self.circuit is not None:
            self.circuit.record(ticket, now, c.breaker, c.breaker and duration >= self.slow)
        with self.lock:
            self._attempts += 1
            if injected:
                self._injected_attempts += 1
            else:
                self._timeouts += c.category is Category.TIMEOUT
        hooks = self.hooks.hooks + GLOBAL_HOOKS.hooks
        if hooks:
            emit(hooks, AttemptEvent(self.name, operation, attempt, c.category, duration,
                                     _wall(), injected))

    def retrying(self, operation: str, attempt: int, delay: float, category: Category) -> None:
        """Attempt number ``attempt`` will run after ``delay`` seconds."""
        with self.lock:
            self._retries += 1
        hooks = self.hooks.hooks + GLOBAL_HOOKS.hooks
        if hooks:
            emit(hooks, RetryEvent(self.name, operation, attempt, delay, category, _wall()))

    def rejected(self, operation: str, reason: str) -> None:
        """An attempt or a retry was refused locally (``reason``: one of REJECTION_REASONS)."""
        with self.lock:
            self._rejections[reason] += 1
        hooks = self.hooks.hooks + GLOBAL_HOOKS.hooks
        if hooks:
            emit(hooks, RejectionEvent(self.name, operation, reason, _wall()))

    def waited(self, operation: str, paused: float, rate_limited: float) -> None:
        """An admitted attempt will start after a server's pause and/or a rate-limit token (seconds)."""
        with self.lock:
            if paused > 0.0:
                self._extra[0] += 1
            if rate_limited > 0.0:
                self._extra[1] += 1
        hooks = self.hooks.hooks + GLOBAL_HOOKS.hooks
        if hooks:
            wall = _wall()
            if paused > 0.0:
                emit(hooks, WaitEvent(self.name, operation, "paused", paused, wall))
            if rate_limited > 0.0:
                emit(hooks, WaitEvent(self.name, operation, "rate_limit", rate_limited, wall))

    def hedged(self, operation: str, attempt: int, won: bool = False) -> None:
        """A hedge started attempt number ``attempt`` (``won``: that attempt answered the call)."""
        with self.lock:
            self._extra[3 if won else 2] += 1
        hooks = self.hooks.hooks + GLOBAL_HOOKS.hooks
        if hooks:
            emit(hooks, HedgeEvent(self.name, operation, attempt, won, _wall()))

    def refused_call(self, operation: str, fallback: bool) -> None:
        """A new call refused by the breaker, counted at once (the decorator's outage path).

        One lock for what :meth:`rejected` and :meth:`ended_rejected` count:
        during an outage, refusals are the traffic.
        """
        with self.lock:
            self._rejections["breaker"] += 1
            self._calls += 1
            self._rejected += 1
            self._fallbacks += fallback
        if self.hooks.hooks or GLOBAL_HOOKS.hooks:
            hooks = self.hooks.hooks + GLOBAL_HOOKS.hooks
            wall = _wall()
            emit(hooks, RejectionEvent(self.name, operation, "breaker", wall))
            emit(hooks, CallEvent(self.name, operation, None, 0, 0.0, wall, fallback,
                                  "breaker"))

    def ended_failure(self, operation: str, category: Category, attempts: int, duration: float,
                      fallback: bool, injected: bool = False) -> None:
        """A call ended in failure (answered by the fallback when ``fallback``).

        ``injected``: its last attempt's failure was injected (counted in
        ``injected_failures``, not in ``failures``).
        """
        with self.lock:
            self._calls += 1
            if category is Category.CANCELLED:  # never a failure (the recorder agrees)
                self._cancelled += 1
            elif injected:
                self._injected_failures += 1
            else:
                self._failures += 1
                self._by_category[category.value] += 1
            self._fallbacks += fallback
        hooks = self.hooks.hooks + GLOBAL_HOOKS.hooks
        if hooks:
            emit(hooks, CallEvent(self.name, operation, category, attempts, duration, _wall(),
                                  fallback, None, injected))

    def ended_rejected(self, operation: str, reason: str, attempts: int, duration: float,
                       fallback: bool) -> None:
        """A call was refused before an attempt (or a retry) could run."""
        with self.lock:
            self._calls += 1
            self._rejected += 1
            self._fallbacks += fallback
        hooks = self.hooks.hooks + GLOBAL_HOOKS.hooks
        if hooks:
            emit(hooks, CallEvent(self.name, operation, None, attempts, duration, _wall(),
                                  fallback, reason))

    def cancelled(self, operation: str, start: float, ticket: int) -> None:
        """The caller cancelled: the breaker ticket goes back, no failure is counted."""
        if self.circuit is not None:
            self.circuit.release(ticket)
        with self.lock:
            self._calls += 1
            self._cancelled += 1
        hooks = self.hooks.hooks + GLOBAL_HOOKS.hooks
        if hooks:
            emit(hooks, CallEvent(self.name, operation, Category.CANCELLED, 1,
                                  self.now() - start, _wall(), False, None))

    def transition(self, old: BreakerState, new: BreakerState, reason: str) -> None:
        """The breaker moved (its ``on_transition`` callback)."""
        hooks = self.hooks.hooks + GLOBAL_HOOKS.hooks
        if hooks:
            emit(hooks, BreakerTransition(self.name, old.value, new.value, reason, _wall()))

    # -- reading -----------------------------------------------------------------

    def total_calls(self) -> int:
        """Every call counted since the point was made (resets do not move it)."""
        return self._ok.value() + self._calls

    def stats(self) -> PointStats:
        """A consistent snapshot of the counters."""
        with self.lock:
            ok = self._ok.value() - self._base_ok
            return PointStats(
                calls=ok + self._calls - self._base_calls, successes=ok + self._successes,
                failures=self._failures, rejected=self._rejected, attempts=ok + self._attempts,
                retries=self._retries, fallbacks=self._fallbacks, cancelled=self._cancelled,
                failures_by_category=dict(self._by_category),
                rejections=dict(self._rejections), timeouts=self._timeouts,
                injected_attempts=self._injected_attempts,
                injected_failures=self._injected_failures,
                paused_waits=self._extra[0], rate_limit_waits=self._extra[1],
                hedges=self._extra[2], hedges_won=self._extra[3],
            )

    def reset(self) -> None:
        """Zero the counters (the breaker and the budget are untouched)."""
        with self.lock:
            self._base_ok = self._ok.value()
            self._base_calls = self._calls
            self._successes = self._failures = self._rejected = self._attempts = 0
            self._retries = self._fallbacks = self._cancelled = self._timeouts = 0
            self._injected_attempts = self._injected_failures = 0
            self._by_category: dict[str, int] = {c.value: 0 for c in Category
                                                 if c is not Category.CANCELLED}
            self._rejections: dict[str, int] = dict.fromkeys(REJECTION_REASONS, 0)
            self._extra = [0, 0, 0, 0]  # paused, rate limited, hedges sent, hedges won
