"""Bulkhead runtime: permits shared by threads and any number of event loops.

One ``threading.Lock`` guards the count and a FIFO of waiters. A released
permit is handed directly to the oldest waiter, so a thread and a task
waiting on the same bulkhead are served in arrival order, and the limit
holds exactly. A waiter that gives up (timeout or cancellation) after the
permit was handed to it passes the permit on, so none is ever lost.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque


class _ThreadWaiter:
    __slots__ = ("granted", "signal")

    def __init__(self) -> None:
        self.granted = False
        self.signal = threading.Lock()
        self.signal.acquire()

    def wake(self) -> bool:
        self.signal.release()
        return True


class _TaskWaiter:
    __slots__ = ("future", "granted", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.granted = False
        self.loop = loop
        self.future: asyncio.Future[None] = loop.create_future()

    def wake(self) -> bool:
        try:
            self.loop.call_soon_threadsafe(self._resolve)
        except RuntimeError:  # the waiter's loop is closed: nobody will use the permit
            return False
        return True

    def _resolve(self) -> None:
        if not self.future.done():
            self.future.set_result(None)


class BulkheadRuntime:
    """``max_concurrent`` permits; ``active`` is how many are taken."""

    __slots__ = ("_waiters", "active", "lock", "max_concurrent")

    def __init__(self, max_concurrent: int) -> None:
        self.max_concurrent = max_concurrent
        self.active = 0
        self.lock = threading.Lock()
        self._waiters: deque[_ThreadWaiter | _TaskWaiter] = deque()

    @property
    def waiting(self) -> int:
        """How many callers are queued for a permit."""
        return len(self._waiters)

    def try_acquire(self) -> bool:
        """Take a permit if one is free and nobody is queued before us."""
        with self.lock:
            if self.active < self.max_concurrent and not self._waiters:
                self.active += 1
                return True
            return False

    def acquire(self, timeout: float) -> bool:
        """Take a permit, blocking the thread up to ``timeout`` seconds."""
        with self.lock:
            if self.active < self.max_concurrent and not self._waiters:
                self.active += 1
                return True
            if timeout <= 0:
                return False
            waiter = _ThreadWaiter()
            self._waiters.append(waiter)
        if waiter.signal.acquire(timeout=timeout):
            return True
        with self.lock:
            if waiter.granted:
                return True
            self._waiters.remove(waiter)
            return False

    async def acquire_async(self, timeout: float) -> bool:
        """Take a permit, suspending the task up to ``timeout`` seconds."""
        with self.lock:
            if self.active < self.max_concurrent and not self._waiters:
                self.active += 1
                return True
            if timeout <= 0:
                return False
            waiter = _TaskWaiter(asyncio.get_running_loop())
            self._waiters.append(waiter)
        try:
            await asyncio.wait_for(asyncio.shield(waiter.future), timeout)
            return True
        except asyncio.TimeoutError:
            with self.lock:
                if waiter.granted:
                    return True
                self._waiters.remove(waiter)
                return False
        except BaseException:
            # cancelled while queued: leave the queue, or pass on a permit already handed to us
            with self.lock:
                granted = waiter.granted
                if not granted:
                    self._waiters.remove(waiter)
            if granted:
                self.release()
            raise

    def release(self) -> None:
        """Return a permit; the oldest waiter, if any, receives it."""
        while True:
            with self.lock:
                if not self._waiters:
                    self.active -= 1
                    return
                waiter = self._waiters.popleft()
                waiter.granted = True
            if waiter.wake():
                return
