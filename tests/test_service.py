"""The metrics service over gRPC: every RPC, bad requests, auth, TLS, health, reflection."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import seawall
from seawall.storage import MetricsClient, MetricsServer, MetricsServiceError, Store, serve
from seawall.storage._gen import metrics_pb2 as pb
from seawall.storage._gen import metrics_pb2_grpc as pb_grpc
from seawall.storage._schema import CALLS, FAILED, FAILURES, H0, LATENCY_SUM, SUCCESSES, WIDTH
from tests.web_support import certificate as make_certificate

TOKEN = "s3cret-token-for-tests"


def _vector(calls: int, failures: int = 0) -> list[float]:
    vec: list[float] = [0] * WIDTH
    vec[CALLS] = calls
    vec[SUCCESSES] = calls - failures
    vec[FAILURES] = vec[FAILED[seawall.Category.TRANSIENT]] = failures
    vec[LATENCY_SUM] = calls * 0.01
    vec[H0 + 50] = calls
    return vec


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(f"sqlite:///{tmp_path / 'metrics.db'}")
    minute = int(time.time() // 60)
    s.write({("payments", "charge", minute): _vector(10, failures=2),
             ("payments", "refund", minute - 1): _vector(5),
             ("search", "query", minute): _vector(7)},
            [seawall.BreakerTransition("payments", "closed", "open", f"failure rate {i}",
                                       time.time() - 10 + i) for i in range(5)],
            host="test-host", pid=42)
    yield s
    s.close()


@pytest.fixture
def server(store: Store) -> Iterator[MetricsServer]:
    with serve(store, "127.0.0.1:0") as running:
        yield running


@pytest.fixture
def client(server: MetricsServer) -> Iterator[MetricsClient]:
    with MetricsClient(server.address, timeout=5.0) as c:
        yield c


@pytest.fixture
def stub(server: MetricsServer) -> Iterator[pb_grpc.MetricsServiceStub]:
    with grpc.insecure_channel(server.address) as channel:
        yield pb_grpc.MetricsServiceStub(channel)


def test_list_points_names_every_point_and_its_operations(client: MetricsClient) -> None:
    """ListPoints returns each point once with its operations."""
    points = {p.name: p.operations for p in client.points()}
    assert points == {"payments": ("charge", "refund"), "search": ("query",)}


def test_summary_of_all_points_and_of_one(client: MetricsClient) -> None:
    """GetSummary totals each point over the window, with its breaker state."""
    by_point = {s.point: s for s in client.summary(window=600)}
    assert by_point["payments"].calls == 15
    assert by_point["payments"].failures == 2
    assert by_point["payments"].failures_by_category["transient"] == 2
    assert by_point["payments"].breaker_state == "open"
    assert by_point["search"].breaker_state == "closed"
    assert by_point["search"].p50_ms > 0
    [only] = client.summary("payments", window=600, operation="refund")
    assert only.calls == 5


def test_series_returns_one_bucket_per_step(client: MetricsClient) -> None:
    """GetSeries covers start to end in steps, empty steps included."""
    now = time.time()
    buckets = client.series("payments", start=now - 600, end=now, step=60)
    assert len(buckets) in (10, 11)
    assert sum(b.calls for b in buckets) == 15
    assert buckets == sorted(buckets, key=lambda b: b.start)


def test_transitions_come_a_page_at_a_time(client: MetricsClient, store: Store) -> None:
    """ListTransitions pages through every transition in stored order."""
    found = list(client.transitions("payments", page_size=2))
    assert [t.reason for t in found] == [f"failure rate {i}" for i in range(5)]
    assert {(t.host, t.pid) for t in found} == {("test-host", 42)}


def test_watch_streams_a_summary_every_interval(client: MetricsClient, store: Store) -> None:
    """WatchSummary sends fresh summaries until the client stops reading."""
    stream = client.watch("search", window=600, interval=0.1)
    first = next(stream)
    store.write({("search", "query", int(time.time() // 60)): _vector(3)}, host="h", pid=1)
    second = next(stream)
    stream.close()
    assert first[0].calls == 7
    assert second[0].calls == 10


BAD_REQUESTS = [
    ("GetSummary", pb.SummaryRequest(window_seconds=-1), "window must be >= 0"),
    ("GetSummary", pb.SummaryRequest(window_seconds=1e12), "at most"),
    ("GetSummary", pb.SummaryRequest(window_seconds=float("nan")), "finite"),
    ("GetSummary", pb.SummaryRequest(point="p" * 300), "at most 200 characters"),
    ("GetSeries", pb.SeriesRequest(point="payments", start=0, end=600, step_seconds=0),
     "step must be > 0"),
    ("GetSeries", pb.SeriesRequest(point="payments", start=0, end=600, step_seconds=-60),
     "step must be > 0"),
    ("GetSeries", pb.SeriesRequest(point="payments", start=0, end=600, step_seconds=45),
     "multiple of 60"),
    ("GetSeries", pb.SeriesRequest(point="payments", start=900, end=600, step_seconds=60),
     "must be before end"),
    ("GetSeries", pb.SeriesRequest(point="payments", start=0, end=1e9, step_seconds=60),
     "at most 10000"),
    ("GetSeries", pb.SeriesRequest(start=0, end=600, step_seconds=60), "point is required"),
    ("ListTransitions", pb.ListTransitionsRequest(page_size=5000), "page_size"),
    ("ListTransitions", pb.ListTransitionsRequest(page_size=-1), "page_size"),
    ("ListTransitions", pb.ListTransitionsRequest(page_token="abc"), "page_token"),
    ("ListTransitions", pb.ListTransitionsRequest(start=50, end=10), "must not be after end"),
]


@pytest.mark.parametrize(("method", "request_", "message"), BAD_REQUESTS,
                         ids=[f"{m}-{msg}" for m, _, msg in BAD_REQUESTS])
def test_a_bad_request_gets_invalid_argument_and_the_service_keeps_serving(
        stub: pb_grpc.MetricsServiceStub, method: str, request_: object, message: str) -> None:
    """Each bad request is INVALID_ARGUMENT with a message; the next good call works."""
    with pytest.raises(grpc.RpcError) as caught:
        getattr(stub, method)(request_, timeout=5)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert message in caught.value.details()
    assert stub.GetSummary(pb.SummaryRequest(window_seconds=600), timeout=5).summaries


@pytest.mark.parametrize("request_", [
    pb.WatchSummaryRequest(interval_seconds=0.001),
    pb.WatchSummaryRequest(interval_seconds=1e6),
    pb.WatchSummaryRequest(window_seconds=-5),
])
def test_a_bad_watch_is_refused_before_streaming(stub: pb_grpc.MetricsServiceStub,
                                                 request_: pb.WatchSummaryRequest) -> None:
    """A watch with a bad interval or window ends with INVALID_ARGUMENT, and serving goes on."""
    with pytest.raises(grpc.RpcError) as caught:
        list(stub.WatchSummary(request_, timeout=5))
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert stub.ListPoints(pb.ListPointsRequest(), timeout=5).points


def test_client_errors_carry_the_status_code(client: MetricsClient) -> None:
    """MetricsClient raises MetricsServiceError with the gRPC code and the server's message."""
    with pytest.raises(MetricsServiceError) as caught:
        client.series("payments", start=0, end=600, step=0)
    assert caught.value.code == "INVALID_ARGUMENT"
    assert "step" in str(caught.value)


def test_a_store_failure_is_unavailable_and_not_fatal(store: Store,
                                                      client: MetricsClient) -> None:
    """When the store breaks under the service, calls get UNAVAILABLE and health still answers."""
    with store.engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE seawall_operations RENAME TO moved_away")
    with pytest.raises(MetricsServiceError) as caught:
        client.points()
    assert caught.value.code == "UNAVAILABLE"
    with store.engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE moved_away RENAME TO seawall_operations")
    assert client.points()


def test_health_and_reflection_are_on(server: MetricsServer) -> None:
    """Standard tools can probe the service (health) and discover its API (reflection)."""
    with grpc.insecure_channel(server.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        answer = health.Check(health_pb2.HealthCheckRequest(
            service="seawall.metrics.v1.MetricsService"), timeout=5)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
        reflect = reflection_pb2_grpc.ServerReflectionStub(channel)
        [response] = list(reflect.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5))
        names = {s.name for s in response.list_services_response.service}
        assert "seawall.metrics.v1.MetricsService" in names


# -- security ------------------------------------------------------------------------

def test_a_token_is_required_and_checked(store: Store) -> None:
    """With a token, calls without it or with a wrong one are UNAUTHENTICATED; the right one works."""
    with serve(store, "127.0.0.1:0", token=TOKEN) as server:
        for token in (None, "wrong-token-value"):
            with MetricsClient(server.address, token=token) as client:
                with pytest.raises(MetricsServiceError) as caught:
                    client.summary()
                assert caught.value.code == "UNAUTHENTICATED"
                with pytest.raises(MetricsServiceError):
                    next(client.watch(interval=0.1))
        with MetricsClient(server.address, token=TOKEN) as client:
            assert {s.point for s in client.summary(window=600)} == {"payments", "search"}
        with grpc.insecure_channel(server.address) as channel:  # probes need no token
            answer = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=5)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING


def test_a_non_loopback_address_without_a_token_is_refused_before_binding(store: Store) -> None:
    """serve() refuses 0.0.0.0 (or any non-loopback host) without a token, and says why."""
    for listen in ("0.0.0.0:0", "[::]:0", "metrics.example.com:50057"):
        with pytest.raises(seawall.ConfigurationError, match="without a token"):
            serve(store, listen)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"listen": "localhost"}, "HOST:PORT"),
    ({"listen": "127.0.0.1:99999"}, "port 0-65535"),
    ({"listen": "127.0.0.1:0", "token": "short"}, "at least 8"),
    ({"listen": "127.0.0.1:0", "tls_cert": "cert.pem"}, "both a certificate and a key"),
    ({"listen": "127.0.0.1:0", "retention": -1}, "retention"),
])
def test_bad_serve_options_are_refused_with_a_message(store: Store, kwargs: dict[str, object],
                                                      message: str) -> None:
    """Each bad option is a ConfigurationError naming the problem."""
    with pytest.raises(seawall.ConfigurationError, match=message):
        serve(store, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    return make_certificate(tmp_path)


def test_tls_with_a_token(store: Store, certificate: tuple[Path, Path]) -> None:
    """With --tls-cert/--tls-key the service speaks TLS only; a client trusting the cert gets in."""
    cert, key = certificate
    with serve(store, "127.0.0.1:0", token=TOKEN, tls_cert=str(cert), tls_key=str(key)) as server:
        with MetricsClient(server.address, token=TOKEN,
                           root_certificates=cert.read_bytes()) as client:
            assert client.summary("search", window=600)[0].calls == 7
        with MetricsClient(server.address, token=TOKEN, timeout=2.0) as plain:
            with pytest.raises(MetricsServiceError) as caught:
                plain.summary()
            assert caught.value.code == "UNAVAILABLE"


def test_retention_prunes_old_data_when_serving(tmp_path: Path) -> None:
    """serve(retention=...) deletes data older than the retention on start."""
    store = Store(f"sqlite:///{tmp_path / 'old.db'}")
    old = int(time.time() // 60) - 3 * 1440
    store.write({("old", "op", old): _vector(4), ("new", "op", int(time.time() // 60)): _vector(1)},
                host="h", pid=1)
    with serve(store, "127.0.0.1:0", retention=86400) as server:
        with MetricsClient(server.address) as client:
            for _ in range(100):  # bounded: the pruner runs at start
                if not store.summary("old", window=4 * 86400):
                    break
                time.sleep(0.05)
            assert [s.point for s in client.summary(window=4 * 86400)] == ["new"]
    store.close()


# -- what a team running it trips over --------------------------------------------

def test_a_series_with_times_beyond_year_9999_is_invalid_argument(
        stub: pb_grpc.MetricsServiceStub) -> None:
    """start=0, end=1.2e21, step=6e20: INVALID_ARGUMENT naming the field, never UNKNOWN."""
    with pytest.raises(grpc.RpcError) as caught:
        stub.GetSeries(pb.SeriesRequest(point="payments", start=0, end=1.2e21,
                                        step_seconds=6e20), timeout=5)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "end must be epoch seconds between 0 and" in caught.value.details()


def test_a_page_token_too_large_for_the_database_is_invalid_argument(
        stub: pb_grpc.MetricsServiceStub) -> None:
    """A page token past 64 bits is one this service never issued."""
    with pytest.raises(grpc.RpcError) as caught:
        stub.ListTransitions(pb.ListTransitionsRequest(page_token="9" * 30), timeout=5)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "is not one this service issued" in caught.value.details()


_FLOATS = st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                    st.sampled_from([0.0, -0.0, 59.0, 60.0, 1e9, 1.7e9, 253402300800.0, 1.2e21,
                                     6e20, 2.0**63, -1.0]))
_NAMES = st.one_of(st.sampled_from(["", "payments", "search", "charge", "nosuchpoint"]),
                   st.text(max_size=300))
_REQUESTS = st.one_of(
    st.builds(lambda: ("ListPoints", pb.ListPointsRequest())),
    st.builds(lambda p, o, w: ("GetSummary", pb.SummaryRequest(point=p, operation=o,
                                                               window_seconds=w)),
              _NAMES, _NAMES, _FLOATS),
    st.builds(lambda p, o, a, b, s: ("GetSeries", pb.SeriesRequest(
        point=p, operation=o, start=a, end=b, step_seconds=s)),
        _NAMES, _NAMES, _FLOATS, _FLOATS, _FLOATS),
    st.builds(lambda p, a, b, n, t: ("ListTransitions", pb.ListTransitionsRequest(
        point=p, start=a, end=b, page_size=n, page_token=t)),
        _NAMES, _FLOATS, _FLOATS, st.integers(-2**31, 2**31 - 1),
        st.one_of(st.text(max_size=40), st.integers(-10, 2**80).map(str))),
    st.builds(lambda p, o, w, i: ("WatchSummary", pb.WatchSummaryRequest(
        point=p, operation=o, window_seconds=w, interval_seconds=i)),
        _NAMES, _NAMES, _FLOATS, _FLOATS),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(call=_REQUESTS)
def test_no_request_gets_unknown_or_internal(stub: pb_grpc.MetricsServiceStub,
                                             call: tuple[str, object]) -> None:
    """Any value of any field of any request: an answer or a precise status, never UNKNOWN/INTERNAL."""
    method, request = call
    try:
        if method == "WatchSummary":
            stream = stub.WatchSummary(request, timeout=5)
            try:
                next(stream)  # a valid watch answers at once; stop there
            finally:
                stream.cancel()
        else:
            getattr(stub, method)(request, timeout=5)
    except grpc.RpcError as exc:
        assert exc.code() not in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL), (
            f"{method}({request}) -> {exc.code()}: {exc.details()}")
        assert exc.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
                              grpc.StatusCode.CANCELLED), f"{method}: {exc.code()}"


def test_an_unknown_point_is_not_found_and_the_known_ones_are_named(client: MetricsClient) -> None:
    """summary(point='nope') does not return []: NOT_FOUND, listing the known points."""
    with pytest.raises(MetricsServiceError) as caught:
        client.summary("nope")
    assert caught.value.code == "NOT_FOUND"
    assert str(caught.value) == "no such point 'nope'; known points: payments, search"
    with pytest.raises(MetricsServiceError) as caught:
        client.summary("payments", operation="nope")
    assert caught.value.code == "NOT_FOUND"
    assert "point 'payments' has no operation 'nope'; its operations: charge, refund" in str(
        caught.value)
    with pytest.raises(MetricsServiceError) as caught:
        client.series("nope", start=time.time() - 600, end=time.time())
    assert caught.value.code == "NOT_FOUND"
    with pytest.raises(MetricsServiceError) as caught:
        list(client.transitions("nope"))
    assert caught.value.code == "NOT_FOUND"
    assert client.summary("search", window=60 * 60 * 24 * 366)  # known points still answer


def test_series_takes_datetimes(client: MetricsClient) -> None:
    """series(start=, end=) are epoch seconds or datetimes; both give the same buckets."""
    from datetime import datetime, timezone

    end = time.time()
    by_number = client.series("payments", start=end - 600, end=end)
    by_datetime = client.series("payments", start=datetime.fromtimestamp(end - 600, timezone.utc),
                                end=datetime.fromtimestamp(end, timezone.utc))
    assert by_number == by_datetime
    assert sum(b.calls for b in by_number) == 15


@pytest.mark.parametrize("target", ["127.0.0.1:99999", "127.0.0.1", "127.0.0.1:0", ":50057"])
def test_a_malformed_client_target_is_refused_at_construction(target: str) -> None:
    """MetricsClient checks its target like serve checks listen."""
    with pytest.raises(seawall.ConfigurationError, match="target"):
        MetricsClient(target)


def test_a_second_server_on_the_same_port_is_refused(store: Store, server: MetricsServer) -> None:
    """serve() on a port in use raises "address in use" instead of sharing it (SO_REUSEPORT)."""
    with pytest.raises(seawall.ConfigurationError, match="address in use"):
        serve(store, f"127.0.0.1:{server.port}")
    with MetricsClient(server.address) as client:  # the first one still serves everything
        assert {s.point for s in client.summary(window=600)} == {"payments", "search"}


def test_serve_of_a_url_needs_an_existing_store_unless_asked_to_create(tmp_path: Path) -> None:
    """serve('typo.db') names the file and create=True; serve(..., create=True) starts empty."""
    typo = tmp_path / "metrcs.db"
    with pytest.raises(seawall.ConfigurationError) as caught:
        serve(str(typo), "127.0.0.1:0")
    assert f"no metrics store at {typo}" in str(caught.value)
    assert "pass create=True" in str(caught.value)
    assert not typo.exists()
    with serve(str(typo), "127.0.0.1:0", create=True) as server, \
            MetricsClient(server.address) as client:
        assert client.points() == []
    assert typo.exists()


def test_a_database_without_seawall_tables_is_refused(tmp_path: Path) -> None:
    """An existing SQLite file that is not a metrics store is named as such."""
    import sqlite3

    other = tmp_path / "app.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE orders (id INTEGER)")
    with pytest.raises(seawall.ConfigurationError, match="holds no seawall metrics"):
        serve(str(other), "127.0.0.1:0")


def test_serve_from_python_names_its_keywords_not_the_flags(store: Store) -> None:
    """The messages of serve() speak Python: token=, tls_cert= and tls_key=."""
    with pytest.raises(seawall.ConfigurationError) as caught:
        serve(store, "0.0.0.0:0")
    assert "Pass token=" in str(caught.value) and "--token" not in str(caught.value)
    with pytest.raises(seawall.ConfigurationError) as caught:
        serve(store, "127.0.0.1:0", tls_cert="cert.pem")
    assert "tls_cert= and tls_key=" in str(caught.value) and "--tls" not in str(caught.value)
