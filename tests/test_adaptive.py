"""AdaptiveBulkhead: validated, a limit that follows latency, permits never lost while it moves."""

from __future__ import annotations

import asyncio
import math
import threading
import time
from typing import Any

import pytest

import seawall
from seawall import AdaptiveBulkhead, BulkheadFullError, ConfigurationError, IntegrationPoint
from seawall._adaptive import PROBE_SHARE, WINDOW_SAMPLES, WINDOW_SECONDS, AdaptiveRuntime
from seawall.testing import FakeClock

# -- validation -----------------------------------------------------------------


@pytest.mark.parametrize(("field", "value"), [
    ("initial", 0), ("initial", 1.5), ("initial", True), ("minimum", 0), ("minimum", "1"),
    ("maximum", 0), ("maximum", None), ("max_wait", -1.0), ("max_wait", math.nan),
    ("tolerance", 0.9), ("tolerance", math.inf), ("tolerance", "1.1"),
    ("smoothing", 0.0), ("smoothing", 1.5), ("smoothing", math.nan),
])
def test_each_field_is_validated(field: str, value: Any) -> None:
    """A bad value is refused at construction, naming the field and the value."""
    with pytest.raises(ConfigurationError, match=rf"AdaptiveBulkhead\.{field} .*{value!r}"[:60]):
        AdaptiveBulkhead(**{field: value})


def test_initial_must_lie_between_minimum_and_maximum() -> None:
    """initial outside [minimum, maximum], or maximum below minimum, is refused."""
    with pytest.raises(ConfigurationError, match=r"initial must be within .*\[4, 8\], got 2"):
        AdaptiveBulkhead(initial=2, minimum=4, maximum=8)
    with pytest.raises(ConfigurationError, match=r"maximum must be >= minimum \(4\), got 3"):
        AdaptiveBulkhead(initial=4, minimum=4, maximum=3)


def test_the_point_takes_it_as_its_bulkhead() -> None:
    """bulkhead=AdaptiveBulkhead(...) gives adaptive permits; anything else is refused."""
    p = IntegrationPoint("db", bulkhead=AdaptiveBulkhead(initial=5))
    assert isinstance(p.permits, AdaptiveRuntime)
    assert p.stats().concurrency_limit == 5
    assert IntegrationPoint("plain").stats().concurrency_limit is None
    assert IntegrationPoint("fixed", bulkhead=seawall.Bulkhead(max_concurrent=3)) \
        .stats().concurrency_limit == 3
    with pytest.raises(ConfigurationError, match=r"IntegrationPoint\.bulkhead .*AdaptiveBulkhead"):
        IntegrationPoint("x", bulkhead=16)  # type: ignore[arg-type]


# -- moving the limit ---------------------------------------------------------------


def test_shrinking_takes_free_permits_then_owes_the_rest() -> None:
    """A shrink below the permits in use is paid by the next releases; none is lost or made."""
    rt = AdaptiveRuntime(AdaptiveBulkhead(initial=4, minimum=1), 0.0)
    assert all(rt.try_acquire() for _ in range(3))
    rt.resize(1)  # one free permit taken out, two owed
    assert (rt.max_concurrent, rt.active, rt.try_acquire()) == (1, 3, False)
    rt.release()
    rt.release()
    assert (rt.active, rt.try_acquire()) == (1, False)
    rt.release()
    assert rt.try_acquire() and not rt.try_acquire()
    rt.release()
    rt.resize(3)
    assert [rt.try_acquire() for _ in range(4)] == [True, True, True, False]


def test_growing_wakes_waiters_first() -> None:
    """Permits added by a grow go to the callers already queued, in order."""
    rt = AdaptiveRuntime(AdaptiveBulkhead(initial=1, minimum=1), 0.0)
    assert rt.try_acquire()
    got: list[int] = []
    threads = [threading.Thread(target=lambda i=i: got.append(i) if rt.acquire(10.0) else None)
               for i in range(2)]
    for queued, t in enumerate(threads, 1):
        t.start()
        end = time.monotonic() + 10
        while rt.waiting < queued and time.monotonic() < end:
            time.sleep(0.001)
        assert rt.waiting == queued  # each waiter is queued before the next starts
    rt.resize(3)
    for t in threads:
        t.join(10)
    assert sorted(got) == [0, 1] and rt.active == 3


def feed(rt: AdaptiveRuntime, clock: FakeClock, capacity: int, windows: int,
         unloaded: float = 0.02) -> list[int]:
    """Windows of samples from a dependency of ``capacity`` slots kept full by the limit."""
    limits = []
    for _ in range(windows):
        limit = rt.max_concurrent
        latency = unloaded * max(1.0, limit / capacity)  # queueing beyond the capacity
        held = [rt.try_acquire() for _ in range(limit)]  # the limit is in use
        for _ in range(WINDOW_SAMPLES):
            clock.advance(WINDOW_SECONDS / WINDOW_SAMPLES)
            rt.sample(clock.now(), latency)
        for h in held:
            if h:
                rt.release()
        limits.append(rt.limit)
    return limits


@pytest.mark.parametrize(("initial", "capacity"), [(16, 10), (64, 10), (2, 10), (16, 40)])
def test_the_limit_settles_near_the_capacity(initial: int, capacity: int) -> None:
    """From above or below, the learned limit ends within +-30 % of the dependency's capacity."""
    clock = FakeClock()
    rt = AdaptiveRuntime(AdaptiveBulkhead(initial=initial), clock.now())
    limits = feed(rt, clock, capacity, 400)
    assert all(0.7 * capacity <= limit <= 1.3 * capacity for limit in limits[-50:]), limits[-50:]


def test_a_probe_halves_the_permits_for_two_windows() -> None:
    """Now and then the permits drop to PROBE_SHARE of the limit, to measure unloaded latency."""
    clock = FakeClock()
    rt = AdaptiveRuntime(AdaptiveBulkhead(initial=20), clock.now())
    seen = []
    for _ in range(4):
        feed(rt, clock, 100, 1)
        seen.append(rt.max_concurrent)
    assert round(20 * PROBE_SHARE) in seen  # the first probe comes after the first window
    assert seen[-1] >= 20


def test_app_limited_windows_do_not_grow_the_limit() -> None:
    """With fewer callers than half the limit, fast answers do not raise the limit."""
    clock = FakeClock()
    rt = AdaptiveRuntime(AdaptiveBulkhead(initial=32), clock.now())
    for _ in range(200):
        assert rt.try_acquire()
        clock.advance(WINDOW_SECONDS / WINDOW_SAMPLES)
        rt.release()
        rt.sample(clock.now(), 0.01)
    assert rt.limit == 32


def test_a_point_feeds_its_attempt_latencies_to_the_limit() -> None:
    """Each call's latency (on the point's clock) reaches the adaptive runtime's windows."""
    clock = FakeClock()
    p = IntegrationPoint("db", bulkhead=AdaptiveBulkhead(initial=2, minimum=1), clock=clock)

    def work() -> None:
        clock.advance(0.01)

    for _ in range(300):
        p.call(work)
    rt = p.permits
    assert isinstance(rt, AdaptiveRuntime)
    assert rt.windows >= 25
    assert rt.baseline == pytest.approx(0.01)
    assert p.stats().concurrency_limit == 2  # one caller: app-limited, the limit stays


# -- many threads and tasks ------------------------------------------------------------


def test_threads_and_tasks_never_exceed_the_moving_limit() -> None:
    """8 threads and 2 loops of 16 tasks while the limit moves: in flight never exceeds it."""
    p = IntegrationPoint("db", bulkhead=AdaptiveBulkhead(initial=6, minimum=2, maximum=12,
                                                        max_wait=30.0))
    rt = p.permits
    assert isinstance(rt, AdaptiveRuntime)
    lock = threading.Lock()
    inside = [0]
    worst: list[tuple[int, int]] = []
    stop = threading.Event()

    def enter() -> None:
        with lock:
            inside[0] += 1
            # the limit may have just shrunk below the permits still held (a debt): the
            # bound is the permits in circulation
            if inside[0] > rt.max_concurrent + rt._debt:
                worst.append((inside[0], rt.max_concurrent))

    def leave() -> None:
        with lock:
            inside[0] -= 1

    def work() -> None:
        enter()
        time.sleep(0.0005)
        leave()

    async def awork() -> None:
        enter()
        await asyncio.sleep(0.0005)
        leave()

    def threads_caller() -> None:
        for _ in range(60):
            p.call(work)

    async def tasks() -> None:
        async def one() -> None:
            for _ in range(30):
                await p.acall(awork)
        await asyncio.gather(*(one() for _ in range(16)))

    def mover() -> None:
        sizes = [2, 12, 3, 9, 5, 12, 2, 7]
        i = 0
        while not stop.is_set():
            rt.resize(sizes[i % len(sizes)])
            i += 1
            time.sleep(0.002)

    workers = [threading.Thread(target=threads_caller) for _ in range(8)]
    workers += [threading.Thread(target=lambda: asyncio.run(tasks())) for _ in range(2)]
    moving = threading.Thread(target=mover)
    moving.start()
    for t in workers:
        t.start()
    for t in workers:
        t.join(60)
    stop.set()
    moving.join(10)
    assert worst == []
    assert p.stats().successes == 8 * 60 + 2 * 16 * 30
    assert rt.active == 0  # every permit came back
    rt.resize(12)
    assert sum(rt.try_acquire() for _ in range(13)) == 12


def test_beyond_max_wait_the_adaptive_bulkhead_refuses() -> None:
    """Over the limit for longer than max_wait: BulkheadFullError with the current limit."""
    p = IntegrationPoint("db", bulkhead=AdaptiveBulkhead(initial=1, max_wait=0.0))
    rt = p.permits
    assert rt is not None and rt.try_acquire()
    with pytest.raises(BulkheadFullError) as info:
        p.call(lambda: None)
    assert info.value.max_concurrent == 1
    rt.release()
