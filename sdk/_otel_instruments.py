"""The OpenTelemetry instruments seawall exports to, their names and attributes.

One :class:`Instruments` per meter, made once (:func:`instruments_of`): the
counters and histograms the handle (:class:`seawall._otel.OtelMetrics`)
records into from its drain, and the observable gauges read from the live
points at collection. The attribute names and the outcome of each event
are here too, so what is exported is described in one place.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ._breaker import BreakerState
from ._classify import Category
from ._registry import concurrency_limits, live_points

if TYPE_CHECKING:
    from opentelemetry.metrics import CallbackOptions, Meter, Observation

    from ._otel import OtelMetrics

OTHER = "_other"
"""The operation name that operations beyond ``max_operations`` of a point are folded into."""

DURATION_BOUNDARIES: tuple[float, ...] = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)
"""Advised bucket boundaries of the duration histograms, in seconds: 100 µs to 60 s.

Three per decade (1, 2.5, 5), then 30 s and 60 s; a View may replace them
(with an exponential histogram, say).
"""

BREAKER_VALUES: dict[BreakerState, int] = {
    BreakerState.CLOSED: 0, BreakerState.DISABLED: 0,
    BreakerState.HALF_OPEN: 1,
    BreakerState.OPEN: 2, BreakerState.FORCED_OPEN: 2,
}
"""``seawall.breaker.state``: 0 closed (or disabled: every call passes), 1 half-open, 2 open
(or forced open: every call is refused)."""

POINT = "seawall.point"
OPERATION = "seawall.operation"
OUTCOME = "seawall.outcome"
CATEGORY = "seawall.category"
REASON = "seawall.reason"
INJECTED = "seawall.injected"
"""Set (``True``) on the call and attempt series of outcomes made by fault injection
(:class:`seawall.Chaos`), absent on real ones: a rehearsal never pollutes real error rates."""

CANCELLED = Category.CANCELLED
# the instruments of each meter, made once: the SDK hands back the first instrument of a
# name (with its first callbacks) when one is created again, so a handle opened after
# another was closed reuses them
_meters: weakref.WeakKeyDictionary[Any, Instruments] = weakref.WeakKeyDictionary()


def call_outcome(category: Category | None, fallback: bool, rejected: str | None) -> str:
    if fallback:
        return "fallback"
    if rejected is not None:
        return "rejected"
    if category is None:
        return "success"
    return "cancelled" if category is CANCELLED else "failure"


def attempt_outcome(category: Category | None) -> str:
    if category is None:
        return "success"
    return "cancelled" if category is CANCELLED else "failure"


class Instruments:
    """The instruments of one meter, and the handle that feeds them now (``active``)."""

    def __init__(self, meter: Meter) -> None:
        self.active: OtelMetrics | None = None
        self.calls = meter.create_counter(
            "seawall.calls", unit="{call}",
            description="Calls through a seawall integration point, by outcome")
        self.attempts = meter.create_counter(
            "seawall.attempts", unit="{attempt}",
            description="Attempts that reached the dependency, by outcome")
        self.retries = meter.create_counter(
            "seawall.retries", unit="{retry}",
            description="Retries scheduled, by the category of the failure retried")
        self.rejections = meter.create_counter(
            "seawall.rejections", unit="{rejection}",
            description="Calls and retries refused locally, by reason")
        self.hedges = meter.create_counter(
            "seawall.hedges", unit="{attempt}",
            description="Hedges started (outcome sent) and calls a hedge answered (outcome won)")
        self.waits = meter.create_counter(
            "seawall.waits", unit="{attempt}",
            description="Attempts that waited before starting, by reason (paused, rate_limit)")
        self.call_duration = meter.create_histogram(
            "seawall.call.duration", unit="s",
            description="Duration of calls that reached the dependency, every attempt and "
                        "wait included",
            explicit_bucket_boundaries_advisory=DURATION_BOUNDARIES)
        self.attempt_duration = meter.create_histogram(
            "seawall.attempt.duration", unit="s", description="Duration of attempts",
            explicit_bucket_boundaries_advisory=DURATION_BOUNDARIES)
        self.folded = meter.create_counter(
            "seawall.otel.folded_calls", unit="{call}",
            description="Calls exported under the operation _other: their point had "
                        "max_operations other operations already")
        meter.create_observable_gauge(
            "seawall.breaker.state", callbacks=[self._breakers], unit="1",
            description="Circuit breaker state: 0 closed, 1 half-open, 2 open")
        meter.create_observable_up_down_counter(
            "seawall.bulkhead.in_flight", callbacks=[self._in_flight], unit="{call}",
            description="Calls holding (or handed) a bulkhead permit")
        meter.create_observable_gauge(
            "seawall.bulkhead.limit", callbacks=[self._limits], unit="{call}",
            description="The bulkhead's concurrency limit (an adaptive one moves)")

    def _breakers(self, _options: CallbackOptions) -> Iterable[Observation]:
        handle = self.active
        if handle is None:
            return []
        handle._drain_for_collection()
        from opentelemetry.metrics import Observation

        worst: dict[str, int] = {}
        for point in live_points():
            state = point.breaker_state
            if state is not None:
                # points of one name are one series: the state that refuses most shows
                value = BREAKER_VALUES.get(state, 0)
                worst[point.name] = max(value, worst.get(point.name, 0))
        return [Observation(v, {POINT: name}) for name, v in sorted(worst.items())]

    def _in_flight(self, _options: CallbackOptions) -> Iterable[Observation]:
        handle = self.active
        if handle is None:
            return []
        handle._drain_for_collection()
        from opentelemetry.metrics import Observation

        total: dict[str, int] = {}
        for point in live_points():
            permits = point.permits
            if permits is not None:
                total[point.name] = total.get(point.name, 0) + int(permits.active)
        return [Observation(v, {POINT: name}) for name, v in sorted(total.items())]

    def _limits(self, _options: CallbackOptions) -> Iterable[Observation]:
        handle = self.active
        if handle is None:
            return []
        from opentelemetry.metrics import Observation

        total = concurrency_limits()
        return [Observation(v, {POINT: name}) for name, v in sorted(total.items())]


def instruments_of(meter: Meter) -> Instruments:
    """The instruments of ``meter``: made at its first export, the same ones after."""
    instruments = _meters.get(meter)
    if instruments is None:
        instruments = Instruments(meter)
        try:
            _meters[meter] = instruments
        except TypeError:  # a meter that cannot be weakly referenced: no reuse
            pass
    return instruments
