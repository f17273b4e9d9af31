"""AsyncResilientTransport under trio, against a real HTTP server on 127.0.0.1.

httpx's async client runs under asyncio and trio (through anyio); so does
the transport: the retry backoff, the bulkhead queue (shared with threads
and other loops) and cancellation, each in one ``trio.run``. Each test runs
for httpx and for httpx2 (``hx`` is the package, ``sw`` seawall's module for it).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
import trio

import seawall
from tests.http_support import Reply, ScriptedServer

pytest_plugins = ["tests.http_fixtures"]


def point(**kw: Any) -> seawall.IntegrationPoint:
    kw.setdefault("retry", seawall.Retry(attempts=3, budget=None,
                                         backoff=seawall.Backoff.constant(0.01)))
    return seawall.IntegrationPoint("api", **kw)


def permits(p: seawall.IntegrationPoint) -> Any:
    assert p.permits is not None
    return p.permits


async def trio_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll a condition no event can signal (what the server has seen), within a bound."""
    with trio.fail_after(timeout):
        while not condition():
            await trio.sleep(0.001)


def test_503s_are_retried_with_real_backoff_under_trio(hx: Any, sw: Any, server: ScriptedServer) -> None:
    """Two 503s then 200: the transport's backoff waits run under trio."""
    api = point()
    server.script(Reply(503, b"busy"), Reply(503, b"busy"), Reply(200, b"fine"))

    async def main() -> Any:
        async with hx.AsyncClient(transport=sw.AsyncResilientTransport(api)) as c:
            return await c.get(server.url + "/items")

    r = trio.run(main)
    assert (r.status_code, r.text) == (200, "fine")
    assert server.paths == ["/items"] * 3
    assert api.stats().retries == 2


def test_retry_after_is_honoured_under_trio(hx: Any, sw: Any, server: ScriptedServer) -> None:
    """A 429 with Retry-After: 1 waits about a second on trio's clock before the retry."""
    api = point()
    server.script(Reply(429, b"slow down", headers=(("Retry-After", "1"),)), Reply(200, b"ok"))

    async def main() -> float:
        async with hx.AsyncClient(transport=sw.AsyncResilientTransport(api)) as c:
            t0 = trio.current_time()
            r = await c.get(server.url + "/")
            assert r.status_code == 200
            return trio.current_time() - t0

    assert trio.run(main) >= 1.0 - 0.01


def test_many_trio_tasks_queue_for_the_bulkhead(hx: Any, sw: Any, server: ScriptedServer) -> None:
    """Twenty concurrent requests, two permits: two reach the server, eighteen wait, all succeed."""
    api = point(bulkhead=seawall.Bulkhead(max_concurrent=2, max_wait=30.0))
    gate = threading.Event()
    server.script(*[Reply(200, b"ok", gate=gate) for _ in range(2)])
    statuses: list[int] = []

    async def main() -> None:
        async with hx.AsyncClient(transport=sw.AsyncResilientTransport(api)) as c:
            async def one(i: int) -> None:
                statuses.append((await c.get(f"{server.url}/{i}")).status_code)

            async with trio.open_nursery() as nursery:
                for i in range(20):
                    nursery.start_soon(one, i)
                await trio_until(lambda: len(server.requests) == 2 and permits(api).waiting == 18)
                gate.set()

    try:
        trio.run(main)
    finally:
        gate.set()
    assert statuses == [200] * 20
    assert len(server.requests) == 20
    stats = api.stats()
    assert (stats.successes, stats.rejections["bulkhead"]) == (20, 0)
    assert permits(api).active == 0


def test_a_sync_request_in_another_thread_hands_its_permit_to_a_trio_request(hx: Any, sw: Any, server: ScriptedServer) -> None:
    """One point, one permit, a sync client in a thread and a trio client: the release wakes trio."""
    api = point(bulkhead=seawall.Bulkhead(max_concurrent=1, max_wait=30.0))
    gate = threading.Event()
    server.script(Reply(200, b"sync", gate=gate), path="/sync")
    results: list[str] = []

    def sync_side() -> None:
        with hx.Client(transport=sw.ResilientTransport(api)) as c:
            results.append(c.get(server.url + "/sync").text)

    t = threading.Thread(target=sync_side)
    t.start()

    async def main() -> str:
        await trio_until(lambda: len(server.requests) == 1)
        async with hx.AsyncClient(transport=sw.AsyncResilientTransport(api)) as c:
            async with trio.open_nursery() as nursery:
                got: list[str] = []

                async def trio_side() -> None:
                    got.append((await c.get(server.url + "/trio")).text)

                nursery.start_soon(trio_side)
                await trio_until(lambda: permits(api).waiting == 1)
                gate.set()  # the sync request ends in its thread and releases its permit
            return got[0]

    try:
        assert trio.run(main) == "ok"
    finally:
        gate.set()
        t.join(10)
    assert results == ["sync"]
    assert server.paths == ["/sync", "/trio"]
    assert permits(api).active == 0


def test_cancelling_a_trio_request_in_flight_is_not_a_failure(hx: Any, sw: Any, server: ScriptedServer) -> None:
    """A cancel scope fires while the request waits for its response: cancelled, breaker untouched."""
    api = point(breaker=seawall.CircuitBreaker(failure_rate=0.5, minimum_calls=1, window=1),
                bulkhead=seawall.Bulkhead(max_concurrent=1, max_wait=1.0))
    gate = threading.Event()
    server.script(Reply(200, gate=gate))

    async def main() -> None:
        async with hx.AsyncClient(transport=sw.AsyncResilientTransport(api)) as c:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(c.get, server.url + "/")
                await trio_until(lambda: len(server.requests) == 1)
                nursery.cancel_scope.cancel()

    try:
        trio.run(main)
    finally:
        gate.set()
    stats = api.stats()
    assert (stats.cancelled, stats.failures) == (1, 0)
    assert api.breaker_state == seawall.BreakerState.CLOSED
    assert permits(api).active == 0


def test_cancelling_a_trio_request_queued_for_the_bulkhead_leaks_no_permit(hx: Any, sw: Any, server: ScriptedServer) -> None:
    """The second request waits for the only permit and is cancelled; the permit survives."""
    api = point(bulkhead=seawall.Bulkhead(max_concurrent=1, max_wait=30.0))
    gate = threading.Event()
    server.script(Reply(200, b"first", gate=gate))

    async def main() -> str:
        async with hx.AsyncClient(transport=sw.AsyncResilientTransport(api)) as c:
            async with trio.open_nursery() as nursery:
                first: list[str] = []

                async def one() -> None:
                    first.append((await c.get(server.url + "/a")).text)

                nursery.start_soon(one)
                await trio_until(lambda: len(server.requests) == 1)
                queued = trio.CancelScope()

                async def second() -> None:
                    with queued:
                        await c.get(server.url + "/b")

                nursery.start_soon(second)
                await trio_until(lambda: permits(api).waiting == 1)
                queued.cancel()
                await trio_until(lambda: permits(api).waiting == 0)
                gate.set()
            # the permit went back: a third request goes straight through
            return first[0] + " " + (await c.get(server.url + "/c")).text

    try:
        assert trio.run(main) == "first ok"
    finally:
        gate.set()
    assert server.paths == ["/a", "/c"]
    stats = api.stats()
    assert (stats.successes, stats.cancelled, stats.failures) == (2, 1, 0)
    assert permits(api).active == 0


def test_cancelling_a_trio_request_during_its_backoff_is_not_a_failure(hx: Any, sw: Any, server: ScriptedServer) -> None:
    """A 503 is followed by a long backoff; a cancel during it ends the call as cancelled."""
    api = point(retry=seawall.Retry(attempts=3, budget=None,
                                    backoff=seawall.Backoff.constant(30.0)))
    server.script(Reply(503, b"busy"))

    async def main() -> None:
        async with hx.AsyncClient(transport=sw.AsyncResilientTransport(api)) as c:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(c.get, server.url + "/")
                await trio_until(lambda: api.stats().retries == 1)
                nursery.cancel_scope.cancel()

    trio.run(main)
    assert server.paths == ["/"]
    stats = api.stats()
    assert (stats.cancelled, stats.failures) == (1, 0)


def test_a_retried_write_timeout_leaves_no_abandoned_body_generator(hx: Any, sw: Any) -> None:
    """A PUT whose body write times out is retried; no attempt leaves a half-read body.

    httpx's bytes body iterates through an async generator; an attempt that times out
    mid-write leaves it suspended. Plain httpx raises at once, so the generator lives
    on in the traceback until trio has finished; a retrying transport drops that
    attempt's error, and trio warns (ResourceWarning) when the generator is collected
    mid-run. Found by httpx's own ``test_write_timeout[trio]`` with seawall mounted.
    """
    import gc
    import socket
    import warnings

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)  # never accepted: the kernel's buffers fill, then the write blocks
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/upload"
    api = point()

    async def main() -> None:
        timeout = hx.Timeout(None, write=1e-6)
        async with hx.AsyncClient(transport=sw.AsyncResilientTransport(api), timeout=timeout) as c:
            with pytest.raises(hx.WriteTimeout):
                await c.put(url, content=b"*" * (32 * 1024 * 1024))
        gc.collect()
        await trio.sleep(0)

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            trio.run(main)
    finally:
        listener.close()
    assert api.stats().attempts == 3
    abandoned = [w for w in caught if issubclass(w.category, ResourceWarning)
                 and "garbage collected before it had been exhausted" in str(w.message)]
    assert abandoned == []
