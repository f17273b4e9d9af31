"""Fault injection through the httpx transports (sync, async; httpx and httpx2) on a real server."""

from __future__ import annotations

from typing import Any

import pytest

import seawall
from seawall.testing import FakeClock
from tests.http_support import ScriptedServer, modules

pytest_plugins = ["tests.http_fixtures"]


def point(chaos: seawall.Chaos, *, attempts: int = 3, **kw: Any) -> seawall.IntegrationPoint:
    return seawall.IntegrationPoint(
        "api", chaos=chaos, clock=FakeClock(),
        retry=seawall.Retry(attempts=attempts, budget=None,
                            backoff=seawall.Backoff.constant(0.01)), **kw)


def test_injected_status_is_a_response_the_status_rules_judge(
        server: ScriptedServer, make: Any) -> None:
    """result=503: a 503 response bound to the request, retried, never sent; the last returned."""
    api = point(seawall.Chaos(result_rate=1.0, result=503))
    response = make(api).request("GET", server.url + "/x")
    assert response.status_code == 503
    assert response.headers["seawall-injected"] == "1"
    assert response.request.url.path == "/x"
    assert server.requests == []
    stats = api.stats()
    assert (stats.attempts, stats.injected_attempts, stats.injected_failures) == (3, 3, 1)


def test_injected_response_object_keeps_its_headers(server: ScriptedServer, make: Any,
                                                    package: str) -> None:
    """result=<Response 429 Retry-After>: copied per injection; the server's pacing is read."""
    hx = modules(package)[0]
    api = point(seawall.Chaos(result_rate=1.0, result=hx.Response(429, headers={
        "Retry-After": "2"}, content=b"slow down")), attempts=2)
    response = make(api).request("GET", server.url)
    assert response.status_code == 429 and response.content == b"slow down"
    assert api.clock.sleeps == [2.0]  # type: ignore[attr-defined]


def test_injected_transport_error_is_retried_for_a_post(server: ScriptedServer, make: Any,
                                                        package: str) -> None:
    """fault=ConnectError: raised where the inner transport would; a connect error is retried."""
    hx = modules(package)[0]
    api = point(seawall.Chaos(fault_rate=1.0, fault=lambda: hx.ConnectError("injected")))
    with pytest.raises(hx.ConnectError, match="injected"):
        make(api).request("POST", server.url, content=b"body")
    assert server.requests == []
    assert api.stats().attempts == 3 and api.stats().injected_failures == 1


def test_seeded_faults_mix_with_real_requests(server: ScriptedServer, make: Any,
                                              package: str) -> None:
    """A seeded rate: the server sees exactly the attempts that were not injected."""
    hx = modules(package)[0]
    api = point(seawall.Chaos(fault_rate=0.4, fault=lambda: hx.ConnectError("x"), seed=9))
    driver = make(api)
    for _ in range(15):
        assert driver.request("GET", server.url).status_code == 200
    stats = api.stats()
    assert stats.successes == 15 and stats.injected_attempts > 0
    assert len(server.requests) == stats.attempts - stats.injected_attempts


def test_fallback_answers_an_injected_503(server: ScriptedServer, make: Any,
                                          package: str) -> None:
    """With a fallback (the watched path), an injected 503 ends in the fallback's response."""
    hx = modules(package)[0]
    api = point(seawall.Chaos(result_rate=1.0, result=503), attempts=1,
                fallback=seawall.Fallback(value=hx.Response(200, content=b"cached")))
    response = make(api).request("GET", server.url)
    assert response.status_code == 200 and response.content == b"cached"
    assert api.stats().fallbacks == 1 and server.requests == []
