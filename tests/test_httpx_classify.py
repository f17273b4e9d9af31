"""How the httpx transports classify exceptions, statuses and Retry-After, and route requests.

Unit tests: the inner transport is ``httpx.MockTransport`` (no socket), so
every public httpx exception and every interesting status can be walked.
The behaviour over real sockets is in test_httpx_transport.py.
"""

from __future__ import annotations

import datetime
import io
import os
from typing import Any

import httpx
import pytest

import seawall
from seawall.interceptors import httpx as sw_httpx
from seawall.interceptors._httpx_policy import is_replayable, narrowed_timeout
from seawall.testing import FakeClock

PUBLIC_EXCEPTIONS = sorted(
    (getattr(httpx, name) for name in httpx.__all__
     if isinstance(getattr(httpx, name), type) and issubclass(getattr(httpx, name), BaseException)),
    key=lambda t: t.__name__,
)

# The table the README documents, written out independently of the code.
NEVER_SENT = {httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.ProxyError}
MAYBE_PROCESSED = {
    httpx.ReadTimeout, httpx.WriteTimeout, httpx.ReadError, httpx.WriteError, httpx.CloseError,
    httpx.RemoteProtocolError, httpx.TimeoutException, httpx.NetworkError, httpx.ProtocolError,
    httpx.TransportError,
}
NOT_COUNTED_BY_BREAKER = {
    httpx.PoolTimeout, httpx.LocalProtocolError, httpx.UnsupportedProtocol, httpx.InvalidURL,
    httpx.CookieConflict, httpx.StreamError, httpx.StreamConsumed, httpx.StreamClosed,
    httpx.ResponseNotRead, httpx.RequestNotRead, httpx.TooManyRedirects,
}


def make_exception(exc_type: type[BaseException]) -> BaseException:
    request = httpx.Request("GET", "http://api.test/")
    if exc_type is httpx.HTTPStatusError:
        return httpx.HTTPStatusError("boom", request=request,
                                     response=httpx.Response(503, request=request))
    try:
        return exc_type("boom")
    except TypeError:  # StreamConsumed and friends take no message
        return exc_type()


def point(**kw: Any) -> seawall.IntegrationPoint:
    return seawall.IntegrationPoint(
        "api", retry=seawall.Retry(attempts=3, budget=None), clock=FakeClock(), **kw)


def send(p: seawall.IntegrationPoint, handler: Any, method: str = "GET",
         **options: Any) -> tuple[Any, int]:
    """(response or exception, number of attempts) for one request through a mock inner transport."""
    calls = 0

    def counting(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return handler(request)  # type: ignore[no-any-return]

    transport = sw_httpx.ResilientTransport(p, httpx.MockTransport(counting), **options)
    with httpx.Client(transport=transport) as client:
        try:
            return client.request(method, "http://api.test/x", content=b"b"), calls
        except Exception as exc:
            return exc, calls


def test_every_public_httpx_exception_is_classified_on_purpose() -> None:
    """Each exception class httpx exports has its own line in the table (none by accident)."""
    assert len(PUBLIC_EXCEPTIONS) == 28
    missing = [t.__name__ for t in PUBLIC_EXCEPTIONS if t not in sw_httpx.EXCEPTION_TABLE]
    assert missing == []


@pytest.mark.parametrize("exc_type", PUBLIC_EXCEPTIONS, ids=lambda t: t.__name__)
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_each_exception_is_retried_only_when_safe(exc_type: type[BaseException], method: str) -> None:
    """Never-sent errors are retried for any method, maybe-processed ones for GET only, others never."""

    def fail(request: httpx.Request) -> httpx.Response:
        raise make_exception(exc_type)

    p = point()
    outcome, attempts = send(p, fail, method)
    assert type(outcome) is exc_type  # the caller's exception, never a wrapper
    retried = exc_type in NEVER_SENT or (exc_type in MAYBE_PROCESSED and method == "GET")
    assert attempts == (3 if retried else 1)


@pytest.mark.parametrize("exc_type", PUBLIC_EXCEPTIONS, ids=lambda t: t.__name__)
def test_each_exception_counts_for_the_breaker_unless_it_is_ours(exc_type: type[BaseException]) -> None:
    """Local saturation and our own mistakes never count against the remote's breaker."""
    c = sw_httpx.classify_exception(make_exception(exc_type), idempotent=True)
    assert c is not None
    assert c.breaker is (exc_type not in NOT_COUNTED_BY_BREAKER)


def test_exceptions_that_are_not_httpx_are_left_to_the_point() -> None:
    """A non-httpx error from a custom inner transport gets the point's default classification."""
    assert sw_httpx.classify_exception(ValueError("x"), idempotent=True) is None


def test_user_rules_win_over_the_transport() -> None:
    """A point's classifier can make ReadTimeout on POST retryable."""
    p = point(classifier=seawall.Classifier().on(httpx.ReadTimeout, "timeout"))

    def fail(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow")

    _, attempts = send(p, fail, "POST")
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
def test_status_table(code: int, get_attempts: int, post_attempts: int, category: str | None,
                      breaker: bool) -> None:
    """Statuses: what is retried for GET and for POST, and what the breaker counts (never a 4xx)."""
    for method, expected in (("GET", get_attempts), ("POST", post_attempts)):
        p = point()
        response, attempts = send(p, lambda r: httpx.Response(code), method)
        assert (response.status_code, attempts) == (code, expected)
    c = sw_httpx.status_classification(code)
    assert (None if c is None else c.category.value) == category
    if c is not None:
        assert c.breaker is breaker


def test_idempotency_key_and_option_allow_post_retries() -> None:
    """POST is retried on 503 with an Idempotency-Key or retry_non_idempotent=True."""
    def flaky(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503)

    keyed = point()
    t = sw_httpx.ResilientTransport(keyed, httpx.MockTransport(flaky))
    with httpx.Client(transport=t) as client:
        client.post("http://api.test/", headers={"Idempotency-Key": "1"})
    assert keyed.stats().attempts == 3
    _, attempts = send(point(), flaky, "POST", retry_non_idempotent=True)
    assert attempts == 3


def test_idempotent_extension_false_stops_a_get_retry() -> None:
    """extensions={"seawall.idempotent": False} marks one GET unsafe to repeat."""
    p = point()
    t = sw_httpx.ResilientTransport(p, httpx.MockTransport(lambda r: httpx.Response(503)))
    with httpx.Client(transport=t) as client:
        client.get("http://api.test/", extensions={sw_httpx.IDEMPOTENT_EXTENSION: False})
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
def test_parse_retry_after(value: str | None, seconds: float | None) -> None:
    """Seconds or an HTTP-date; anything else means "no hint" (the backoff applies)."""
    assert sw_httpx.parse_retry_after(value, now=lambda: NOW) == seconds


# -- request bodies and timeouts ----------------------------------------------------------------

def test_replayable_bodies() -> None:
    """Bytes, JSON, forms and seekable files can be resent; generators and pipes cannot."""
    def stream(**kw: Any) -> Any:
        return httpx.Request("POST", "http://api.test/", **kw).stream

    assert is_replayable(stream(content=b"x"))
    assert is_replayable(stream(json={"a": 1}))
    assert is_replayable(stream(data={"a": "1"}))
    assert is_replayable(stream(files={"f": io.BytesIO(b"data")}))
    assert not is_replayable(stream(content=(c for c in [b"a"])))
    r, w = os.pipe()
    with os.fdopen(r, "rb") as pipe, os.fdopen(w, "wb"):
        assert not is_replayable(stream(files={"f": pipe}))


def test_narrowed_timeout_keeps_shorter_phases() -> None:
    """Each phase becomes min(its own, the attempt's); unset phases get the attempt's."""
    current = {"connect": 0.5, "read": 10.0, "write": None, "pool": 3.0}
    assert narrowed_timeout(current, 2.0) == {"connect": 0.5, "read": 2.0, "write": 2.0, "pool": 2.0}
    assert narrowed_timeout(None, 1.0) == dict.fromkeys(("connect", "read", "write", "pool"), 1.0)


# -- routes -----------------------------------------------------------------------------

def operation_of(transport: sw_httpx.ResilientTransport, method: str, url: str) -> tuple[str, str] | None:
    plan = transport._options.router.resolve(httpx.Request(method, url))
    return None if plan is None else (plan[0].name, plan[1])


def test_route_patterns() -> None:
    """Segments, tails, wildcard hosts, ports and methods; first match wins; ids never leak."""
    a, b, c, d = (seawall.IntegrationPoint(n) for n in "abcd")
    t = sw_httpx.ResilientTransport(None, httpx.MockTransport(lambda r: httpx.Response(200)), routes=[
        sw_httpx.Route("api.test", "/users/{id}/orders/{order}", a),
        sw_httpx.Route("*.cdn.test", "/static/*", b),
        sw_httpx.Route("api.test:8443", None, c, methods=["delete"]),
        sw_httpx.Route(None, "/health", d, name="health"),
    ])
    assert operation_of(t, "GET", "http://api.test/users/7/orders/99?x=1") == (
        "a", "GET api.test/users/{id}/orders/{order}")
    assert operation_of(t, "GET", "http://api.test/users/7/orders") is None
    assert operation_of(t, "GET", "http://eu.cdn.test/static/css/site.css") == (
        "b", "GET *.cdn.test/static/*")
    assert operation_of(t, "GET", "http://cdn.test/static/x") is None
    assert operation_of(t, "DELETE", "https://api.test:8443/anything/5") == ("c", "DELETE api.test:8443")
    assert operation_of(t, "GET", "https://api.test:8443/anything/5") is None
    assert operation_of(t, "GET", "http://other.test:81/health") == ("d", "GET health")
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
def test_bad_routes_are_refused(args: tuple[Any, ...], message: str) -> None:
    """Route validates its patterns on construction, naming the field."""
    host, path, _ = args
    with pytest.raises(seawall.ConfigurationError, match=message):
        sw_httpx.Route(host, path, seawall.IntegrationPoint("x"))


@pytest.mark.parametrize(("options", "message"), [
    ({"retry_statuses": {200}}, "retry_statuses"),
    ({"read_body": -1}, "read_body"),
    ({"retry_non_idempotent": "yes"}, "retry_non_idempotent"),
])
def test_bad_options_are_refused(options: dict[str, Any], message: str) -> None:
    """Transport options are validated with a message naming the option."""
    with pytest.raises(seawall.ConfigurationError, match=message):
        sw_httpx.ResilientTransport(point(), httpx.MockTransport(lambda r: httpx.Response(200)),
                                    **options)


def test_a_transport_needs_a_point_or_routes() -> None:
    """ResilientTransport(None) with no routes would protect nothing."""
    with pytest.raises(seawall.ConfigurationError, match="needs a point"):
        sw_httpx.ResilientTransport(None, httpx.MockTransport(lambda r: httpx.Response(200)))


def test_each_attempt_hands_its_time_to_httpx_and_the_request_is_restored() -> None:
    """The inner transport sees every phase capped at the attempt timeout; the caller's request keeps its own."""
    seen: list[dict[str, Any]] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(dict(request.extensions["timeout"]))
        return httpx.Response(200)

    p = point(timeout=seawall.Timeout(attempt=0.25, total=1.0))
    t = sw_httpx.ResilientTransport(p, httpx.MockTransport(record))
    with httpx.Client(transport=t, timeout=httpx.Timeout(10.0, connect=0.1)) as client:
        r = client.get("http://api.test/")
    assert seen == [{"connect": 0.1, "read": 0.25, "write": 0.25, "pool": 0.25}]
    assert r.request.extensions["timeout"] == httpx.Timeout(10.0, connect=0.1).as_dict()


def test_each_request_is_narrowed_from_its_own_timeouts() -> None:
    """Requests with other timeouts through one transport each get their own narrowing."""
    seen: list[dict[str, Any]] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(dict(request.extensions["timeout"]))
        request.extensions["timeout"]["read"] = 99.0  # an inner transport that edits in place
        return httpx.Response(200)

    p = point(timeout=seawall.Timeout(attempt=0.25, total=1.0))
    t = sw_httpx.ResilientTransport(p, httpx.MockTransport(record))
    with httpx.Client(transport=t, timeout=10.0) as client:
        client.get("http://api.test/")
        client.get("http://api.test/")
        client.get("http://api.test/", timeout=httpx.Timeout(10.0, read=0.1))
        r = client.get("http://api.test/", timeout=httpx.Timeout(10.0, connect=0.2))
    capped = dict.fromkeys(("connect", "read", "write", "pool"), 0.25)
    assert seen == [capped, capped, {**capped, "read": 0.1}, {**capped, "connect": 0.2}]
    assert r.request.extensions["timeout"] == httpx.Timeout(10.0, connect=0.2).as_dict()


def test_a_request_without_timeouts_gets_the_attempt_timeout_and_keeps_none() -> None:
    """No timeout extension: every phase is the attempt timeout, and none is left behind."""
    seen: list[dict[str, Any]] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(dict(request.extensions["timeout"]))
        return httpx.Response(200)

    p = point(timeout=seawall.Timeout(attempt=0.25))
    t = sw_httpx.ResilientTransport(p, httpx.MockTransport(record))
    for _ in range(2):
        request = httpx.Request("GET", "http://api.test/")
        assert t.handle_request(request).status_code == 200
        assert "timeout" not in request.extensions
    assert seen == [dict.fromkeys(("connect", "read", "write", "pool"), 0.25)] * 2


def test_the_operation_follows_method_host_and_port_from_request_to_request() -> None:
    """Without routes each request is named by its own method, host and port, whatever came before."""
    events: list[Any] = []
    p = point()
    p.add_hook(events.append)
    t = sw_httpx.ResilientTransport(p, httpx.MockTransport(lambda r: httpx.Response(200)))
    with httpx.Client(transport=t) as client:
        for method, url in [("GET", "http://a.test/"), ("GET", "http://a.test/x"),
                            ("POST", "http://a.test/"), ("GET", "http://b.test/"),
                            ("GET", "http://b.test:8080/"), ("GET", "http://a.test/")]:
            client.request(method, url)
    ops = [e.operation for e in events if isinstance(e, seawall.CallEvent)]
    assert ops == ["GET a.test", "GET a.test", "POST a.test", "GET b.test", "GET b.test:8080",
                   "GET a.test"]


def test_sync_and_async_transports_take_the_same_options() -> None:
    """The two shells are mirrored by hand: their constructors must not drift apart."""
    import inspect

    sync = inspect.signature(sw_httpx.ResilientTransport.__init__).parameters
    async_ = inspect.signature(sw_httpx.AsyncResilientTransport.__init__).parameters
    assert list(sync) == list(async_)
    for name in sync:
        if name != "transport":
            assert sync[name].default is async_[name].default, name
