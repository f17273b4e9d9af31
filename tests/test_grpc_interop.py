"""gRPC's credential-free interop cases, through a plain channel and through seawall.

Written from gRPC's interop test descriptions (doc/interop-test-descriptions.md
in grpc/grpc) against our own TestService-shaped server
(tests/grpc_support/interop.py). Every case runs through a plain channel and
through each routing (one point, a routing table and an idempotent route;
the points with and without a breaker), each mounted both ways (gRPC's
interceptors and seawall's channel wrapper), sync and grpc.aio, and asserts
what the descriptions say a plain channel shows: codes, details, metadata,
message counts and sizes, cancellation. Streaming requests come from iterators that
block until the test feeds them, as real clients' do.

The points are those of a transparent mount: ``Retry(attempts=3)``,
``Bulkhead(64, max_wait=5)``, ``Timeout(attempt=30)``. After every test no
call may still run on the server.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any, NamedTuple

import grpc
import grpc.aio
import pytest

import seawall
from seawall.interceptors import grpc as sw_grpc
from tests.grpc_support.interop import (
    ECHO_INITIAL,
    ECHO_TRAILING,
    SERVICE,
    AsyncPipe,
    ByteCounter,
    InteropServicer,
    Pipe,
    pb2,
    pb2_grpc,
    start_interop_server,
    zeros,
)
from tests.grpc_support.mounts import MOUNTINGS
from tests.grpc_support.mounts import aio_channel as mounted_aio_channel
from tests.grpc_support.mounts import sync_channel as mounted_sync_channel
from tests.grpc_support.servers import free_port

OK = grpc.StatusCode.OK
CANCELLED = grpc.StatusCode.CANCELLED

ROUTINGS = ["point", "point+breaker", "table", "table+breaker", "idempotent", "idempotent+breaker"]
# "plain", or "<routing>/<mounting>": each routing through the interceptors and the channel wrapper
MOUNTS = ["plain"] + [f"{routing}/{how}" for how in MOUNTINGS for routing in ROUTINGS]


def _point(name: str, breaker: bool) -> seawall.IntegrationPoint:
    return seawall.IntegrationPoint(
        name,
        retry=seawall.Retry(attempts=3),
        bulkhead=seawall.Bulkhead(max_concurrent=64, max_wait=5),
        timeout=seawall.Timeout(attempt=30),
        breaker=seawall.CircuitBreaker() if breaker else None,
    )


def routes_for(mount: str) -> Any:
    """What seawall is mounted with (``None``: a plain channel)."""
    kind, _, extra = mount.partition("/")[0].partition("+")
    breaker = extra == "breaker"
    if kind == "plain":
        return None
    if kind == "point":
        return _point("interop", breaker)
    if kind == "table":
        return {
            f"/{SERVICE}/FullDuplexCall": sw_grpc.Route(_point("duplex", breaker)),
            f"/{SERVICE}/*": _point("service", breaker),
            "*": _point("anything-else", breaker),
        }
    assert kind == "idempotent"
    return sw_grpc.Route(_point("interop", breaker), idempotent=True)


def sync_channel(target: str, mount: str) -> grpc.Channel:
    return mounted_sync_channel(target, routes_for(mount), mount.partition("/")[2])


def aio_channel(target: str, mount: str) -> grpc.aio.Channel:
    return mounted_aio_channel(target, routes_for(mount), mount.partition("/")[2])


class Stubs(NamedTuple):
    test: Any
    other: Any  # UnimplementedService


@pytest.fixture(scope="module")
def interop() -> Iterator[tuple[int, InteropServicer]]:
    """One TestService server for the module: ``(port, servicer)``."""
    server, port, servicer = start_interop_server()
    yield port, servicer
    server.stop(None).wait(5)


@pytest.fixture(autouse=True)
def server_left_idle(interop: tuple[int, InteropServicer]) -> Iterator[None]:
    """Every case ends with no call running on the server (cancellations reached it)."""
    yield
    assert interop[1].wait_idle(10), "a call was left running on the server"


@pytest.fixture(params=MOUNTS)
def mount(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def sync_stubs(interop: tuple[int, InteropServicer], mount: str) -> Iterator[Stubs]:
    channel = sync_channel(f"127.0.0.1:{interop[0]}", mount)
    yield Stubs(pb2_grpc.TestServiceStub(channel), pb2_grpc.UnimplementedServiceStub(channel))
    channel.close()


@pytest.fixture
async def aio_stubs(interop: tuple[int, InteropServicer], mount: str) -> AsyncIterator[Stubs]:
    channel = aio_channel(f"127.0.0.1:{interop[0]}", mount)
    yield Stubs(pb2_grpc.TestServiceStub(channel), pb2_grpc.UnimplementedServiceStub(channel))
    await channel.close()


def sizes(responses: Any) -> list[int]:
    return [len(r.payload.body) for r in responses]


def large_request() -> Any:
    return pb2.SimpleRequest(response_size=314159, payload=zeros(271828))


def duplex_request(size: int, payload: int = 0, **fields: Any) -> Any:
    return pb2.StreamingOutputCallRequest(
        response_parameters=[pb2.ResponseParameters(size=size)], payload=zeros(payload), **fields)


def feed(pipe: Pipe, requests: list[Any]) -> threading.Thread:
    """Add ``requests`` to ``pipe`` from another thread, then close it."""
    def run() -> None:
        for r in requests:
            pipe.add(r)
        pipe.close()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


CLIENT_SIZES = [27182, 8, 1828, 45904]  # aggregated: 74922
SERVER_SIZES = [31415, 9, 2653, 58979]
PING_PONG = list(zip(SERVER_SIZES, CLIENT_SIZES, strict=True))
STATUS_MESSAGE = "test status message"
SPECIAL_MESSAGE = "\t\ntest with whitespace\r\nand Unicode BMP \u263a and non-BMP \U0001f608\t\n"
METADATA = ((ECHO_INITIAL, "test_initial_metadata_value"), (ECHO_TRAILING, b"\xab\xab\xab"))


def echoed(metadata: Any, key: str) -> list[Any]:
    return [item[1] for item in metadata or () if item[0] == key]


# ---------------------------------------------------------------------------
# empty_unary, large_unary


def test_empty_unary_sync(sync_stubs: Stubs) -> None:
    """empty_unary: EmptyCall with the default Empty answers an Empty of zero bytes."""
    reply, call = sync_stubs.test.EmptyCall.with_call(pb2.Empty())
    assert isinstance(reply, pb2.Empty) and reply.ByteSize() == 0
    assert call.code() is OK


async def test_empty_unary_aio(aio_stubs: Stubs) -> None:
    """empty_unary, grpc.aio."""
    call = aio_stubs.test.EmptyCall(pb2.Empty())
    reply = await call
    assert isinstance(reply, pb2.Empty) and reply.ByteSize() == 0
    assert await call.code() is OK


def test_large_unary_sync(sync_stubs: Stubs) -> None:
    """large_unary: 271828 bytes up, a payload of 314159 zero bytes back."""
    reply = sync_stubs.test.UnaryCall(large_request())
    assert reply.payload.body == bytes(314159)


async def test_large_unary_aio(aio_stubs: Stubs) -> None:
    """large_unary, grpc.aio."""
    reply = await aio_stubs.test.UnaryCall(large_request())
    assert reply.payload.body == bytes(314159)


# ---------------------------------------------------------------------------
# client_streaming, server_streaming


def test_client_streaming_sync(sync_stubs: Stubs) -> None:
    """client_streaming: four payloads from a blocking iterator add up to 74922 bytes."""
    with Pipe() as pipe:
        feeder = feed(pipe, [pb2.StreamingInputCallRequest(payload=zeros(n)) for n in CLIENT_SIZES])
        reply, call = sync_stubs.test.StreamingInputCall.with_call(pipe)
        feeder.join(5)
    assert reply.aggregated_payload_size == 74922
    assert call.code() is OK
    assert pipe.drawn == 4


async def test_client_streaming_aio(aio_stubs: Stubs) -> None:
    """client_streaming, grpc.aio, from an async iterator fed while the call runs."""
    pipe = AsyncPipe()
    call = aio_stubs.test.StreamingInputCall(pipe)
    for n in CLIENT_SIZES:
        pipe.add(pb2.StreamingInputCallRequest(payload=zeros(n)))
        await asyncio.sleep(0)
    pipe.close()
    assert (await call).aggregated_payload_size == 74922
    assert await call.code() is OK


async def test_client_streaming_aio_write_api(aio_stubs: Stubs) -> None:
    """client_streaming, grpc.aio through ``call.write()`` (how gRPC's aio interop client does it)."""
    call = aio_stubs.test.StreamingInputCall()
    for n in CLIENT_SIZES:
        await call.write(pb2.StreamingInputCallRequest(payload=zeros(n)))
    await call.done_writing()
    assert (await call).aggregated_payload_size == 74922


def server_streaming_request() -> Any:
    return pb2.StreamingOutputCallRequest(
        response_parameters=[pb2.ResponseParameters(size=n) for n in SERVER_SIZES])


def test_server_streaming_sync(sync_stubs: Stubs) -> None:
    """server_streaming: exactly four responses, sized 31415, 9, 2653, 58979."""
    responses = sync_stubs.test.StreamingOutputCall(server_streaming_request())
    assert sizes(responses) == SERVER_SIZES
    assert responses.code() is OK


async def test_server_streaming_aio(aio_stubs: Stubs) -> None:
    """server_streaming, grpc.aio."""
    call = aio_stubs.test.StreamingOutputCall(server_streaming_request())
    assert sizes([r async for r in call]) == SERVER_SIZES
    assert await call.code() is OK


# ---------------------------------------------------------------------------
# ping_pong, empty_stream


def test_ping_pong_sync(sync_stubs: Stubs) -> None:
    """ping_pong: each request is sent only after the previous reply; four replies in order."""
    with Pipe() as pipe:
        responses = sync_stubs.test.FullDuplexCall(pipe)
        for size, payload in PING_PONG:
            pipe.add(duplex_request(size, payload))
            assert len(next(responses).payload.body) == size
        pipe.close()
        assert next(responses, None) is None
    assert responses.code() is OK


async def test_ping_pong_aio(aio_stubs: Stubs) -> None:
    """ping_pong, grpc.aio, from an async iterator that waits for each reply."""
    pipe = AsyncPipe()
    call = aio_stubs.test.FullDuplexCall(pipe)
    for size, payload in PING_PONG:
        pipe.add(duplex_request(size, payload))
        assert len((await call.read()).payload.body) == size
    pipe.close()
    assert await call.read() is grpc.aio.EOF
    assert await call.code() is OK


async def test_ping_pong_aio_write_api(aio_stubs: Stubs) -> None:
    """ping_pong, grpc.aio through ``write()``/``read()``."""
    call = aio_stubs.test.FullDuplexCall()
    for size, payload in PING_PONG:
        await call.write(duplex_request(size, payload))
        assert len((await call.read()).payload.body) == size
    await call.done_writing()
    assert await call.read() is grpc.aio.EOF
    assert await call.code() is OK


def test_empty_stream_sync(sync_stubs: Stubs) -> None:
    """empty_stream: a duplex call half-closed at once answers no message and OK."""
    with Pipe() as pipe:
        responses = sync_stubs.test.FullDuplexCall(pipe)
        pipe.close()
        assert list(responses) == []
    assert responses.code() is OK


async def test_empty_stream_aio(aio_stubs: Stubs) -> None:
    """empty_stream, grpc.aio."""
    pipe = AsyncPipe()
    call = aio_stubs.test.FullDuplexCall(pipe)
    pipe.close()
    assert [r async for r in call] == []
    assert await call.code() is OK


# ---------------------------------------------------------------------------
# cancel_after_begin, cancel_after_first_response, timeout_on_sleeping_server


def test_cancel_after_begin_sync(sync_stubs: Stubs) -> None:
    """cancel_after_begin: a client stream cancelled before any message ends CANCELLED."""
    with Pipe() as pipe:
        future = sync_stubs.test.StreamingInputCall.future(pipe)
        assert future.cancel()
        assert future.cancelled()
        assert future.code() is CANCELLED
        with pytest.raises(grpc.FutureCancelledError):
            future.result(timeout=5)


class _PassThrough:
    """A grpc.aio interceptor that only calls on (to show what any interceptor changes)."""

    async def _on(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(details, request)


class _UU(_PassThrough, grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    intercept_unary_unary = _PassThrough._on


class _US(_PassThrough, grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[misc]
    intercept_unary_stream = _PassThrough._on


class _SU(_PassThrough, grpc.aio.StreamUnaryClientInterceptor):  # type: ignore[misc]
    intercept_stream_unary = _PassThrough._on


class _SS(_PassThrough, grpc.aio.StreamStreamClientInterceptor):  # type: ignore[misc]
    intercept_stream_stream = _PassThrough._on


PASS_THROUGH = [_UU(), _US(), _SU(), _SS()]


async def _cancel_at_begin(stub: Any, style: str) -> tuple[bool, Any]:
    """Start a client stream, cancel it at once: ``(cancelled() right after, the call)``."""
    call = stub.StreamingInputCall(AsyncPipe()) if style == "iterator" else \
        stub.StreamingInputCall()
    assert call.cancel()
    return call.cancelled(), call


@pytest.mark.parametrize("style", ["iterator", "write"])
async def test_cancel_after_begin_aio(aio_stubs: Stubs, mount: str, style: str,
                                      interop: tuple[int, InteropServicer]) -> None:
    """cancel_after_begin, grpc.aio: CANCELLED; ``cancelled()`` right after ``cancel()`` is
    True on a plain channel and through the channel wrapper, and what grpc.aio's own
    InterceptedCall says behind any interceptor (False) through the interceptors."""
    at_once, call = await _cancel_at_begin(aio_stubs.test, style)
    assert await call.code() is CANCELLED
    with pytest.raises(asyncio.CancelledError):
        await call
    assert call.cancelled()
    if mount == "plain" or mount.endswith("/wrapper"):
        assert at_once is True
        return
    async with grpc.aio.insecure_channel(f"127.0.0.1:{interop[0]}",
                                         interceptors=PASS_THROUGH) as channel:
        through_any, other = await _cancel_at_begin(pb2_grpc.TestServiceStub(channel), style)
        assert await other.code() is CANCELLED
    assert through_any is False  # gRPC's own difference, not seawall's
    assert at_once is through_any


def test_cancel_after_first_response_sync(sync_stubs: Stubs) -> None:
    """cancel_after_first_response: a duplex call cancelled after its first reply ends CANCELLED."""
    with Pipe() as pipe:
        responses = sync_stubs.test.FullDuplexCall(pipe)
        pipe.add(duplex_request(31415, 27182))
        assert len(next(responses).payload.body) == 31415
        assert responses.cancel()
        assert responses.cancelled()
        assert responses.code() is CANCELLED
        with pytest.raises(grpc.RpcError) as info:
            next(responses)
    assert info.value.code() is CANCELLED


async def test_cancel_after_first_response_aio(aio_stubs: Stubs) -> None:
    """cancel_after_first_response, grpc.aio."""
    pipe = AsyncPipe()
    call = aio_stubs.test.FullDuplexCall(pipe)
    pipe.add(duplex_request(31415, 27182))
    assert len((await call.read()).payload.body) == 31415
    assert call.cancel()
    assert await call.code() is CANCELLED
    assert call.cancelled()
    with pytest.raises(asyncio.CancelledError):
        await call.read()


SLEEPING_TIMEOUT = 0.05  # the description's 1 ms, made safe for a loaded machine


def test_timeout_on_sleeping_server_sync(sync_stubs: Stubs) -> None:
    """timeout_on_sleeping_server: a duplex call whose server never answers ends
    DEADLINE_EXCEEDED at the caller's deadline (the request stream stays open)."""
    with Pipe() as pipe:
        responses = sync_stubs.test.FullDuplexCall(pipe, timeout=SLEEPING_TIMEOUT)
        pipe.add(pb2.StreamingOutputCallRequest(payload=zeros(27182)))
        with pytest.raises(grpc.RpcError) as info:
            next(responses)
        assert info.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
        assert responses.code() is grpc.StatusCode.DEADLINE_EXCEEDED
        assert responses.details() == "Deadline Exceeded"


async def test_timeout_on_sleeping_server_aio(aio_stubs: Stubs) -> None:
    """timeout_on_sleeping_server, grpc.aio."""
    pipe = AsyncPipe()
    call = aio_stubs.test.FullDuplexCall(pipe, timeout=SLEEPING_TIMEOUT)
    pipe.add(pb2.StreamingOutputCallRequest(payload=zeros(27182)))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call.read()
    assert info.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert await call.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert await call.details() == "Deadline Exceeded"


# ---------------------------------------------------------------------------
# custom_metadata


def test_custom_metadata_sync(sync_stubs: Stubs) -> None:
    """custom_metadata: the ASCII header comes back as initial metadata and the binary one as
    trailing metadata, on a unary call and on a duplex call."""
    reply, call = sync_stubs.test.UnaryCall.with_call(large_request(), metadata=METADATA)
    assert len(reply.payload.body) == 314159
    assert echoed(call.initial_metadata(), ECHO_INITIAL) == ["test_initial_metadata_value"]
    assert echoed(call.trailing_metadata(), ECHO_TRAILING) == [b"\xab\xab\xab"]
    with Pipe() as pipe:
        responses = sync_stubs.test.FullDuplexCall(pipe, metadata=METADATA)
        pipe.add(duplex_request(314159, 271828))
        pipe.close()
        assert sizes(responses) == [314159]
    assert echoed(responses.initial_metadata(), ECHO_INITIAL) == ["test_initial_metadata_value"]
    assert echoed(responses.trailing_metadata(), ECHO_TRAILING) == [b"\xab\xab\xab"]


async def test_custom_metadata_aio(aio_stubs: Stubs) -> None:
    """custom_metadata, grpc.aio."""
    call = aio_stubs.test.UnaryCall(large_request(), metadata=METADATA)
    assert len((await call).payload.body) == 314159
    assert echoed(await call.initial_metadata(), ECHO_INITIAL) == ["test_initial_metadata_value"]
    assert echoed(await call.trailing_metadata(), ECHO_TRAILING) == [b"\xab\xab\xab"]
    pipe = AsyncPipe()
    stream = aio_stubs.test.FullDuplexCall(pipe, metadata=METADATA)
    pipe.add(duplex_request(314159, 271828))
    pipe.close()
    assert sizes([r async for r in stream]) == [314159]
    assert echoed(await stream.initial_metadata(), ECHO_INITIAL) == \
        ["test_initial_metadata_value"]
    assert echoed(await stream.trailing_metadata(), ECHO_TRAILING) == [b"\xab\xab\xab"]


# ---------------------------------------------------------------------------
# status_code_and_message, special_status_message


def status(message: str) -> Any:
    return pb2.EchoStatus(code=2, message=message)


def test_status_code_and_message_sync(sync_stubs: Stubs) -> None:
    """status_code_and_message: the code (UNKNOWN) and message the server was asked to end
    with reach the caller, on a unary call and on a duplex call."""
    with pytest.raises(grpc.RpcError) as info:
        sync_stubs.test.UnaryCall(pb2.SimpleRequest(response_status=status(STATUS_MESSAGE)))
    assert info.value.code() is grpc.StatusCode.UNKNOWN
    assert info.value.details() == STATUS_MESSAGE
    with Pipe() as pipe:
        responses = sync_stubs.test.FullDuplexCall(pipe)
        pipe.add(pb2.StreamingOutputCallRequest(response_status=status(STATUS_MESSAGE)))
        pipe.close()
        with pytest.raises(grpc.RpcError) as info:
            next(responses)
    assert info.value.code() is grpc.StatusCode.UNKNOWN
    assert info.value.details() == STATUS_MESSAGE
    assert responses.code() is grpc.StatusCode.UNKNOWN
    assert responses.details() == STATUS_MESSAGE


async def test_status_code_and_message_aio(aio_stubs: Stubs) -> None:
    """status_code_and_message, grpc.aio."""
    call = aio_stubs.test.UnaryCall(pb2.SimpleRequest(response_status=status(STATUS_MESSAGE)))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    assert info.value.code() is grpc.StatusCode.UNKNOWN
    assert info.value.details() == STATUS_MESSAGE
    assert await call.code() is grpc.StatusCode.UNKNOWN
    assert await call.details() == STATUS_MESSAGE
    pipe = AsyncPipe()
    stream = aio_stubs.test.FullDuplexCall(pipe)
    pipe.add(pb2.StreamingOutputCallRequest(response_status=status(STATUS_MESSAGE)))
    pipe.close()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stream.read()
    assert info.value.code() is grpc.StatusCode.UNKNOWN
    assert info.value.details() == STATUS_MESSAGE
    assert await stream.code() is grpc.StatusCode.UNKNOWN
    assert await stream.details() == STATUS_MESSAGE


def test_special_status_message_sync(sync_stubs: Stubs) -> None:
    """special_status_message: whitespace, a BMP and a non-BMP character survive in details."""
    with pytest.raises(grpc.RpcError) as info:
        sync_stubs.test.UnaryCall(pb2.SimpleRequest(response_status=status(SPECIAL_MESSAGE)))
    assert info.value.code() is grpc.StatusCode.UNKNOWN
    assert info.value.details() == SPECIAL_MESSAGE


async def test_special_status_message_aio(aio_stubs: Stubs) -> None:
    """special_status_message, grpc.aio."""
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await aio_stubs.test.UnaryCall(pb2.SimpleRequest(response_status=status(SPECIAL_MESSAGE)))
    assert info.value.code() is grpc.StatusCode.UNKNOWN
    assert info.value.details() == SPECIAL_MESSAGE


# ---------------------------------------------------------------------------
# unimplemented_method, unimplemented_service


def test_unimplemented_method_sync(sync_stubs: Stubs) -> None:
    """unimplemented_method: a method in the contract the server does not serve: UNIMPLEMENTED."""
    with pytest.raises(grpc.RpcError) as info:
        sync_stubs.test.UnimplementedCall(pb2.Empty())
    assert info.value.code() is grpc.StatusCode.UNIMPLEMENTED


async def test_unimplemented_method_aio(aio_stubs: Stubs) -> None:
    """unimplemented_method, grpc.aio."""
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await aio_stubs.test.UnimplementedCall(pb2.Empty())
    assert info.value.code() is grpc.StatusCode.UNIMPLEMENTED


def test_unimplemented_service_sync(sync_stubs: Stubs) -> None:
    """unimplemented_service: a service the server does not serve at all: UNIMPLEMENTED."""
    with pytest.raises(grpc.RpcError) as info:
        sync_stubs.other.UnimplementedCall(pb2.Empty())
    assert info.value.code() is grpc.StatusCode.UNIMPLEMENTED


async def test_unimplemented_service_aio(aio_stubs: Stubs) -> None:
    """unimplemented_service, grpc.aio."""
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await aio_stubs.other.UnimplementedCall(pb2.Empty())
    assert info.value.code() is grpc.StatusCode.UNIMPLEMENTED


# ---------------------------------------------------------------------------
# call options that must pass through: wait_for_ready, compression


def test_wait_for_ready_passes_through_sync(mount: str) -> None:
    """wait_for_ready=True waits for a server that is down (DEADLINE_EXCEEDED at the
    deadline); without it the call fails fast with UNAVAILABLE."""
    channel = sync_channel(f"127.0.0.1:{free_port()}", mount)
    stub = pb2_grpc.TestServiceStub(channel)
    with pytest.raises(grpc.RpcError) as waited:
        stub.EmptyCall(pb2.Empty(), timeout=0.3, wait_for_ready=True)
    with pytest.raises(grpc.RpcError) as fast:
        stub.EmptyCall(pb2.Empty(), timeout=5)
    channel.close()
    assert waited.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert fast.value.code() is grpc.StatusCode.UNAVAILABLE


async def test_wait_for_ready_passes_through_aio(mount: str) -> None:
    """wait_for_ready, grpc.aio."""
    async with aio_channel(f"127.0.0.1:{free_port()}", mount) as channel:
        stub = pb2_grpc.TestServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as waited:
            await stub.EmptyCall(pb2.Empty(), timeout=0.3, wait_for_ready=True)
        with pytest.raises(grpc.aio.AioRpcError) as fast:
            await stub.EmptyCall(pb2.Empty(), timeout=5)
    assert waited.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert fast.value.code() is grpc.StatusCode.UNAVAILABLE


@pytest.fixture
def counter(interop: tuple[int, InteropServicer]) -> Iterator[ByteCounter]:
    relay = ByteCounter(interop[0])
    yield relay
    relay.close()


def test_compression_passes_through_sync(mount: str, counter: ByteCounter) -> None:
    """compression=Gzip shrinks large_unary's 271828 zero bytes on the wire; without it they
    cross in full."""
    channel = sync_channel(f"127.0.0.1:{counter.port}", mount)
    stub = pb2_grpc.TestServiceStub(channel)
    stub.EmptyCall(pb2.Empty())  # connected: what follows is the calls' own bytes
    before = counter.sent
    assert len(stub.UnaryCall(large_request(), compression=grpc.Compression.Gzip)
               .payload.body) == 314159
    compressed = counter.sent - before
    stub.UnaryCall(large_request())
    plain = counter.sent - before - compressed
    channel.close()
    assert compressed < 20_000 < 271_828 <= plain


async def test_compression_passes_through_aio(mount: str, counter: ByteCounter) -> None:
    """compression, grpc.aio."""
    async with aio_channel(f"127.0.0.1:{counter.port}", mount) as channel:
        stub = pb2_grpc.TestServiceStub(channel)
        await stub.EmptyCall(pb2.Empty())
        before = counter.sent
        reply = await stub.UnaryCall(large_request(), compression=grpc.Compression.Gzip)
        assert len(reply.payload.body) == 314159
        compressed = counter.sent - before
        await stub.UnaryCall(large_request())
        plain = counter.sent - before - compressed
    assert compressed < 20_000 < 271_828 <= plain
