"""Hedged gRPC unary calls: idempotent routes only, seawall-attempt on each, losers cancelled."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest

import seawall
from seawall.interceptors import grpc as sw_grpc
from tests.grpc_support.fixtures import aio_target, backend, mounting  # noqa: F401
from tests.grpc_support.mounts import aio_channel
from tests.grpc_support.servers import Backend, pb2, pb2_grpc


def hedged_point() -> seawall.IntegrationPoint:
    return seawall.IntegrationPoint("echo", hedge=seawall.Hedge(delay=0.1))


async def test_a_stalled_rpc_is_hedged_and_cancelled(
        aio_target: str, backend: Backend, mounting: str) -> None:  # noqa: F811
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
        aio_target: str, backend: Backend, mounting: str) -> None:  # noqa: F811
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
        aio_target: str, backend: Backend, mounting: str) -> None:  # noqa: F811
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
        aio_target: str, backend: Backend, mounting: str) -> None:  # noqa: F811
    """A retryable status sends the next attempt without waiting for the delay."""
    backend.plan("k", fail=1, code=grpc.StatusCode.UNAVAILABLE)
    p = seawall.IntegrationPoint("echo", hedge=seawall.Hedge(delay=30.0))
    channel = aio_channel(aio_target, sw_grpc.Route(p, idempotent=True), mounting)
    stub = pb2_grpc.EchoStub(channel)
    t0 = time.monotonic()
    reply = await stub.Unary(pb2.EchoRequest(key="k", text="hi"), timeout=10)
    assert reply.attempt == 2 and time.monotonic() - t0 < 5.0
    await channel.close()
