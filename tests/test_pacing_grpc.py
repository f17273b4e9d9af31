"""Server pacing over gRPC: one RESOURCE_EXHAUSTED with pushback pauses every caller."""

from __future__ import annotations

import asyncio
import math
import threading
import time
from typing import Any

import grpc
import pytest

import seawall
from tests.grpc_support.mounts import aio_channel, sync_channel
from tests.grpc_support.servers import Backend, pb2, pb2_grpc

pytest_plugins = ["tests.grpc_support.fixtures"]


class TimedBackend(Backend):
    """The echo backend, noting when each RPC arrived (the server's monotonic clock)."""

    def __init__(self) -> None:
        super().__init__()
        self.arrivals: list[float] = []
        self.throttled_at: float | None = None

    def begin(self, key: str, metadata: Any, time_remaining: float | None) -> Any:
        now = time.monotonic()
        with self._lock:
            self.arrivals.append(now)
            if key == "throttle" and self.throttled_at is None:
                self.throttled_at = now
        return super().begin(key, metadata, time_remaining)


@pytest.fixture
def backend() -> Backend:
    """The timed backend, one per test."""
    b = TimedBackend()
    b.plan("throttle", fail=1, code=grpc.StatusCode.RESOURCE_EXHAUSTED, pushback="1000")
    return b


def point() -> seawall.IntegrationPoint:
    return seawall.IntegrationPoint("echo", retry=seawall.Retry(attempts=3, budget=None))


def check_quiet_second(backend: TimedBackend, point: seawall.IntegrationPoint) -> None:
    """Nothing arrived from 0.3 s after the client heard the pushback until the pause ended.

    The pause runs from when the client classified the reply (``until - 1 s``,
    the same monotonic clock as the server's, in this process) to ``until``;
    RPCs admitted just before may still arrive in its first moments.
    """
    t = backend.throttled_at
    assert t is not None, "the throttled RPC never arrived"
    assert point.pacing is not None
    end = point.pacing.until
    heard = end - 1.0
    assert t <= heard < t + 5.0
    assert [a - heard for a in backend.arrivals if heard + 0.3 < a < end - 0.01] == []
    assert any(a >= end for a in backend.arrivals)  # and the callers came back


def test_one_pushback_pauses_8_threads(sync_target: str, backend: TimedBackend,
                                       mounting: str) -> None:
    """8 threads on a sync channel: after a 1000 ms pushback the server hears nothing for 1 s."""
    p = point()
    channel = sync_channel(sync_target, p, mounting)
    stub = pb2_grpc.EchoStub(channel)
    stop = threading.Event()
    errors: list[BaseException] = []

    def caller(i: int) -> None:
        try:
            n = 0
            while not stop.is_set():
                n += 1
                key = "throttle" if (i, n) == (0, 10) else f"k{i}"
                stub.Unary(pb2.EchoRequest(key=key, text="x"), timeout=10)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    end = time.monotonic() + 20
    while time.monotonic() < end:
        assert p.pacing is not None
        if p.pacing.until > -math.inf and time.monotonic() > p.pacing.until + 0.3:
            break
        time.sleep(0.05)
    stop.set()
    for t in threads:
        t.join(10)
    channel.close()
    assert errors == []
    check_quiet_second(backend, p)
    assert p.stats().paused_waits >= 1


async def test_one_pushback_pauses_8_aio_tasks(aio_target: str, backend: TimedBackend,
                                              mounting: str) -> None:
    """8 tasks on a grpc.aio channel: the same quiet second."""
    p = point()
    channel = aio_channel(aio_target, p, mounting)
    stub = pb2_grpc.EchoStub(channel)
    stop = asyncio.Event()

    async def caller(i: int) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            key = "throttle" if (i, n) == (0, 10) else f"k{i}"
            await stub.Unary(pb2.EchoRequest(key=key, text="x"), timeout=10)

    tasks = [asyncio.ensure_future(caller(i)) for i in range(8)]
    end = time.monotonic() + 20
    while time.monotonic() < end:
        assert p.pacing is not None
        if p.pacing.until > -math.inf and time.monotonic() > p.pacing.until + 0.3:
            break
        await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 10)
    await channel.close()
    check_quiet_second(backend, p)
    assert p.stats().paused_waits >= 1


def test_a_refused_grpc_call_is_rate_limited_and_resource_exhausted(
        sync_target: str, backend: TimedBackend, mounting: str) -> None:
    """Over the rate limit, a gRPC call fails RESOURCE_EXHAUSTED as a seawall.RateLimitedError."""
    p = seawall.IntegrationPoint("echo", rate_limit=seawall.RateLimit(rate=0.01, burst=1))
    channel = sync_channel(sync_target, p, mounting)
    stub = pb2_grpc.EchoStub(channel)
    stub.Unary(pb2.EchoRequest(key="a", text="x"))
    with pytest.raises(seawall.RateLimitedError) as info:
        stub.Unary(pb2.EchoRequest(key="a", text="x"))
    assert isinstance(info.value, grpc.RpcError)
    assert info.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert info.value.reason == "rate_limit"
    assert len(backend.attempts("a")) == 1
    channel.close()
