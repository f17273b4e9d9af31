"""How the sync shells wait off the caller's thread: one shared timer thread, and retry sleeps.

A response stream's first-message limit needs a timer per attempt; a
thread per attempt would cost more than the call, so one daemon thread runs
them all. Retry waits of ``.future()`` and stream retries sleep on the
point's clock, or on an event that a cancellation sets (real clock only).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from seawall import SystemClock

from ._grpc_routes import Rule

_log = logging.getLogger("seawall")


def sleep(rule: Rule, delay: float, wake: threading.Event | None = None) -> None:
    """Wait ``delay`` seconds on the point's clock; a real wait ends early when ``wake`` is set."""
    clock = rule.point.clock
    if wake is not None and isinstance(clock, SystemClock):
        clock.wait(wake, delay)  # skipped inside seawall.testing.instant(), as sleeps are
    else:
        clock.sleep(delay)


class Timer:
    """One scheduled callback of :class:`Timers`; :meth:`cancel` is thread-safe and idempotent."""

    __slots__ = ("args", "cancelled", "fn", "owner")

    def __init__(self, owner: Timers, fn: Callable[..., None], args: tuple[Any, ...]) -> None:
        self.owner = owner
        self.fn = fn
        self.args = args
        self.cancelled = False

    def cancel(self) -> None:
        if not self.cancelled:
            self.cancelled = True
            self.owner.dropped()


class Timers:
    """Runs callbacks at their times on one daemon thread, started on first use.

    A response stream's first-message limit needs a timer per attempt; a
    thread per attempt would cost more than the call. Times are real
    (``time.monotonic``), like the gRPC deadlines they stand in for.
    Callbacks must be quick and never raise (one that raises is logged).
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._heap: list[tuple[float, int, Timer]] = []
        self._order = itertools.count()
        self._dead = 0
        self._thread: threading.Thread | None = None

    def call_later(self, delay: float, fn: Callable[..., None], *args: Any) -> Timer:
        """Run ``fn(*args)`` on the timer thread in ``delay`` seconds (unless cancelled)."""
        timer = Timer(self, fn, args)
        when = time.monotonic() + delay
        with self._cond:
            heapq.heappush(self._heap, (when, next(self._order), timer))
            if self._thread is None or not self._thread.is_alive():  # first use, or forked
                self._thread = threading.Thread(target=self._run, daemon=True,
                                                name="seawall-grpc-timers")
                self._thread.start()
            if self._heap[0][2] is timer:
                self._cond.notify()
        return timer

    def dropped(self) -> None:
        with self._cond:
            self._dead += 1
            if self._dead > 64 and self._dead * 2 > len(self._heap):
                # mostly cancelled (streams that delivered in time): keep the heap small
                self._heap = [entry for entry in self._heap if not entry[2].cancelled]
                heapq.heapify(self._heap)
                self._dead = 0

    def _run(self) -> None:
        while True:
            with self._cond:
                heap = self._heap
                while True:
                    while heap and heap[0][2].cancelled:
                        heapq.heappop(heap)
                        self._dead = max(0, self._dead - 1)
                    if heap:
                        left = heap[0][0] - time.monotonic()
                        if left <= 0:
                            timer = heapq.heappop(heap)[2]
                            break
                        self._cond.wait(left)
                    else:
                        self._cond.wait()
                    heap = self._heap
            if not timer.cancelled:
                try:
                    timer.fn(*timer.args)
                except Exception:  # the timer thread must survive a faulty callback
                    _log.exception("seawall: gRPC timer callback raised")


TIMERS = Timers()
"""The process's timer thread (started on first use, and again in a forked child)."""
