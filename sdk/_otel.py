"""OpenTelemetry metrics: the export of every point's events (the instruments, their
names and attributes are in ``_otel_instruments.py``). Nothing imports OpenTelemetry
until :func:`otel_metrics` is called, and no hook listens before it.

Why the events are queued rather than recorded where they happen: one
``Counter.add`` or ``Histogram.record`` of the OpenTelemetry SDK costs
several microseconds (it cleans and hashes the attributes, asks the
exemplar filter, takes a lock), ten times what a protected call costs.
So the hook on the caller's thread only appends the event record to a
list, as the metrics recorder does; a background thread drains the list
every ``drain_interval`` seconds, adds the counts of each series once per
drain, and records the durations. A collection drains the list first (the
observable instruments' callbacks run before the SDK reads its
synchronous instruments), so what a reader exports includes every call
made before it collected.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._errors import ConfigurationError
from ._events import (
    AttemptEvent,
    CallEvent,
    HedgeEvent,
    RejectionEvent,
    RetryEvent,
    WaitEvent,
    add_hook,
    remove_hook,
)
from ._otel_instruments import (
    CANCELLED,
    CATEGORY,
    DURATION_BOUNDARIES,
    INJECTED,
    OPERATION,
    OTHER,
    OUTCOME,
    POINT,
    REASON,
    attempt_outcome,
    call_outcome,
    instruments_of,
)
from ._tally import Tally, queue_hook

if TYPE_CHECKING:
    from opentelemetry.metrics import Meter, MeterProvider

__all__ = ["DURATION_BOUNDARIES", "OTHER", "OtelMetrics", "otel_metrics"]

log = logging.getLogger("seawall")

_GLOBAL = object()  # the key of the global meter provider in _handles

_handles: dict[object, OtelMetrics] = {}
_handles_lock = threading.Lock()


class OtelMetrics:
    """A running export of every point's events to OpenTelemetry; see :func:`otel_metrics`.

    :meth:`close` stops it. Thread-safe: events come from any thread or
    event loop; a background thread (``seawall-otel``) does the recording.
    """

    def __init__(self, key: object, provider: Any, meter: Meter, *, max_operations: int,
                 durations: bool, drain_interval: float, max_pending: int) -> None:
        self.meter_provider = provider
        """The provider exported to (``None``: the global one, whatever it is at collection)."""
        self.max_operations = max_operations
        self.durations = durations
        self.drain_interval = drain_interval
        self.max_pending = max_pending
        self._key = key
        instruments = instruments_of(meter)
        self._instruments = instruments
        self._lock = threading.Lock()  # the drain: its caches and totals
        self._pending: list[Any] = []
        self._overflow = Tally()  # stepped without a lock on the hot path
        self._operations: dict[str, set[str]] = {}
        self._folded: dict[str, int] = {}
        self._attrs: dict[tuple[Any, ...], Any] = {}
        self._closed = False
        self._stop = threading.Event()
        self._hook = self._make_hook()
        instruments.active = self
        add_hook(self._hook)
        self._thread = threading.Thread(target=self._run, name="seawall-otel", daemon=True)
        self._thread.start()

    def __repr__(self) -> str:
        where = "the global meter provider" if self.meter_provider is None \
            else repr(self.meter_provider)
        state = "closed" if self._closed else "running"
        return f"<OtelMetrics to {where}, {state}>"

    def _make_hook(self) -> Callable[[Any], None]:
        return queue_hook(self._pending, self.max_pending, self._overflow,
                          "seawall.otel_metrics: queue one event for OpenTelemetry.")

    # -- state ------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has run."""
        return self._closed

    @property
    def folded(self) -> dict[str, int]:
        """Per point, the calls exported under the operation ``_other`` (see ``max_operations``)."""
        with self._lock:
            return dict(self._folded)

    @property
    def dropped(self) -> int:
        """Events lost because ``max_pending`` events were already waiting for the drain."""
        return self._overflow.value()

    # -- recording --------------------------------------------------------------

    def flush(self) -> None:
        """Record every queued event now, from the calling thread.

        A collection does this by itself; call it to have the instruments
        up to date without one (before reading a synchronous instrument's
        storage, say).
        """
        with self._lock:
            self._drain()

    def _drain_for_collection(self) -> None:
        try:
            self.flush()
        except Exception:  # a collection must go on with what is there
            log.exception("seawall: recording queued events for a collection failed")

    def _run(self) -> None:
        while not self._stop.wait(self.drain_interval):
            try:
                self.flush()
            except Exception:  # the thread must outlive any surprise
                log.exception("seawall: the OpenTelemetry thread hit an error; continuing")

    def _operation(self, point: str, operation: str) -> str:
        known = self._operations.get(point)
        if known is None:
            known = self._operations[point] = set()
        if operation in known:
            return operation
        if len(known) < self.max_operations:
            known.add(operation)
            return operation
        return OTHER

    def _drain(self) -> None:
        """Record the queued events (the caller holds ``_lock``)."""
        pending = self._pending
        n = len(pending)
        if n == 0:
            return
        events = pending[:n]
        del pending[:n]  # appends made meanwhile stay queued
        ins = self._instruments
        attrs = self._attrs
        durations = self.durations
        call_duration = ins.call_duration.record
        attempt_duration = ins.attempt_duration.record
        operation_of = self._operation
        operations = self._operations
        calls: dict[tuple[Any, ...], int] = {}
        attempts: dict[tuple[Any, ...], int] = {}
        retries: dict[tuple[Any, ...], int] = {}
        rejections: dict[tuple[Any, ...], int] = {}
        extras: dict[tuple[Any, ...], int] = {}  # hedges and waits
        folded: dict[str, int] = {}
        for ev in events:
            kind = ev.__class__
            if kind is CallEvent:
                point, operation, category, tries, duration, _, fallback, rejected, injected = ev
                known = operations.get(point)
                # a known operation (the usual case) is itself: no call
                exported = operation if known is not None and operation in known \
                    else operation_of(point, operation)
                if exported is OTHER and operation != OTHER:
                    folded[point] = folded.get(point, 0) + 1
                key: tuple[Any, ...] = ("c", point, exported, category, fallback, rejected,
                                        injected)
                calls[key] = calls.get(key, 0) + 1
                if durations and tries:
                    dkey: tuple[Any, ...] = ("cd", point, exported, category, fallback, rejected,
                                             injected)
                    found = attrs.get(dkey)
                    if found is None:
                        found = attrs[dkey] = {
                            POINT: point, OPERATION: exported,
                            OUTCOME: call_outcome(category, fallback, rejected)}
                        if injected:
                            found[INJECTED] = True
                    call_duration(duration, found)
            elif kind is AttemptEvent:
                point, operation, _, category, duration, _, injected = ev
                known = operations.get(point)
                exported = operation if known is not None and operation in known \
                    else operation_of(point, operation)
                key = ("a", point, exported, category, injected)
                attempts[key] = attempts.get(key, 0) + 1
                if durations:
                    dkey = ("ad", point, exported, category, injected)
                    found = attrs.get(dkey)
                    if found is None:
                        found = attrs[dkey] = {POINT: point, OPERATION: exported,
                                               OUTCOME: attempt_outcome(category)}
                        if injected:
                            found[INJECTED] = True
                    attempt_duration(duration, found)
            elif kind is RetryEvent:
                key = ("r", ev.point, operation_of(ev.point, ev.operation), ev.category)
                retries[key] = retries.get(key, 0) + 1
            elif kind is RejectionEvent:
                key = ("j", ev.point, operation_of(ev.point, ev.operation), ev.reason)
                rejections[key] = rejections.get(key, 0) + 1
            elif kind is HedgeEvent or kind is WaitEvent:
                what = ("won" if ev.won else "sent") if kind is HedgeEvent else ev.reason
                key = ("h" if kind is HedgeEvent else "w", ev.point,
                       operation_of(ev.point, ev.operation), what)
                extras[key] = extras.get(key, 0) + 1
        # one add per series per drain: the SDK's cost no longer grows with the calls
        for key, count in calls.items():
            ins.calls.add(count, attrs.get(key) or self._call_attrs(key))
        for key, count in attempts.items():
            ins.attempts.add(count, attrs.get(key) or self._attempt_attrs(key))
        for key, count in retries.items():
            found = attrs.get(key)
            if found is None:
                found = attrs[key] = {POINT: key[1], OPERATION: key[2],
                                      CATEGORY: key[3].value}
            ins.retries.add(count, found)
        for key, count in rejections.items():
            found = attrs.get(key)
            if found is None:
                found = attrs[key] = {POINT: key[1], OPERATION: key[2], REASON: key[3]}
            ins.rejections.add(count, found)
        for key, count in extras.items():
            found = attrs.get(key)
            if found is None:
                label = OUTCOME if key[0] == "h" else REASON
                found = attrs[key] = {POINT: key[1], OPERATION: key[2], label: key[3]}
            (ins.hedges if key[0] == "h" else ins.waits).add(count, found)
        for point, count in folded.items():
            self._folded[point] = self._folded.get(point, 0) + count
            ins.folded.add(count, {POINT: point})

    def _call_attrs(self, key: tuple[Any, ...]) -> dict[str, Any]:
        _, point, operation, category, fallback, rejected, injected = key
        found: dict[str, Any] = {POINT: point, OPERATION: operation,
                                 OUTCOME: call_outcome(category, fallback, rejected)}
        if injected:
            found[INJECTED] = True
        if category is not None and category is not CANCELLED:
            found[CATEGORY] = category.value
        if rejected is not None:
            found[REASON] = rejected
        self._attrs[key] = found
        return found

    def _attempt_attrs(self, key: tuple[Any, ...]) -> dict[str, Any]:
        _, point, operation, category, injected = key
        found: dict[str, Any] = {POINT: point, OPERATION: operation,
                                 OUTCOME: attempt_outcome(category)}
        if injected:
            found[INJECTED] = True
        if category is not None and category is not CANCELLED:
            found[CATEGORY] = category.value
        self._attrs[key] = found
        return found

    # -- stopping ---------------------------------------------------------------

    def close(self) -> None:
        """Stop exporting: take the hook off, record what is queued, silence the gauges.

        Idempotent. What the SDK has aggregated stays with it (a cumulative
        reader keeps reporting the last totals); calling :func:`otel_metrics`
        again starts a new export to the same instruments.
        """
        with _handles_lock:
            if self._closed:
                return
            self._closed = True
            if _handles.get(self._key) is self:
                del _handles[self._key]
        remove_hook(self._hook)
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join()
        self.flush()
        if self._instruments.active is self:
            self._instruments.active = None

    def __enter__(self) -> OtelMetrics:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def otel_metrics(meter_provider: MeterProvider | None = None, *, max_operations: int = 100,
                 durations: bool = True, drain_interval: float = 0.1,
                 max_pending: int = 250_000) -> OtelMetrics:
    """Export every integration point's events as OpenTelemetry metrics; returns the handle.

    ``meter_provider`` is any OpenTelemetry ``MeterProvider`` (``None``: the
    global one, ``opentelemetry.metrics.get_meter_provider()``, also one set
    later). Needs ``pip install 'seawall[otel]'`` (the API; the application
    brings the SDK and its exporters). Until this is called nothing imports
    OpenTelemetry and nothing listens to the events.

    Instruments (meter ``seawall``): counters ``seawall.calls``,
    ``seawall.attempts``, ``seawall.retries``, ``seawall.rejections``,
    ``seawall.hedges`` (``outcome`` sent / won), ``seawall.waits`` (``reason``
    paused / rate_limit);
    histograms ``seawall.call.duration`` and ``seawall.attempt.duration``
    in seconds (advised boundaries :data:`DURATION_BOUNDARIES`, 100 µs to
    60 s); the gauge ``seawall.breaker.state`` (0 closed, 1 half-open, 2
    open); the up-down gauge ``seawall.bulkhead.in_flight`` and the gauge
    ``seawall.bulkhead.limit``; the counter
    ``seawall.otel.folded_calls``. Attributes: ``seawall.point``,
    ``seawall.operation``, and where they apply ``seawall.outcome``
    (``success``, ``failure``, ``rejected``, ``cancelled``, ``fallback``),
    ``seawall.category``, ``seawall.reason``.

    * ``max_operations``: distinct operation names exported per point; the
      operations seen after that many are exported as ``_other``, and their
      calls counted in ``seawall.otel.folded_calls`` and :attr:`OtelMetrics.folded`.
    * ``durations``: ``False`` leaves out the two histograms, the only part
      whose cost grows with the calls (one SDK ``record`` per attempt and per call,
      on the background thread).
    * ``drain_interval`` (seconds): how often the background thread records
      the queued events (a collection also does, first).
    * ``max_pending``: events queued at most; more are dropped and counted in
      :attr:`OtelMetrics.dropped`, never blocking the caller.

    Idempotent: called again for the same provider with the same options,
    it returns the running handle (other options raise
    :class:`seawall.ConfigurationError`: close it first). Thread-safe.
    """
    for name, value, low in (("max_operations", max_operations, 1),
                             ("max_pending", max_pending, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigurationError(f"otel_metrics: {name} must be an int >= {low}, "
                                     f"got {value!r}")
    if not isinstance(durations, bool):
        raise ConfigurationError(f"otel_metrics: durations must be True or False, "
                                 f"got {durations!r}")
    if isinstance(drain_interval, bool) or not isinstance(drain_interval, (int, float)) \
            or not 0 < drain_interval < math.inf:
        raise ConfigurationError(f"otel_metrics: drain_interval must be > 0 seconds, "
                                 f"got {drain_interval!r}")
    try:
        from opentelemetry import metrics
    except ImportError as exc:
        raise ConfigurationError(
            "otel_metrics needs the OpenTelemetry API, not installed: "
            "pip install 'seawall[otel]' (and the opentelemetry-sdk your exporters use)"
        ) from exc
    if meter_provider is not None and not callable(getattr(meter_provider, "get_meter", None)):
        raise ConfigurationError(f"otel_metrics: meter_provider must be an OpenTelemetry "
                                 f"MeterProvider or None, got {meter_provider!r}")
    from . import __version__

    options = {"max_operations": max_operations, "durations": durations,
               "drain_interval": float(drain_interval), "max_pending": max_pending}
    with _handles_lock:
        # the global provider, named or not, is one key: two exports to it would count twice
        key: object = _GLOBAL if meter_provider is None \
            or meter_provider is metrics.get_meter_provider() else meter_provider
        running = _handles.get(key)
        if running is not None:
            differ = [f"{name}={getattr(running, name)!r}" for name, value in options.items()
                      if getattr(running, name) != value]
            if differ:
                raise ConfigurationError(
                    f"otel_metrics is already running for this meter provider with "
                    f"{', '.join(differ)}: close() its handle first to change them")
            return running
        provider = meter_provider if key is not _GLOBAL else None
        source = metrics.get_meter_provider() if provider is None else provider
        meter = source.get_meter("seawall", __version__)
        handle = OtelMetrics(key, provider, meter, max_operations=max_operations,
                             durations=durations, drain_interval=float(drain_interval),
                             max_pending=max_pending)
        _handles[key] = handle
        return handle
