"""gRPC sync, both mountings (interceptors, channel wrapper), against a real grpc.server on
127.0.0.1 with injected faults."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

import seawall
from seawall.interceptors import grpc as sw_grpc
from seawall.testing import FakeClock
from tests.grpc_support.calls import echo_point as point
from tests.grpc_support.calls import req
from tests.grpc_support.mounts import SyncChannels
from tests.grpc_support.servers import Backend, free_port, pb2, pb2_grpc, start_sync_server

pytest_plugins = ["tests.grpc_support.fixtures"]

UNARY = "/seawall.test.v1.Echo/Unary"
SERVER_STREAM = "/seawall.test.v1.Echo/ServerStream"
UNAVAILABLE = grpc.StatusCode.UNAVAILABLE


@pytest.fixture
def connect(mounting: str, sync_channels: SyncChannels) -> Any:
    """connect(target, point_or_table, **options) -> a stub over a channel with seawall mounted."""
    def make(target: str, routes: Any, **options: Any) -> Any:
        return pb2_grpc.EchoStub(sync_channels.open(target, routes, mounting, **options))

    return make


# -- unary ----------------------------------------------------------------


def test_unavailable_is_retried_and_each_retry_carries_the_attempt_header(
        connect: Any, sync_target: str, backend: Backend) -> None:
    """Two UNAVAILABLE answers, then success: three attempts, header absent, "2", "3"."""
    backend.plan("k", fail=2)
    p = point()
    reply = connect(sync_target, p).Unary(req("k"))
    assert reply.attempt == 3
    assert backend.headers("k") == [None, "2", "3"]
    stats = p.stats()
    assert (stats.successes, stats.attempts, stats.retries) == (1, 3, 2)


def test_with_call_returns_the_final_attempts_call(connect: Any, sync_target: str,
                                                   backend: Backend) -> None:
    """``.with_call`` yields the response and a call whose code is OK."""
    backend.plan("k", fail=1)
    reply, call = connect(sync_target, point()).Unary.with_call(req("k"))
    assert reply.attempt == 2
    assert call.code() is grpc.StatusCode.OK


def test_exhausted_retries_raise_the_original_rpc_error_with_a_note(
        connect: Any, sync_target: str, backend: Backend) -> None:
    """When attempts run out the caller gets gRPC's own RpcError, annotated with the attempts."""
    backend.plan("k", fail=5)
    with pytest.raises(grpc.RpcError) as info:
        connect(sync_target, point(attempts=3)).Unary(req("k"))
    assert info.value.code() is UNAVAILABLE
    assert not isinstance(info.value, seawall.SeawallError)
    assert any("3 attempt(s)" in note for note in getattr(info.value, "__notes__", []))
    assert len(backend.attempts("k")) == 3


def test_future_does_not_block_and_retries_in_the_background(
        connect: Any, sync_target: str, backend: Backend) -> None:
    """``.future()`` returns at once; the retry happens off the caller's thread."""
    backend.plan("k", fail=1, delay=0.3, delay_attempts=1)
    stub = connect(sync_target, point())
    started = time.monotonic()
    future = stub.Unary.future(req("k"))
    assert time.monotonic() - started < 0.25
    assert not future.done()
    assert future.result(timeout=10).attempt == 2
    assert future.code() is grpc.StatusCode.OK
    assert backend.headers("k") == [None, "2"]


def test_future_reports_a_final_failure_through_exception(
        connect: Any, sync_target: str, backend: Backend) -> None:
    """A failing ``.future()`` settles with the last attempt's RpcError."""
    backend.plan("k", fail=9, code=grpc.StatusCode.NOT_FOUND)
    future = connect(sync_target, point()).Unary.future(req("k"))
    error = future.exception(timeout=10)
    assert isinstance(error, grpc.RpcError)
    assert error.code() is grpc.StatusCode.NOT_FOUND
    assert len(backend.attempts("k")) == 1


def test_cancelling_a_future_cancels_the_attempt_on_the_wire(
        connect: Any, sync_target: str, backend: Backend) -> None:
    """``future.cancel()`` reaches the server and counts a cancellation, not a failure."""
    backend.plan("k", delay=5.0)
    p = point()
    future = connect(sync_target, p).Unary.future(req("k"))
    deadline = time.monotonic() + 5
    while not backend.attempts("k") and time.monotonic() < deadline:
        time.sleep(0.005)
    assert backend.attempts("k"), "the attempt did not reach the server"
    assert future.cancel()
    assert backend.cancelled.wait(5)
    assert future.cancelled()
    with pytest.raises(grpc.FutureCancelledError):
        future.result()
    stats = p.stats()
    assert (stats.cancelled, stats.failures) == (1, 0)


def test_deadline_exceeded_is_retried_only_for_idempotent_routes(
        connect: Any, sync_target: str, backend: Backend) -> None:
    """DEADLINE_EXCEEDED from the server: one attempt by default, retried when idempotent."""
    backend.plan("plain", fail=1, code=grpc.StatusCode.DEADLINE_EXCEEDED)
    backend.plan("idem", fail=1, code=grpc.StatusCode.DEADLINE_EXCEEDED)
    with pytest.raises(grpc.RpcError):
        connect(sync_target, point()).Unary(req("plain"))
    reply = connect(sync_target, sw_grpc.Route(point(), idempotent=True)).Unary(req("idem"))
    assert reply.attempt == 2
    assert len(backend.attempts("plain")) == 1


def test_client_errors_are_not_retried_and_do_not_open_the_breaker(
        connect: Any, sync_target: str, backend: Backend) -> None:
    """INVALID_ARGUMENT: one attempt per call, and the breaker stays closed."""
    backend.plan("k", fail=100, code=grpc.StatusCode.INVALID_ARGUMENT)
    p = point(breaker=seawall.CircuitBreaker(minimum_calls=2, window=4, failure_rate=0.5))
    stub = connect(sync_target, p)
    for _ in range(6):
        with pytest.raises(grpc.RpcError):
            stub.Unary(req("k"))
    assert len(backend.attempts("k")) == 6
    assert p.breaker_state is seawall.BreakerState.CLOSED


@pytest.mark.parametrize(("pushback", "attempts", "sleeps"), [
    ("150", 2, [0.15]),
    ("-1", 1, []),
    ("soon", 1, []),
])
def test_pushback_trailer_sets_or_vetoes_the_next_delay(
        connect: Any, sync_target: str, backend: Backend,
        pushback: str, attempts: int, sleeps: list[float]) -> None:
    """``grpc-retry-pushback-ms``: a number is the wait, negative or garbage stops retrying."""
    backend.plan("k", fail=1, pushback=pushback)
    clock = FakeClock()
    stub = connect(sync_target, point(clock=clock))
    try:
        stub.Unary(req("k"))
    except grpc.RpcError as exc:
        assert exc.code() is UNAVAILABLE
    assert len(backend.attempts("k")) == attempts
    assert clock.sleeps == pytest.approx(sleeps)


# -- deadlines ----------------------------------------------------------------


def test_caller_timeout_is_the_total_budget_and_attempts_get_the_smaller_timeout(
        connect: Any, sync_target: str, backend: Backend) -> None:
    """timeout=0.6 with Timeout(attempt=0.2): each attempt sees <= 0.2 s, all end by ~0.6 s."""
    backend.plan("k", delay=5.0)
    p = seawall.IntegrationPoint(
        "echo", retry=seawall.Retry(attempts=10, backoff=seawall.Backoff.constant(0.01),
                                    budget=None),
        timeout=seawall.Timeout(attempt=0.2))
    stub = connect(sync_target, sw_grpc.Route(p, idempotent=True))
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as info:
        stub.Unary(req("k"), timeout=0.6)
    elapsed = time.monotonic() - started
    assert info.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    seen = backend.attempts("k")
    assert 2 <= len(seen) <= 4
    assert all(s.time_remaining is not None and s.time_remaining <= 0.21 for s in seen)
    assert elapsed < 1.5


def test_no_retry_starts_when_the_next_delay_exceeds_the_remaining_budget(
        connect: Any, sync_target: str, backend: Backend) -> None:
    """A 1 s backoff cannot fit in a 0.5 s budget: the first failure is final."""
    backend.plan("k", fail=3)
    p = seawall.IntegrationPoint(
        "echo", retry=seawall.Retry(attempts=3, backoff=seawall.Backoff.constant(1.0), budget=None))
    with pytest.raises(grpc.RpcError):
        connect(sync_target, p).Unary(req("k"), timeout=0.5)
    assert len(backend.attempts("k")) == 1


# -- breaker and bulkhead -------------------------------------------------------


def test_open_breaker_keeps_calls_off_the_server_as_rpc_errors(
        connect: Any, sync_target: str, backend: Backend) -> None:
    """Once open, the breaker refuses with an RpcError that is also a CircuitOpenError."""
    backend.plan("k", fail=1000)
    p = point(attempts=0, breaker=seawall.CircuitBreaker(minimum_calls=4, window=4,
                                                         failure_rate=0.5, open_for=60))
    stub = connect(sync_target, p)
    for _ in range(4):
        with pytest.raises(grpc.RpcError):
            stub.Unary(req("k"))
    assert backend.calls == 4
    for _ in range(5):
        with pytest.raises(seawall.CircuitOpenError) as info:
            stub.Unary(req("k"))
        assert isinstance(info.value, grpc.RpcError) and isinstance(info.value, grpc.Call)
        assert info.value.code() is UNAVAILABLE
        assert dict(info.value.trailing_metadata())["seawall-rejected"] == "breaker"
    future = stub.Unary.future(req("k"))
    assert future.done() and isinstance(future.exception(), sw_grpc.CircuitOpenRpcError)
    assert isinstance(future, grpc.Future)
    with pytest.raises(sw_grpc.CircuitOpenRpcError):
        next(iter(stub.ServerStream(req("k", count=2))))
    assert backend.calls == 4
    assert p.stats().rejections["breaker"] == 7


def test_server_down_opens_the_breaker_and_a_trial_reaches_it_once_back(
        connect: Any, backend: Backend) -> None:
    """No server at all: the breaker opens; after open_for a single trial finds it back."""
    port = free_port()
    clock = FakeClock()
    p = point(attempts=2, clock=clock,
              breaker=seawall.CircuitBreaker(minimum_calls=2, window=2, failure_rate=0.5,
                                             open_for=30, half_open_calls=1))
    stub = connect(f"127.0.0.1:{port}", p)
    for _ in range(2):
        with pytest.raises(grpc.RpcError) as info:
            stub.Unary(req("k"), timeout=5)
        assert info.value.code() is UNAVAILABLE
    with pytest.raises(sw_grpc.CircuitOpenRpcError):
        stub.Unary(req("k"))
    server, _ = start_sync_server(backend, port)
    try:
        with pytest.raises(sw_grpc.CircuitOpenRpcError):
            stub.Unary(req("k"))
        assert backend.calls == 0
        clock.advance(31)
        assert stub.Unary(req("k"), timeout=5, wait_for_ready=True).text == "hi"
        assert backend.calls == 1
        assert p.breaker_state is seawall.BreakerState.CLOSED
    finally:
        server.stop(None).wait(5)


def test_full_bulkhead_refuses_without_touching_the_network(
        connect: Any, sync_target: str, backend: Backend) -> None:
    """One permit held by a slow call: the next call is a BulkheadFullError + RESOURCE_EXHAUSTED."""
    backend.plan("slow", delay=0.5)
    p = point(bulkhead=seawall.Bulkhead(max_concurrent=1))
    stub = connect(sync_target, p)
    slow = stub.Unary.future(req("slow"))
    with pytest.raises(seawall.BulkheadFullError) as info:
        stub.Unary(req("fast"))
    assert isinstance(info.value, grpc.RpcError)
    assert info.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert slow.result(timeout=10).text == "hi"
    assert backend.attempts("fast") == []
    assert stub.Unary(req("fast")).text == "hi"  # the permit came back


# -- streams ----------------------------------------------------------------------


def test_server_stream_failing_before_its_first_message_is_retried(
        connect: Any, sync_target: str, backend: Backend) -> None:
    """UNAVAILABLE before any message: the stream is restarted and read in full."""
    backend.plan("k", fail=1)
    replies = list(connect(sync_target, point()).ServerStream(req("k", "s", count=3)))
    assert [r.text for r in replies] == ["s-0", "s-1", "s-2"]
    assert backend.headers("k") == [None, "2"]


def test_server_stream_failing_after_a_delivered_message_is_not_retried(
        connect: Any, sync_target: str, backend: Backend) -> None:
    """After two messages reached the caller the failure is final."""
    backend.plan("k", fail=1, fail_after=2)
    p = point()
    stream = connect(sync_target, p).ServerStream(req("k", "s", count=3))
    got = []
    with pytest.raises(grpc.RpcError) as info:
        for reply in stream:
            got.append(reply.text)
    assert got == ["s-0", "s-1"]
    assert info.value.code() is UNAVAILABLE
    assert len(backend.attempts("k")) == 1
    assert stream.code() is UNAVAILABLE
    assert p.stats().failures == 1


def test_server_stream_code_settles_retries_without_reading(
        connect: Any, sync_target: str, backend: Backend) -> None:
    """``code()`` on an empty stream retries the same way iteration would, then reports OK."""
    backend.plan("k", fail=1)
    stream = connect(sync_target, point()).ServerStream(req("k", count=0))
    assert stream.code() is grpc.StatusCode.OK
    assert list(stream) == []
    assert backend.headers("k") == [None, "2"]


def test_client_stream_is_replayed_in_full_on_retry(
        connect: Any, sync_target: str, backend: Backend) -> None:
    """The request stream is buffered, so the retry sends every message again."""
    backend.plan("k", fail=1)
    messages = (req("k", t) for t in "abc")  # a generator: consumable once
    reply = connect(sync_target, point()).ClientStream(messages)
    assert list(reply.received) == ["a", "b", "c"]
    assert [s.received for s in backend.attempts("k")] == [["a", "b", "c"], ["a", "b", "c"]]


def test_client_stream_longer_than_the_buffer_fails_on_its_first_failure(
        connect: Any, sync_target: str, backend: Backend) -> None:
    """With request_buffer=2 a three-message stream cannot be replayed: no retry."""
    backend.plan("k", fail=1)
    stub = connect(sync_target, point(), request_buffer=2)
    with pytest.raises(grpc.RpcError):
        stub.ClientStream(req("k", t) for t in "abc")
    assert len(backend.attempts("k")) == 1


def test_client_stream_future_retries_with_replay(
        connect: Any, sync_target: str, backend: Backend) -> None:
    """The ``.future()`` path of a client stream replays the buffer too."""
    backend.plan("k", fail=1)
    future = connect(sync_target, point()).ClientStream.future(req("k", t) for t in "ab")
    assert list(future.result(timeout=10).received) == ["a", "b"]


def test_bidi_stream_failing_before_any_reply_is_replayed(
        connect: Any, sync_target: str, backend: Backend) -> None:
    """A bidi call that failed before its first reply is retried with the buffered requests."""
    backend.plan("k", fail=1)
    replies = list(connect(sync_target, point()).Bidi(req("k", t) for t in "xyz"))
    assert [r.text for r in replies] == ["x", "y", "z"]
    assert [r.attempt for r in replies] == [2, 2, 2]


def test_bidi_stream_failing_after_a_reply_is_final(
        connect: Any, sync_target: str, backend: Backend) -> None:
    """After the first reply was delivered, a bidi failure reaches the caller."""
    backend.plan("k", fail=1, fail_after=1)
    got = []
    with pytest.raises(grpc.RpcError):
        for reply in connect(sync_target, point()).Bidi(req("k", t) for t in "xyz"):
            got.append(reply.text)
    assert got == ["x"]
    assert len(backend.attempts("k")) == 1


# A server that ends a request stream before reading all of it (an early rejection, an early
# answer) while the client is still writing. grpc.aio can report such a call as INTERNAL
# (grpc/grpc#36066); sync gRPC reports the server's status, and so must the interceptor.
# 64 messages of 64 KiB outgrow HTTP/2 flow control, so a write is still in flight.

BIG = 64 * 1024


def big_stream(key: str) -> Iterator[Any]:
    """64 requests of 64 KiB, numbered 0000..0063."""
    return iter([req(key, f"{i:04d}" + "." * BIG) for i in range(64)])


def wait_for(predicate: Any, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.005)


def test_bidi_ended_mid_stream_is_judged_by_the_servers_status(
        connect: Any, sync_target: str, backend: Backend) -> None:
    """Attempt 1 fails with UNAVAILABLE after one message: retried, the replay answers all 64."""
    p = point()
    stub = connect(sync_target, p)
    for key in ("k1", "k2", "k3"):
        backend.plan(key, fail=1)
        replies = list(stub.Bidi(big_stream(key)))
        assert [(r.text[:4], r.attempt) for r in replies] == [(f"{i:04d}", 2) for i in range(64)]
    wait_for(lambda: p.stats().successes == 3)
    assert (p.stats().retries, p.stats().failures) == (3, 0)


def test_client_stream_answered_early_is_judged_by_the_servers_status(
        connect: Any, sync_target: str, backend: Backend) -> None:
    """The server reads one message, fails attempt 1, answers attempt 2: retried, then OK."""
    p = point()
    stub = connect(sync_target, p)
    for key in ("k1", "k2", "k3"):
        backend.plan(key, fail=1, read=1)
        reply, call = stub.ClientStream.with_call(big_stream(key))
        assert (reply.attempt, [t[:4] for t in reply.received]) == (2, ["0000"])
        assert call.code() is grpc.StatusCode.OK
    assert (p.stats().successes, p.stats().retries, p.stats().failures) == (3, 3, 0)


def test_request_stream_rejected_early_reports_the_servers_status(
        connect: Any, sync_target: str, backend: Backend) -> None:
    """PERMISSION_DENIED before the stream was read: the caller and the metrics see it as is."""
    p = point()
    stub = connect(sync_target, p)
    denied = grpc.StatusCode.PERMISSION_DENIED
    for n in range(2):
        backend.plan(f"bidi{n}", fail=1, code=denied)
        bidi = stub.Bidi(big_stream(f"bidi{n}"))
        with pytest.raises(grpc.RpcError) as raised:
            list(bidi)
        assert (raised.value.code(), raised.value.details()) == (denied, "injected PERMISSION_DENIED")
        assert (bidi.code(), bidi.details()) == (denied, "injected PERMISSION_DENIED")

        backend.plan(f"client{n}", fail=1, code=denied, read=1)
        with pytest.raises(grpc.RpcError) as raised:
            stub.ClientStream(big_stream(f"client{n}"))
        assert (raised.value.code(), raised.value.details()) == (denied, "injected PERMISSION_DENIED")
    wait_for(lambda: p.stats().failures == 4)
    assert p.stats().failures_by_category["permanent"] == 4
    assert p.stats().attempts == 4


# -- routing, fallback, events ---------------------------------------------------------


def test_routing_table_gives_each_method_its_own_point(
        connect: Any, sync_target: str, backend: Backend) -> None:
    """Exact method beats service wildcard; unmatched methods pass through untouched."""
    unary, service = point("unary"), point("service")
    stub = connect(sync_target, {UNARY: sw_grpc.Route(unary, idempotent=True),
                                 "/seawall.test.v1.Echo/*": service})
    stub.Unary(req("a"))
    list(stub.ServerStream(req("b", count=1)))
    assert (unary.stats().calls, service.stats().calls) == (1, 1)
    only = point("only")
    stub2 = connect(sync_target, {UNARY: only})
    list(stub2.ServerStream(req("c", count=1)))
    assert only.stats().calls == 0


def test_fallback_answers_a_failed_unary_call(connect: Any, sync_target: str,
                                              backend: Backend) -> None:
    """A Fallback value becomes the response when retries run out."""
    backend.plan("k", fail=10)
    p = point(fallback=seawall.Fallback(value=pb2.EchoReply(text="cached")))
    assert connect(sync_target, p).Unary(req("k")).text == "cached"
    assert p.stats().fallbacks == 1


def test_every_attempt_is_an_event_named_after_the_method(
        connect: Any, sync_target: str, backend: Backend) -> None:
    """AttemptEvents carry the full method name as their operation."""
    backend.plan("k", fail=1)
    p = point()
    events: list[Any] = []
    p.add_hook(events.append)
    connect(sync_target, p).Unary(req("k"))
    attempts = [e for e in events if isinstance(e, seawall.AttemptEvent)]
    assert [(e.operation, e.attempt, e.category) for e in attempts] == [
        (UNARY, 1, seawall.Category.UNAVAILABLE), (UNARY, 2, None)]
    calls = [e for e in events if isinstance(e, seawall.CallEvent)]
    assert [(c.operation, c.attempts) for c in calls] == [(UNARY, 2)]
