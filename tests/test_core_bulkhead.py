"""Bulkhead: the limit holds across threads, tasks and event loops; no permit is ever lost."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from seawall import Bulkhead, BulkheadFullError, IntegrationPoint, RejectedError


class Occupancy:
    """Counts how many callers are inside at once, from any thread or loop."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.inside = 0
        self.peak = 0
        self.entries = 0

    def enter(self) -> None:
        with self.lock:
            self.inside += 1
            self.entries += 1
            self.peak = max(self.peak, self.inside)

    def leave(self) -> None:
        with self.lock:
            self.inside -= 1


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll a condition that no event can signal (a queue length), within a bound."""
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "condition not reached in time"
        time.sleep(0.001)


async def await_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "condition not reached in time"
        await asyncio.sleep(0.001)


def permits(p: IntegrationPoint) -> Any:
    assert p.permits is not None
    return p.permits


def test_limit_holds_with_64_threads() -> None:
    """64 threads calling one point never have more than max_concurrent calls inside."""
    p = IntegrationPoint("db", bulkhead=Bulkhead(max_concurrent=8, max_wait=30.0))
    seen = Occupancy()
    first_wave = threading.Barrier(8, timeout=30)

    def work(i: int) -> int:
        seen.enter()
        try:
            if i == 0:
                first_wave.wait()  # eight callers are inside together at least once
            time.sleep(0.0002)  # hold the permit long enough for others to queue
            return i
        finally:
            seen.leave()

    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for _ in range(n):
                p.call(work, 1)
            p.call(work, 0)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(20,)) for _ in range(64)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert seen.peak == 8
    assert seen.entries == 64 * 21
    assert permits(p).active == 0
    stats = p.stats()
    assert (stats.calls, stats.successes, stats.rejected) == (64 * 21, 64 * 21, 0)


async def test_limit_holds_with_1000_tasks() -> None:
    """1,000 concurrent tasks on one point never exceed max_concurrent; every permit returns."""
    p = IntegrationPoint("api", bulkhead=Bulkhead(max_concurrent=10, max_wait=30.0))
    seen = Occupancy()

    async def work(i: int) -> int:
        seen.enter()
        try:
            for _ in range(3):
                await asyncio.sleep(0)
            return i
        finally:
            seen.leave()

    results = await asyncio.gather(*(p.acall(work, i) for i in range(1000)))
    assert results == list(range(1000))
    assert seen.peak == 10
    assert permits(p).active == 0 and permits(p).waiting == 0
    assert p.stats().successes == 1000


def test_threads_and_event_loops_share_one_limit() -> None:
    """Threads, a loop in this thread and two loops in two other threads share one limit."""
    limit = 6
    p = IntegrationPoint("shared", bulkhead=Bulkhead(max_concurrent=limit, max_wait=60.0))
    seen = Occupancy()

    def sync_work() -> None:
        seen.enter()
        try:
            time.sleep(0.0002)
        finally:
            seen.leave()

    async def async_work() -> None:
        seen.enter()
        try:
            await asyncio.sleep(0.0002)
        finally:
            seen.leave()

    async def many_tasks(n: int) -> None:
        await asyncio.gather(*(p.acall(async_work) for _ in range(n)))

    errors: list[BaseException] = []

    def guarded(target: Callable[[], Any]) -> Callable[[], None]:
        def run() -> None:
            try:
                target()
            except BaseException as exc:
                errors.append(exc)
        return run

    def sync_worker() -> None:
        for _ in range(30):
            p.call(sync_work)

    threads = [threading.Thread(target=guarded(sync_worker)) for _ in range(16)]
    threads += [threading.Thread(target=guarded(lambda: asyncio.run(many_tasks(150))))
                for _ in range(2)]
    for t in threads:
        t.start()
    asyncio.run(many_tasks(150))
    for t in threads:
        t.join(60)
    assert errors == []
    assert seen.peak <= limit
    assert seen.entries == 16 * 30 + 3 * 150
    assert permits(p).active == 0 and permits(p).waiting == 0
    assert p.stats().successes == seen.entries


def test_full_bulkhead_rejects_after_max_wait() -> None:
    """A caller that finds every permit taken waits max_wait, then gets BulkheadFullError."""
    p = IntegrationPoint("slow", bulkhead=Bulkhead(max_concurrent=1, max_wait=0.05))
    inside, leave = threading.Event(), threading.Event()

    def hold() -> None:
        inside.set()
        assert leave.wait(30)

    holder = threading.Thread(target=p.call, args=(hold,))
    holder.start()
    assert inside.wait(30)
    ran = []
    start = time.monotonic()
    with pytest.raises(BulkheadFullError) as info:
        p.call(lambda: ran.append(1))
    waited = time.monotonic() - start
    leave.set()
    holder.join(30)
    assert ran == []
    assert 0.045 <= waited < 5.0
    err = info.value
    assert (err.point, err.max_concurrent, err.reason) == ("slow", 1, "bulkhead")
    assert isinstance(err, RejectedError)
    stats = p.stats()
    assert (stats.rejected, stats.rejections["bulkhead"], stats.successes) == (1, 1, 1)
    assert permits(p).active == 0


def test_zero_max_wait_rejects_at_once() -> None:
    """With max_wait=0, a full bulkhead refuses immediately."""
    p = IntegrationPoint("strict", bulkhead=Bulkhead(max_concurrent=1))
    assert p.permits is not None and p.permits.try_acquire()  # someone holds the only permit
    start = time.monotonic()
    with pytest.raises(BulkheadFullError):
        p.call(lambda: None)
    assert time.monotonic() - start < 1.0
    p.permits.release()
    assert p.call(lambda: "free") == "free"


async def test_async_caller_waits_max_wait_then_is_rejected() -> None:
    """An async caller also waits max_wait for a permit, then gets BulkheadFullError."""
    p = IntegrationPoint("aslow", bulkhead=Bulkhead(max_concurrent=1, max_wait=0.05))
    release = asyncio.Event()

    async def hold() -> None:
        await release.wait()

    holder = asyncio.create_task(p.acall(hold))
    await await_until(lambda: permits(p).active == 1)
    start = time.monotonic()
    with pytest.raises(BulkheadFullError):
        await p.acall(hold)
    assert 0.045 <= time.monotonic() - start < 5.0
    release.set()
    await holder
    assert permits(p).active == 0


async def test_cancelled_waiter_leaks_no_permit() -> None:
    """A task cancelled while queued for a permit leaves the queue and takes nothing."""
    p = IntegrationPoint("q", bulkhead=Bulkhead(max_concurrent=1, max_wait=30.0))
    release = asyncio.Event()

    async def hold() -> None:
        await release.wait()

    holder = asyncio.create_task(p.acall(hold))
    await await_until(lambda: permits(p).active == 1)
    waiter = asyncio.create_task(p.acall(hold))
    await await_until(lambda: permits(p).waiting == 1)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert permits(p).waiting == 0
    release.set()
    await holder
    assert permits(p).active == 0
    stats = p.stats()
    assert (stats.cancelled, stats.failures, stats.successes) == (1, 0, 1)


async def test_waiter_cancelled_after_the_handoff_passes_the_permit_on() -> None:
    """A waiter cancelled just after a permit was handed to it gives the permit to the next."""
    p = IntegrationPoint("q", bulkhead=Bulkhead(max_concurrent=1, max_wait=30.0))
    gate = permits(p)
    assert gate.try_acquire()
    first = asyncio.create_task(gate.acquire_async(30.0))
    await await_until(lambda: gate.waiting == 1)
    second = asyncio.create_task(gate.acquire_async(30.0))
    await await_until(lambda: gate.waiting == 2)
    gate.release()  # handed to `first`, which has not run yet
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert await asyncio.wait_for(second, 10) is True
    assert gate.active == 1
    gate.release()
    assert gate.active == 0


def test_waiters_are_served_in_arrival_order() -> None:
    """Threads queued for a permit get it first come, first served."""
    p = IntegrationPoint("fifo", bulkhead=Bulkhead(max_concurrent=1, max_wait=30.0))
    gate = permits(p)
    assert gate.try_acquire()
    order: list[int] = []
    threads = []
    for i in range(6):
        t = threading.Thread(target=p.call, args=(order.append, i))
        t.start()
        threads.append(t)
        wait_until(lambda i=i: gate.waiting == i + 1)
    gate.release()
    for t in threads:
        t.join(30)
    assert order == list(range(6))
    assert gate.active == 0


async def test_threads_and_tasks_are_served_in_arrival_order() -> None:
    """A queued thread and a queued task are served in the order they arrived."""
    p = IntegrationPoint("fifo", bulkhead=Bulkhead(max_concurrent=1, max_wait=30.0))
    gate = permits(p)
    assert gate.try_acquire()
    order: list[str] = []

    async def record(tag: str) -> None:
        order.append(tag)

    thread = threading.Thread(target=p.call, args=(order.append, "thread-1"))
    thread.start()
    await await_until(lambda: gate.waiting == 1)
    task = asyncio.create_task(p.acall(record, "task-2"))
    await await_until(lambda: gate.waiting == 2)
    thread_3 = threading.Thread(target=p.call, args=(order.append, "thread-3"))
    thread_3.start()
    await await_until(lambda: gate.waiting == 3)
    gate.release()
    await asyncio.wait_for(task, 30)
    for t in (thread, thread_3):
        await asyncio.to_thread(t.join, 30)
    assert order == ["thread-1", "task-2", "thread-3"]
    assert gate.active == 0


def test_failing_calls_give_their_permit_back() -> None:
    """A call that raises returns its permit."""
    p = IntegrationPoint("err", bulkhead=Bulkhead(max_concurrent=2))

    def broken() -> None:
        raise ValueError("bad")

    for _ in range(10):
        with pytest.raises(ValueError):
            p.call(broken)
    assert permits(p).active == 0


def test_interrupted_sync_call_gives_its_permit_back() -> None:
    """A BaseException (KeyboardInterrupt) in the call still returns the permit and is no failure."""
    p = IntegrationPoint("interrupt", bulkhead=Bulkhead(max_concurrent=1))

    def interrupted() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        p.call(interrupted)
    assert permits(p).active == 0
    assert p.stats().failures == 0
