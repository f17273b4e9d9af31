"""Fault injection through gRPC (sync and aio, both mountings) against real servers on 127.0.0.1."""

from __future__ import annotations

from typing import Any

import grpc
import grpc.aio
import pytest

import seawall
from seawall.interceptors._grpc_chaos import InjectedDone, fault_done, result_done
from seawall.testing import FakeClock
from tests.grpc_support.calls import echo_point, req
from tests.grpc_support.servers import Backend

pytest_plugins = ["tests.grpc_support.fixtures"]

UNAVAILABLE = grpc.StatusCode.UNAVAILABLE


def point(chaos: seawall.Chaos, **policies: Any) -> seawall.IntegrationPoint:
    return echo_point(chaos=chaos, **policies)


# -- sync -------------------------------------------------------------------------


def test_sync_injected_status_is_retried_and_never_reaches_the_server(
        sync_stub: Any, backend: Backend) -> None:
    """An injected UNAVAILABLE is classified and retried like a real one; the server sees none."""
    p = point(seawall.Chaos(result_rate=1.0, result=UNAVAILABLE))
    with pytest.raises(grpc.RpcError) as info:
        sync_stub(p).Unary(req("k"))
    assert info.value.code() is UNAVAILABLE
    assert backend.attempts("k") == []
    stats = p.stats()
    assert (stats.attempts, stats.injected_attempts, stats.injected_failures) == (3, 3, 1)
    assert stats.failures == 0


def test_sync_seeded_faults_mix_with_real_calls(sync_stub: Any, backend: Backend) -> None:
    """A seeded fault rate: the server sees exactly the attempts that were not injected."""
    p = point(seawall.Chaos(fault_rate=0.4, fault=ConnectionError("link down"), seed=4))
    stub = sync_stub(p)
    for _ in range(20):
        assert stub.Unary(req("k")).text  # every call ends well: retries hide the faults
    stats = p.stats()
    assert stats.successes == 20 and stats.injected_attempts > 0
    assert len(backend.attempts("k")) == stats.attempts - stats.injected_attempts


def test_sync_server_stream_and_future_get_the_status(sync_stub: Any, backend: Backend) -> None:
    """A response stream and a future fail with the injected status too."""
    p = point(seawall.Chaos(result_rate=1.0, result=(grpc.StatusCode.RESOURCE_EXHAUSTED, "slow")),
              attempts=1)
    stub = sync_stub(p)
    with pytest.raises(grpc.RpcError) as info:
        list(stub.ServerStream(req("k", count=2)))
    assert info.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    future = stub.Unary.future(req("k"))
    assert future.exception(timeout=10).code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert backend.attempts("k") == [] and p.stats().injected_failures == 2


def test_sync_latency_past_the_timeout_is_deadline_exceeded(sync_stub: Any) -> None:
    """Latency longer than the attempt timeout waits it on the clock, then DEADLINE_EXCEEDED."""
    clock = FakeClock()
    p = point(seawall.Chaos(latency_rate=1.0, latency=3.0), clock=clock, attempts=1,
              timeout=seawall.Timeout(attempt=0.5))
    with pytest.raises(grpc.RpcError) as info:
        sync_stub(p).Unary(req("k"))
    assert info.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert clock.sleeps == [0.5]


def test_sync_injected_statuses_open_the_breaker(sync_stub: Any, backend: Backend) -> None:
    """The breaker opens on injected statuses; the refusal is the usual one."""
    p = point(seawall.Chaos(result_rate=1.0, result=UNAVAILABLE), attempts=1,
              breaker=seawall.CircuitBreaker(failure_rate=0.5, minimum_calls=3, window=3))
    stub = sync_stub(p)
    for _ in range(3):
        with pytest.raises(grpc.RpcError):
            stub.Unary(req("k"))
    with pytest.raises(seawall.CircuitOpenError):
        stub.Unary(req("k"))


# -- aio --------------------------------------------------------------------------


async def test_aio_injected_status_is_retried_and_never_reaches_the_server(
        aio_stub: Any, backend: Backend) -> None:
    """grpc.aio: an injected UNAVAILABLE, retried, then raised as an AioRpcError."""
    p = point(seawall.Chaos(result_rate=1.0, result=UNAVAILABLE))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await aio_stub(p).Unary(req("k"))
    assert info.value.code() is UNAVAILABLE
    assert backend.attempts("k") == []
    stats = p.stats()
    assert (stats.attempts, stats.injected_attempts, stats.injected_failures) == (3, 3, 1)


async def test_aio_seeded_faults_mix_with_real_calls(aio_stub: Any, backend: Backend) -> None:
    """grpc.aio: the server sees exactly the attempts that were not injected."""
    p = point(seawall.Chaos(fault_rate=0.4, fault=ConnectionError("link down"), seed=4))
    stub = aio_stub(p)
    for _ in range(20):
        assert (await stub.Unary(req("k"))).text
    stats = p.stats()
    assert stats.successes == 20 and stats.injected_attempts > 0
    assert len(backend.attempts("k")) == stats.attempts - stats.injected_attempts


async def test_aio_server_stream_gets_the_status(aio_stub: Any, backend: Backend) -> None:
    """grpc.aio: a response stream fails with the injected status before any message."""
    p = point(seawall.Chaos(result_rate=1.0, result=grpc.StatusCode.UNAVAILABLE), attempts=2)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for _ in aio_stub(p).ServerStream(req("k", count=2)):
            pass
    assert info.value.code() is UNAVAILABLE
    assert backend.attempts("k") == []
    assert p.stats().injected_attempts == 2


async def test_aio_disabled_chaos_passes_through(aio_stub: Any, backend: Backend) -> None:
    """point.chaos.disable(): the RPCs reach the server untouched."""
    p = point(seawall.Chaos(result_rate=1.0, result=UNAVAILABLE))
    assert p.chaos is not None
    p.chaos.disable()
    assert (await aio_stub(p).Unary(req("k"))).text
    assert len(backend.attempts("k")) == 1 and p.stats().injected_attempts == 0


async def test_aio_injected_done_call_reports_its_status() -> None:
    """InjectedDone(code, details): its ``status`` is what the call reports and raises."""
    call = InjectedDone(UNAVAILABLE, "link down")
    assert (call.status.code, call.status.details, call.status.debug) == (
        UNAVAILABLE, "link down", "link down")
    assert (await call.code(), await call.details()) == (UNAVAILABLE, "link down")
    assert list(await call.trailing_metadata()) == [] and call.done()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    assert info.value.code() is UNAVAILABLE and info.value.details() == "link down"
    assert result_done((grpc.StatusCode.ABORTED, "no")).status.code is grpc.StatusCode.ABORTED
    assert fault_done(ConnectionError("x")).status.code is UNAVAILABLE
