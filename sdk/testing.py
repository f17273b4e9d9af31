"""Test helpers: a fake clock whose sleeps return at once and advance time."""

from __future__ import annotations

import threading
from typing import Any

from ._clock import checkpoint
from ._point import IntegrationPoint
from ._policies import Backoff, Bulkhead, CircuitBreaker, Retry, RetryBudget, Timeout


class FakeClock:
    """A manual monotonic clock. ``sleep`` and ``asleep`` advance it instead of waiting.

    ``sleeps`` records every requested wait (seconds). Thread-safe.
    """

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._lock = threading.Lock()
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``."""
        if seconds < 0:
            raise ValueError(f"FakeClock.advance needs seconds >= 0, got {seconds!r}")
        with self._lock:
            self._now += seconds

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self._now += seconds

    async def asleep(self, seconds: float) -> None:
        self.sleep(seconds)
        await checkpoint()  # yields once, under asyncio or trio


def full_pipeline_point(name: str, **overrides: Any) -> IntegrationPoint:
    """A point with every policy on, as the benchmarks and many tests use it.

    Retry (3 attempts, exponential backoff, the default budget), a count
    breaker (50% of 100 calls, 20 minimum), a bulkhead of 64 with a 50 ms
    wait, and 1 s attempt / 5 s total timeouts. ``overrides`` replace any
    of the point's keyword arguments.
    """
    options: dict[str, Any] = {
        "retry": Retry(attempts=3, backoff=Backoff.exponential(), budget=RetryBudget()),
        "breaker": CircuitBreaker(failure_rate=0.5, minimum_calls=20, window=100),
        "bulkhead": Bulkhead(max_concurrent=64, max_wait=0.05),
        "timeout": Timeout(attempt=1.0, total=5.0),
    }
    options.update(overrides)
    return IntegrationPoint(name, **options)
