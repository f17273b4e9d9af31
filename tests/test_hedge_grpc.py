"""Hedged gRPC unary calls: idempotent routes only, seawall-attempt on each, losers cancelled."""

from __future__ import annotations

import asyncio
import threading
import time

import grpc
import pytest

import seawall
from seawall.interceptors import grpc as sw_grpc
from tests.grpc_support.mounts import aio_channel, sync_channel
from tests.grpc_support.servers import Backend, pb2, pb2_grpc

pytest_plugins = ["tests.grpc_support.fixtures"]


def hedged_point() -> seawall.IntegrationPoint:
    return seawall.IntegrationPoint("echo", hedge=seawall.Hedge(delay=0.1))


async def test_a_stalled_rpc_is_hedged_and_cancelled(
        aio_target: str, backend: Backend, mounting: str) -> None:
    """The first attempt stalls 5 s: attempt 2 answers, attempt 1 is cancelled on the wire."""
    backend.plan("k", delay=5.0, delay_attempts=1)
    p = hedged_point()
    channel = aio_channel(aio_target, sw_grpc.Route(p, idempotent=True), mounting)
    stub = pb2_grpc.EchoStub(channel)
    t0 = time.monotonic()
    reply = await stub.Unary(pb2.EchoRequest(key="k", text="hi"), timeout=10)
    elapsed = time.monotonic() - t0
    assert (reply.text, reply.attempt) == ("hi", 2)
    assert elapsed < 3.0
    assert backend.headers("k") == [None, "2"]
    end = time.monotonic() + 5  # the server (on this loop) sees the loser's cancellation
    while not backend.cancelled.is_set() and time.monotonic() < end:
        await asyncio.sleep(0.01)
    assert backend.cancelled.is_set()
    stats = p.stats()
    assert (stats.successes, stats.hedges, stats.hedges_won) == (1, 1, 1)
    await channel.close()


async def test_routes_not_marked_idempotent_are_never_hedged(
        aio_target: str, backend: Backend, mounting: str) -> None:
    """Without idempotent=True the slow call runs alone."""
    backend.plan("k", delay=0.5, delay_attempts=1)
    p = hedged_point()
    channel = aio_channel(aio_target, p, mounting)
    stub = pb2_grpc.EchoStub(channel)
    reply = await stub.Unary(pb2.EchoRequest(key="k", text="hi"), timeout=10)
    assert reply.attempt == 1
    assert len(backend.attempts("k")) == 1
    assert p.stats().hedges == 0
    await channel.close()


async def test_a_fatal_status_ends_a_hedged_call(
        aio_target: str, backend: Backend, mounting: str) -> None:
    """INVALID_ARGUMENT is not retryable: the caller gets it, no hedge follows."""
    backend.plan("k", fail=5, code=grpc.StatusCode.INVALID_ARGUMENT)
    p = hedged_point()
    channel = aio_channel(aio_target, sw_grpc.Route(p, idempotent=True), mounting)
    stub = pb2_grpc.EchoStub(channel)
    with pytest.raises(grpc.RpcError) as info:
        await stub.Unary(pb2.EchoRequest(key="k", text="hi"), timeout=10)
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert len(backend.attempts("k")) == 1
    await channel.close()


async def test_unavailable_starts_the_hedge_at_once(
        aio_target: str, backend: Backend, mounting: str) -> None:
    """A retryable status sends the next attempt without waiting for the delay."""
    backend.plan("k", fail=1, code=grpc.StatusCode.UNAVAILABLE)
    p = seawall.IntegrationPoint("echo", hedge=seawall.Hedge(delay=30.0))
    channel = aio_channel(aio_target, sw_grpc.Route(p, idempotent=True), mounting)
    stub = pb2_grpc.EchoStub(channel)
    t0 = time.monotonic()
    reply = await stub.Unary(pb2.EchoRequest(key="k", text="hi"), timeout=10)
    assert reply.attempt == 2 and time.monotonic() - t0 < 5.0
    await channel.close()


# -- sync: the channel wrapper's blocking calls, attempts as futures ---------------------


def test_a_stalled_sync_rpc_is_hedged_through_the_wrapper(
        sync_target: str, backend: Backend) -> None:
    """resilient_channel: attempt 2 answers a stalled attempt 1, which is cancelled."""
    backend.plan("k", delay=5.0, delay_attempts=1)
    p = hedged_point()
    threads_before = threading.active_count()
    channel = sync_channel(sync_target, sw_grpc.Route(p, idempotent=True), "wrapper")
    stub = pb2_grpc.EchoStub(channel)
    t0 = time.monotonic()
    reply = stub.Unary(pb2.EchoRequest(key="k", text="hi"), timeout=10)
    assert (reply.text, reply.attempt) == ("hi", 2)
    assert time.monotonic() - t0 < 3.0
    assert backend.headers("k") == [None, "2"]
    assert backend.cancelled.wait(5)
    stats = p.stats()
    assert (stats.successes, stats.hedges, stats.hedges_won) == (1, 1, 1)
    assert threading.active_count() <= threads_before + 4  # gRPC's own, none per attempt
    channel.close()


def test_a_sync_hedged_failure_raises_the_last_status(
        sync_target: str, backend: Backend) -> None:
    """Every attempt UNAVAILABLE: the caller gets the status, after 1 + max_extra attempts."""
    backend.plan("k", fail=10, code=grpc.StatusCode.UNAVAILABLE)
    p = seawall.IntegrationPoint("echo", hedge=seawall.Hedge(delay=5.0, max_extra=2))
    channel = sync_channel(sync_target, sw_grpc.Route(p, idempotent=True), "wrapper")
    stub = pb2_grpc.EchoStub(channel)
    with pytest.raises(grpc.RpcError) as info:
        stub.Unary(pb2.EchoRequest(key="k", text="hi"), timeout=10)
    assert info.value.code() is grpc.StatusCode.UNAVAILABLE
    assert backend.headers("k") == [None, "2", "3"]
    stats = p.stats()
    assert (stats.failures, stats.attempts, stats.hedges) == (1, 3, 2)
    channel.close()


def test_a_sync_refusal_is_a_grpc_error(sync_target: str, backend: Backend) -> None:
    """A hedged call the breaker refuses raises its gRPC twin, touching no server."""
    p = seawall.IntegrationPoint("echo", hedge=seawall.Hedge(delay=0.1),
                                 breaker=seawall.CircuitBreaker())
    assert p.circuit is not None
    p.circuit.force_open()
    channel = sync_channel(sync_target, sw_grpc.Route(p, idempotent=True), "wrapper")
    stub = pb2_grpc.EchoStub(channel)
    with pytest.raises(seawall.CircuitOpenError) as info:
        stub.Unary(pb2.EchoRequest(key="k", text="hi"), timeout=10)
    assert isinstance(info.value, grpc.RpcError)
    assert backend.attempts("k") == []
    channel.close()
