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
from collections.abc import Callable
from contextvars import ContextVar

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


class Watch:
    """One registered deadline; ``done`` is set by the caller when its work ends."""

    __slots__ = ("done", "fired", "task")

    def __init__(self, task: asyncio.Task[object]) -> None:
        self.task = task
        self.done = False
        self.fired = False


class Watchdog:
    """Cancels tasks whose deadline passed; one per event loop."""

    __slots__ = ("_armed_at", "_handle", "_heap", "_seq", "loop")

    # a timer closer than this to the armed one is not re-armed: it fires
    # together with it, so bursts of calls share one timer
    RESOLUTION = 0.001

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._heap: list[tuple[float, int, Watch]] = []
        self._seq = itertools.count()
        self._handle: asyncio.TimerHandle | None = None
        self._armed_at = 0.0

    def watch(self, task: asyncio.Task[object], deadline: float) -> Watch:
        """Cancel ``task`` at loop time ``deadline`` unless the watch is done by then."""
        w = Watch(task)
        heap = self._heap
        heapq.heappush(heap, (deadline, next(self._seq), w))
        if self._handle is None or deadline < self._armed_at - self.RESOLUTION:
            self._arm(deadline)
        elif len(heap) > 4096 and heap[0][2].done:
            self._compact()
        return w

    def _arm(self, when: float) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._armed_at = when
        self._handle = self.loop.call_at(when, self._fire)

    def _compact(self) -> None:
        self._heap = [entry for entry in self._heap if not entry[2].done]
        heapq.heapify(self._heap)

    def _fire(self) -> None:
        self._handle = None
        heap = self._heap
        now = self.loop.time()
        while heap and heap[0][0] <= now:
            w = heapq.heappop(heap)[2]
            if not w.done:
                w.fired = True
                w.task.cancel()
        while heap and heap[0][2].done:
            heapq.heappop(heap)
        if heap:
            self._arm(max(heap[0][0], now + self.RESOLUTION))


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
