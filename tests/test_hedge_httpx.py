"""Hedged requests through the async httpx transport: idempotent, bodiless requests only."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

import seawall
from seawall.interceptors import httpx as sw_httpx
from tests.http_support import Reply, ScriptedServer


def hedged_point() -> seawall.IntegrationPoint:
    return seawall.IntegrationPoint("api", hedge=seawall.Hedge(delay=0.1))


@pytest.fixture
def server() -> ScriptedServer:
    with ScriptedServer() as s:
        yield s


async def test_a_stalled_get_is_hedged(server: ScriptedServer) -> None:
    """The first GET stalls: the hedge's response answers, the stalled one is dropped."""
    gate = threading.Event()
    server.script(Reply(body=b"stalled", gate=gate), Reply(body=b"hedge"))
    p = hedged_point()
    try:
        async with httpx.AsyncClient(transport=sw_httpx.AsyncResilientTransport(p)) as client:
            t0 = time.monotonic()
            response = await client.get(server.url + "/item")
            elapsed = time.monotonic() - t0
        assert (response.status_code, response.content) == (200, b"hedge")
        assert elapsed < 2.0
        assert server.wait_for_requests(2)
        stats = p.stats()
        assert (stats.successes, stats.hedges, stats.hedges_won) == (1, 1, 1)
    finally:
        gate.set()


async def test_a_retryable_status_starts_the_hedge_at_once(server: ScriptedServer) -> None:
    """A 503 on the first GET sends the next attempt without waiting for the delay."""
    server.script(Reply(status=503), Reply(body=b"second"))
    p = seawall.IntegrationPoint("api", hedge=seawall.Hedge(delay=30.0))
    async with httpx.AsyncClient(transport=sw_httpx.AsyncResilientTransport(p)) as client:
        t0 = time.monotonic()
        response = await client.get(server.url + "/item")
    assert response.content == b"second" and time.monotonic() - t0 < 5.0
    assert len(server.paths) == 2


async def test_a_request_with_a_body_is_not_hedged(server: ScriptedServer) -> None:
    """A PUT with a body runs alone, slow as it is."""
    server.script(Reply(body=b"slow", delay=0.5))
    p = hedged_point()
    async with httpx.AsyncClient(transport=sw_httpx.AsyncResilientTransport(p)) as client:
        response = await client.put(server.url + "/item", content=b"payload")
    assert response.content == b"slow"
    assert len(server.paths) == 1 and p.stats().hedges == 0


async def test_a_post_is_not_hedged(server: ScriptedServer) -> None:
    """POST is not idempotent: no hedge, even without a body."""
    server.script(Reply(body=b"slow", delay=0.5))
    p = hedged_point()
    async with httpx.AsyncClient(transport=sw_httpx.AsyncResilientTransport(p)) as client:
        response = await client.post(server.url + "/item")
    assert response.content == b"slow"
    assert len(server.paths) == 1 and p.stats().hedges == 0
