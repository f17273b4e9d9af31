"""Fault injection in hedged calls: every attempt, hedges included, draws from the point's Chaos.

Core (``acall``), the async httpx transport and gRPC (aio, both mountings;
sync, the channel wrapper) against real servers on 127.0.0.1: injected
attempts never reach the server and are counted apart (``injected_*``), as
in unhedged calls.
"""

from __future__ import annotations

import time
from typing import Any

import grpc
import httpx
import pytest

import seawall
from seawall.interceptors import grpc as sw_grpc
from seawall.interceptors import httpx as sw_httpx
from tests.grpc_support.mounts import aio_channel, sync_channel
from tests.grpc_support.servers import Backend, pb2, pb2_grpc
from tests.http_support import Reply, ScriptedServer

pytest_plugins = ["tests.grpc_support.fixtures"]

UNAVAILABLE = grpc.StatusCode.UNAVAILABLE


def hedged(chaos: seawall.Chaos, delay: float = 30.0, max_extra: int = 2,
           **policies: Any) -> seawall.IntegrationPoint:
    return seawall.IntegrationPoint("dep", chaos=chaos,
                                    hedge=seawall.Hedge(delay=delay, max_extra=max_extra),
                                    **policies)


def req(key: str) -> Any:
    return pb2.EchoRequest(key=key, text="hi")


async def aio_call_is_unavailable_unsent(p: seawall.IntegrationPoint, target: str,
                                         backend: Backend, mounting: str) -> None:
    """One grpc.aio Unary call through ``p`` fails UNAVAILABLE and the server sees no attempt."""
    channel = aio_channel(target, sw_grpc.Route(p, idempotent=True), mounting)
    try:
        with pytest.raises(grpc.RpcError) as info:
            await pb2_grpc.EchoStub(channel).Unary(req("k"), timeout=10)
        assert info.value.code() is UNAVAILABLE
        assert backend.attempts("k") == []
    finally:
        await channel.close()


# -- core: acall --------------------------------------------------------------------


async def test_every_hedged_attempt_gets_the_injected_fault() -> None:
    """A retryable injected fault starts the next hedge at once; none reaches the work."""
    p = hedged(seawall.Chaos(fault_rate=1.0, fault=ConnectionError("injected")))
    calls = []

    async def work() -> str:
        calls.append(1)
        return "real"

    with pytest.raises(ConnectionError):
        await p.acall(work)
    assert calls == []
    stats = p.stats()
    assert (stats.attempts, stats.hedges) == (3, 2)
    assert (stats.injected_attempts, stats.injected_failures, stats.failures) == (3, 1, 0)


async def test_a_seeded_sequence_decides_each_attempt_as_unhedged() -> None:
    """Seeded faults: each attempt, hedges included, takes the next step of the sequence."""
    chaos = seawall.Chaos(fault_rate=0.5, fault=ConnectionError("injected"), seed=11)
    twin = seawall.IntegrationPoint("twin", chaos=chaos).chaos
    assert twin is not None
    draws = iter([twin.draw() is not None for _ in range(100)])
    expected = []  # per call: how many attempts were injected before one reached the work
    for _ in range(10):
        injected = 0
        while injected < 4 and next(draws):
            injected += 1
        expected.append(injected)
    p = hedged(chaos, max_extra=3)
    reached = 0

    async def work() -> str:
        nonlocal reached
        reached += 1
        return "real"

    seen = []
    for _ in range(10):
        before = p.stats().injected_attempts
        try:
            await p.acall(work)
        except ConnectionError:
            pass
        seen.append(p.stats().injected_attempts - before)
    assert seen == expected
    assert reached == sum(1 for n in expected if n < 4)
    assert 0 < sum(expected) and p.stats().failures == 0


async def test_an_injected_latency_is_waited_inside_the_hedged_attempt() -> None:
    """Injected latency on attempt 1 (hedge delay longer): the call answers after it, marked."""
    p = hedged(seawall.Chaos(latency_rate=1.0, latency=0.05), delay=10.0)
    events: list[Any] = []
    p.add_hook(events.append)

    async def work() -> str:
        return "real"

    t0 = time.monotonic()
    assert await p.acall(work) == "real"
    assert time.monotonic() - t0 >= 0.05
    stats = p.stats()
    assert (stats.successes, stats.injected_attempts, stats.hedges) == (1, 1, 0)
    calls = [e for e in events if isinstance(e, seawall.CallEvent)]
    assert [e.injected for e in calls] == [True]


# -- httpx (async transport) ----------------------------------------------------------


async def test_httpx_hedged_attempts_get_the_injected_response() -> None:
    """Chaos(result=503): each hedged GET gets its injected 503; the server sees none."""
    p = hedged(seawall.Chaos(result_rate=1.0, result=503), max_extra=1)
    with ScriptedServer() as server:
        server.script(Reply(body=b"real"), Reply(body=b"real"))
        async with httpx.AsyncClient(transport=sw_httpx.AsyncResilientTransport(p)) as client:
            response = await client.get(server.url + "/item")
        assert response.status_code == 503
        assert response.headers["seawall-injected"] == "1"
        assert server.requests == []
    stats = p.stats()
    assert (stats.attempts, stats.hedges) == (2, 1)
    assert (stats.injected_attempts, stats.injected_failures, stats.failures) == (2, 1, 0)


# -- gRPC -----------------------------------------------------------------------------


async def test_aio_hedged_attempts_get_the_injected_status(
        aio_target: str, backend: Backend, mounting: str) -> None:
    """grpc.aio: every hedged attempt fails with the injected UNAVAILABLE; the server sees none."""
    p = hedged(seawall.Chaos(result_rate=1.0, result=UNAVAILABLE))
    await aio_call_is_unavailable_unsent(p, aio_target, backend, mounting)
    stats = p.stats()
    assert (stats.attempts, stats.hedges) == (3, 2)
    assert (stats.injected_attempts, stats.injected_failures, stats.failures) == (3, 1, 0)


async def test_aio_an_injected_fault_is_unavailable(
        aio_target: str, backend: Backend, mounting: str) -> None:
    """grpc.aio: an injected fault is gRPC's UNAVAILABLE, as unhedged."""
    p = hedged(seawall.Chaos(fault_rate=1.0, fault=ConnectionError("down")), max_extra=1)
    await aio_call_is_unavailable_unsent(p, aio_target, backend, mounting)
    assert p.stats().injected_failures == 1


def test_sync_hedged_attempts_get_the_injected_status(
        sync_target: str, backend: Backend) -> None:
    """resilient_channel: every hedged future is the injected UNAVAILABLE; the server sees none."""
    p = hedged(seawall.Chaos(result_rate=1.0, result=UNAVAILABLE))
    channel = sync_channel(sync_target, sw_grpc.Route(p, idempotent=True), "wrapper")
    try:
        with pytest.raises(grpc.RpcError) as info:
            pb2_grpc.EchoStub(channel).Unary(req("k"), timeout=10)
        assert info.value.code() is UNAVAILABLE
        assert backend.attempts("k") == []
    finally:
        channel.close()
    stats = p.stats()
    assert (stats.attempts, stats.hedges) == (3, 2)
    assert (stats.injected_attempts, stats.injected_failures, stats.failures) == (3, 1, 0)


def test_sync_injected_latency_delays_each_attempt_in_the_loop(
        sync_target: str, backend: Backend) -> None:
    """Latency on every attempt: attempt 1 is sent after it and wins; the delayed hedge is
    dropped before it is sent, and its bulkhead permit given back."""
    p = hedged(seawall.Chaos(latency_rate=1.0, latency=0.4), delay=0.1, max_extra=1,
               bulkhead=seawall.Bulkhead(max_concurrent=2))
    channel = sync_channel(sync_target, sw_grpc.Route(p, idempotent=True), "wrapper")
    try:
        t0 = time.monotonic()
        reply = pb2_grpc.EchoStub(channel).Unary(req("k"), timeout=10)
        assert time.monotonic() - t0 >= 0.4
        assert reply.attempt == 1
        assert backend.headers("k") == [None]
    finally:
        channel.close()
    stats = p.stats()
    assert (stats.successes, stats.hedges, stats.hedges_won, stats.injected_attempts) == \
        (1, 1, 0, 1)
    assert p.permits is not None and p.permits.active == 0


def test_sync_injected_latency_past_the_timeout_is_deadline_exceeded(
        sync_target: str, backend: Backend) -> None:
    """Latency longer than the attempt's time: DEADLINE_EXCEEDED after that time, unsent."""
    p = hedged(seawall.Chaos(latency_rate=1.0, latency=5.0), delay=0.15, max_extra=1,
               timeout=seawall.Timeout(attempt=0.2))
    channel = sync_channel(sync_target, sw_grpc.Route(p, idempotent=True), "wrapper")
    try:
        t0 = time.monotonic()
        with pytest.raises(grpc.RpcError) as info:
            pb2_grpc.EchoStub(channel).Unary(req("k"), timeout=10)
        assert info.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
        assert 0.2 <= time.monotonic() - t0 < 3.0
        assert backend.attempts("k") == []
    finally:
        channel.close()
    stats = p.stats()
    assert (stats.injected_attempts, stats.injected_failures, stats.failures) == (2, 1, 0)


def test_sync_threads_share_a_hedged_point_with_seeded_faults(
        sync_target: str, backend: Backend) -> None:
    """8 threads x 10 hedged calls, half the attempts injected: the server sees the rest."""
    import threading

    p = hedged(seawall.Chaos(result_rate=0.5, result=UNAVAILABLE, seed=3), max_extra=2)
    channel = sync_channel(sync_target, sw_grpc.Route(p, idempotent=True), "wrapper")
    stub = pb2_grpc.EchoStub(channel)
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        for i in range(10):
            try:
                stub.Unary(req(f"t{n}-{i}"), timeout=10)
            except grpc.RpcError as exc:
                errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        channel.close()
    stats = p.stats()
    reached = sum(len(backend.attempts(f"t{n}-{i}")) for n in range(8) for i in range(10))
    assert stats.calls == 80 and stats.injected_failures == len(errors)
    assert stats.attempts == stats.injected_attempts + reached
    assert 0 < stats.injected_attempts and stats.failures == 0
