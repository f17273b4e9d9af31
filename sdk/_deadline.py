"""Deadlines: the remaining budget readable by callees, and cheap async cancellation.

``remaining()`` reads a context variable holding the innermost deadline, so
sync work (and the integrations) can hand the budget to their transports.

Async attempt timeouts do not use ``asyncio.timeout()``: that builds a
context manager and a timer handle per call (about 3 us here). Instead one
watchdog per event loop keeps a heap of ``(deadline, watch)`` and a single
timer armed at the earliest deadline; registering a watch is a heap push.
When a deadline passes and its call is still running, the watchdog cancels
the task, and the point turns that cancellation into ``DeadlineExceeded``.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
from collections import deque
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

# (absolute deadline, the clock's now function) of the innermost seawall scope
DEADLINE: ContextVar[tuple[float, Callable[[], float]] | None] = ContextVar(
    "seawall_deadline", default=None
)


def remaining() -> float | None:
    """Seconds left before the innermost seawall deadline, or ``None`` when there is none.

    Inside a call through an integration point with a :class:`seawall.Timeout`,
    this is the time the current attempt may still take (never below zero).
    Safe from any thread or task: each sees its own call's deadline.
    """
    scope = DEADLINE.get()
    if scope is None:
        return None
    deadline, now = scope
    left = deadline - now()
    return left if left > 0.0 else 0.0


def current_deadline() -> float | None:
    """The innermost absolute deadline (monotonic seconds), or ``None``."""
    scope = DEADLINE.get()
    return None if scope is None else scope[0]


# A watch is a list [deadline, task, done, fired], read by index: building one costs
# ~1,400 CPU instructions less than a __slots__ object (callgrind; ~6% of the async
# "seawall full pipeline" call in make bench). The caller sets DONE when its work
# ends; the watchdog sets FIRED when it cancelled the task.
DEADLINE_AT, TASK, DONE, FIRED = 0, 1, 2, 3
Watch = list  # type alias for readers: [float, asyncio.Task, bool, bool]


class Watchdog:
    """Cancels tasks whose deadline passed; one per event loop.

    Watches usually arrive in deadline order (one attempt timeout per point,
    on a clock that only moves forward): those go to a deque, an append.
    A watch that would break the order goes to a heap instead. One timer,
    armed at the earliest deadline, serves both.
    """

    __slots__ = ("_armed_at", "_handle", "_heap", "_queue", "_seq", "loop", "same_clock")

    # a deadline this close after the armed timer fires with it, so bursts
    # of calls share one timer
    RESOLUTION = 0.001

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        # the loop's clock is time.monotonic (the default loops): deadlines
        # computed on the system clock can be used as loop times directly
        self.same_clock = type(loop).time is asyncio.BaseEventLoop.time
        self._queue: deque[list[Any]] = deque()
        self._heap: list[tuple[float, int, list[Any]]] = []
        self._seq = itertools.count()
        self._handle: asyncio.TimerHandle | None = None
        self._armed_at = 0.0

    def watch(self, task: asyncio.Task[Any], deadline: float) -> list[Any]:
        """Cancel ``task`` at loop time ``deadline`` unless the watch is marked done first."""
        w = [deadline, task, False, False]
        q = self._queue
        if not q or q[-1][0] <= deadline:
            q.append(w)
            if len(q) > 4096 and q[0][DONE]:
                self._drop_done()
        else:
            heapq.heappush(self._heap, (deadline, next(self._seq), w))
        if self._handle is None:
            self._arm(deadline)
        elif deadline < self._armed_at - self.RESOLUTION:
            self._arm(deadline)
        return w

    def _arm(self, when: float) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._armed_at = when
        self._handle = self.loop.call_at(when, self._fire)

    def _drop_done(self) -> None:
        q = self._queue
        while q and q[0][DONE]:
            q.popleft()

    def _fire(self) -> None:
        self._handle = None
        now = self.loop.time()
        q = self._queue
        while q and q[0][DEADLINE_AT] <= now:
            _expire(q.popleft())
        heap = self._heap
        while heap and heap[0][0] <= now:
            _expire(heapq.heappop(heap)[2])
        self._drop_done()
        while heap and heap[0][2][DONE]:
            heapq.heappop(heap)
        nxt = min(q[0][DEADLINE_AT] if q else math.inf, heap[0][0] if heap else math.inf)
        if nxt != math.inf:
            self._arm(max(nxt, now + self.RESOLUTION))


def _expire(w: list[Any]) -> None:
    if not w[DONE]:
        w[FIRED] = True
        w[TASK].cancel()


_last: tuple[asyncio.AbstractEventLoop | None, Watchdog | None] = (None, None)
_watchdogs: dict[int, tuple[asyncio.AbstractEventLoop, Watchdog]] = {}


def watchdog(loop: asyncio.AbstractEventLoop) -> Watchdog:
    """The watchdog of ``loop`` (created on first use)."""
    global _last
    last_loop, last_dog = _last
    if last_loop is loop and last_dog is not None:
        return last_dog
    entry = _watchdogs.get(id(loop))
    if entry is None or entry[0] is not loop:
        if len(_watchdogs) > 64:  # forget loops that were closed
            for key, (old, _) in list(_watchdogs.items()):
                if old.is_closed():
                    del _watchdogs[key]
        entry = (loop, Watchdog(loop))
        _watchdogs[id(loop)] = entry
    _last = entry
    return entry[1]
