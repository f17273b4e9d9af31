"""Server pacing through the httpx transports: every response carrying the hint pauses the point.

A 429 or 503 with ``Retry-After`` answering a request that is not sent
again (a POST) still pauses every caller of the point; the POST itself is
not retried. Sync and async transports, httpx and httpx2, against the
scripted server on 127.0.0.1; waits go through a fake clock.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import seawall
from seawall.testing import FakeClock
from tests.http_support import Reply, ScriptedServer

pytest_plugins = ["tests.http_fixtures"]


def point(clock: FakeClock, **kw: Any) -> seawall.IntegrationPoint:
    return seawall.IntegrationPoint(
        "api", retry=seawall.Retry(attempts=3, budget=None,
                                   backoff=seawall.Backoff.constant(0.01)), clock=clock, **kw)


@pytest.mark.parametrize("code", [429, 503])
def test_a_post_answered_with_retry_after_pauses_the_next_call(
        server: ScriptedServer, make: Any, code: int) -> None:
    """POST gets 429/503 + Retry-After: 2: returned as is, and the next GET waits 2 s first."""
    clock = FakeClock()
    p = point(clock)
    client = make(p)
    server.script(Reply(code, b"slow down", headers=(("Retry-After", "2"),)))
    r = client.request("POST", server.url + "/charge", json={"amount": 1})
    assert r.status_code == code
    assert len(server.requests) == 1  # the POST itself is not sent again
    assert clock.sleeps == []
    assert client.request("GET", server.url + "/").status_code == 200
    assert clock.sleeps == [2.0]
    assert p.stats().paused_waits == 1
    assert [s.method for s in server.requests] == ["POST", "GET"]


def test_a_streamed_post_answered_with_429_pauses_too(server: ScriptedServer, make: Any,
                                                       kind: str) -> None:
    """A body that cannot be sent twice (the watched path): its 429 + Retry-After pauses the point."""
    clock = FakeClock()
    p = point(clock)
    client = make(p)
    server.script(Reply(429, b"slow down", headers=(("Retry-After", "3"),)))

    def chunks() -> Iterator[bytes]:
        yield b"a"
        yield b"b"

    async def achunks() -> Any:
        yield b"a"
        yield b"b"

    r = client.request("POST", server.url + "/upload",
                       content=chunks() if kind == "sync" else achunks())
    assert r.status_code == 429
    assert server.requests[0].body == b"ab"
    client.request("GET", server.url + "/")
    assert clock.sleeps == [3.0]


def test_a_fallback_point_is_paused_by_a_post_429(server: ScriptedServer, make: Any,
                                                   package: str) -> None:
    """With a fallback (the watched path), the 429's Retry-After pauses the point as well."""
    from tests.http_support import modules

    hx = modules(package)[0]
    clock = FakeClock()
    p = point(clock, fallback=seawall.Fallback(value=hx.Response(200, content=b"cached"),
                                               on=(seawall.Category.RATE_LIMITED,)))
    client = make(p)
    server.script(Reply(429, b"slow down", headers=(("Retry-After", "1"),)))
    assert client.request("POST", server.url + "/charge", json={}).text == "cached"
    client.request("GET", server.url + "/")
    assert clock.sleeps == [1.0]


def test_a_429_without_retry_after_pauses_nothing(server: ScriptedServer, make: Any) -> None:
    """No hint, no pause: the next call starts at once."""
    clock = FakeClock()
    client = make(point(clock))
    server.script(Reply(429, b"slow down"))
    assert client.request("POST", server.url + "/charge", json={}).status_code == 429
    client.request("GET", server.url + "/")
    assert clock.sleeps == []


def test_a_post_500_with_retry_after_pauses_nothing(server: ScriptedServer, make: Any) -> None:
    """Retry-After on a status that is neither 429/503 nor in retry_statuses is no pacing hint."""
    clock = FakeClock()
    client = make(point(clock))
    server.script(Reply(500, b"boom", headers=(("Retry-After", "2"),)))
    assert client.request("POST", server.url + "/charge", json={}).status_code == 500
    client.request("GET", server.url + "/")
    assert clock.sleeps == []


def test_a_retry_status_the_caller_added_paces_a_post(server: ScriptedServer, make: Any) -> None:
    """retry_statuses={500}: a POST's 500 + Retry-After pauses the point, unretried."""
    clock = FakeClock()
    client = make(point(clock), retry_statuses={500})
    server.script(Reply(500, b"boom", headers=(("Retry-After", "2"),)))
    assert client.request("POST", server.url + "/charge", json={}).status_code == 500
    assert len(server.requests) == 1
    client.request("GET", server.url + "/")
    assert clock.sleeps == [2.0]
