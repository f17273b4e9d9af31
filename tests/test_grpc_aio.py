"""grpc.aio, both mountings (interceptors, channel wrapper), against a real grpc.aio.server on
127.0.0.1 with injected faults."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import grpc.aio
import pytest

import seawall
from seawall.interceptors import grpc as sw_grpc
from seawall.testing import FakeClock
from tests.grpc_support.calls import echo_point as point
from tests.grpc_support.calls import req
from tests.grpc_support.mounts import AioChannels
from tests.grpc_support.servers import Backend, free_port, pb2, pb2_grpc

pytest_plugins = ["tests.grpc_support.fixtures"]

UNARY = "/seawall.test.v1.Echo/Unary"
UNAVAILABLE = grpc.StatusCode.UNAVAILABLE


@pytest.fixture
def connect(mounting: str, aio_channels: AioChannels) -> Any:
    """connect(target, point_or_table, **options) -> a stub over an aio channel with seawall
    mounted."""
    def make(target: str, routes: Any, **options: Any) -> Any:
        return pb2_grpc.EchoStub(aio_channels.open(target, routes, mounting, **options))

    return make


async def wait_for(predicate: Any, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


# -- unary ----------------------------------------------------------------


async def test_unavailable_is_retried_with_the_attempt_header(
        connect: Any, aio_target: str, backend: Backend) -> None:
    """Two UNAVAILABLE answers, then success; the call still answers code() and metadata."""
    backend.plan("k", fail=2)
    p = point()
    call = connect(aio_target, p).Unary(req("k"))
    reply = await call
    assert reply.attempt == 3
    assert await call.code() is grpc.StatusCode.OK
    assert await call.trailing_metadata() is not None
    assert backend.headers("k") == [None, "2", "3"]
    assert (p.stats().successes, p.stats().retries) == (1, 2)


async def test_final_failure_is_an_aio_rpc_error_and_the_call_reports_it(
        connect: Any, aio_target: str, backend: Backend) -> None:
    """Retries exhausted: ``await`` raises AioRpcError; code() and details() do not raise."""
    backend.plan("k", fail=9)
    call = connect(aio_target, point()).Unary(req("k"))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    assert info.value.code() is UNAVAILABLE
    assert any("3 attempt(s)" in n for n in getattr(info.value, "__notes__", []))
    assert await call.code() is UNAVAILABLE
    assert "injected" in await call.details()
    assert len(backend.attempts("k")) == 3


async def test_single_failed_attempt_returns_grpcs_own_call(
        connect: Any, aio_target: str, backend: Backend) -> None:
    """A non-retryable status is passed through as is."""
    backend.plan("k", fail=1, code=grpc.StatusCode.PERMISSION_DENIED)
    call = connect(aio_target, point()).Unary(req("k"))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    assert info.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert len(backend.attempts("k")) == 1


async def test_cancelling_the_call_cancels_the_rpc_on_the_server(
        connect: Any, aio_target: str, backend: Backend) -> None:
    """call.cancel() reaches the attempt in flight: the server sees the cancellation."""
    backend.plan("k", delay=10.0)
    p = point()
    call = connect(aio_target, p).Unary(req("k"))
    await wait_for(lambda: backend.attempts("k"))
    started = time.monotonic()
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    await wait_for(lambda: backend.cancelled.is_set())
    assert time.monotonic() - started < 2.0
    stats = p.stats()
    assert (stats.cancelled, stats.failures) == (1, 0)


async def test_wait_for_timeout_cancels_the_rpc_on_the_server(
        connect: Any, aio_target: str, backend: Backend) -> None:
    """asyncio.wait_for around the call cancels the attempt on the wire, not just locally."""
    backend.plan("k", delay=10.0)
    stub = connect(aio_target, point())
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(stub.Unary(req("k")), 0.2)
    await wait_for(lambda: backend.cancelled.is_set())


async def test_pushback_trailer_sets_the_delay_and_negative_stops(
        connect: Any, aio_target: str, backend: Backend) -> None:
    """A 200 ms pushback becomes the wait; -1 means no retry."""
    backend.plan("wait", fail=1, pushback="200")
    backend.plan("stop", fail=1, pushback="-1")
    clock = FakeClock()
    stub = connect(aio_target, point(clock=clock))
    assert (await stub.Unary(req("wait"))).attempt == 2
    assert clock.sleeps == pytest.approx([0.2])
    with pytest.raises(grpc.aio.AioRpcError):
        await stub.Unary(req("stop"))
    assert len(backend.attempts("stop")) == 1


async def test_caller_timeout_is_the_total_budget(connect: Any, aio_target: str,
                                                  backend: Backend) -> None:
    """timeout=0.6, Timeout(attempt=0.2), idempotent: attempts see <= 0.2 s, call ends by ~0.6 s."""
    backend.plan("k", delay=5.0)
    p = seawall.IntegrationPoint(
        "echo", retry=seawall.Retry(attempts=10, backoff=seawall.Backoff.constant(0.01),
                                    budget=None),
        timeout=seawall.Timeout(attempt=0.2))
    stub = connect(aio_target, sw_grpc.Route(p, idempotent=True))
    started = time.monotonic()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Unary(req("k"), timeout=0.6)
    assert info.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - started < 1.5
    seen = backend.attempts("k")
    assert 2 <= len(seen) <= 4
    assert all(s.time_remaining is not None and s.time_remaining <= 0.21 for s in seen)


# -- breaker and bulkhead -------------------------------------------------------


async def test_open_breaker_refuses_with_an_aio_rpc_error_without_network(
        connect: Any, aio_target: str, backend: Backend) -> None:
    """After the breaker opens, calls raise CircuitOpenRpcError (an AioRpcError); none reach the server."""
    backend.plan("k", fail=1000)
    p = point(attempts=0, breaker=seawall.CircuitBreaker(minimum_calls=3, window=3,
                                                         failure_rate=0.5, open_for=60))
    stub = connect(aio_target, p)
    for _ in range(3):
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.Unary(req("k"))
    for _ in range(3):
        call = stub.Unary(req("k"))
        with pytest.raises(seawall.CircuitOpenError) as info:
            await call
        assert isinstance(info.value, grpc.aio.AioRpcError)
        assert await call.code() is UNAVAILABLE
        assert dict(await call.trailing_metadata())["seawall-rejected"] == "breaker"
    stream = stub.ServerStream(req("k", count=1))
    with pytest.raises(sw_grpc.AioCircuitOpenRpcError):
        async for _ in stream:
            pass
    assert await stream.code() is UNAVAILABLE
    assert backend.calls == 3


async def test_server_down_opens_the_breaker(connect: Any, backend: Backend) -> None:
    """Nothing listens: UNAVAILABLE twice opens the breaker, then calls are refused locally."""
    p = point(attempts=1, breaker=seawall.CircuitBreaker(minimum_calls=2, window=2,
                                                         failure_rate=0.5, open_for=60))
    stub = connect(f"127.0.0.1:{free_port()}", p)
    for _ in range(2):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Unary(req("k"), timeout=5)
        assert info.value.code() is UNAVAILABLE
    with pytest.raises(sw_grpc.AioCircuitOpenRpcError):
        await stub.Unary(req("k"))
    assert p.stats().attempts == 2


async def test_full_bulkhead_raises_resource_exhausted(connect: Any, aio_target: str,
                                                       backend: Backend) -> None:
    """A second concurrent call finds no permit: BulkheadFullRpcError, RESOURCE_EXHAUSTED."""
    backend.plan("slow", delay=0.5)
    stub = connect(aio_target, point(bulkhead=seawall.Bulkhead(max_concurrent=1)))
    slow = stub.Unary(req("slow"))
    await wait_for(lambda: backend.attempts("slow"))
    with pytest.raises(seawall.BulkheadFullError) as info:
        await stub.Unary(req("fast"))
    assert info.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert (await slow).text == "hi"
    assert backend.attempts("fast") == []


# -- streams ----------------------------------------------------------------------


async def test_server_stream_retried_before_its_first_message(
        connect: Any, aio_target: str, backend: Backend) -> None:
    """UNAVAILABLE before any message: restarted; code() reports the final attempt."""
    backend.plan("k", fail=1)
    call = connect(aio_target, point()).ServerStream(req("k", "s", count=3))
    assert [r.text async for r in call] == ["s-0", "s-1", "s-2"]
    assert await call.code() is grpc.StatusCode.OK
    assert backend.headers("k") == [None, "2"]


async def test_server_stream_read_api_retries_too(connect: Any, aio_target: str,
                                                  backend: Backend) -> None:
    """``read()`` goes through the same retrying iterator and ends with EOF."""
    backend.plan("k", fail=1)
    call = connect(aio_target, point()).ServerStream(req("k", "s", count=2))
    first, second, end = await call.read(), await call.read(), await call.read()
    assert (first.text, second.text, end) == ("s-0", "s-1", grpc.aio.EOF)


async def test_server_stream_failing_after_a_message_is_final(
        connect: Any, aio_target: str, backend: Backend) -> None:
    """After a delivered message the stream error reaches the caller; one attempt."""
    backend.plan("k", fail=1, fail_after=2)
    p = point()
    call = connect(aio_target, p).ServerStream(req("k", "s", count=3))
    got = []
    with pytest.raises(grpc.aio.AioRpcError):
        async for reply in call:
            got.append(reply.text)
    assert got == ["s-0", "s-1"]
    assert await call.code() is UNAVAILABLE
    assert len(backend.attempts("k")) == 1
    assert p.stats().failures == 1


async def test_cancelling_a_server_stream_reaches_the_server(
        connect: Any, aio_target: str, backend: Backend) -> None:
    """cancel() on a stream in flight cancels that attempt on the wire."""
    backend.plan("k", delay=10.0)
    p = point()
    call = connect(aio_target, p).ServerStream(req("k", count=1))
    await wait_for(lambda: backend.attempts("k"))
    assert call.cancel()
    await wait_for(lambda: backend.cancelled.is_set())
    assert p.stats().cancelled == 1


async def test_client_stream_from_an_async_generator_is_replayed(
        connect: Any, aio_target: str, backend: Backend) -> None:
    """An async request generator is buffered and replayed on retry."""
    backend.plan("k", fail=1)

    async def messages() -> AsyncIterator[Any]:
        for t in "abc":
            yield req("k", t)

    reply = await connect(aio_target, point()).ClientStream(messages())
    assert list(reply.received) == ["a", "b", "c"]
    assert [s.received for s in backend.attempts("k")] == [["a", "b", "c"], ["a", "b", "c"]]


async def test_client_stream_beyond_the_buffer_is_not_retried(
        connect: Any, aio_target: str, backend: Backend) -> None:
    """Three messages with request_buffer=2: the first failure is final."""
    backend.plan("k", fail=1)
    stub = connect(aio_target, point(), request_buffer=2)
    with pytest.raises(grpc.aio.AioRpcError):
        await stub.ClientStream(iter([req("k", t) for t in "abc"]))
    assert len(backend.attempts("k")) == 1


async def test_client_stream_write_api_makes_one_accounted_attempt(
        connect: Any, aio_target: str, backend: Backend) -> None:
    """``call.write()`` streams cannot be replayed: they run once and are still counted."""
    p = point()
    call = connect(aio_target, p).ClientStream()
    await call.write(req("k", "a"))
    await call.write(req("k", "b"))
    await call.done_writing()
    assert list((await call).received) == ["a", "b"]
    await wait_for(lambda: p.stats().successes == 1)


async def test_bidi_failing_before_any_reply_is_replayed(
        connect: Any, aio_target: str, backend: Backend) -> None:
    """A bidi call failing before its first reply is retried with the buffered requests."""
    backend.plan("k", fail=1)
    call = connect(aio_target, point()).Bidi(iter([req("k", t) for t in "xyz"]))
    replies = [r async for r in call]
    assert [(r.text, r.attempt) for r in replies] == [("x", 2), ("y", 2), ("z", 2)]


# A server may end a request stream before reading all of it (an early rejection, an early
# answer). The client is then usually still writing: grpc.aio fails that write and replaces the
# server's status with INTERNAL "Internal error from Core" (grpc/grpc#36066). 64 messages of
# 64 KiB outgrow HTTP/2 flow control, so a write is in flight in nearly every such call; each
# test makes a few calls so that, without the interceptor's guard, it fails all but never.

BIG = 64 * 1024


def big_stream(key: str) -> Iterator[Any]:
    """64 requests of 64 KiB, numbered 0000..0063."""
    return iter([req(key, f"{i:04d}" + "." * BIG) for i in range(64)])


async def test_bidi_ended_mid_stream_is_judged_by_the_servers_status(
        connect: Any, aio_target: str, backend: Backend) -> None:
    """Attempt 1 fails with UNAVAILABLE after one message: retried, the replay answers all 64."""
    p = point()
    stub = connect(aio_target, p)
    for key in ("k1", "k2", "k3"):
        backend.plan(key, fail=1)
        replies = [r async for r in stub.Bidi(big_stream(key))]
        assert [(r.text[:4], r.attempt) for r in replies] == [(f"{i:04d}", 2) for i in range(64)]
    await wait_for(lambda: p.stats().successes == 3)
    assert (p.stats().retries, p.stats().failures) == (3, 0)


async def test_client_stream_answered_early_is_judged_by_the_servers_status(
        connect: Any, aio_target: str, backend: Backend) -> None:
    """The server reads one message, fails attempt 1, answers attempt 2: retried, then OK."""
    p = point()
    stub = connect(aio_target, p)
    for key in ("k1", "k2", "k3"):
        backend.plan(key, fail=1, read=1)
        call = stub.ClientStream(big_stream(key))
        reply = await call
        assert (reply.attempt, [t[:4] for t in reply.received]) == (2, ["0000"])
        assert await call.code() is grpc.StatusCode.OK
    assert (p.stats().successes, p.stats().retries, p.stats().failures) == (3, 3, 0)


async def test_request_stream_rejected_early_reports_the_servers_status(
        connect: Any, aio_target: str, backend: Backend) -> None:
    """PERMISSION_DENIED before the stream was read: the caller and the metrics see it as is."""
    p = point()
    stub = connect(aio_target, p)
    denied = grpc.StatusCode.PERMISSION_DENIED
    for n in range(2):
        backend.plan(f"bidi{n}", fail=1, code=denied)
        bidi = stub.Bidi(big_stream(f"bidi{n}"))
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            [r async for r in bidi]
        assert (raised.value.code(), raised.value.details()) == (denied, "injected PERMISSION_DENIED")
        assert (await bidi.code(), await bidi.details()) == (denied, "injected PERMISSION_DENIED")

        backend.plan(f"client{n}", fail=1, code=denied, read=1)
        unary = stub.ClientStream(big_stream(f"client{n}"))
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await unary
        assert (raised.value.code(), raised.value.details()) == (denied, "injected PERMISSION_DENIED")
        assert await unary.code() is denied
    await wait_for(lambda: p.stats().failures == 4)
    assert p.stats().failures_by_category["permanent"] == 4
    assert p.stats().attempts == 4


async def test_bidi_write_api_works_through_the_interceptor(
        connect: Any, aio_target: str, backend: Backend) -> None:
    """write()/read() on a bidi call pass through the retrying call object."""
    call = connect(aio_target, point()).Bidi()
    await call.write(req("k", "x"))
    assert (await call.read()).text == "x"
    await call.done_writing()
    assert await call.read() == grpc.aio.EOF
    assert await call.code() is grpc.StatusCode.OK


async def test_bidi_write_api_failure_before_a_reply_is_not_retried(
        connect: Any, aio_target: str, backend: Backend) -> None:
    """A write()-style bidi call is never replayed: its messages were not buffered."""
    backend.plan("k", fail=1)
    call = connect(aio_target, point()).Bidi()
    await call.write(req("k", "x"))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call.read()
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
    assert len(backend.attempts("k")) == 1


# -- fallback and events ----------------------------------------------------------------


async def test_fallback_answers_a_failed_unary_call(connect: Any, aio_target: str,
                                                    backend: Backend) -> None:
    """A Fallback value is awaited as the response, code() is OK."""
    backend.plan("k", fail=10)
    p = point(fallback=seawall.Fallback(value=pb2.EchoReply(text="cached")))
    call = connect(aio_target, p).Unary(req("k"))
    assert (await call).text == "cached"
    assert await call.code() is grpc.StatusCode.OK


async def test_every_attempt_is_an_event_named_after_the_method(
        connect: Any, aio_target: str, backend: Backend) -> None:
    """AttemptEvents carry the method as the operation (bytes in aio, str in the event)."""
    backend.plan("k", fail=1)
    p = point()
    events: list[Any] = []
    p.add_hook(events.append)
    await connect(aio_target, p).Unary(req("k"))
    attempts = [(e.operation, e.attempt) for e in events if isinstance(e, seawall.AttemptEvent)]
    assert attempts == [(UNARY, 1), (UNARY, 2)]
