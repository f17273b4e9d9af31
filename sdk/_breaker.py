"""Circuit breaker runtime: a sans-IO state machine over a sliding window.

It never sleeps and never reads a clock: callers pass ``now`` (monotonic
seconds). All mutation happens under ``lock``; reading ``state`` for the
closed fast path needs none.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Callable

from ._policies import CircuitBreaker


class BreakerState(str, enum.Enum):
    """Where a breaker stands."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"
    FORCED_OPEN = "forced_open"
    DISABLED = "disabled"

    def __str__(self) -> str:
        return self.value


CLOSED = BreakerState.CLOSED
OPEN = BreakerState.OPEN
HALF_OPEN = BreakerState.HALF_OPEN
FORCED_OPEN = BreakerState.FORCED_OPEN
DISABLED = BreakerState.DISABLED

REJECTED = -1  # ticket value: the call may not proceed

Transition = tuple[BreakerState, BreakerState, str]
OnTransition = Callable[[BreakerState, BreakerState, str], None]


class BreakerRuntime:
    """The mutable state of one point's breaker.

    ``admit(now)`` returns a ticket (>= 0) or ``REJECTED``; the caller then
    reports the outcome with ``record(ticket, now, failure, slow)`` or gives
    the ticket back with ``release(ticket)`` when the call was cancelled or
    never ran. A ticket from an earlier state generation is ignored, so a
    slow call that started before an opening cannot skew the next window.
    """

    __slots__ = (
        "_bcalls",
        "_bfail",
        "_bslow",
        "_bucket_index",
        "_bucket_width",
        "_calls",
        "_failures",
        "_on_transition",
        "_pos",
        "_ring",
        "_slows",
        "_trials_done",
        "_trials_failed",
        "_trials_started",
        "clean",
        "generation",
        "lock",
        "open_until",
        "openings",
        "policy",
        "state",
    )

    def __init__(self, policy: CircuitBreaker, on_transition: OnTransition | None = None) -> None:
        self.policy = policy
        self.lock = threading.Lock()
        self.state = CLOSED
        # true while a full count window holds only fast successes: recording
        # another success then changes nothing, so callers may skip it
        self.clean = False
        self.generation = 0
        self.open_until = 0.0
        self.openings = 0
        self._on_transition = on_transition
        count = policy.window_kind == "count"
        self._ring = bytearray(int(policy.window)) if count else bytearray()
        self._pos = 0
        self._calls = 0
        self._failures = 0
        self._slows = 0
        n = policy.buckets
        self._bcalls = [0] * n
        self._bfail = [0] * n
        self._bslow = [0] * n
        self._bucket_width = 0.0 if count else float(policy.window) / n
        self._bucket_index = 0
        self._trials_started = 0
        self._trials_done = 0
        self._trials_failed = 0

    # -- decisions -------------------------------------------------------

    def admit(self, now: float) -> int:
        """A ticket for one call, or ``REJECTED``."""
        state = self.state
        if state is CLOSED or state is DISABLED:
            return self.generation
        transition = None
        with self.lock:
            state = self.state
            if state is CLOSED or state is DISABLED:
                return self.generation
            if state is OPEN and now >= self.open_until:
                transition = self._move(HALF_OPEN, "open_for elapsed")
                state = HALF_OPEN
            if state is HALF_OPEN and self._trials_started < self.policy.half_open_calls:
                self._trials_started += 1
                ticket = self.generation
            else:
                ticket = REJECTED
        if transition is not None:
            self._announce(transition)
        return ticket

    def retry_at(self) -> float | None:
        """Monotonic time at which the breaker will let a trial call through, if known."""
        state = self.state
        if state is OPEN:
            return self.open_until
        return None

    def record(self, ticket: int, now: float, failure: bool, slow: bool) -> None:
        """Report the outcome of an admitted call."""
        transition = None
        with self.lock:
            if ticket != self.generation:
                return
            state = self.state
            if state is CLOSED:
                if self._bucket_width:
                    self._roll(now)
                    i = self._bucket_index % len(self._bcalls)
                    self._bcalls[i] += 1
                    self._bfail[i] += failure
                    self._bslow[i] += slow
                    self._calls += 1
                else:
                    ring = self._ring
                    pos = self._pos
                    if self._calls == len(ring):
                        old = ring[pos]
                        self._failures -= old & 1
                        self._slows -= old >> 1
                    else:
                        self._calls += 1
                    ring[pos] = failure | (slow << 1)
                    self._pos = pos + 1 if pos + 1 < len(ring) else 0
                self._failures += failure
                self._slows += slow
                self.clean = (not self._bucket_width and self._calls == len(self._ring)
                              and not self._failures and not self._slows)
                if failure or slow:
                    transition = self._evaluate(now)
            elif state is HALF_OPEN:
                self._trials_done += 1
                self._trials_failed += failure or slow
                transition = self._evaluate_trials(now)
        if transition is not None:
            self._announce(transition)

    def release(self, ticket: int) -> None:
        """Give back an admitted call's ticket without an outcome (cancelled, or never ran)."""
        if self.state is not HALF_OPEN:
            return
        with self.lock:
            if ticket == self.generation and self.state is HALF_OPEN and self._trials_started > 0:
                self._trials_started -= 1

    # -- manual control --------------------------------------------------

    def force_open(self) -> None:
        """Reject every call until :meth:`reset` (or :meth:`disable`)."""
        self._manual(FORCED_OPEN, "forced open")

    def disable(self) -> None:
        """Let every call through and record nothing until :meth:`reset`."""
        self._manual(DISABLED, "disabled")

    def reset(self) -> None:
        """Back to CLOSED with an empty window and no opening history."""
        with self.lock:
            self.openings = 0
            transition = self._move(CLOSED, "reset")
        self._announce(transition)

    def window_counts(self) -> tuple[int, int, int]:
        """``(calls, failures, slow)`` currently in the window."""
        with self.lock:
            return self._calls, self._failures, self._slows

    # -- internals (lock held) ---------------------------------------------

    def _manual(self, state: BreakerState, reason: str) -> None:
        with self.lock:
            transition = self._move(state, reason)
        self._announce(transition)

    def _roll(self, now: float) -> None:
        index = int(now / self._bucket_width)
        current = self._bucket_index
        if index == current:
            return
        n = len(self._bcalls)
        if index < current:  # clock went backwards: keep counting in the current bucket
            return
        steps = min(index - current, n)
        for k in range(1, steps + 1):
            i = (current + k) % n
            self._calls -= self._bcalls[i]
            self._failures -= self._bfail[i]
            self._slows -= self._bslow[i]
            self._bcalls[i] = self._bfail[i] = self._bslow[i] = 0
        self._bucket_index = index

    def _evaluate(self, now: float) -> Transition | None:
        p = self.policy
        calls = self._calls
        if calls < p.minimum_calls:
            return None
        if self._failures >= p.failure_rate * calls:
            return self._open(now, f"failure rate {self._failures}/{calls} >= {p.failure_rate}")
        if p.slow_call_duration is not None and self._slows >= p.slow_call_rate * calls:
            return self._open(now, f"slow call rate {self._slows}/{calls} >= {p.slow_call_rate}")
        return None

    def _evaluate_trials(self, now: float) -> Transition | None:
        p = self.policy
        n = p.half_open_calls
        if self._trials_failed >= p.failure_rate * n:
            return self._open(now, f"{self._trials_failed} of {n} trial calls failed")
        if self._trials_done >= n:
            self.openings = 0
            return self._move(CLOSED, f"{n - self._trials_failed} of {n} trial calls succeeded")
        return None

    def _open(self, now: float, reason: str) -> Transition:
        p = self.policy
        try:
            duration = min(p.open_for * p.open_for_multiplier ** self.openings, p.open_for_max)
        except OverflowError:  # the growth passed float range: it is capped anyway
            duration = p.open_for_max
        self.openings += 1
        self.open_until = now + duration
        return self._move(OPEN, reason)

    def _move(self, state: BreakerState, reason: str) -> Transition:
        previous = self.state
        self.state = state
        self.clean = False
        self.generation += 1
        self._trials_started = self._trials_done = self._trials_failed = 0
        if state is CLOSED or state is DISABLED:
            self._ring = bytearray(len(self._ring))
            self._pos = self._calls = self._failures = self._slows = 0
            n = len(self._bcalls)
            self._bcalls = [0] * n
            self._bfail = [0] * n
            self._bslow = [0] * n
        return previous, state, reason

    def _announce(self, transition: Transition) -> None:
        if self._on_transition is not None:
            self._on_transition(*transition)
