"""The breaker runtime follows a small reference model through any sequence of events."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from seawall import BreakerState, CircuitBreaker
from seawall._breaker import REJECTED, BreakerRuntime


@dataclass
class ModelBreaker:
    """What the breaker should do, written plainly: a list of outcomes, no ring, no buckets.

    Each outcome is (time, failed, slow). A count window keeps the last
    ``window`` outcomes; a time window keeps those whose bucket
    (``floor(time / (window / buckets))``) is among the last ``buckets``.
    """

    policy: CircuitBreaker
    state: str = "closed"
    era: int = 0  # bumped on every state change: outcomes of an older era are ignored
    outcomes: list[tuple[float, bool, bool]] = field(default_factory=list)
    open_until: float = 0.0
    consecutive_openings: int = 0
    trials_admitted: int = 0
    trials_finished: int = 0
    trials_failed: int = 0

    # -- window --------------------------------------------------------------

    def _bucket(self, t: float) -> int:
        return int(t / (self.policy.window / self.policy.buckets))

    def live_outcomes(self, now: float) -> list[tuple[float, bool, bool]]:
        if self.policy.window_kind == "count":
            return self.outcomes[-int(self.policy.window):]
        newest = self._bucket(now)
        return [o for o in self.outcomes if self._bucket(o[0]) > newest - self.policy.buckets]

    def counts(self, now: float) -> tuple[int, int, int]:
        live = self.live_outcomes(now)
        return len(live), sum(o[1] for o in live), sum(o[2] for o in live)

    # -- state changes -------------------------------------------------------

    def _enter(self, state: str) -> None:
        self.state = state
        self.era += 1
        self.trials_admitted = self.trials_finished = self.trials_failed = 0
        if state in ("closed", "disabled"):
            self.outcomes = []

    def _trip(self, now: float) -> None:
        duration = self.policy.open_for
        for _ in range(self.consecutive_openings):
            duration = min(duration * self.policy.open_for_multiplier, self.policy.open_for_max)
        self.consecutive_openings += 1
        self.open_until = now + min(duration, self.policy.open_for_max)
        self._enter("open")

    # -- events --------------------------------------------------------------

    def admit(self, now: float) -> int | None:
        if self.state in ("closed", "disabled"):
            return self.era
        if self.state == "open" and now >= self.open_until:
            self._enter("half_open")
        if self.state == "half_open" and self.trials_admitted < self.policy.half_open_calls:
            self.trials_admitted += 1
            return self.era
        return None

    def record(self, era: int, now: float, failed: bool, slow: bool) -> None:
        if era != self.era:
            return
        p = self.policy
        if self.state == "closed":
            self.outcomes.append((now, failed, slow))
            self.outcomes = self.live_outcomes(now)
            if not (failed or slow):
                return  # a success never opens the breaker
            calls, failures, slows = self.counts(now)
            if calls < p.minimum_calls:
                return
            too_many_failures = failures / calls >= p.failure_rate
            too_slow = p.slow_call_duration is not None and slows / calls >= p.slow_call_rate
            if too_many_failures or too_slow:
                self._trip(now)
        elif self.state == "half_open":
            self.trials_finished += 1
            self.trials_failed += failed or slow
            n = p.half_open_calls
            if self.trials_failed / n >= p.failure_rate:
                self._trip(now)
            elif self.trials_finished == n:
                self.consecutive_openings = 0
                self._enter("closed")

    def release(self, era: int) -> None:
        if era == self.era and self.state == "half_open" and self.trials_admitted > 0:
            self.trials_admitted -= 1

    def force_open(self) -> None:
        self._enter("forced_open")

    def disable(self) -> None:
        self._enter("disabled")

    def reset(self) -> None:
        self.consecutive_openings = 0
        self._enter("closed")


@st.composite
def breaker_policies(draw: st.DrawFn) -> CircuitBreaker:
    kind = draw(st.sampled_from(["count", "time"]))
    if kind == "count":
        window: float = draw(st.integers(1, 8))
        minimum_calls = draw(st.integers(1, int(window)))
        buckets = 10
    else:
        window = draw(st.sampled_from([1.0, 2.5, 10.0]))
        minimum_calls = draw(st.integers(1, 6))
        buckets = draw(st.integers(1, 5))
    open_for = draw(st.sampled_from([0.5, 1.0, 3.0]))
    return CircuitBreaker(
        failure_rate=draw(st.sampled_from([0.2, 0.5, 0.75, 1.0])),
        minimum_calls=minimum_calls,
        window=window,
        window_kind=kind,
        buckets=buckets,
        slow_call_duration=draw(st.sampled_from([None, 1.0])),
        slow_call_rate=draw(st.sampled_from([0.5, 1.0])),
        open_for=open_for,
        open_for_multiplier=draw(st.sampled_from([1.0, 2.0, 1e300])),
        open_for_max=open_for * draw(st.sampled_from([1, 3, 10])),
        half_open_calls=draw(st.integers(1, 3)),
    )


class BreakerMachine(RuleBasedStateMachine):
    """Drives BreakerRuntime and ModelBreaker with the same events and compares them."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 100.0
        self.tickets: list[tuple[int, int]] = []  # (runtime ticket, model era)

    @initialize(policy=breaker_policies())
    def start(self, policy: CircuitBreaker) -> None:
        self.real = BreakerRuntime(policy)
        self.model = ModelBreaker(policy)

    @rule()
    def admit(self) -> None:
        ticket = self.real.admit(self.now)
        era = self.model.admit(self.now)
        assert (ticket == REJECTED) == (era is None), (ticket, era)
        if era is not None:
            self.tickets.append((ticket, era))

    @precondition(lambda self: self.tickets)
    @rule(pick=st.integers(0, 100), failed=st.booleans(), slow=st.booleans())
    def record(self, pick: int, failed: bool, slow: bool) -> None:
        ticket, era = self.tickets.pop(pick % len(self.tickets))
        if self.model.policy.slow_call_duration is None:
            slow = False  # the point never reports slow calls without slow_call_duration
        was_closed = self.model.state == "closed" and era == self.model.era
        self.real.record(ticket, self.now, failed, slow)
        self.model.record(era, self.now, failed, slow)
        if was_closed and self.model.state == "closed":
            assert self.real.window_counts() == self.model.counts(self.now)

    @precondition(lambda self: self.tickets)
    @rule(pick=st.integers(0, 100))
    def release(self, pick: int) -> None:
        ticket, era = self.tickets.pop(pick % len(self.tickets))
        self.real.release(ticket)
        self.model.release(era)

    @rule(seconds=st.sampled_from([0.0, 0.1, 0.4, 1.0, 2.5, 7.0, 30.0]))
    def advance_time(self, seconds: float) -> None:
        self.now += seconds

    @rule()
    def force_open(self) -> None:
        self.real.force_open()
        self.model.force_open()

    @rule()
    def disable(self) -> None:
        self.real.disable()
        self.model.disable()

    @rule()
    def reset(self) -> None:
        self.real.reset()
        self.model.reset()

    @invariant()
    def same_state(self) -> None:
        if not hasattr(self, "real"):
            return
        assert self.real.state == BreakerState(self.model.state)
        if self.model.state == "open":
            assert self.real.open_until == pytest.approx(self.model.open_until)
            assert self.real.retry_at() == pytest.approx(self.model.open_until)
            duration = self.model.open_until - self.now
            assert duration <= self.model.policy.open_for_max + 1e-9
        if self.model.policy.window_kind == "count":
            assert self.real.window_counts() == self.model.counts(self.now)


BreakerMachine.TestCase.settings = settings(
    max_examples=150, stateful_step_count=60, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_breaker_matches_reference_model = BreakerMachine.TestCase
test_breaker_matches_reference_model.__doc__ = (
    "Any sequence of admits, outcomes, releases, time steps and manual controls matches the model."
)
