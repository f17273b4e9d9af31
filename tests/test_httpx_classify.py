"""How the httpx transports classify exceptions, statuses and Retry-After, and route requests.

Unit tests: the inner transport is ``MockTransport`` (no socket), so every
public exception and every interesting status can be walked. Each test runs
for httpx and for httpx2 (``hx`` is the package, ``sw`` seawall's module for
it). The behaviour over real sockets is in test_httpx_transport.py.
"""

from __future__ import annotations

import datetime
import importlib
import io
import os
from typing import Any

import pytest

import seawall
from seawall.testing import FakeClock
from tests.http_support import PACKAGES, modules


@pytest.fixture(params=PACKAGES)
def package(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def hx(package: str) -> Any:
    """The host package under test: httpx or httpx2."""
    return modules(package)[0]


@pytest.fixture
def sw(package: str) -> Any:
    """seawall's transports for that package."""
    return modules(package)[1]


@pytest.fixture
def body(package: str) -> Any:
    """The bodies module for that package (what can be sent again)."""
    return importlib.import_module(f"seawall.interceptors._{package}_body")


@pytest.fixture
def options(package: str) -> Any:
    """The options module for that package (the attempt's timeout extension)."""
    return importlib.import_module(f"seawall.interceptors._{package}_options")


def public_exceptions(package: str) -> list[str]:
    host = modules(package)[0]
    return sorted(name for name in host.__all__
                  if isinstance(getattr(host, name), type)
                  and issubclass(getattr(host, name), BaseException))


EXCEPTION_CASES = [pytest.param(pkg, name, id=f"{pkg}-{name}")
                   for pkg in PACKAGES for name in public_exceptions(pkg)]

# The table the README documents, written out independently of the code.
NEVER_SENT = {"ConnectError", "ConnectTimeout", "PoolTimeout", "ProxyError"}
MAYBE_PROCESSED = {
    "ReadTimeout", "WriteTimeout", "ReadError", "WriteError", "CloseError",
    "RemoteProtocolError", "TimeoutException", "NetworkError", "ProtocolError",
    "TransportError",
}
NOT_COUNTED_BY_BREAKER = {
    "PoolTimeout", "LocalProtocolError", "UnsupportedProtocol", "InvalidURL",
    "CookieConflict", "StreamError", "StreamConsumed", "StreamClosed",
    "ResponseNotRead", "RequestNotRead", "TooManyRedirects",
}


def make_exception(hx: Any, exc_type: type[BaseException]) -> BaseException:
    request = hx.Request("GET", "http://api.test/")
    if exc_type is hx.HTTPStatusError:
        return hx.HTTPStatusError("boom", request=request,  # type: ignore[no-any-return]
                                  response=hx.Response(503, request=request))
    try:
        return exc_type("boom")
    except TypeError:  # StreamConsumed and friends take no message
        return exc_type()


def point(**kw: Any) -> seawall.IntegrationPoint:
    return seawall.IntegrationPoint(
        "api", retry=seawall.Retry(attempts=3, budget=None), clock=FakeClock(), **kw)


def send(hx: Any, sw: Any, p: seawall.IntegrationPoint, handler: Any, method: str = "GET",
         **options: Any) -> tuple[Any, int]:
    """(response or exception, number of attempts) for one request through a mock inner transport."""
    calls = 0

    def counting(request: Any) -> Any:
        nonlocal calls
        calls += 1
        return handler(request)

    transport = sw.ResilientTransport(p, hx.MockTransport(counting), **options)
    with hx.Client(transport=transport) as client:
        try:
            return client.request(method, "http://api.test/x", content=b"b"), calls
        except Exception as exc:
            return exc, calls


def test_every_public_httpx_exception_is_classified_on_purpose(package: str, sw: Any) -> None:
    """Each exception class the package exports has its own line in the table (none by accident)."""
    names = public_exceptions(package)
    # httpx2 adds SSEError (its Server-Sent Events)
    assert len(names) == {"httpx": 28, "httpx2": 29}[package]
    host = modules(package)[0]
    missing = [n for n in names if getattr(host, n) not in sw.EXCEPTION_TABLE]
    assert missing == []


@pytest.mark.parametrize(("package", "exc_name"), EXCEPTION_CASES)
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_each_exception_is_retried_only_when_safe(hx: Any, sw: Any, exc_name: str,
                                                  method: str) -> None:
    """Never-sent errors are retried for any method, maybe-processed ones for GET only, others never."""
    exc_type = getattr(hx, exc_name)

    def fail(request: Any) -> Any:
        raise make_exception(hx, exc_type)

    p = point()
    outcome, attempts = send(hx, sw, p, fail, method)
    assert type(outcome) is exc_type  # the caller's exception, never a wrapper
    retried = exc_name in NEVER_SENT or (exc_name in MAYBE_PROCESSED and method == "GET")
    assert attempts == (3 if retried else 1)


@pytest.mark.parametrize(("package", "exc_name"), EXCEPTION_CASES)
def test_each_exception_counts_for_the_breaker_unless_it_is_ours(hx: Any, sw: Any,
                                                                 exc_name: str) -> None:
    """Local saturation and our own mistakes never count against the remote's breaker."""
    c = sw.classify_exception(make_exception(hx, getattr(hx, exc_name)), idempotent=True)
    assert c is not None
    assert c.breaker is (exc_name not in NOT_COUNTED_BY_BREAKER)


def test_the_two_packages_exceptions_are_never_mixed() -> None:
    """httpx's table holds only httpx classes and httpx2's only httpx2 classes."""
    for package in PACKAGES:
        sw = modules(package)[1]
        assert {t.__module__.split(".")[0] for t in sw.EXCEPTION_TABLE} == {package}


def test_exceptions_that_are_not_httpx_are_left_to_the_point(hx: Any, sw: Any) -> None:
    """A non-httpx error from a custom inner transport gets the point's default classification."""
    assert sw.classify_exception(ValueError("x"), idempotent=True) is None


def test_user_rules_win_over_the_transport(hx: Any, sw: Any) -> None:
    """A point's classifier can make ReadTimeout on POST retryable."""
    p = point(classifier=seawall.Classifier().on(hx.ReadTimeout, "timeout"))

    def fail(request: Any) -> Any:
        raise hx.ReadTimeout("slow")

    _, attempts = send(hx, sw, p, fail, "POST")
    assert attempts == 3


STATUS_CASES = [
    # status, GET attempts, POST attempts, category, counted by breaker
    (200, 1, 1, None, False),
    (301, 1, 1, None, False),
    (400, 1, 1, "permanent", False),
    (404, 1, 1, "permanent", False),
    (408, 1, 1, "timeout", False),
    (409, 1, 1, "permanent", False),
    (429, 3, 1, "rate_limited", False),
    (500, 1, 1, "permanent", True),
    (501, 1, 1, "permanent", True),
    (502, 3, 1, "unavailable", True),
    (503, 3, 1, "unavailable", True),
    (504, 3, 1, "timeout", True),
]


@pytest.mark.parametrize(("code", "get_attempts", "post_attempts", "category", "breaker"), STATUS_CASES)
def test_status_table(hx: Any, sw: Any, code: int, get_attempts: int, post_attempts: int, category: str | None,
                      breaker: bool) -> None:
    """Statuses: what is retried for GET and for POST, and what the breaker counts (never a 4xx)."""
    for method, expected in (("GET", get_attempts), ("POST", post_attempts)):
        p = point()
        response, attempts = send(hx, sw, p, lambda r: hx.Response(code), method)
        assert (response.status_code, attempts) == (code, expected)
    c = sw.status_classification(code)
    assert (None if c is None else c.category.value) == category
    if c is not None:
        assert c.breaker is breaker


def test_idempotency_key_and_option_allow_post_retries(hx: Any, sw: Any) -> None:
    """POST is retried on 503 with an Idempotency-Key or retry_non_idempotent=True."""
    def flaky(request: Any) -> Any:
        return hx.Response(503)

    keyed = point()
    t = sw.ResilientTransport(keyed, hx.MockTransport(flaky))
    with hx.Client(transport=t) as client:
        client.post("http://api.test/", headers={"Idempotency-Key": "1"})
    assert keyed.stats().attempts == 3
    _, attempts = send(hx, sw, point(), flaky, "POST", retry_non_idempotent=True)
    assert attempts == 3


def test_idempotent_extension_false_stops_a_get_retry(hx: Any, sw: Any) -> None:
    """extensions={"seawall.idempotent": False} marks one GET unsafe to repeat."""
    p = point()
    t = sw.ResilientTransport(p, hx.MockTransport(lambda r: hx.Response(503)))
    with hx.Client(transport=t) as client:
        client.get("http://api.test/", extensions={sw.IDEMPOTENT_EXTENSION: False})
    assert p.stats().attempts == 1


# -- Retry-After ------------------------------------------------------------------------

NOW = datetime.datetime(2025, 1, 1, 12, 0, 0, tzinfo=datetime.timezone.utc).timestamp()


@pytest.mark.parametrize(("value", "seconds"), [
    ("0", 0.0),
    ("3", 3.0),
    (" 120 ", 120.0),
    ("Wed, 01 Jan 2025 12:00:30 GMT", 30.0),
    ("Wed, 01 Jan 2025 11:00:00 GMT", 0.0),   # in the past: at once
    ("Wednesday, 01-Jan-25 12:00:10 GMT", 10.0),  # obsolete RFC 850 form
    ("-1", None),
    ("1.5", None),
    ("soon", None),
    ("", None),
    (None, None),
])
def test_parse_retry_after(hx: Any, sw: Any, value: str | None, seconds: float | None) -> None:
    """Seconds or an HTTP-date; anything else means "no hint" (the backoff applies)."""
    assert sw.parse_retry_after(value, now=lambda: NOW) == seconds


# -- request bodies and timeouts ----------------------------------------------------------------

def test_replayable_bodies(hx: Any, body: Any) -> None:
    """Bytes, JSON, forms and seekable files can be resent; generators and pipes cannot."""
    def stream(**kw: Any) -> Any:
        return hx.Request("POST", "http://api.test/", **kw).stream

    assert body.is_replayable(stream(content=b"x"))
    assert body.is_replayable(stream(json={"a": 1}))
    assert body.is_replayable(stream(data={"a": "1"}))
    assert body.is_replayable(stream(files={"f": io.BytesIO(b"data")}))
    assert not body.is_replayable(stream(content=(c for c in [b"a"])))
    r, w = os.pipe()
    with os.fdopen(r, "rb") as pipe, os.fdopen(w, "wb"):
        assert not body.is_replayable(stream(files={"f": pipe}))


def test_narrowed_timeout_keeps_shorter_phases(options: Any) -> None:
    """Each phase becomes min(its own, the attempt's); unset phases get the attempt's."""
    current = {"connect": 0.5, "read": 10.0, "write": None, "pool": 3.0}
    assert options.narrowed_timeout(current, 2.0) == {"connect": 0.5, "read": 2.0, "write": 2.0, "pool": 2.0}
    assert options.narrowed_timeout(None, 1.0) == dict.fromkeys(("connect", "read", "write", "pool"), 1.0)


# -- routes -----------------------------------------------------------------------------

def operation_of(hx: Any, transport: Any, method: str, url: str) -> tuple[str, str] | None:
    plan = transport._options.router.resolve(hx.Request(method, url))
    return None if plan is None else (plan[0].name, plan[1])


def test_route_patterns(hx: Any, sw: Any) -> None:
    """Segments, tails, wildcard hosts, ports and methods; first match wins; ids never leak."""
    a, b, c, d = (seawall.IntegrationPoint(n) for n in "abcd")
    t = sw.ResilientTransport(None, hx.MockTransport(lambda r: hx.Response(200)), routes=[
        sw.Route("api.test", "/users/{id}/orders/{order}", a),
        sw.Route("*.cdn.test", "/static/*", b),
        sw.Route("api.test:8443", None, c, methods=["delete"]),
        sw.Route(None, "/health", d, name="health"),
    ])
    assert operation_of(hx, t, "GET", "http://api.test/users/7/orders/99?x=1") == (
        "a", "GET api.test/users/{id}/orders/{order}")
    assert operation_of(hx, t, "GET", "http://api.test/users/7/orders") is None
    assert operation_of(hx, t, "GET", "http://eu.cdn.test/static/css/site.css") == (
        "b", "GET *.cdn.test/static/*")
    assert operation_of(hx, t, "GET", "http://cdn.test/static/x") is None
    assert operation_of(hx, t, "DELETE", "https://api.test:8443/anything/5") == ("c", "DELETE api.test:8443")
    assert operation_of(hx, t, "GET", "https://api.test:8443/anything/5") is None
    assert operation_of(hx, t, "GET", "http://other.test:81/health") == ("d", "GET health")
    assert t.points == (a, b, c, d)
    t.close()


@pytest.mark.parametrize(("args", "message"), [
    (("api.test", "users", None), "must start with '/'"),
    (("api.test", "/a/*/b", None), "only as its last segment"),
    (("http://api.test", "/a", None), "Route.host"),
    (("api", "/users/{id", None), r"Route\.path .*unbalanced.*'/users/\{id'"),
    (("api", "/users/id}", None), r"Route\.path .*'/users/id\}'"),
    (("api", "/users/{}", None), r"Route\.path .*'/users/\{\}'"),
    (("api", "/users/{a{b}}", None), r"Route\.path .*'/users/\{a\{b\}\}'"),
])
def test_bad_routes_are_refused(hx: Any, sw: Any, args: tuple[Any, ...], message: str) -> None:
    """Route validates its patterns on construction, naming the field."""
    host, path, _ = args
    with pytest.raises(seawall.ConfigurationError, match=message):
        sw.Route(host, path, seawall.IntegrationPoint("x"))


@pytest.mark.parametrize(("options", "message"), [
    ({"retry_statuses": {200}}, "retry_statuses"),
    ({"read_body": -1}, "read_body"),
    ({"retry_non_idempotent": "yes"}, "retry_non_idempotent"),
])
def test_bad_options_are_refused(hx: Any, sw: Any, options: dict[str, Any], message: str) -> None:
    """Transport options are validated with a message naming the option."""
    with pytest.raises(seawall.ConfigurationError, match=message):
        sw.ResilientTransport(point(), hx.MockTransport(lambda r: hx.Response(200)),
                                    **options)


def test_a_transport_needs_a_point_or_routes(hx: Any, sw: Any) -> None:
    """ResilientTransport(None) with no routes would protect nothing."""
    with pytest.raises(seawall.ConfigurationError, match="needs a point"):
        sw.ResilientTransport(None, hx.MockTransport(lambda r: hx.Response(200)))


def test_each_attempt_hands_its_time_to_httpx_and_the_request_is_restored(hx: Any, sw: Any) -> None:
    """The inner transport sees every phase capped at the attempt timeout; the caller's request keeps its own."""
    seen: list[dict[str, Any]] = []

    def record(request: Any) -> Any:
        seen.append(dict(request.extensions["timeout"]))
        return hx.Response(200)

    p = point(timeout=seawall.Timeout(attempt=0.25, total=1.0))
    t = sw.ResilientTransport(p, hx.MockTransport(record))
    with hx.Client(transport=t, timeout=hx.Timeout(10.0, connect=0.1)) as client:
        r = client.get("http://api.test/")
    assert seen == [{"connect": 0.1, "read": 0.25, "write": 0.25, "pool": 0.25}]
    assert r.request.extensions["timeout"] == hx.Timeout(10.0, connect=0.1).as_dict()


def test_each_request_is_narrowed_from_its_own_timeouts(hx: Any, sw: Any) -> None:
    """Requests with other timeouts through one transport each get their own narrowing."""
    seen: list[dict[str, Any]] = []

    def record(request: Any) -> Any:
        seen.append(dict(request.extensions["timeout"]))
        request.extensions["timeout"]["read"] = 99.0  # an inner transport that edits in place
        return hx.Response(200)

    p = point(timeout=seawall.Timeout(attempt=0.25, total=1.0))
    t = sw.ResilientTransport(p, hx.MockTransport(record))
    with hx.Client(transport=t, timeout=10.0) as client:
        client.get("http://api.test/")
        client.get("http://api.test/")
        client.get("http://api.test/", timeout=hx.Timeout(10.0, read=0.1))
        r = client.get("http://api.test/", timeout=hx.Timeout(10.0, connect=0.2))
    capped = dict.fromkeys(("connect", "read", "write", "pool"), 0.25)
    assert seen == [capped, capped, {**capped, "read": 0.1}, {**capped, "connect": 0.2}]
    assert r.request.extensions["timeout"] == hx.Timeout(10.0, connect=0.2).as_dict()


def test_a_request_without_timeouts_gets_the_attempt_timeout_and_keeps_none(hx: Any, sw: Any) -> None:
    """No timeout extension: every phase is the attempt timeout, and none is left behind."""
    seen: list[dict[str, Any]] = []

    def record(request: Any) -> Any:
        seen.append(dict(request.extensions["timeout"]))
        return hx.Response(200)

    p = point(timeout=seawall.Timeout(attempt=0.25))
    t = sw.ResilientTransport(p, hx.MockTransport(record))
    for _ in range(2):
        request = hx.Request("GET", "http://api.test/")
        assert t.handle_request(request).status_code == 200
        assert "timeout" not in request.extensions
    assert seen == [dict.fromkeys(("connect", "read", "write", "pool"), 0.25)] * 2


def test_the_operation_follows_method_host_and_port_from_request_to_request(hx: Any, sw: Any) -> None:
    """Without routes each request is named by its own method, host and port, whatever came before."""
    events: list[Any] = []
    p = point()
    p.add_hook(events.append)
    t = sw.ResilientTransport(p, hx.MockTransport(lambda r: hx.Response(200)))
    with hx.Client(transport=t) as client:
        for method, url in [("GET", "http://a.test/"), ("GET", "http://a.test/x"),
                            ("POST", "http://a.test/"), ("GET", "http://b.test/"),
                            ("GET", "http://b.test:8080/"), ("GET", "http://a.test/")]:
            client.request(method, url)
    ops = [e.operation for e in events if isinstance(e, seawall.CallEvent)]
    assert ops == ["GET a.test", "GET a.test", "POST a.test", "GET b.test", "GET b.test:8080",
                   "GET a.test"]


def test_sync_and_async_transports_take_the_same_options(hx: Any, sw: Any) -> None:
    """The two shells are mirrored by hand: their constructors must not drift apart."""
    import inspect

    sync = inspect.signature(sw.ResilientTransport.__init__).parameters
    async_ = inspect.signature(sw.AsyncResilientTransport.__init__).parameters
    assert list(sync) == list(async_)
    for name in sync:
        if name != "transport":
            assert sync[name].default is async_[name].default, name
