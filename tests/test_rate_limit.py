"""RateLimit: a token bucket per point, validated, waited for through the clock, shared safely."""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

import seawall
from seawall import (
    ConfigurationError,
    IntegrationPoint,
    RateLimit,
    RateLimitedError,
    RejectedError,
)
from seawall.interceptors import httpx as sw_httpx
from seawall.testing import FakeClock
from tests.timed_support import http_server

# -- validation -----------------------------------------------------------------


@pytest.mark.parametrize("rate", [0, -1, 0.0, math.nan, math.inf, "5", True, None])
def test_rate_must_be_a_finite_positive_number(rate: Any) -> None:
    """RateLimit.rate outside (0, inf) is refused, naming the field and the value."""
    with pytest.raises(ConfigurationError, match=r"RateLimit\.rate .*" + repr(rate)[:3]):
        RateLimit(rate=rate)


@pytest.mark.parametrize("burst", [0, -3, 1.5, "2", True])
def test_burst_must_be_an_integer_of_at_least_one(burst: Any) -> None:
    """RateLimit.burst below 1 or not an integer is refused."""
    with pytest.raises(ConfigurationError, match=r"RateLimit\.burst"):
        RateLimit(rate=10, burst=burst)


@pytest.mark.parametrize("max_wait", [-0.1, math.nan, math.inf, "1", None])
def test_max_wait_must_be_seconds_of_at_least_zero(max_wait: Any) -> None:
    """RateLimit.max_wait must be finite seconds >= 0."""
    with pytest.raises(ConfigurationError, match=r"RateLimit\.max_wait"):
        RateLimit(rate=10, max_wait=max_wait)


def test_burst_defaults_to_one_seconds_worth() -> None:
    """Without burst, the bucket holds ceil(rate) tokens, at least one."""
    assert RateLimit(rate=50).burst == 50
    assert RateLimit(rate=2.5).burst == 3
    assert RateLimit(rate=0.2).burst == 1


def test_the_point_refuses_a_wrong_rate_limit_value() -> None:
    """IntegrationPoint(rate_limit=...) must be a RateLimit."""
    with pytest.raises(ConfigurationError, match=r"IntegrationPoint\.rate_limit .*50"):
        IntegrationPoint("x", rate_limit=50)  # type: ignore[arg-type]


def test_rate_limited_error_is_a_rejection() -> None:
    """RateLimitedError is a RejectedError with reason rate_limit."""
    err = RateLimitedError("m", point="p", retry_after=0.5)
    assert isinstance(err, RejectedError) and isinstance(err, seawall.SeawallError)
    assert (err.reason, err.retry_after) == ("rate_limit", 0.5)


# -- the bucket, on a fake clock ---------------------------------------------------


def test_a_burst_passes_then_each_call_waits_one_interval() -> None:
    """burst calls start at once; each later one waits 1/rate through the clock."""
    clock = FakeClock()
    p = IntegrationPoint("api", rate_limit=RateLimit(rate=10, burst=3, max_wait=1.0), clock=clock)
    for _ in range(6):
        p.call(lambda: None)
    assert clock.sleeps == pytest.approx([0.1, 0.1, 0.1])
    stats = p.stats()
    assert (stats.successes, stats.rate_limit_waits, stats.rejections["rate_limit"]) == (6, 3, 0)


def test_the_bucket_refills_while_idle_up_to_burst() -> None:
    """Idle time refills the bucket, never beyond burst."""
    clock = FakeClock()
    p = IntegrationPoint("api", rate_limit=RateLimit(rate=10, burst=2, max_wait=1.0), clock=clock)
    p.call(lambda: None)
    p.call(lambda: None)
    clock.advance(60.0)  # would be 600 tokens without the cap
    for _ in range(3):
        p.call(lambda: None)
    assert clock.sleeps == pytest.approx([0.1])


def test_beyond_max_wait_the_call_is_refused_with_retry_after() -> None:
    """With no token within max_wait the call raises RateLimitedError saying when one comes."""
    clock = FakeClock()
    p = IntegrationPoint("api", rate_limit=RateLimit(rate=4, burst=1, max_wait=0.1), clock=clock)
    p.call(lambda: None)
    with pytest.raises(RateLimitedError) as info:
        p.call(lambda: None)
    assert info.value.retry_after == pytest.approx(0.25)
    assert (info.value.point, info.value.reason) == ("api", "rate_limit")
    stats = p.stats()
    assert (stats.rejected, stats.rejections["rate_limit"], clock.sleeps) == (1, 1, [])
    clock.advance(0.25)
    p.call(lambda: None)  # the refused call took no token


def test_a_wait_past_the_deadline_is_refused_at_once() -> None:
    """A token that comes after the call's total deadline is not waited for."""
    clock = FakeClock()
    # a caller's deadline (Timeout.total must exceed max_wait: tests/test_validation_cross.py)
    p = IntegrationPoint("api", rate_limit=RateLimit(rate=1, burst=1, max_wait=10.0),
                         clock=clock)
    p.call(lambda: None)
    with pytest.raises(RateLimitedError):
        p.run(lambda _t: None, "call", clock.now() + 0.5)
    assert clock.sleeps == []
    clock.advance(1.0)
    p.call(lambda: None)  # the refused reservation was given back


def test_reservations_are_served_in_arrival_order() -> None:
    """Each later reservation waits one interval longer: first come, first served."""
    clock = FakeClock()
    bucket = IntegrationPoint("api", rate_limit=RateLimit(rate=5, burst=1, max_wait=5.0),
                              clock=clock).bucket
    assert bucket is not None
    waits = [bucket.reserve(clock.now(), 5.0) for _ in range(5)]
    assert waits == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8])
    assert bucket.reserve(clock.now(), 0.5) is None  # would wait 1.0
    bucket.refund()
    assert bucket.reserve(clock.now(), 5.0) == pytest.approx(0.8)


async def test_async_calls_wait_through_the_clock() -> None:
    """acall waits for its token with clock.asleep."""
    clock = FakeClock()
    p = IntegrationPoint("api", rate_limit=RateLimit(rate=20, burst=1, max_wait=1.0), clock=clock)

    async def work() -> int:
        return 1

    assert [await p.acall(work) for _ in range(3)] == [1, 1, 1]
    assert clock.sleeps == pytest.approx([0.05, 0.05])


async def test_a_task_cancelled_while_waiting_gives_its_token_back() -> None:
    """Cancelling a caller queued for a token returns the token; nothing is counted as failed."""
    p = IntegrationPoint("api", rate_limit=RateLimit(rate=1, burst=1, max_wait=5.0))
    bucket = p.bucket
    assert bucket is not None

    async def work() -> None:
        return None

    await p.acall(work)
    waiter = asyncio.ensure_future(p.acall(work))
    for _ in range(100):
        await asyncio.sleep(0)
        if bucket.available < 0:
            break
    assert bucket.available < 0  # reserved
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert bucket.available == pytest.approx(0.0, abs=0.05)
    stats = p.stats()
    assert (stats.cancelled, stats.failures) == (1, 0)


# -- many threads and tasks ---------------------------------------------------------


def test_threads_and_tasks_never_take_more_than_the_burst_on_a_frozen_clock() -> None:
    """60 threads and 60 tasks on another loop race for 10 tokens: exactly 10 get one."""
    clock = FakeClock()
    p = IntegrationPoint("api", rate_limit=RateLimit(rate=1, burst=10), clock=clock)
    outcomes: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(61, timeout=30)

    def note(outcome: str) -> None:
        with lock:
            outcomes.append(outcome)

    def thread_caller() -> None:
        start.wait()
        try:
            p.call(lambda: None)
            note("ok")
        except RateLimitedError:
            note("refused")

    async def task_caller() -> None:
        try:
            await p.acall(asyncio.sleep, 0)
            note("ok")
        except RateLimitedError:
            note("refused")

    async def tasks() -> None:
        start.wait()
        await asyncio.gather(*(task_caller() for _ in range(60)))

    threads = [threading.Thread(target=thread_caller) for _ in range(60)]
    threads.append(threading.Thread(target=lambda: asyncio.run(tasks())))
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(outcomes) == 120
    assert outcomes.count("ok") == 10
    assert p.stats().rejections["rate_limit"] == 110


def test_threads_and_tasks_share_one_bucket_in_real_time() -> None:
    """8 threads and 2 loops of 8 tasks: no prefix of the starts outruns burst + rate * t."""
    rate, burst, per = 200.0, 10, 10
    created = time.monotonic()  # before the bucket is filled, so no later than its start
    p = IntegrationPoint("api", rate_limit=RateLimit(rate=rate, burst=burst, max_wait=30.0))
    starts: list[float] = []
    lock = threading.Lock()

    def work() -> None:
        with lock:
            starts.append(time.monotonic())

    async def awork() -> None:
        work()

    def thread_caller() -> None:
        for _ in range(per):
            p.call(work)

    async def tasks() -> None:
        async def one() -> None:
            for _ in range(per):
                await p.acall(awork)
        await asyncio.gather(*(one() for _ in range(8)))

    threads = [threading.Thread(target=thread_caller) for _ in range(8)]
    threads += [threading.Thread(target=lambda: asyncio.run(tasks())) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    n = 24 * per
    assert len(starts) == n
    starts.sort()
    for k, started in enumerate(starts):
        # the k-th start (0-based) needs k + 1 tokens: at most burst plus what refilled
        assert started >= created + (k + 1 - burst) / rate - 0.002, k
    assert starts[-1] - created >= (n - burst) / rate - 0.002
    assert p.stats().successes == n


# -- against a real server ------------------------------------------------------------


@pytest.fixture
def counting_server() -> Iterator[Any]:
    with http_server() as server:
        yield server


def test_100_http_calls_at_50_per_second_take_at_least_1_8_s(counting_server: Any) -> None:
    """RateLimit(rate=50, burst=5): 100 GETs through the httpx transport take >= 1.8 s."""
    p = IntegrationPoint("api", rate_limit=RateLimit(rate=50, burst=5, max_wait=5.0))
    url = f"http://127.0.0.1:{counting_server.server_address[1]}/"
    with httpx.Client(transport=sw_httpx.ResilientTransport(p)) as client:
        t0 = time.monotonic()
        for _ in range(100):
            assert client.get(url).status_code == 200
        elapsed = time.monotonic() - t0
    assert elapsed >= 1.8
    arrivals = [at for at, _ in counting_server.arrivals]
    assert len(arrivals) == 100
    assert arrivals[-1] - arrivals[0] >= 1.8  # the server saw the spacing too
    assert p.stats().rate_limit_waits >= 90


def test_waits_are_told_to_hooks_and_to_opentelemetry() -> None:
    """A WaitEvent per wait for a token; seawall.waits counts them by reason."""
    from tests.otel_support import read, sdk_provider, total

    clock = FakeClock()
    p = IntegrationPoint("otel-rate", rate_limit=RateLimit(rate=10, burst=1, max_wait=1.0),
                         clock=clock)
    seen: list[Any] = []
    p.add_hook(seen.append)
    with sdk_provider() as (provider, reader):
        handle = seawall.otel_metrics(provider)
        try:
            for _ in range(3):
                p.call(lambda: None)
            handle.flush()
            points = read(reader)
        finally:
            handle.close()
    waits = [e for e in seen if isinstance(e, seawall.WaitEvent)]
    assert [(e.reason, round(e.delay, 3)) for e in waits] == [("rate_limit", 0.1)] * 2
    assert total(points, "seawall.waits", point="otel-rate", reason="rate_limit") == 2
