"""The httpx transports against a real HTTP server on 127.0.0.1, sync and async.

Every test runs through ``Client`` + ``ResilientTransport`` and through
``AsyncClient`` + ``AsyncResilientTransport``, of httpx and of httpx2
(``hx`` is the package, ``sw`` seawall's module for it). The server
(tests/http_support.py) is scripted per test; waits between retries use a
fake clock unless the test is about real time.
"""

from __future__ import annotations

import asyncio
import email.utils
import threading
import time
from typing import Any

import pytest

import seawall
from seawall.testing import FakeClock
from tests.http_support import (
    HTTPX2_SUPPORTED,
    PACKAGES,
    Driver,
    Drop,
    Reply,
    ScriptedServer,
    refused_url,
)

pytest_plugins = ["tests.http_fixtures"]


def point(name: str = "api", *, attempts: int = 3, clock: Any = None, **kw: Any) -> seawall.IntegrationPoint:
    return seawall.IntegrationPoint(
        name, retry=seawall.Retry(attempts=attempts, budget=None,
                                  backoff=seawall.Backoff.constant(0.01)),
        clock=clock if clock is not None else FakeClock(), **kw)


def status(code: int, *headers: tuple[str, str], body: bytes = b"") -> Reply:
    return Reply(code, body or str(code).encode(), headers=headers)


def fail_first(hx: Any, exc: Exception, n: int = 1) -> Any:
    """An inner-transport builder: it raises ``exc`` for the first ``n`` requests, then sends for real."""

    class SyncFailFirst(hx.BaseTransport):  # type: ignore[name-defined,misc]
        def __init__(self) -> None:
            self.inner = hx.HTTPTransport()
            self.left = n

        def handle_request(self, request: Any) -> Any:
            if self.left > 0:
                self.left -= 1
                raise exc
            return self.inner.handle_request(request)

        def close(self) -> None:
            self.inner.close()

    class AsyncFailFirst(hx.AsyncBaseTransport):  # type: ignore[name-defined,misc]
        def __init__(self) -> None:
            self.inner = hx.AsyncHTTPTransport()
            self.left = n

        async def handle_async_request(self, request: Any) -> Any:
            if self.left > 0:
                self.left -= 1
                raise exc
            return await self.inner.handle_async_request(request)

        async def aclose(self) -> None:
            await self.inner.aclose()

    def build(kind: str) -> Any:
        return SyncFailFirst() if kind == "sync" else AsyncFailFirst()
    return build


def test_httpx2_is_tested_wherever_it_can_be_installed() -> None:
    """On Python 3.11+ the dev extra installs httpx2, so every test here also runs against it."""
    assert PACKAGES == (("httpx", "httpx2") if HTTPX2_SUPPORTED else ("httpx",))


# -- statuses ---------------------------------------------------------------------------

def test_get_is_retried_through_503_and_502_until_it_succeeds(server: ScriptedServer, make: Any) -> None:
    """A GET answered 503 then 502 is retried and the caller sees the 200."""
    api = point()
    server.script(status(503), status(502), Reply(200, b"fine"))
    r = make(api).request("GET", server.url + "/items")
    assert (r.status_code, r.text) == (200, "fine")
    assert server.paths == ["/items"] * 3
    assert api.stats().retries == 2


def test_the_last_response_is_returned_as_is_when_retries_run_out(server: ScriptedServer, make: Any) -> None:
    """Three 503s: the caller gets the third 503 with its body, not an exception."""
    server.script(status(503, body=b"one"), status(503, body=b"two"), status(503, body=b"three"))
    r = make(point()).request("GET", server.url + "/")
    assert (r.status_code, r.text) == (503, "three")
    assert len(server.requests) == 3


def test_post_is_not_retried_on_503(server: ScriptedServer, make: Any) -> None:
    """POST may have been processed: a 503 goes back to the caller after one attempt."""
    server.script(status(503), Reply(200))
    r = make(point()).request("POST", server.url + "/charge", json={"amount": 1})
    assert r.status_code == 503
    assert len(server.requests) == 1


def test_post_with_an_idempotency_key_is_retried(server: ScriptedServer, make: Any) -> None:
    """An Idempotency-Key header makes a POST safe to resend; the same key arrives each time."""
    server.script(status(503), Reply(201, b"made"))
    r = make(point()).request("POST", server.url + "/charge", json={"amount": 1},
                              headers={"Idempotency-Key": "k-1"})
    assert r.status_code == 201
    assert [q.headers["idempotency-key"] for q in server.requests] == ["k-1", "k-1"]
    assert server.requests[0].body == server.requests[1].body == b'{"amount":1}'


def test_retry_non_idempotent_option_retries_patch(server: ScriptedServer, make: Any) -> None:
    """retry_non_idempotent=True lets the transport retry POST and PATCH."""
    server.script(status(429), Reply(200))
    r = make(point(), retry_non_idempotent=True).request("PATCH", server.url + "/x", content=b"p")
    assert r.status_code == 200
    assert len(server.requests) == 2


def test_the_request_extension_marks_one_post_idempotent(sw: Any, server: ScriptedServer, make: Any) -> None:
    """extensions={"seawall.idempotent": True} opts a single request in."""
    server.script(status(502), Reply(200))
    r = make(point()).request("POST", server.url + "/x", content=b"p",
                              extensions={sw.IDEMPOTENT_EXTENSION: True})
    assert r.status_code == 200
    assert len(server.requests) == 2


def test_500_is_not_retried_but_opens_the_breaker(server: ScriptedServer, make: Any) -> None:
    """Other 5xx count against the breaker without being retried."""
    api = point(breaker=seawall.CircuitBreaker(failure_rate=0.5, minimum_calls=2, window=2))
    d = make(api)
    server.script(status(500), status(500))
    assert d.request("GET", server.url + "/").status_code == 500
    assert d.request("GET", server.url + "/").status_code == 500
    assert len(server.requests) == 2
    with pytest.raises(seawall.CircuitOpenError) as err:
        d.request("GET", server.url + "/")
    assert err.value.point == "api"
    assert len(server.requests) == 2


def test_4xx_is_returned_at_once_and_never_trips_the_breaker(server: ScriptedServer, make: Any) -> None:
    """404s are the caller's problem: no retry, and the breaker stays closed."""
    api = point(breaker=seawall.CircuitBreaker(failure_rate=0.5, minimum_calls=2, window=2))
    d = make(api)
    server.script(*[status(404)] * 4)
    for _ in range(4):
        assert d.request("GET", server.url + "/missing").status_code == 404
    assert len(server.requests) == 4
    assert api.breaker_state == seawall.BreakerState.CLOSED
    assert api.stats().failures_by_category["permanent"] == 4


def test_extra_retry_statuses_are_retried(server: ScriptedServer, make: Any) -> None:
    """retry_statuses widens what is retried (here a 500)."""
    server.script(status(500), Reply(200))
    r = make(point(), retry_statuses={500, 503}).request("GET", server.url + "/")
    assert r.status_code == 200


# -- Retry-After ------------------------------------------------------------------------

def test_retry_after_seconds_sets_the_wait(server: ScriptedServer, make: Any) -> None:
    """Retry-After: 2 replaces the backoff with a 2 s wait."""
    clock = FakeClock()
    server.script(status(429, ("Retry-After", "2")), Reply(200))
    assert make(point(clock=clock)).request("GET", server.url + "/").status_code == 200
    assert clock.sleeps == [2.0]


def test_retry_after_http_date_sets_the_wait(server: ScriptedServer, make: Any) -> None:
    """Retry-After as an HTTP-date 20 s ahead waits about 20 s."""
    clock = FakeClock()
    when = email.utils.formatdate(time.time() + 20, usegmt=True)
    server.script(status(503, ("Retry-After", when)), Reply(200))
    assert make(point(clock=clock)).request("GET", server.url + "/").status_code == 200
    assert len(clock.sleeps) == 1
    assert 17.0 <= clock.sleeps[0] <= 20.0


def test_retry_after_is_clamped_to_max_server_delay(server: ScriptedServer, make: Any) -> None:
    """A one-hour hint waits Retry(max_server_delay=...) at most."""
    clock = FakeClock()
    api = seawall.IntegrationPoint("api", retry=seawall.Retry(attempts=2, budget=None,
                                                              max_server_delay=5.0), clock=clock)
    server.script(status(503, ("Retry-After", "3600")), Reply(200))
    assert make(api).request("GET", server.url + "/").status_code == 200
    assert clock.sleeps == [5.0]


def test_retry_after_longer_than_the_budget_ends_retries(server: ScriptedServer, make: Any) -> None:
    """A 60 s hint with 10 s of total budget left: the 503 is returned without waiting."""
    clock = FakeClock()
    api = point(clock=clock, timeout=seawall.Timeout(total=10.0))
    server.script(status(503, ("Retry-After", "60")), Reply(200))
    r = make(api).request("GET", server.url + "/")
    assert r.status_code == 503
    assert clock.sleeps == []
    assert len(server.requests) == 1
    assert api.stats().rejections["deadline"] == 1


# -- connections ------------------------------------------------------------------------

def test_discarded_responses_are_closed_with_a_pool_of_one(hx: Any, server: ScriptedServer, make: Any) -> None:
    """With one connection in the pool, five failed responses in a row do not starve the next attempt."""
    api = point(attempts=6)
    server.script(*[status(503)] * 3, Reply(503, b"x" * 100_000, chunked=True),
                  status(503), Reply(200, b"ok"))
    d = make(api, limits=hx.Limits(max_connections=1),
             client={"timeout": hx.Timeout(5.0, pool=0.5)})
    r = d.request("GET", server.url + "/")
    assert r.status_code == 200
    assert len(server.requests) == 6
    # small error bodies are drained so the connection is reused; the large
    # chunked one is closed unread, which costs one new connection
    assert server.connections == 2


def test_connect_refused_is_retried_for_any_method_then_raised(hx: Any, kind: str, make: Any) -> None:
    """Nothing listens: a POST is retried too (it never left), then ConnectError surfaces."""
    api = point()
    d = make(api)
    with pytest.raises(hx.ConnectError) as err:
        d.request("POST", refused_url() + "/charge", json={"a": 1})
    assert api.stats().attempts == 3
    assert any("3 attempt(s)" in note for note in getattr(err.value, "__notes__", []))


def test_connection_dropped_before_the_response_is_retried_for_get(server: ScriptedServer, make: Any) -> None:
    """The server hangs up without answering: the GET is sent again."""
    server.script(Drop(), Reply(200, b"back"))
    r = make(point()).request("GET", server.url + "/")
    assert r.text == "back"
    assert len(server.requests) == 2


def test_connection_dropped_before_the_response_is_not_retried_for_post(hx: Any, server: ScriptedServer, make: Any) -> None:
    """The POST may have been processed: RemoteProtocolError reaches the caller after one attempt."""
    server.script(Drop(), Reply(200))
    with pytest.raises(hx.RemoteProtocolError):
        make(point()).request("POST", server.url + "/", content=b"x")
    assert len(server.requests) == 1


def test_a_body_dropped_midway_escapes_the_transport_by_default(hx: Any, server: ScriptedServer, make: Any) -> None:
    """Without read_body the client reads the body after the transport returned: no retry."""
    server.script(Drop(partial=5), Reply(200))
    with pytest.raises(hx.RemoteProtocolError):
        make(point()).request("GET", server.url + "/")
    assert len(server.requests) == 1


def test_read_body_retries_a_body_dropped_midway(server: ScriptedServer, make: Any) -> None:
    """With read_body the body is read inside the attempt, so a drop mid-body is retried."""
    server.script(Drop(partial=5), Reply(200, b"complete"))
    r = make(point(), read_body=64 * 1024).request("GET", server.url + "/")
    assert r.text == "complete"
    assert len(server.requests) == 2


def test_read_body_streams_what_exceeds_the_limit(server: ScriptedServer, make: Any) -> None:
    """A body longer than read_body still reaches client.stream() whole, chunk by chunk."""
    body = bytes(range(256)) * 40
    server.script(Reply(200, body, chunked=True))
    assert make(point(), read_body=100).stream_body("GET", server.url + "/") == body


def test_read_body_can_be_turned_off_per_request(hx: Any, sw: Any, server: ScriptedServer, make: Any) -> None:
    """extensions={"seawall.read_body": False} leaves that body to the client again."""
    server.script(Drop(partial=5), Reply(200))
    with pytest.raises(hx.RemoteProtocolError):
        make(point(), read_body=1024).request(
            "GET", server.url + "/", extensions={sw.READ_BODY_EXTENSION: False})


# -- bodies -----------------------------------------------------------------------------

def test_replayable_body_is_sent_intact_on_every_attempt(server: ScriptedServer, make: Any) -> None:
    """A PUT with a JSON body is resent byte for byte."""
    server.script(status(503), status(503), Reply(200))
    make(point()).request("PUT", server.url + "/doc", json={"k": [1, 2]})
    assert [q.body for q in server.requests] == [b'{"k":[1,2]}'] * 3


def test_generator_body_is_sent_once_and_not_retried(server: ScriptedServer, make: Any, kind: str) -> None:
    """A PUT whose body is a generator cannot be replayed: the 503 is returned after one send."""
    server.script(status(503), Reply(200))
    d = make(point())
    r = d.request("PUT", server.url + "/doc", content=_body(kind, [b"a;", b"b"]))
    assert r.status_code == 503
    assert [q.body for q in server.requests] == [b"a;b"]


def test_generator_body_is_retried_when_the_connection_never_opened(hx: Any, server: ScriptedServer, make: Any, kind: str) -> None:
    """A ConnectError happens before the body is read: the generator is still whole and is sent."""
    d = make(point(), inner=fail_first(hx, hx.ConnectError("refused")))
    r = d.request("PUT", server.url + "/doc", content=_body(kind, [b"a;", b"b"]))
    assert r.status_code == 200
    assert [q.body for q in server.requests] == [b"a;b"]


def _body(kind: str, chunks: list[bytes]) -> Any:
    if kind == "sync":
        return (c for c in chunks)

    async def agen() -> Any:
        for c in chunks:
            yield c

    return agen()


# -- time -------------------------------------------------------------------------------

def test_attempt_timeout_narrows_the_client_timeout(server: ScriptedServer, make: Any) -> None:
    """Client timeout 10 s, attempt timeout 0.5 s: the 5 s reply times out fast and is retried."""
    api = point(clock=seawall.SystemClock(), timeout=seawall.Timeout(attempt=0.5, total=8.0))
    server.script(Reply(200, b"late", delay=5.0), Reply(200, b"quick"))
    started = time.monotonic()
    r = make(api, client={"timeout": 10.0}).request("GET", server.url + "/")
    assert r.text == "quick"
    assert time.monotonic() - started < 3.0
    assert api.stats().retries == 1


def test_total_deadline_covers_every_attempt(hx: Any, server: ScriptedServer, make: Any) -> None:
    """Attempts of 0.3 s inside a 0.5 s budget: ReadTimeout after at most two attempts."""
    api = point(attempts=10, clock=seawall.SystemClock(),
                timeout=seawall.Timeout(attempt=0.3, total=0.5))
    server.script(*[Reply(200, delay=3.0)] * 10)
    started = time.monotonic()
    with pytest.raises(hx.ReadTimeout):
        make(api).request("GET", server.url + "/")
    assert time.monotonic() - started < 1.5
    assert api.stats().attempts <= 2


def test_read_body_keeps_a_dripping_body_inside_the_deadline(hx: Any, server: ScriptedServer, make: Any) -> None:
    """httpx's read timeout is per chunk; read_body checks the attempt deadline between chunks."""
    api = point(attempts=1, clock=seawall.SystemClock(), timeout=seawall.Timeout(attempt=0.3))
    server.script(Reply(200, b"x" * 40, drip=0.05))
    started = time.monotonic()
    with pytest.raises(hx.ReadTimeout):
        make(api, read_body=1024).request("GET", server.url + "/")
    assert time.monotonic() - started < 1.2


# -- rejections and fallback ----------------------------------------------------------------

def test_open_breaker_answers_with_the_fallback_response(hx: Any, server: ScriptedServer, make: Any) -> None:
    """With a Fallback, an open breaker returns the fallback's response instead of raising."""
    api = point(breaker=seawall.CircuitBreaker(failure_rate=0.5, minimum_calls=1, window=1),
                fallback=seawall.Fallback(handler=lambda err: hx.Response(
                    503, json={"cached": True, "why": type(err).__name__})))
    d = make(api)
    server.script(status(500))
    assert d.request("GET", server.url + "/").status_code == 500
    r = d.request("GET", server.url + "/")
    assert r.json() == {"cached": True, "why": "CircuitOpenError"}
    assert len(server.requests) == 1


def test_a_fallback_value_response_is_copied_for_each_request(hx: Any, server: ScriptedServer, make: Any) -> None:
    """Fallback(value=Response) gives every caller its own readable response."""
    api = point(attempts=1, fallback=seawall.Fallback(value=hx.Response(200, text="stale")))
    d = make(api)
    first = d.request("GET", refused_url() + "/")
    second = d.request("GET", refused_url() + "/")
    assert first.text == second.text == "stale"
    assert first is not second


def test_a_fallback_that_is_not_a_response_is_refused(kind: str, make: Any) -> None:
    """The transport must hand httpx a Response: anything else is a TypeError."""
    api = point(attempts=1, fallback=seawall.Fallback(value={"not": "a response"}))
    with pytest.raises(TypeError, match=r"httpx2?\.Response"):
        make(api).request("GET", refused_url() + "/")


def test_full_bulkhead_raises_bulkhead_full_error(server: ScriptedServer, kind: str, make: Any) -> None:
    """One permit, one request in flight: the second is refused at once."""
    api = point(bulkhead=seawall.Bulkhead(max_concurrent=1))
    gate = threading.Event()
    server.script(Reply(200, b"slow", gate=gate))
    d = make(api)
    if kind == "sync":
        results: list[Any] = []
        t = threading.Thread(target=lambda: results.append(d.request("GET", server.url + "/a")))
        t.start()
        try:
            assert server.wait_for_requests(1)
            with pytest.raises(seawall.BulkheadFullError):
                d.request("GET", server.url + "/b")
        finally:
            gate.set()
            t.join(10)
        assert results[0].text == "slow"
    else:
        async def scenario() -> None:
            first = asyncio.ensure_future(d.client.get(server.url + "/a"))
            assert await asyncio.to_thread(server.wait_for_requests, 1)
            try:
                with pytest.raises(seawall.BulkheadFullError):
                    await d.client.get(server.url + "/b")
            finally:
                gate.set()
            assert (await first).text == "slow"
        d.run(scenario)
    assert server.paths == ["/a"]
    assert api.stats().rejections["bulkhead"] == 1


def test_cancelling_the_caller_is_not_a_failure(package: str, server: ScriptedServer, drivers: list[Driver]) -> None:
    """An async request cancelled mid-flight counts as cancelled, never as a failure."""
    api = point(breaker=seawall.CircuitBreaker(failure_rate=0.5, minimum_calls=1, window=1))
    d = Driver("async", api, package=package)
    drivers.append(d)
    gate = threading.Event()
    server.script(Reply(200, gate=gate))

    async def scenario() -> None:
        task = asyncio.ensure_future(d.client.get(server.url + "/"))
        assert await asyncio.to_thread(server.wait_for_requests, 1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    try:
        d.run(scenario)
    finally:
        gate.set()
    stats = api.stats()
    assert (stats.cancelled, stats.failures) == (1, 0)
    assert api.breaker_state == seawall.BreakerState.CLOSED


# -- events and routes ------------------------------------------------------------------------

def test_every_attempt_is_an_event_named_by_method_and_host(server: ScriptedServer, make: Any) -> None:
    """Events carry "METHOD host:port", never the path with its ids."""
    api = point()
    events: list[Any] = []
    api.add_hook(events.append)
    server.script(status(503), Reply(200))
    make(api).request("GET", server.url + "/users/123?x=1")
    attempts = [e for e in events if isinstance(e, seawall.AttemptEvent)]
    assert [e.category for e in attempts] == [seawall.Category.UNAVAILABLE, None]
    assert {e.operation for e in events if hasattr(e, "operation")} == {
        f"GET 127.0.0.1:{server.port}"}


def test_routes_send_requests_to_their_points_with_pattern_names(sw: Any, server: ScriptedServer, make: Any) -> None:
    """A route table splits one transport between points; operations use the route pattern."""
    users, orders, rest = point("users"), point("orders"), point("rest")
    events: list[Any] = []
    for p in (users, orders, rest):
        p.add_hook(events.append)
    d = make(rest, routes=[
        sw.Route("127.0.0.1", "/users/{id}", users),
        sw.Route("127.0.0.1", "/orders/*", orders, methods={"POST"}, name="orders-api"),
    ])
    d.request("GET", server.url + "/users/42")
    d.request("POST", server.url + "/orders/7/lines", content=b"x")
    d.request("GET", server.url + "/orders/7")
    assert (users.stats().calls, orders.stats().calls, rest.stats().calls) == (1, 1, 1)
    ops = [e.operation for e in events if isinstance(e, seawall.CallEvent)]
    assert ops == ["GET 127.0.0.1/users/{id}", "POST orders-api", f"GET 127.0.0.1:{server.port}"]


def test_unmatched_requests_pass_straight_through_without_a_default_point(sw: Any, server: ScriptedServer, make: Any) -> None:
    """point=None with routes: requests no route claims are sent once, unprotected."""
    users = point("users")
    d = make(None, routes=[sw.Route(None, "/users/{id}", users)])
    server.script(status(503), Reply(200))
    assert d.request("GET", server.url + "/health").status_code == 503
    assert users.stats().calls == 0


# -- the inner transport ------------------------------------------------------------------------

def test_close_closes_the_inner_transport(hx: Any, package: str, kind: str, drivers: list[Driver]) -> None:
    """client.close() reaches the wrapped transport."""
    closed: list[bool] = []

    class SyncInner(hx.BaseTransport):
        def close(self) -> None:
            closed.append(True)

    class AsyncInner(hx.AsyncBaseTransport):
        async def aclose(self) -> None:
            closed.append(True)

    d = Driver(kind, point(), package=package, inner=lambda k: SyncInner() if k == "sync" else AsyncInner())
    d.close()
    assert closed == [True]


def test_with_client_enters_and_exits_the_inner_transport(hx: Any, sw: Any, kind: str) -> None:
    """``with client:`` reaches the wrapped transport: entered, closed, exited, as without seawall."""
    events: list[str] = []

    class SyncInner(hx.BaseTransport):
        def __enter__(self) -> SyncInner:
            events.append("enter")
            return self

        def __exit__(self, *args: Any) -> None:
            super().__exit__(*args)
            events.append("exit")

        def close(self) -> None:
            events.append("close")

    class AsyncInner(hx.AsyncBaseTransport):
        async def __aenter__(self) -> AsyncInner:
            events.append("enter")
            return self

        async def __aexit__(self, *args: Any) -> None:
            await super().__aexit__(*args)
            events.append("exit")

        async def aclose(self) -> None:
            events.append("close")

    if kind == "sync":
        with hx.Client(transport=sw.ResilientTransport(point(), SyncInner())) as c:
            assert isinstance(c, hx.Client)
    else:
        async def scenario() -> None:
            t = sw.AsyncResilientTransport(point(), AsyncInner())
            async with hx.AsyncClient(transport=t) as c:
                assert isinstance(c, hx.AsyncClient)
        asyncio.run(scenario())
    assert events == ["enter", "close", "exit"]


def test_environment_proxies_are_honoured_by_the_default_inner_transport(
        server: ScriptedServer, make: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """HTTP_PROXY still applies although the client was given transport= (encode/httpx#1122)."""
    for var in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "HTTPS_PROXY", "https_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HTTP_PROXY", server.url)
    r = make(point()).request("GET", "http://seawall-proxy-test.invalid/hello")
    assert r.status_code == 200
    assert server.paths == ["http://seawall-proxy-test.invalid/hello"]


def test_inner_transport_options_conflict_with_a_given_transport(hx: Any, sw: Any, kind: str) -> None:
    """verify=, limits=... build the default inner transport; next to transport= they are refused."""
    cls: Any = sw.ResilientTransport if kind == "sync" else sw.AsyncResilientTransport
    inner: Any = hx.HTTPTransport() if kind == "sync" else hx.AsyncHTTPTransport()
    with pytest.raises(seawall.ConfigurationError, match="limits, verify"):
        cls(point(), inner, verify=False, limits=hx.Limits(max_connections=1))
    if kind == "sync":
        inner.close()
    else:
        asyncio.run(inner.aclose())
