"""The retry budget's runtime: retries allowed as a share of recent calls.

:class:`seawall.RetryBudget` says: over the last ``period`` seconds, allow
a retry while ``retries < ratio * calls + minimum_per_second * period``.
The period is split into ten buckets on a ring. Retries are counted per
bucket as they are taken; calls are not counted here at all: the point
counts every call anyway, so each bucket only notes the point's running
call total when it begins, and the calls of the window are the total now
minus the mark of the oldest bucket. The success path therefore costs the
budget one comparison (``now >= budget.next``, true once per bucket).

Sans-IO: it is told the time and never waits. Thread-safe (its own lock).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable

from ._policies import RetryBudget

BUCKETS = 10


class BudgetRuntime:
    """The budget of one point. ``RetryBudget`` ``None``: no budget (every retry allowed).

    ``calls()`` returns the point's running total of calls (never reset).
    Callers on the success path test ``now >= self.next`` before calling
    :meth:`tick`; :meth:`withdraw` is asked before each retry.
    """

    __slots__ = ("_calls", "_floor", "_index", "_lock", "_marks", "_ratio", "_retries",
                 "_total_retries", "_width", "next", "policy")

    def __init__(self, policy: RetryBudget | None, calls: Callable[[], int]) -> None:
        self.policy = policy
        self._calls = calls
        self._ratio = policy.ratio if policy is not None else 0.0
        self._floor = policy.minimum_per_second * policy.period if policy is not None else 0.0
        self._width = policy.period / BUCKETS if policy is not None else 1.0
        # the time at which the next bucket begins (never, without a budget)
        self.next = 0.0 if policy is not None else math.inf
        self._index = 0
        self._marks = [0] * BUCKETS
        self._retries = [0] * BUCKETS
        self._total_retries = 0
        self._lock = threading.Lock()

    def tick(self, now: float) -> None:
        """A bucket boundary passed (``now >= next``): note the running call total."""
        with self._lock:
            self._roll(now)

    def withdraw(self, now: float) -> bool:
        """Take one retry if the budget allows it at ``now``; false: refuse the retry."""
        if self.policy is None:
            return True
        with self._lock:
            slot = self._roll(now)
            calls = self._calls() - self._marks[(slot + 1) % BUCKETS]
            if self._total_retries + 1 > self._ratio * calls + self._floor:
                return False
            self._retries[slot] += 1
            self._total_retries += 1
            return True

    def _roll(self, now: float) -> int:
        """Advance the ring to ``now`` (lock held); returns the current slot."""
        index = int(now / self._width)
        current = self._index
        if index > current:
            calls = self._calls()
            for k in range(1, min(index - current, BUCKETS) + 1):
                i = (current + k) % BUCKETS
                self._marks[i] = calls
                self._total_retries -= self._retries[i]
                self._retries[i] = 0
            self._index = current = index
            self.next = (index + 1) * self._width
        return current % BUCKETS
