"""Hedging under trio: attempts in a nursery, each in its own cancel scope, in real ``trio.run``s.

The async httpx transports (httpx and httpx2) against a real HTTP server on
127.0.0.1, and ``point.acall``: a stalled GET is hedged and the loser
cancelled, a fatal failure ends the call, cancelling the caller cancels
every attempt, and fault injection reaches every hedged attempt.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import trio

import seawall
from tests.http_support import Reply, ScriptedServer

pytest_plugins = ["tests.http_fixtures"]


def recording(hx: Any) -> Any:
    """An inner transport (the package's own) that records the requests cancelled in it."""

    class Recording(hx.AsyncHTTPTransport):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.cancelled: list[str] = []

        async def handle_async_request(self, request: Any) -> Any:
            try:
                return await super().handle_async_request(request)
            except trio.Cancelled:
                self.cancelled.append(request.headers.get("seawall-attempt", "1"))
                raise

    return Recording()


def test_a_stalled_get_is_hedged_and_the_loser_cancelled(hx: Any, sw: Any,
                                                        server: ScriptedServer) -> None:
    """The first GET stalls: the hedge answers; the stalled request is cancelled and closed."""
    gate = threading.Event()
    server.script(Reply(body=b"stalled", gate=gate), Reply(body=b"hedge"))
    p = seawall.IntegrationPoint("api", hedge=seawall.Hedge(delay=0.1),
                                 bulkhead=seawall.Bulkhead(max_concurrent=4))
    inner = recording(hx)

    async def main() -> tuple[Any, float]:
        transport = sw.AsyncResilientTransport(p, inner)
        async with hx.AsyncClient(transport=transport) as client:
            t0 = time.monotonic()
            response = await client.get(server.url + "/item")
            return response, time.monotonic() - t0

    try:
        response, elapsed = trio.run(main)
        assert (response.status_code, response.content) == (200, b"hedge")
        assert elapsed < 3.0
        assert server.wait_for_requests(2)
        assert inner.cancelled == ["1"]  # the loser, cancelled in the inner transport
    finally:
        gate.set()
    stats = p.stats()
    assert (stats.successes, stats.failures, stats.hedges, stats.hedges_won) == (1, 0, 1, 1)
    assert p.permits is not None and p.permits.active == 0


def test_a_fatal_failure_ends_the_call_and_cancels_the_hedge() -> None:
    """Attempt 1 fails permanently while the hedge runs: raised at once, the hedge cancelled."""
    p = seawall.IntegrationPoint("dep", hedge=seawall.Hedge(delay=0.02))
    started: list[int] = []
    cancelled: list[int] = []

    async def work() -> str:
        number = len(started) + 1
        started.append(number)
        try:
            if number == 1:
                await trio.sleep(0.2)
                raise ValueError("bad input")
            await trio.sleep(10)
            return "late"
        except trio.Cancelled:
            cancelled.append(number)
            raise

    async def main() -> float:
        t0 = time.monotonic()
        with pytest.raises(ValueError, match="bad input"):
            await p.acall(work)
        return time.monotonic() - t0

    assert trio.run(main) < 5.0
    assert (started, cancelled) == ([1, 2], [2])
    stats = p.stats()
    assert (stats.failures, stats.failures_by_category["permanent"], stats.hedges) == (1, 1, 1)


def test_cancelling_the_caller_cancels_every_attempt() -> None:
    """Both attempts stalled: the caller's cancel scope cancels both; nothing counts as failed."""
    p = seawall.IntegrationPoint("dep", hedge=seawall.Hedge(delay=0.02, max_extra=2),
                                 bulkhead=seawall.Bulkhead(max_concurrent=5),
                                 breaker=seawall.CircuitBreaker())
    cancelled: list[int] = []
    started = trio.Event()
    count = 0

    async def work() -> str:
        nonlocal count
        count += 1
        number = count
        if number == 3:
            started.set()
        try:
            await trio.sleep_forever()
        except trio.Cancelled:
            cancelled.append(number)
            raise
        return "never"

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            async def caller() -> None:
                await p.acall(work)

            nursery.start_soon(caller)
            with trio.fail_after(10):
                await started.wait()
            nursery.cancel_scope.cancel()

    trio.run(main)
    assert sorted(cancelled) == [1, 2, 3]
    stats = p.stats()
    assert (stats.cancelled, stats.failures, stats.hedges) == (1, 0, 2)
    assert p.permits is not None and p.permits.active == 0


def test_every_hedged_attempt_is_injected_under_trio(hx: Any, sw: Any,
                                                     server: ScriptedServer) -> None:
    """Chaos(result=503) under trio: each hedged GET gets its injected 503, the server none."""
    p = seawall.IntegrationPoint("api", hedge=seawall.Hedge(delay=30.0),
                                 chaos=seawall.Chaos(result_rate=1.0, result=503))

    async def main() -> Any:
        async with hx.AsyncClient(transport=sw.AsyncResilientTransport(p)) as client:
            return await client.get(server.url + "/item")

    response = trio.run(main)
    assert response.status_code == 503 and response.headers["seawall-injected"] == "1"
    assert server.requests == []
    stats = p.stats()
    assert (stats.attempts, stats.hedges, stats.injected_attempts, stats.injected_failures) == \
        (2, 1, 2, 1)


def test_many_trio_tasks_hedge_with_injected_faults_exact_totals() -> None:
    """40 trio tasks share a hedged point with seeded faults: every attempt counted once."""
    p = seawall.IntegrationPoint(
        "dep", hedge=seawall.Hedge(delay=0.005, max_extra=2),
        chaos=seawall.Chaos(fault_rate=0.4, fault=ConnectionError("injected"), seed=5),
        bulkhead=seawall.Bulkhead(max_concurrent=64))
    reached = 0
    outcomes: list[str] = []

    async def work() -> str:
        nonlocal reached
        reached += 1
        await trio.sleep(0.01)
        return "real"

    async def caller() -> None:
        try:
            outcomes.append(await p.acall(work))
        except ConnectionError:
            outcomes.append("failed")

    async def main() -> None:
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                for _ in range(40):
                    nursery.start_soon(caller)

    trio.run(main)
    stats = p.stats()
    assert len(outcomes) == 40 and stats.calls == 40
    assert stats.successes == outcomes.count("real")
    assert stats.injected_failures == outcomes.count("failed") and stats.failures == 0
    # every attempt either reached the work or was injected; losers cancelled, never counted
    assert stats.attempts <= stats.injected_attempts + reached
    assert stats.injected_attempts > 0 and p.permits is not None and p.permits.active == 0
