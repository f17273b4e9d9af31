"""Bulkhead runtime: permits shared by threads and any number of event loops.

Free permits sit in a ``queue.SimpleQueue`` (its ``get_nowait``/``put`` are
atomic C calls), so taking and returning a permit on the uncontended path
costs two C calls and no Python lock. Callers that must wait queue up, in
arrival order, under ``lock``; a returned permit is moved from the free
queue to the oldest waiter. A waiter that gives up (timeout or
cancellation) after a permit was handed to it passes the permit on, so
none is ever lost.

Invariant: permits are in the free queue, held by a caller, or handed to a
waiter; ``max_concurrent`` in all.

A waiter is a thread, an asyncio task or a trio task, and any thread may
wake any of them: asyncio's through ``call_soon_threadsafe``, trio's
through its run's ``TrioToken.run_sync_soon``.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections import deque
from typing import Any, Protocol

from ._clock import INSTANT, async_library


class Permits(Protocol):
    """What the shells and integrations use of a bulkhead: the interface of any limit.

    :class:`BulkheadRuntime` is the fixed limit of :class:`seawall.Bulkhead`;
    a limit that moves (an adaptive one, following latency) implements the
    same six members, and the pipeline needs no other change. Each taken
    permit is given back exactly once with :meth:`release`.
    """

    @property
    def max_concurrent(self) -> int:
        """The current limit (what a :class:`seawall.BulkheadFullError` reports)."""
        ...

    @property
    def active(self) -> int:
        """Permits taken now (the calls in flight; exporters read it as a gauge)."""
        ...

    def try_acquire(self) -> bool:
        """Take a permit if one is free, without waiting."""
        ...

    def acquire(self, timeout: float) -> bool:
        """Take a permit, blocking the thread up to ``timeout`` seconds; false: none came."""
        ...

    async def acquire_async(self, timeout: float) -> bool:
        """Take a permit, suspending the task (asyncio or trio) up to ``timeout`` seconds."""
        ...

    def release(self) -> None:
        """Give back a permit taken by one of the acquires."""
        ...


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


class _TrioWaiter:
    __slots__ = ("event", "granted", "token")

    def __init__(self, trio: Any) -> None:
        self.granted = False
        self.event = trio.Event()
        # the run's token: its run_sync_soon is the one trio call safe from any thread
        self.token = trio.lowlevel.current_trio_token()

    def wake(self) -> bool:
        import trio

        try:
            self.token.run_sync_soon(self.event.set)
        except trio.RunFinishedError:  # the waiter's run is over: nobody will use the permit
            return False
        return True


_Waiter = _ThreadWaiter | _TaskWaiter | _TrioWaiter


def _skipped(timeout: float) -> bool:
    """True inside ``seawall.testing.instant()``: the wait is skipped, as if no permit came.

    The view's time moves by ``timeout`` (see :class:`seawall._clock.InstantView`).
    """
    view = INSTANT.get()
    if view is None:
        return False
    view.skip(timeout)
    return True


class BulkheadRuntime:
    """``max_concurrent`` permits shared by every thread and event loop."""

    __slots__ = ("_free", "_waiters", "lock", "max_concurrent")

    def __init__(self, max_concurrent: int) -> None:
        self.max_concurrent = max_concurrent
        self.lock = threading.Lock()
        self._waiters: deque[_Waiter] = deque()
        self._free: queue.SimpleQueue[None] = queue.SimpleQueue()
        for _ in range(max_concurrent):
            self._free.put(None)

    @property
    def active(self) -> int:
        """How many permits are taken (held by callers or handed to waiters)."""
        return self.max_concurrent - self._free.qsize()

    @property
    def waiting(self) -> int:
        """How many callers are queued for a permit."""
        return len(self._waiters)

    def try_acquire(self) -> bool:
        """Take a free permit without waiting."""
        try:
            self._free.get_nowait()
        except queue.Empty:
            return False
        return True

    def release(self) -> None:
        """Return a permit; the oldest waiter, if any, receives it."""
        self._free.put(None)
        if self._waiters:
            self._hand_over()

    def _hand_over(self) -> None:
        while True:
            with self.lock:
                if not self._waiters:
                    return
                try:
                    self._free.get_nowait()
                except queue.Empty:
                    return
                waiter = self._waiters.popleft()
                waiter.granted = True
            if not waiter.wake():
                self._free.put(None)  # its loop is gone: offer the permit to the next

    def _enqueue(self, waiter: _Waiter) -> bool:
        """Queue ``waiter``; true when a permit was free after all (then it is not queued)."""
        with self.lock:
            # queue first, then look again: a release that put its permit back
            # before seeing us is caught here, one after it sees us and hands over
            self._waiters.append(waiter)
            try:
                self._free.get_nowait()
            except queue.Empty:
                return False
            self._waiters.remove(waiter)
            return True

    def _withdraw(self, waiter: _Waiter) -> bool:
        """Leave the queue; true when a permit had already been handed to ``waiter``."""
        with self.lock:
            if waiter.granted:
                return True
            self._waiters.remove(waiter)
            return False

    def acquire(self, timeout: float) -> bool:
        """Take a permit, blocking the thread up to ``timeout`` seconds."""
        if self.try_acquire():
            return True
        if timeout <= 0:
            return False
        if _skipped(timeout):
            return False
        waiter = _ThreadWaiter()
        if self._enqueue(waiter):
            return True
        if waiter.signal.acquire(timeout=timeout):
            return True
        return self._withdraw(waiter)

    async def acquire_async(self, timeout: float) -> bool:
        """Take a permit, suspending the task (asyncio or trio) up to ``timeout`` seconds."""
        if self.try_acquire():
            return True
        if timeout <= 0:
            return False
        if _skipped(timeout):
            return False
        if async_library() == "trio":
            return await self._acquire_trio(timeout)
        waiter = _TaskWaiter(asyncio.get_running_loop())
        if self._enqueue(waiter):
            return True
        try:
            await asyncio.wait_for(asyncio.shield(waiter.future), timeout)
            return True
        except asyncio.TimeoutError:
            return self._withdraw(waiter)
        except BaseException:
            # cancelled while queued: leave the queue, or pass on a permit already handed to us
            if self._withdraw(waiter):
                self.release()
            raise

    async def _acquire_trio(self, timeout: float) -> bool:
        import trio

        waiter = _TrioWaiter(trio)
        if self._enqueue(waiter):
            return True
        try:
            with trio.move_on_after(timeout):
                await waiter.event.wait()
                return True
        except BaseException:
            # cancelled while queued: leave the queue, or pass on a permit already handed to us
            if self._withdraw(waiter):
                self.release()
            raise
        return self._withdraw(waiter)
