"""gRPC status classification, pushback parsing, routes and the rejection errors (no network)."""

from __future__ import annotations

import grpc
import grpc.aio
import pytest

import seawall
from seawall import Category
from seawall.interceptors import grpc as sw_grpc
from seawall.interceptors._grpc_routes import Router

S = grpc.StatusCode

# code: (category, retried when not idempotent, retried when idempotent, counts for breaker)
EXPECTED = {
    S.OK: None,
    S.CANCELLED: (Category.CANCELLED, False, False, False),
    S.UNKNOWN: (Category.TRANSIENT, False, True, True),
    S.INVALID_ARGUMENT: (Category.PERMANENT, False, False, False),
    S.DEADLINE_EXCEEDED: (Category.TIMEOUT, False, True, True),
    S.NOT_FOUND: (Category.PERMANENT, False, False, False),
    S.ALREADY_EXISTS: (Category.PERMANENT, False, False, False),
    S.PERMISSION_DENIED: (Category.PERMANENT, False, False, False),
    S.RESOURCE_EXHAUSTED: (Category.RATE_LIMITED, True, True, True),
    S.FAILED_PRECONDITION: (Category.PERMANENT, False, False, False),
    S.ABORTED: (Category.TRANSIENT, False, True, False),
    S.OUT_OF_RANGE: (Category.PERMANENT, False, False, False),
    S.UNIMPLEMENTED: (Category.PERMANENT, False, False, False),
    S.INTERNAL: (Category.TRANSIENT, False, True, True),
    S.UNAVAILABLE: (Category.UNAVAILABLE, True, True, True),
    S.DATA_LOSS: (Category.PERMANENT, False, False, True),
    S.UNAUTHENTICATED: (Category.PERMANENT, False, False, False),
}


def test_every_status_code_is_classified_on_purpose() -> None:
    """Each grpc.StatusCode has a deliberate entry: category, retry (plain/idempotent), breaker."""
    assert set(EXPECTED) == set(grpc.StatusCode)
    assert set(sw_grpc.STATUS_TABLE) == set(grpc.StatusCode) - {S.OK}
    for code, expected in EXPECTED.items():
        plain = sw_grpc.classify_status(code)
        idem = sw_grpc.classify_status(code, idempotent=True)
        if expected is None:
            assert plain is None and idem is None
            continue
        category, retry_plain, retry_idem, breaker = expected
        assert plain is not None and idem is not None, code
        assert (plain.category, plain.retry, idem.retry, plain.breaker) == (
            category, retry_plain, retry_idem, breaker), code
        assert idem.category is category and idem.breaker is breaker, code


@pytest.mark.parametrize(("value", "retry", "delay"), [
    ("250", True, 0.25),
    (b"0", True, 0.0),
    (" 40 ", True, 0.04),
    ("-1", False, None),
    ("soon", False, None),
    ("1.5", False, None),
    ("", False, None),
])
def test_pushback_trailer_parsing(value: str | bytes, retry: bool, delay: float | None) -> None:
    """Non-negative integer milliseconds set the delay; anything else vetoes the retry (gRFC A6)."""
    c = sw_grpc.classify_status(S.UNAVAILABLE, [(sw_grpc.PUSHBACK_TRAILER, value)])
    assert c is not None
    assert (c.retry, c.delay) == (retry, pytest.approx(delay) if delay is not None else None)


def test_pushback_does_not_make_a_client_error_retryable() -> None:
    """A pushback on NOT_FOUND keeps it unretried."""
    c = sw_grpc.classify_status(S.NOT_FOUND, [(sw_grpc.PUSHBACK_TRAILER, "10")])
    assert c is not None and c.retry is False


def test_router_prefers_exact_then_service_then_star() -> None:
    """The most specific pattern wins; aio's bytes method names resolve the same way."""
    a, b, c = (seawall.IntegrationPoint(n) for n in "abc")
    router = Router({"/p.S/M": a, "/p.S/*": b, "*": c}, idempotent=False, request_buffer=4)
    assert router.lookup("/p.S/M").point is a  # type: ignore[union-attr]
    assert router.lookup(b"/p.S/M").point is a  # type: ignore[union-attr]
    assert router.lookup("/p.S/Other").point is b  # type: ignore[union-attr]
    assert router.lookup("/q.T/M").point is c  # type: ignore[union-attr]
    assert Router({"/p.S/M": a}, idempotent=False, request_buffer=4).lookup("/p.S/N") is None


def test_route_options_override_the_call_defaults() -> None:
    """A bare point takes client_interceptors' defaults; a Route keeps its own."""
    a, b = seawall.IntegrationPoint("a"), seawall.IntegrationPoint("b")
    router = Router({"/p.S/A": a, "/p.S/B": sw_grpc.Route(b, request_buffer=0)},
                    idempotent=True, request_buffer=7)
    ra, rb = router.lookup("/p.S/A"), router.lookup("/p.S/B")
    assert ra is not None and rb is not None
    assert (ra.idempotent, ra.buffer) == (True, 7)
    assert (rb.idempotent, rb.buffer) == (False, 0)


@pytest.mark.parametrize("bad", [
    {"p.S/M": seawall.IntegrationPoint("a")},
    {"/p.S/M*": seawall.IntegrationPoint("a")},
    {"/p.S/M": "not a point"},
    {},
    "payments",
])
def test_invalid_targets_are_refused_with_a_clear_error(bad: object) -> None:
    """Malformed patterns, non-points and empty tables raise ConfigurationError."""
    with pytest.raises(seawall.ConfigurationError):
        sw_grpc.client_interceptors(bad)  # type: ignore[arg-type]


def test_route_validates_its_fields() -> None:
    """Route refuses a negative buffer and a non-point."""
    with pytest.raises(seawall.ConfigurationError, match="request_buffer"):
        sw_grpc.Route(seawall.IntegrationPoint("a"), request_buffer=-1)
    with pytest.raises(seawall.ConfigurationError, match="point"):
        sw_grpc.Route("a")  # type: ignore[arg-type]


def test_rejection_errors_are_seawall_and_grpc_errors_at_once() -> None:
    """Each sync refusal is its seawall error and a grpc.RpcError + Call + Future; aio ones AioRpcErrors."""
    cases = [
        (seawall.CircuitOpenError("open", point="p", retry_after=3.0), S.UNAVAILABLE,
         sw_grpc.CircuitOpenRpcError, sw_grpc.AioCircuitOpenRpcError),
        (seawall.BulkheadFullError("full", max_concurrent=2), S.RESOURCE_EXHAUSTED,
         sw_grpc.BulkheadFullRpcError, sw_grpc.AioBulkheadFullRpcError),
        (seawall.DeadlineExceeded("late", timeout=1.0), S.DEADLINE_EXCEEDED,
         sw_grpc.DeadlineExceededRpcError, sw_grpc.AioDeadlineExceededRpcError),
    ]
    for source, code, sync_type, aio_type in cases:
        sync_error, aio_error = sync_type(source), aio_type(source)
        for error in (sync_error, aio_error):
            assert isinstance(error, type(source)) and isinstance(error, grpc.RpcError)
            assert error.code() is code
            assert str(error) == str(source)
        for grpc_type in (grpc.Call, grpc.Future):
            assert isinstance(sync_error, grpc_type)
        assert sync_error.done() and sync_error.exception() is sync_error
        with pytest.raises(sync_type):
            sync_error.result()
        assert isinstance(aio_error, grpc.aio.AioRpcError)
        assert dict(aio_error.trailing_metadata())["seawall-rejected"] == type(source).reason \
            if hasattr(type(source), "reason") and type(source) is not seawall.DeadlineExceeded \
            else True
    breaker = sw_grpc.AioCircuitOpenRpcError(cases[0][0])  # type: ignore[arg-type]
    assert breaker.point == "p" and breaker.retry_after == 3.0
