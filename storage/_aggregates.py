"""The recorder's aggregation: event records folded into one row per (point, operation, minute).

A row is a vector laid out by :mod:`._schema` (counts, the latency sum,
the histogram of :mod:`._histogram`, the bulkhead limit's samples); the
store adds rows to its tables. :class:`Aggregates` holds the rows and the
breaker transitions waiting for the store, within bounds, and counts in
:attr:`Aggregates.dropped` what found no room. It has no lock and no
thread of its own: the recorder calls it under its lock, from its thread.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from seawall import (
    AttemptEvent,
    BreakerTransition,
    Category,
    HedgeEvent,
    RejectionEvent,
    RetryEvent,
    WaitEvent,
)
from seawall._registry import concurrency_limits

from ._histogram import BASE as _BASE
from ._histogram import BUCKETS, PER_DOUBLING
from ._schema import (
    CALLS,
    CANCELLED,
    FAILED,
    FAILURES,
    FALLBACKS,
    H0,
    HEDGES_SENT,
    HEDGES_WON,
    INJECTED_CALLS,
    INJECTED_FAILURES,
    LATENCY_SUM,
    LIMIT_SAMPLES,
    LIMIT_SUM,
    REFUSED,
    REJECTED,
    RETRIES,
    SUCCESSES,
    TIMEOUTS,
    WAITED,
    WIDTH,
)
from ._store import Key

Rows = dict[Key, list[float]]

_CANCELLED = Category.CANCELLED
_TIMEOUT = Category.TIMEOUT
# the histogram's bucket_of(), inlined in the fold's loop
_INV_BASE = 1.0 / _BASE
_PER = float(PER_DOUBLING)
_LAST = BUCKETS - 1
_log2 = math.log2


class Aggregates:
    """The rows and breaker transitions not yet written, at most ``max_keys`` and ``max_transitions``.

    Not thread-safe: its owner (the recorder) holds a lock around every use.
    """

    __slots__ = ("counts", "dropped", "max_keys", "max_transitions", "transitions")

    def __init__(self, max_keys: int, max_transitions: int) -> None:
        self.max_keys = max_keys
        self.max_transitions = max_transitions
        self.counts: Rows = {}
        self.transitions: list[BreakerTransition] = []
        # lost for want of room; the recorder adds what a store that never answered cost
        self.dropped = 0

    def fold_calls(self, fields: list[Any]) -> None:
        """Add calls' records, given as their fields one after the other, to their rows."""
        get = self.counts.get
        # the row of the last call and the minute it covers, [low, high) seconds: the
        # next call of the same point and operation in that minute (most of them) skips
        # the minute's division, the key's tuple and its look-up (a successful call's
        # fold: 4,500 instructions instead of 7,000, bench/metrics.py --instructions)
        last_point = last_operation = None
        low = high = 0.0
        vec: list[float] = []
        it = iter(fields)
        for point, operation, category, _, duration, stamp, fallback, rejected, injected \
                in zip(it, it, it, it, it, it, it, it, it, strict=True):
            if point is not last_point or operation is not last_operation \
                    or not low <= stamp < high:
                minute = int(stamp // 60)
                key = (point, operation, minute)
                found = get(key)
                if found is None:
                    found = self._new_vector(key)
                    if found is None:
                        last_point = None
                        continue
                vec = found
                last_point, last_operation = point, operation
                low = minute * 60.0
                high = low + 60.0
            if injected:  # a rehearsal (seawall.Chaos): apart from the real calls
                vec[INJECTED_CALLS] += 1
                if category is not None and category is not _CANCELLED:
                    vec[INJECTED_FAILURES] += 1
                continue
            vec[CALLS] += 1
            if rejected is not None:
                vec[REJECTED] += 1
            elif category is _CANCELLED:
                vec[CANCELLED] += 1
            else:
                if category is None:
                    vec[SUCCESSES] += 1
                else:
                    vec[FAILURES] += 1
                    vec[FAILED[category]] += 1
                vec[LATENCY_SUM] += duration
                if duration < _BASE:
                    vec[H0] += 1
                else:
                    index = int(_log2(duration * _INV_BASE) * _PER) + 1
                    vec[H0 + (index if index < _LAST else _LAST)] += 1
            if fallback:
                vec[FALLBACKS] += 1

    def fold(self, events: Iterable[Any]) -> None:
        """Add each record but calls' to its row (or the transitions), dropping what has no room."""
        for ev in events:
            kind = type(ev)
            if kind is AttemptEvent:
                if ev.category is _TIMEOUT and not ev.injected:
                    self._bump(ev, TIMEOUTS)
            elif kind is RetryEvent:
                self._bump(ev, RETRIES)
            elif kind is RejectionEvent:
                refused = REFUSED.get(ev.reason)
                if refused is not None:
                    self._bump(ev, refused)
            elif kind is WaitEvent:
                waited = WAITED.get(ev.reason)
                if waited is not None:
                    self._bump(ev, waited)
            elif kind is HedgeEvent:
                self._bump(ev, HEDGES_WON if ev.won else HEDGES_SENT)
            elif kind is BreakerTransition:
                if len(self.transitions) < self.max_transitions:
                    self.transitions.append(ev)
                else:
                    self.dropped += 1

    def _bump(self, ev: Any, index: int) -> None:
        key = (ev.point, ev.operation, int(ev.time // 60))
        vec = self.counts.get(key)
        if vec is None:
            vec = self._new_vector(key)
            if vec is None:
                return
        vec[index] += 1

    def _new_vector(self, key: Key) -> list[float] | None:
        if len(self.counts) >= self.max_keys:
            self.dropped += 1
            return None
        vec: list[float] = [0] * WIDTH
        vec[LATENCY_SUM] = 0.0
        self.counts[key] = vec
        return vec

    def sample_limits(self) -> None:
        """Add each counted point's bulkhead limit, once, to its newest minute.

        The limit is a level, stored as a sum and a count of samples (their
        ratio is the mean limit over any span): one sample per flush for each
        point that had events since the last one, the limits of live points
        sharing a name added up (as :func:`seawall.otel_metrics` does).
        """
        newest: dict[str, int] = {}
        for point, _, minute in self.counts:
            if newest.get(point, -1) < minute:
                newest[point] = minute
        if not newest:
            return
        limits = concurrency_limits(newest)
        if not limits:
            return
        for (point, _, minute), vec in self.counts.items():
            limit = limits.get(point)
            if limit is not None and minute == newest[point]:
                vec[LIMIT_SUM] += limit
                vec[LIMIT_SAMPLES] += 1

    def take(self) -> tuple[Rows, list[BreakerTransition]]:
        """Everything held, handed over for a write; this starts empty again."""
        counts, self.counts = self.counts, {}
        moved, self.transitions = self.transitions, []
        return counts, moved

    def keep(self, counts: Rows, moved: list[BreakerTransition]) -> None:
        """Put a batch the store refused back in front of what came since."""
        current = self.counts
        for key, vec in counts.items():
            row = current.get(key)
            if row is not None:
                for i in range(WIDTH):
                    row[i] += vec[i]
            elif len(current) < self.max_keys:
                current[key] = vec
            else:
                self.dropped += int(vec[CALLS]) or 1
        room = self.max_transitions - len(self.transitions)
        self.dropped += max(0, len(moved) - room)
        self.transitions[:0] = moved[:max(room, 0)]


def size(counts: Rows, moved: list[BreakerTransition]) -> int:
    """What a batch counts for in ``Recorder.dropped``: its calls (at least one a row), its transitions."""
    return sum(int(v[CALLS]) or 1 for v in counts.values()) + len(moved)
