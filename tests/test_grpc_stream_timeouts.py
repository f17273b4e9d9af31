"""Response streams and ``Timeout.attempt``: it bounds the wait for the first message only.

Before the first message reaches the caller a response stream can still be
retried, and ``Timeout.attempt`` bounds that phase (seawall ends the attempt,
the caller sees DEADLINE_EXCEEDED, an idempotent route retries it). After
it, only the caller's own ``timeout=`` and ``Timeout.total`` apply: a long
stream is not cut at the attempt timeout.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import grpc.aio
import pytest

import seawall
from seawall.interceptors import grpc as sw_grpc
from tests.grpc_support.interop import AsyncPipe, InteropServicer, Pipe, start_interop_server
from tests.grpc_support.interop import pb2 as ipb2
from tests.grpc_support.interop import pb2_grpc as ipb2_grpc
from tests.grpc_support.mounts import AioChannels, SyncChannels
from tests.grpc_support.servers import Backend, pb2, pb2_grpc

pytest_plugins = ["tests.grpc_support.fixtures"]

DEADLINE_EXCEEDED = grpc.StatusCode.DEADLINE_EXCEEDED
OK = grpc.StatusCode.OK


def point(attempt: float | None, *, total: float | None = None,
          attempts: int = 3) -> seawall.IntegrationPoint:
    return seawall.IntegrationPoint(
        "stream", retry=seawall.Retry(attempts=attempts, backoff=seawall.Backoff.constant(0.01),
                                      budget=None),
        timeout=seawall.Timeout(attempt=attempt, total=total))


def spaced(count: int, interval: float, size: int = 10) -> Any:
    """A server-stream request: ``count`` responses, each ``interval`` seconds after the last."""
    return ipb2.StreamingOutputCallRequest(response_parameters=[
        ipb2.ResponseParameters(size=size, interval_us=int(interval * 1e6)) for _ in range(count)])


@pytest.fixture(scope="module")
def interop() -> Iterator[tuple[int, InteropServicer]]:
    server, port, servicer = start_interop_server()
    yield port, servicer
    server.stop(None).wait(5)


@pytest.fixture
def sync_stub(interop: tuple[int, InteropServicer], mounting: str,
              sync_channels: SyncChannels) -> Iterator[Any]:
    """make(routes) -> a TestService stub over a sync channel with seawall mounted."""
    def make(routes: Any) -> Any:
        channel = sync_channels.open(f"127.0.0.1:{interop[0]}", routes, mounting)
        return ipb2_grpc.TestServiceStub(channel)

    yield make
    sync_channels.close()
    assert interop[1].wait_idle(10), "a call was left running on the server"


@pytest.fixture
async def aio_stub(interop: tuple[int, InteropServicer], mounting: str,
                   aio_channels: AioChannels) -> AsyncIterator[Any]:
    """The grpc.aio twin of ``sync_stub``."""
    def make(routes: Any) -> Any:
        channel = aio_channels.open(f"127.0.0.1:{interop[0]}", routes, mounting)
        return ipb2_grpc.TestServiceStub(channel)

    yield make
    await aio_channels.close()
    assert interop[1].wait_idle(10), "a call was left running on the server"


# ---------------------------------------------------------------------------
# a long stream outlives Timeout.attempt


def test_long_server_stream_outlives_the_attempt_timeout_sync(sync_stub: Any) -> None:
    """Six messages 0.15 s apart (0.9 s) with Timeout(attempt=0.3) and no caller timeout:
    all six arrive and the call ends OK, as on a plain channel."""
    responses = sync_stub(point(0.3)).StreamingOutputCall(spaced(6, 0.15))
    assert len(list(responses)) == 6
    assert responses.code() is OK


async def test_long_server_stream_outlives_the_attempt_timeout_aio(aio_stub: Any) -> None:
    """grpc.aio: the same six messages all arrive."""
    call = aio_stub(point(0.3)).StreamingOutputCall(spaced(6, 0.15))
    assert len([r async for r in call]) == 6
    assert await call.code() is OK


def test_long_bidi_stream_outlives_the_attempt_timeout_sync(sync_stub: Any) -> None:
    """A duplex call answering six messages 0.15 s apart outlives Timeout(attempt=0.3)."""
    request = spaced(6, 0.15)
    with Pipe() as pipe:
        responses = sync_stub(sw_grpc.Route(point(0.3), idempotent=True)).FullDuplexCall(pipe)
        pipe.add(ipb2.StreamingOutputCallRequest(response_parameters=request.response_parameters))
        pipe.close()
        assert len(list(responses)) == 6
    assert responses.code() is OK


async def test_long_bidi_stream_outlives_the_attempt_timeout_aio(aio_stub: Any) -> None:
    """grpc.aio: the same duplex call."""
    pipe = AsyncPipe()
    call = aio_stub(sw_grpc.Route(point(0.3), idempotent=True)).FullDuplexCall(pipe)
    pipe.add(spaced(6, 0.15))
    pipe.close()
    assert len([r async for r in call]) == 6
    assert await call.code() is OK


# ---------------------------------------------------------------------------
# the first message is still bounded by Timeout.attempt


@pytest.mark.parametrize(("idempotent", "attempts"), [(False, 1), (True, 3)])
def test_first_message_not_in_time_ends_deadline_exceeded_sync(
        sync_stub: Any, idempotent: bool, attempts: int) -> None:
    """No message within Timeout(attempt=0.2) (the server would wait 5 s): DEADLINE_EXCEEDED
    with gRPC's details, after one attempt, or three on an idempotent route; each attempt is
    cancelled on the server."""
    p = point(0.2)
    started = time.monotonic()
    responses = sync_stub(sw_grpc.Route(p, idempotent=idempotent)).StreamingOutputCall(
        spaced(1, 5.0))
    with pytest.raises(grpc.RpcError) as info:
        next(responses)
    elapsed = time.monotonic() - started
    assert (info.value.code(), info.value.details()) == (DEADLINE_EXCEEDED, "Deadline Exceeded")
    assert any("Timeout.attempt (0.2 s)" in n for n in getattr(info.value, "__notes__", []))
    assert (responses.code(), responses.details()) == (DEADLINE_EXCEEDED, "Deadline Exceeded")
    assert 0.2 * attempts <= elapsed < 4.0
    assert p.stats().attempts == attempts
    assert p.stats().failures_by_category["timeout"] == 1


@pytest.mark.parametrize(("idempotent", "attempts"), [(False, 1), (True, 3)])
async def test_first_message_not_in_time_ends_deadline_exceeded_aio(
        aio_stub: Any, idempotent: bool, attempts: int) -> None:
    """grpc.aio: the same."""
    p = point(0.2)
    started = time.monotonic()
    call = aio_stub(sw_grpc.Route(p, idempotent=idempotent)).StreamingOutputCall(spaced(1, 5.0))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call.read()
    elapsed = time.monotonic() - started
    assert (info.value.code(), info.value.details()) == (DEADLINE_EXCEEDED, "Deadline Exceeded")
    assert any("Timeout.attempt (0.2 s)" in n for n in getattr(info.value, "__notes__", []))
    assert (await call.code(), await call.details()) == (DEADLINE_EXCEEDED, "Deadline Exceeded")
    assert 0.2 * attempts <= elapsed < 4.0
    assert p.stats().attempts == attempts


def test_code_without_reading_waits_only_for_the_first_message_limit_sync(
        sync_stub: Any) -> None:
    """``code()`` on a stream nobody reads settles at Timeout.attempt, not at the server's pace."""
    responses = sync_stub(point(0.2)).StreamingOutputCall(spaced(1, 5.0))
    started = time.monotonic()
    assert responses.code() is DEADLINE_EXCEEDED
    assert time.monotonic() - started < 4.0


async def test_code_without_reading_waits_only_for_the_first_message_limit_aio(
        aio_stub: Any) -> None:
    """grpc.aio: the same."""
    call = aio_stub(point(0.2)).StreamingOutputCall(spaced(1, 5.0))
    started = time.monotonic()
    assert await call.code() is DEADLINE_EXCEEDED
    assert time.monotonic() - started < 4.0


# ---------------------------------------------------------------------------
# the caller's deadline and Timeout.total still end a long stream


@pytest.mark.parametrize("limits", ["caller", "total"])
def test_call_deadline_still_ends_a_long_stream_sync(sync_stub: Any, limits: str) -> None:
    """Messages 0.2 s apart with a 0.5 s budget (the caller's timeout=, or Timeout.total): gRPC's
    own DEADLINE_EXCEEDED after the messages that fit."""
    if limits == "caller":
        responses = sync_stub(point(30)).StreamingOutputCall(spaced(10, 0.2), timeout=0.5)
    else:
        responses = sync_stub(point(0.3, total=0.5)).StreamingOutputCall(spaced(10, 0.2))
    got = []
    with pytest.raises(grpc.RpcError) as info:
        for r in responses:
            got.append(r)
    assert info.value.code() is DEADLINE_EXCEEDED
    assert 1 <= len(got) <= 3


@pytest.mark.parametrize("limits", ["caller", "total"])
async def test_call_deadline_still_ends_a_long_stream_aio(aio_stub: Any, limits: str) -> None:
    """grpc.aio: the same."""
    if limits == "caller":
        call = aio_stub(point(30)).StreamingOutputCall(spaced(10, 0.2), timeout=0.5)
    else:
        call = aio_stub(point(0.3, total=0.5)).StreamingOutputCall(spaced(10, 0.2))
    got = []
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for r in call:
            got.append(r)
    assert info.value.code() is DEADLINE_EXCEEDED
    assert 1 <= len(got) <= 3


# ---------------------------------------------------------------------------
# an attempt ended by the first-message limit is retried (idempotent routes)


@pytest.fixture
def echo_sync(sync_target: str, mounting: str, sync_channels: SyncChannels) -> Any:
    """make(routes) -> an Echo stub over a sync channel with seawall mounted."""
    def make(routes: Any) -> Any:
        return pb2_grpc.EchoStub(sync_channels.open(sync_target, routes, mounting))

    return make


@pytest.fixture
def echo_aio(sync_target: str, mounting: str, aio_channels: AioChannels) -> Any:
    """The grpc.aio twin of ``echo_sync`` (to the same sync server)."""
    def make(routes: Any) -> Any:
        return pb2_grpc.EchoStub(aio_channels.open(sync_target, routes, mounting))

    return make


def test_stalled_first_attempt_is_retried_sync(echo_sync: Any, backend: Backend) -> None:
    """Attempt 1 stalls past Timeout(attempt=0.3): it is cancelled on the server and the retry
    streams; no attempt carried the attempt timeout on the wire (no caller deadline)."""
    backend.plan("k", delay=5.0, delay_attempts=1)
    stub = echo_sync(sw_grpc.Route(point(0.3), idempotent=True))
    replies = list(stub.ServerStream(pb2.EchoRequest(key="k", text="t", count=3)))
    assert [(r.text, r.attempt) for r in replies] == [("t-0", 2), ("t-1", 2), ("t-2", 2)]
    seen = backend.attempts("k")
    assert [s.cancelled for s in seen] == [True, False]
    assert [s.time_remaining for s in seen] == [None, None]


async def test_stalled_first_attempt_is_retried_aio(echo_aio: Any, backend: Backend) -> None:
    """grpc.aio: the same."""
    backend.plan("k", delay=5.0, delay_attempts=1)
    stub = echo_aio(sw_grpc.Route(point(0.3), idempotent=True))
    call = stub.ServerStream(pb2.EchoRequest(key="k", text="t", count=3))
    replies = [r async for r in call]
    assert [(r.text, r.attempt) for r in replies] == [("t-0", 2), ("t-1", 2), ("t-2", 2)]
    seen = backend.attempts("k")
    assert [s.cancelled for s in seen] == [True, False]
    assert [s.time_remaining for s in seen] == [None, None]


def test_stalled_bidi_is_retried_and_keeps_the_callers_stream_sync(
        echo_sync: Any, backend: Backend) -> None:
    """A ping-pong whose first attempt stalls past Timeout(attempt=0.3) is retried with the
    kept message; the next message, drawn while the stalled attempt waited, goes to the retry."""
    backend.plan("k", delay=5.0, delay_attempts=1)
    with Pipe() as pipe:
        pipe.add(pb2.EchoRequest(key="k", text="a"))
        responses = echo_sync(sw_grpc.Route(point(0.3), idempotent=True)).Bidi(pipe)
        first = next(responses)
        assert (first.text, first.attempt) == ("a", 2)
        pipe.add(pb2.EchoRequest(key="k", text="b"))
        assert next(responses).text == "b"
        pipe.close()
        assert list(responses) == []
    assert [s.received for s in backend.attempts("k")] == [[], ["a", "b"]]


async def test_stalled_bidi_is_retried_and_keeps_the_callers_stream_aio(
        echo_aio: Any, backend: Backend) -> None:
    """grpc.aio: cancelling the stalled attempt cancels its request consumer, but not the
    caller's async iterator: "b" still reaches the retry."""
    backend.plan("k", delay=5.0, delay_attempts=1)
    pipe = AsyncPipe()
    pipe.add(pb2.EchoRequest(key="k", text="a"))
    call = echo_aio(sw_grpc.Route(point(0.3), idempotent=True)).Bidi(pipe)
    first = await call.read()
    assert (first.text, first.attempt) == ("a", 2)
    pipe.add(pb2.EchoRequest(key="k", text="b"))
    assert (await call.read()).text == "b"
    pipe.close()
    assert await call.read() is grpc.aio.EOF
    assert [s.received for s in backend.attempts("k")] == [[], ["a", "b"]]
