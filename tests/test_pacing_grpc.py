"""Server pacing over gRPC: one RESOURCE_EXHAUSTED pauses every caller.

With a ``grpc-retry-pushback-ms`` trailer the pause is the pushback, exactly;
without one it is the retry backoff's base delay (``Backoff.base(n)``).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import grpc
import pytest

import seawall
from seawall.testing import FakeClock
from tests.grpc_support.calls import req
from tests.grpc_support.servers import Backend
from tests.timed_support import check_quiet_second, tasks_past_the_pause, threads_past_the_pause

pytest_plugins = ["tests.grpc_support.fixtures"]


class TimedBackend(Backend):
    """The echo backend, noting each RPC as ``(when, key)`` (the server's monotonic clock)."""

    def __init__(self) -> None:
        super().__init__()
        self.arrivals: list[tuple[float, str]] = []
        self.throttled_at: float | None = None

    def begin(self, key: str, metadata: Any, time_remaining: float | None) -> Any:
        now = time.monotonic()
        with self._lock:
            self.arrivals.append((now, key))
            if key == "throttle" and self.throttled_at is None:
                self.throttled_at = now
        return super().begin(key, metadata, time_remaining)


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> Backend:
    """The timed backend, one per test: "throttle" fails once RESOURCE_EXHAUSTED, with a
    1000 ms pushback or without any trailer (the 1 s pause is then the backoff's)."""
    b = TimedBackend()
    b.plan("throttle", fail=1, code=grpc.StatusCode.RESOURCE_EXHAUSTED,
           pushback=None if getattr(request, "param", "pushback") == "bare" else "1000")
    return b


def point() -> seawall.IntegrationPoint:
    return seawall.IntegrationPoint("echo", retry=seawall.Retry(
        attempts=3, budget=None, backoff=seawall.Backoff.constant(1.0)))


HINTS = pytest.mark.parametrize("backend", ["pushback", "bare"], indirect=True)


def calling(send: Callable[[str], object]) -> Callable[[int, threading.Event], None]:
    """A caller for :func:`threads_past_the_pause`: thread ``i`` sends ``k{i}`` until stopped;
    thread 0's 10th call is the "throttle" key."""
    def caller(i: int, stop: threading.Event) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            send("throttle" if (i, n) == (0, 10) else f"k{i}")

    return caller


@HINTS
def test_one_pushback_pauses_8_threads(sync_stub: Any, backend: TimedBackend) -> None:
    """8 threads on a sync channel: after a 1000 ms pushback the server hears nothing for 1 s."""
    p = point()
    stub = sync_stub(p)
    threads_past_the_pause(p, backend, calling(lambda key: stub.Unary(req(key), timeout=10)))
    check_quiet_second(backend, p)
    assert p.stats().paused_waits >= 1


@HINTS
def test_one_hint_pauses_8_threads_of_futures(sync_stub: Any, backend: TimedBackend) -> None:
    """8 threads calling .future(): the futures wait the pause out (none is refused)."""
    p = point()
    stub = sync_stub(p)
    threads_past_the_pause(p, backend, calling(
        lambda key: stub.Unary.future(req(key), timeout=10).result(10)))
    check_quiet_second(backend, p)
    assert p.stats().paused_waits >= 1
    assert p.stats().rejections.get("paused", 0) == 0


@HINTS
async def test_one_pushback_pauses_8_aio_tasks(aio_stub: Any, backend: TimedBackend) -> None:
    """8 tasks on a grpc.aio channel: the same quiet second."""
    p = point()
    stub = aio_stub(p)

    async def caller(i: int, stop: asyncio.Event) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            await stub.Unary(req("throttle" if (i, n) == (0, 10) else f"k{i}"), timeout=10)

    await tasks_past_the_pause(p, backend, caller)
    check_quiet_second(backend, p)
    assert p.stats().paused_waits >= 1


def test_a_refused_grpc_call_is_rate_limited_and_resource_exhausted(
        sync_stub: Any, backend: TimedBackend) -> None:
    """Over the rate limit, a gRPC call fails RESOURCE_EXHAUSTED as a seawall.RateLimitedError."""
    p = seawall.IntegrationPoint("echo", rate_limit=seawall.RateLimit(rate=0.01, burst=1))
    stub = sync_stub(p)
    stub.Unary(req("a"))
    with pytest.raises(seawall.RateLimitedError) as info:
        stub.Unary(req("a"))
    assert isinstance(info.value, grpc.RpcError)
    assert info.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert info.value.reason == "rate_limit"
    assert len(backend.attempts("a")) == 1


# -- how long: the pushback exactly, else the backoff's base delay (fake clock) -------------

def fake_point(clock: FakeClock, attempts: int, backoff: seawall.Backoff) -> seawall.IntegrationPoint:
    return seawall.IntegrationPoint("echo", clock=clock, retry=seawall.Retry(
        attempts=attempts, budget=None, backoff=backoff, max_server_delay=10.0))


def plan_exhausted(backend: Backend, key: str, pushback: str | None = None) -> None:
    backend.plan(key, fail=1, code=grpc.StatusCode.RESOURCE_EXHAUSTED, pushback=pushback)


def pushed_back_then_other(sync_stub: Any, backend: Backend, attempts: int,
                           pushback: str) -> FakeClock:
    """A fake-clock point of ``attempts`` attempts (5 s constant backoff): "busy" fails
    RESOURCE_EXHAUSTED with the ``pushback`` trailer, then "other" is called; the point's
    clock."""
    clock = FakeClock()
    p = fake_point(clock, attempts, seawall.Backoff.constant(5.0))
    plan_exhausted(backend, "busy", pushback=pushback)
    stub = sync_stub(p)
    with pytest.raises(grpc.RpcError):
        stub.Unary(req("busy"))
    stub.Unary(req("other"))
    return clock


def test_a_bare_resource_exhausted_pauses_the_point_for_the_backoff_base(
        sync_stub: Any, backend: TimedBackend) -> None:
    """No pushback, no retry left: the next call of the point waits Backoff.base(1) first."""
    clock = FakeClock()
    p = fake_point(clock, 1, seawall.Backoff.exponential(initial=0.4, jitter="full"))
    plan_exhausted(backend, "busy")
    stub = sync_stub(p)
    with pytest.raises(grpc.RpcError) as info:
        stub.Unary(req("busy"))
    assert info.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert clock.sleeps == []
    stub.Unary(req("other"))
    assert clock.sleeps == pytest.approx([0.4])  # the base, not a jittered draw
    assert p.stats().paused_waits == 1


def test_the_bare_pause_grows_with_the_attempt_and_is_capped(
        sync_stub: Any, backend: TimedBackend) -> None:
    """Attempt 3 of a call fails bare: the pause is base(3), capped by max_server_delay."""
    clock = FakeClock()
    p = seawall.IntegrationPoint("echo", clock=clock, retry=seawall.Retry(
        attempts=3, budget=None, backoff=seawall.Backoff.exponential(0.5, 4.0, 30.0, "none"),
        max_server_delay=6.0))
    backend.plan("busy", fail=3, code=grpc.StatusCode.RESOURCE_EXHAUSTED)
    stub = sync_stub(p)
    with pytest.raises(grpc.RpcError):
        stub.Unary(req("busy"))
    assert clock.sleeps == pytest.approx([0.5, 2.0])  # the call's own retries (each pause ends with them)
    stub.Unary(req("other"))
    assert clock.sleeps == pytest.approx([0.5, 2.0, 6.0])  # base(3) = 8.0, capped at 6.0


def test_a_pushback_stays_exact(sync_stub: Any, backend: TimedBackend) -> None:
    """With a pushback trailer the pause is the pushback, not the backoff."""
    clock = pushed_back_then_other(sync_stub, backend, 1, "250")
    assert clock.sleeps == pytest.approx([0.25])


def test_a_pushback_veto_pauses_nothing(sync_stub: Any, backend: TimedBackend) -> None:
    """A negative pushback vetoes the retry and says nothing of pacing: no pause."""
    clock = pushed_back_then_other(sync_stub, backend, 3, "-1")
    assert clock.sleeps == []
    assert len(backend.attempts("busy")) == 1


async def test_a_bare_resource_exhausted_pauses_aio_callers(
        aio_stub: Any, backend: TimedBackend) -> None:
    """grpc.aio: the same pause of Backoff.base(1), waited with clock.asleep."""
    clock = FakeClock()
    p = fake_point(clock, 1, seawall.Backoff.constant(0.7))
    plan_exhausted(backend, "busy")
    stub = aio_stub(p)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Unary(req("busy"))
    assert info.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    await stub.Unary(req("other"))
    assert clock.sleeps == pytest.approx([0.7])


def test_classify_status_marks_only_a_bare_resource_exhausted() -> None:
    """Exhausted only without a pushback trailer and without a relayed seawall refusal."""
    from seawall._pacing import Exhausted
    from seawall.interceptors._grpc_status import classify_status

    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    assert type(classify_status(code)) is Exhausted
    assert type(classify_status(code, [("x", "y")], idempotent=True)) is Exhausted
    pushed = classify_status(code, [("grpc-retry-pushback-ms", "100")])
    assert pushed is not None and type(pushed) is not Exhausted and pushed.delay == 0.1
    vetoed = classify_status(code, [("grpc-retry-pushback-ms", "-1")])
    assert vetoed is not None and type(vetoed) is not Exhausted and not vetoed.retry
    relayed = classify_status(code, [("seawall-rejected", "bulkhead")])
    assert relayed is not None and type(relayed) is not Exhausted and relayed.retry
    assert type(classify_status(grpc.StatusCode.UNAVAILABLE)) is not Exhausted
    c = classify_status(code)
    assert c is not None and type(c.with_retry(False)) is Exhausted
    assert type(c.with_delay(1.0)) is not Exhausted
