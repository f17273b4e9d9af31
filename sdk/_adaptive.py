"""Adaptive bulkhead runtime: a concurrency limit that follows the dependency's latency.

The permits, the FIFO queue of waiting threads and tasks, and the wake-ups
across event loops are :class:`~._bulkhead.BulkheadRuntime`'s; this class
only moves its limit. Growing puts new permits in the free queue (handed to
the oldest waiters first); shrinking takes free permits out, and when too
few are free, it records a *debt* that the next releases pay by not putting
their permit back. Invariant: free + held + handed to waiters =
``max_concurrent + debt``.

The limit (after Netflix concurrency-limits' Gradient2, ``Gradient2Limit``;
each constant's source is listed below) is updated once per *window* of
attempt latencies (successes, and failures in the ``timeout`` category: a
fast error says nothing about queueing). A window closes after at least
``WINDOW_SAMPLES`` samples and ``WINDOW_SECONDS`` seconds; with ``short``
its mean latency, ``baseline`` the unloaded latency and ``L`` the current
(real-valued) limit::

    baseline = min(baseline, short)
    gradient = clamp(tolerance * baseline / short, GRADIENT_MIN, 1)
    new      = L * gradient + HEADROOM * L
    L        = (1 - smoothing) * L + smoothing * new,  clamped to [minimum, maximum]

and the limit is ``round(L)``. A window whose peak in-flight count stayed
below ``L / 2`` leaves ``L`` unchanged (the callers, not the dependency,
limited the traffic: Gradient2's "app-limited" rule).

The baseline is *measured*, by a probe: after the first window and then
every ``PROBE_EVERY`` windows, the limit drops to ``PROBE_SHARE`` of ``L``
for two windows (one to drain the dependency's queue, one to measure);
the second's mean latency becomes the baseline, and ``L`` is restored. A
probe that found latency ``PROBE_AGAIN_BELOW`` of the previous baseline or
lower probes again after ``PROBE_SOON`` windows (the first probe may still
have queued, when ``L`` started above twice the capacity). Setting the
baseline from each probe, not keeping the lowest ever, also follows a
dependency that became slower for good.

Why it settles near the dependency's capacity ``N``: below ``N`` latency
stays at the baseline, the gradient is 1 and ``L`` grows by
``smoothing * HEADROOM`` (1 %) a window; above ``N`` requests queue at the
dependency, its latency grows as ``L / N`` and the gradient is
``tolerance * N / L``, so ``L`` converges to the fixed point
``tolerance * N / (1 - HEADROOM)`` (1.16 N with the defaults), where the
dependency's mean latency is 1.16 times its unloaded one
(``bench/adaptive.py`` measures it).

Constants and their sources:

* ``smoothing`` 0.2 (policy default) and ``GRADIENT_MIN`` 0.5 (at most
  halve per window): Gradient2Limit's ``smoothing`` and its
  ``max(0.5, min(1, ...))`` clamp.
* ``tolerance`` 1.1 (policy default): Gradient2Limit's ``rttTolerance`` is
  1.5 against a long-run *average* latency; ours is against the measured
  unloaded latency, and 1.5 would settle at 1.6 N; 1.1 leaves room for the
  noise of a 10-sample window mean (seawall's choice, measured in the bench).
* ``HEADROOM`` 0.05: Gradient2Limit adds ``queueSize`` 4 requests to each
  estimate; 4 is 67 % of a dependency of capacity 6, so ours is 5 % of
  ``L`` (seawall's choice: it sets both the growth rate and the fixed point).
* baseline by probing (``PROBE_*``): Gradient2 compares with an
  exponential average of the last 600 samples (``longWindow``), which
  follows a sustained overload up, so its limit creeps up with it; probing
  at a lower limit is how concurrency-limits' ``VegasLimit`` re-learns its
  no-load latency (``probeMultiplier`` 30: every 30 x limit samples). Our
  ``PROBE_EVERY`` 50 windows (about 5 s under load), ``PROBE_SHARE`` 0.5,
  ``PROBE_SOON`` 5 and ``PROBE_AGAIN_BELOW`` 0.9 are seawall's choices.
* ``WINDOW_SAMPLES`` 10: concurrency-limits' ``WindowedLimit`` default
  window size; ``WINDOW_SECONDS`` 0.1: its ``minWindowTime`` is 1 s, ours
  is shorter so the limit settles within seconds.

Thread-safe: samples are folded under their own lock; the permit machinery
under the bulkhead's lock, always taken after the sample lock (never the
other way round).
"""

from __future__ import annotations

import queue
import threading

from ._bulkhead import BulkheadRuntime
from ._policies import AdaptiveBulkhead

WINDOW_SAMPLES = 10
WINDOW_SECONDS = 0.1
GRADIENT_MIN = 0.5
HEADROOM = 0.05
PROBE_EVERY = 50
PROBE_SOON = 5
PROBE_AGAIN_BELOW = 0.9
PROBE_SHARE = 0.5

_NORMAL, _DRAINING, _MEASURING = 0, 1, 2


class AdaptiveRuntime(BulkheadRuntime):
    """The permits of an :class:`seawall.AdaptiveBulkhead`; ``max_concurrent`` is the current limit.

    :meth:`sample` is told each attempt's latency (by the point's ledger);
    ``estimate`` is the real-valued limit, ``baseline`` the latency it
    compares with (``None`` before the first window), ``windows`` how many
    windows have been folded.
    """

    __slots__ = ("_countdown", "_debt", "_peak", "_phase", "_samples", "_start", "_sum",
                 "baseline", "estimate", "maximum", "minimum", "sample_lock", "smoothing",
                 "tolerance", "windows")

    def __init__(self, policy: AdaptiveBulkhead, now: float) -> None:
        super().__init__(policy.initial)
        self.minimum = policy.minimum
        self.maximum = policy.maximum
        self.tolerance = float(policy.tolerance)
        self.smoothing = float(policy.smoothing)
        self.estimate = float(policy.initial)
        self.baseline: float | None = None
        self.windows = 0
        self.sample_lock = threading.Lock()
        self._debt = 0
        self._start = now
        self._sum = 0.0
        self._samples = 0
        self._peak = 0
        self._phase = _NORMAL
        self._countdown = 1  # probe the unloaded latency right after the first window

    # -- permits: the base class's, with a limit that moves ------------------------

    @property
    def active(self) -> int:
        """Permits taken now (held by callers or handed to waiters)."""
        return self.max_concurrent + self._debt - self._free.qsize()

    def release(self) -> None:
        """Return a permit; one owed after a shrink is dropped instead."""
        if self._debt:
            with self.lock:
                if self._debt > 0:
                    self._debt -= 1
                    return
        super().release()

    def resize(self, limit: int) -> None:
        """Set the limit to ``limit`` permits (clamped to [minimum, maximum])."""
        limit = max(self.minimum, min(self.maximum, limit))
        with self.lock:
            delta = limit - self.max_concurrent
            self.max_concurrent = limit
            if delta <= 0:
                owed = -delta
                while owed:
                    try:
                        self._free.get_nowait()
                    except queue.Empty:  # the rest is paid on release
                        break
                    owed -= 1
                self._debt += owed
                return
            paid = min(self._debt, delta)
            self._debt -= paid
            added = delta - paid
            for _ in range(added):
                self._free.put(None)
        if added and self._waiters:
            self._hand_over()

    @property
    def limit(self) -> int:
        """The learned limit: ``max_concurrent`` except while a probe holds it at half."""
        return max(self.minimum, min(self.maximum, round(self.estimate)))

    # -- learning --------------------------------------------------------------------

    def sample(self, now: float, latency: float) -> None:
        """One attempt took ``latency`` seconds, ending at ``now`` (the point's clock)."""
        inflight = self.active + 1  # this attempt's permit is already back
        with self.sample_lock:
            self._sum += latency
            self._samples += 1
            if inflight > self._peak:
                self._peak = inflight
            if self._samples < WINDOW_SAMPLES or now - self._start < WINDOW_SECONDS:
                return
            short = self._sum / self._samples
            peak = self._peak
            self._start, self._sum, self._samples, self._peak = now, 0.0, 0, 0
            self.windows += 1
            if self._phase == _DRAINING:  # the queue of the old limit is still draining
                self._phase = _MEASURING
                return
            if self._phase == _MEASURING:  # latency at the probe's limit: the new baseline
                before = self.baseline
                self.baseline = short
                self._phase = _NORMAL
                # a probe that found much lower latency may not have reached the bottom yet
                learned = before is not None and short < PROBE_AGAIN_BELOW * before
                self._countdown = PROBE_SOON if learned else PROBE_EVERY
                self.resize(round(self.estimate))
                return
            limit = self.fold(short, peak)
            self._countdown -= 1
            if self._countdown <= 0:
                self._phase = _DRAINING
                limit = round(self.estimate * PROBE_SHARE)
            if limit != self.max_concurrent:
                self.resize(limit)

    def fold(self, short: float, peak: int) -> int:
        """Fold one window (mean latency ``short``, peak in flight ``peak``); the new limit.

        The formula is in the module docstring. Callers hold ``sample_lock``.
        """
        base = self.baseline
        if base is None or short < base:
            base = self.baseline = short
        current = self.estimate
        if peak < current / 2 or short <= 0.0:
            return self.max_concurrent  # app-limited (or a clock that did not move)
        gradient = self.tolerance * base / short
        gradient = GRADIENT_MIN if gradient < GRADIENT_MIN else 1.0 if gradient > 1.0 else gradient
        new = current * gradient + HEADROOM * current
        estimate = (1.0 - self.smoothing) * current + self.smoothing * new
        self.estimate = max(float(self.minimum), min(float(self.maximum), estimate))
        return max(self.minimum, min(self.maximum, round(self.estimate)))
