"""Test helpers: a fake clock whose sleeps return at once and advance time."""

from __future__ import annotations

import asyncio
import threading


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
        await asyncio.sleep(0)
