"""The async shell under trio: retry waits, bulkhead queues, attempt deadlines, cancellation.

Real trio (``trio.run``); the bulkhead's permits are shared with threads and
asyncio loops, and a waiter of any kind is woken by a release from any other.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import trio

import seawall
from seawall import Bulkhead, IntegrationPoint
from seawall.testing import FakeClock


def permits(p: IntegrationPoint) -> Any:
    assert p.permits is not None
    return p.permits


async def trio_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll a condition no event can signal (a queue length), within a bound."""
    with trio.fail_after(timeout):
        while not condition():
            await trio.sleep(0.001)


def test_retry_backoff_waits_with_trio() -> None:
    """Two transient failures, then success: the real backoff sleeps run under trio."""
    p = IntegrationPoint("svc", retry=seawall.Retry(attempts=3, budget=None,
                                                      backoff=seawall.Backoff.constant(0.01)))
    calls: list[float] = []

    async def flaky() -> str:
        calls.append(trio.current_time())
        if len(calls) < 3:
            raise ConnectionError("down")
        return "ok"

    assert trio.run(p.acall, flaky) == "ok"
    assert len(calls) == 3
    assert calls[2] - calls[0] >= 0.02 - 0.005  # both waits happened (trio's clock)
    assert p.stats().retries == 2


def test_decorated_coroutine_function_runs_under_trio() -> None:
    """``@point`` on ``async def`` retries under trio like under asyncio."""
    p = IntegrationPoint("svc", retry=seawall.Retry(attempts=2, budget=None,
                                                      backoff=seawall.Backoff.constant(0.001)))
    seen: list[int] = []

    @p
    async def work(x: int) -> int:
        seen.append(x)
        if len(seen) == 1:
            raise TimeoutError("slow")
        return x * 2

    assert trio.run(work, 21) == 42
    assert seen == [21, 21]


def test_fake_clock_sleeps_under_trio() -> None:
    """seawall.testing.FakeClock's asleep yields to trio, records the wait, and takes no time."""
    clock = FakeClock()
    p = IntegrationPoint("svc", clock=clock, retry=seawall.Retry(
        attempts=3, budget=None, backoff=seawall.Backoff.constant(5.0)))
    n = 0

    async def flaky() -> str:
        nonlocal n
        n += 1
        if n < 3:
            raise ConnectionError("down")
        return "ok"

    started = time.monotonic()
    assert trio.run(p.acall, flaky) == "ok"
    assert clock.sleeps == [5.0, 5.0]
    assert time.monotonic() - started < 5.0


def test_attempt_timeout_cancels_a_slow_attempt_under_trio() -> None:
    """Timeout(attempt=...) bounds each attempt with a cancel scope; the call raises DeadlineExceeded."""
    p = IntegrationPoint("svc", timeout=seawall.Timeout(attempt=0.05),
                         retry=seawall.Retry(attempts=2, budget=None,
                                             backoff=seawall.Backoff.constant(0.001)))
    attempts = 0

    async def hang() -> None:
        nonlocal attempts
        attempts += 1
        await trio.sleep(30)

    async def main() -> float:
        t0 = trio.current_time()
        with pytest.raises(seawall.DeadlineExceeded):
            await p.acall(hang)
        return trio.current_time() - t0

    assert trio.run(main) < 10.0
    assert attempts == 2
    stats = p.stats()
    assert (stats.failures, stats.cancelled) == (1, 0)
    assert stats.failures_by_category["timeout"] == 1


def test_an_attempt_that_finishes_in_time_is_not_cancelled_under_trio() -> None:
    """The cancel scope of an attempt that returns in time changes nothing."""
    p = IntegrationPoint("svc", timeout=seawall.Timeout(attempt=5.0, total=10.0))

    async def quick() -> str:
        await trio.sleep(0)
        return "done"

    assert trio.run(p.acall, quick) == "done"
    assert p.stats().successes == 1


def test_cancelling_a_trio_caller_during_the_backoff_is_not_a_failure() -> None:
    """An outer cancel scope fires while the point waits to retry: cancelled, never failed."""
    p = IntegrationPoint("svc", breaker=seawall.CircuitBreaker(failure_rate=0.5, minimum_calls=1,
                                                              window=2),
                         retry=seawall.Retry(attempts=3, budget=None,
                                             backoff=seawall.Backoff.constant(30.0)))
    failed = trio.Event()

    async def failing() -> None:
        failed.set()
        raise ConnectionError("down")

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(p.acall, failing)
            await failed.wait()
            nursery.cancel_scope.cancel()

    trio.run(main)
    stats = p.stats()
    assert (stats.cancelled, stats.failures, stats.successes) == (1, 0, 0)


def test_1000_trio_tasks_share_a_bulkhead_of_8() -> None:
    """Many trio tasks queue for 8 permits: never more than 8 inside, every call served."""
    p = IntegrationPoint("svc", bulkhead=Bulkhead(max_concurrent=8, max_wait=30.0))
    inside = peak = done = 0

    async def work() -> None:
        nonlocal inside, peak, done
        inside += 1
        peak = max(peak, inside)
        await trio.sleep(0)
        inside -= 1
        done += 1

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            for _ in range(1000):
                nursery.start_soon(p.acall, work)

    trio.run(main)
    assert peak <= 8 and done == 1000
    assert permits(p).active == 0
    assert p.stats().rejections["bulkhead"] == 0


def test_a_trio_waiter_is_rejected_after_max_wait() -> None:
    """A full bulkhead refuses a trio caller once max_wait has passed."""
    p = IntegrationPoint("svc", bulkhead=Bulkhead(max_concurrent=1, max_wait=0.05))
    assert permits(p).try_acquire()

    async def main() -> float:
        t0 = trio.current_time()
        with pytest.raises(seawall.BulkheadFullError):
            await p.acall(trio.sleep, 0)
        return trio.current_time() - t0

    assert trio.run(main) >= 0.05 - 0.005
    permits(p).release()
    assert permits(p).active == 0


def test_a_permit_released_by_a_thread_wakes_a_trio_waiter() -> None:
    """A thread holds the only permit; its release hands it to the queued trio task."""
    p = IntegrationPoint("svc", bulkhead=Bulkhead(max_concurrent=1, max_wait=30.0))
    holding = threading.Event()
    release = threading.Event()

    def hold() -> None:
        def inside() -> None:
            holding.set()
            assert release.wait(10)
        p.call(inside)

    t = threading.Thread(target=hold)
    t.start()
    assert holding.wait(10)

    async def main() -> float:
        async with trio.open_nursery() as nursery:
            result: list[float] = []

            async def waiter() -> None:
                t0 = trio.current_time()
                await p.acall(trio.sleep, 0)
                result.append(trio.current_time() - t0)

            nursery.start_soon(waiter)
            await trio_until(lambda: permits(p).waiting == 1)
            release.set()
        return result[0]

    try:
        waited = trio.run(main)
    finally:
        release.set()
        t.join(10)
    assert waited < 10.0  # woken by the release, long before max_wait
    assert permits(p).active == 0


def test_a_permit_released_by_an_asyncio_loop_wakes_a_trio_waiter_and_back() -> None:
    """asyncio (in a thread) and trio share one bulkhead: each side's release wakes the other."""
    p = IntegrationPoint("svc", bulkhead=Bulkhead(max_concurrent=1, max_wait=30.0))
    holding = threading.Event()
    release = threading.Event()
    asyncio_waited = threading.Event()

    async def asyncio_side() -> None:
        async def inside() -> None:
            holding.set()
            while not release.is_set():
                await asyncio.sleep(0.001)
        await p.acall(inside)
        # now queue behind the trio task that takes the permit next
        await p.acall(asyncio.sleep, 0)
        asyncio_waited.set()

    t = threading.Thread(target=asyncio.run, args=(asyncio_side(),))
    t.start()
    assert holding.wait(10)

    async def main() -> None:
        async def trio_inside() -> None:
            # the asyncio side queues behind us; our exit must wake it
            await trio_until(lambda: permits(p).waiting == 1)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(p.acall, trio_inside)
            await trio_until(lambda: permits(p).waiting == 1)
            release.set()

    try:
        trio.run(main)
        assert asyncio_waited.wait(10)
    finally:
        release.set()
        t.join(10)
    assert permits(p).active == 0


def test_a_cancelled_trio_waiter_leaks_no_permit() -> None:
    """Cancelling a trio task queued for a permit leaves the queue and loses no permit."""
    p = IntegrationPoint("svc", bulkhead=Bulkhead(max_concurrent=1, max_wait=30.0))
    assert permits(p).try_acquire()

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(p.acall, trio.sleep, 0)
            await trio_until(lambda: permits(p).waiting == 1)
            nursery.cancel_scope.cancel()

    trio.run(main)
    assert permits(p).waiting == 0
    permits(p).release()
    assert permits(p).active == 0
    stats = p.stats()
    assert (stats.cancelled, stats.rejected, stats.failures) == (1, 0, 0)


def test_a_trio_waiter_cancelled_after_the_handoff_passes_the_permit_on() -> None:
    """A permit handed to a trio waiter that is cancelled before it runs goes to the next waiter."""
    runtime = permits(IntegrationPoint("svc", bulkhead=Bulkhead(max_concurrent=1, max_wait=30.0)))
    assert runtime.try_acquire()
    got: list[bool] = []

    async def main() -> None:
        async with trio.open_nursery() as outer:
            async with trio.open_nursery() as first:
                first.start_soon(runtime.acquire_async, 30.0)
                await trio_until(lambda: runtime.waiting == 1)

                async def second() -> None:
                    got.append(await runtime.acquire_async(30.0))

                outer.start_soon(second)
                await trio_until(lambda: runtime.waiting == 2)
                runtime.release()  # handed to the first waiter, whose wake-up is still queued
                first.cancel_scope.cancel()
        # the first waiter passed its permit on to the second

    trio.run(main)
    assert got == [True]
    runtime.release()
    assert runtime.active == 0


def test_an_unsupported_async_library_gets_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """A task under another library (as sniffio reports it) is told what seawall supports."""
    import sniffio

    p = IntegrationPoint("svc", retry=seawall.Retry(attempts=2, budget=None,
                                                      backoff=seawall.Backoff.constant(0.01)))

    async def failing() -> None:
        raise ConnectionError("down")

    async def main() -> None:
        token = sniffio.current_async_library_cvar.set("curio")
        try:
            with pytest.raises(RuntimeError, match=r"asyncio or trio.*'curio'"):
                await p.acall(failing)
        finally:
            sniffio.current_async_library_cvar.reset(token)

    asyncio.run(main())
