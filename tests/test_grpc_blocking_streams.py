"""Request streams fed by iterators that block, retried: nothing waits on the caller's iterator.

A client that sends its next message only after a reply (ping-pong), or
that waits on a queue, leaves gRPC's request consumer blocked inside the
iterator. When such an attempt fails with a retryable status before its
first response, the caller must get the retry (or the status) at once, as
a plain channel gives the status at once; and a message the caller hands
over while the failed attempt was waiting for it goes to the retry.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import grpc
import grpc.aio
import pytest

import seawall
from seawall.interceptors import grpc as sw_grpc
from tests.grpc_support.calls import req
from tests.grpc_support.interop import AsyncPipe, Pipe
from tests.grpc_support.mounts import MOUNTINGS, AioChannels, SyncChannels
from tests.grpc_support.servers import Backend, pb2_grpc

pytest_plugins = ["tests.grpc_support.fixtures"]

UNAVAILABLE = grpc.StatusCode.UNAVAILABLE
DEADLINE_EXCEEDED = grpc.StatusCode.DEADLINE_EXCEEDED
BOUND = 10.0  # seconds: far above what these calls take, far below "forever"


def point(**policies: Any) -> seawall.IntegrationPoint:
    return seawall.IntegrationPoint(
        "echo", retry=seawall.Retry(attempts=3, backoff=seawall.Backoff.constant(0.01),
                                    budget=None), **policies)


@pytest.fixture
def sync_stub(sync_target: str, sync_channels: SyncChannels) -> Any:
    """make(routes, mounting) -> an Echo stub over a sync channel with seawall mounted
    (``routes`` ``None``: plain)."""
    def make(routes: Any, mounting: str) -> Any:
        return pb2_grpc.EchoStub(sync_channels.open(sync_target, routes, mounting))

    return make


def in_thread(fn: Any) -> tuple[threading.Thread, list[Any]]:
    """Run ``fn`` on a daemon thread; the list gets its result or the exception it raised."""
    out: list[Any] = []

    def run() -> None:
        try:
            out.append(fn())
        except Exception as exc:
            out.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


# (routes, the failing code, the mounting); a plain channel needs no mounting
ROUTES = [pytest.param(None, UNAVAILABLE, "", id="plain")] + [
    pytest.param(kind, code, mounting, id=f"{kind}-{mounting}")
    for kind, code in (("point", UNAVAILABLE), ("idempotent", DEADLINE_EXCEEDED))
    for mounting in MOUNTINGS
]


def routes_for(kind: str | None) -> Any:
    if kind is None:
        return None
    if kind == "point":
        return point()
    return sw_grpc.Route(point(), idempotent=True)


# ---------------------------------------------------------------------------
# sync


@pytest.mark.parametrize(("kind", "code", "mounting"), ROUTES)
@pytest.mark.parametrize("path", ["blocking", "future"])
def test_client_stream_failing_while_the_iterator_blocks_ends_at_once_sync(
        sync_stub: Any, backend: Backend, kind: str | None, code: grpc.StatusCode,
        mounting: str, path: str) -> None:
    """The server fails every attempt after one message, the iterator waits for more: the
    caller gets the status after the retries, not never (blocking call and ``.future()``)."""
    backend.plan("k", fail=9, read=1, code=code)
    stub = sync_stub(routes_for(kind), mounting)
    with Pipe() as pipe:
        pipe.add(req("k", "a"))
        if path == "blocking":
            thread, out = in_thread(lambda: stub.ClientStream(pipe))
        else:
            thread, out = in_thread(lambda: stub.ClientStream.future(pipe).exception(BOUND))
        thread.join(BOUND)
        assert out, "the call never ended"
    assert isinstance(out[0], grpc.RpcError) and out[0].code() is code
    attempts = backend.attempts("k")
    assert len(attempts) == (1 if kind is None else 3)
    assert all(a.received == ["a"] for a in attempts)  # each retry replayed the kept message


@pytest.mark.parametrize(("kind", "code", "mounting"), ROUTES)
def test_bidi_failing_while_the_iterator_blocks_ends_at_once_sync(
        sync_stub: Any, backend: Backend, kind: str | None, code: grpc.StatusCode,
        mounting: str) -> None:
    """A bidi call fails on its first message while the iterator waits for a reply: the
    reader gets the status after the retries."""
    backend.plan("k", fail=9, code=code)
    stub = sync_stub(routes_for(kind), mounting)
    with Pipe() as pipe:
        pipe.add(req("k", "a"))
        responses = stub.Bidi(pipe)
        thread, out = in_thread(lambda: next(responses))
        thread.join(BOUND)
        assert out, "the call never ended"
    assert isinstance(out[0], grpc.RpcError) and out[0].code() is code
    assert len(backend.attempts("k")) == (1 if kind is None else 3)


def test_message_drawn_for_a_failed_attempt_goes_to_the_retry_sync(
        sync_stub: Any, backend: Backend, mounting: str) -> None:
    """Ping-pong: attempt 1 fails on "a" while gRPC waits in the iterator for the next message;
    the retry replays "a", and "b", handed over later, reaches the retry too."""
    backend.plan("k", fail=1)
    stub = sync_stub(point(), mounting)
    with Pipe() as pipe:
        pipe.add(req("k", "a"))
        responses = stub.Bidi(pipe)
        thread, out = in_thread(lambda: next(responses))
        thread.join(BOUND)
        assert out and out[0].text == "a" and out[0].attempt == 2
        pipe.add(req("k", "b"))
        thread, out = in_thread(lambda: next(responses))
        thread.join(BOUND)
        assert out and out[0].text == "b"
        pipe.close()
        assert list(responses) == []
    assert [a.received for a in backend.attempts("k")] == [[], ["a", "b"]]
    assert pipe.drawn == 2


def test_many_threads_retrying_blocked_streams_at_once_sync(
        sync_stub: Any, backend: Backend, mounting: str) -> None:
    """16 threads, each a client stream that fails twice while its iterator waits: all end."""
    p = point(bulkhead=seawall.Bulkhead(max_concurrent=64, max_wait=5))
    stub = sync_stub(p, mounting)
    pipes, threads = [], []
    for n in range(16):
        backend.plan(f"k{n}", fail=2, read=1)
        pipe = Pipe()
        pipe.add(req(f"k{n}", "a"))
        pipes.append(pipe)
        threads.append(in_thread(lambda pipe=pipe: stub.ClientStream(pipe)))
    try:
        for thread, _ in threads:
            thread.join(BOUND)
        assert [out[0].attempt for _, out in threads] == [3] * 16
    finally:
        for pipe in pipes:
            pipe.close()
    assert (p.stats().successes, p.stats().retries) == (16, 32)


# ---------------------------------------------------------------------------
# grpc.aio


@pytest.fixture
def aio_stub(sync_target: str, aio_channels: AioChannels) -> Any:
    """The grpc.aio twin of ``sync_stub`` (to the same sync server)."""
    def make(routes: Any, mounting: str) -> Any:
        return pb2_grpc.EchoStub(aio_channels.open(sync_target, routes, mounting))

    return make


@pytest.mark.parametrize(("kind", "code", "mounting"), ROUTES)
async def test_client_stream_failing_while_the_iterator_blocks_ends_at_once_aio(
        aio_stub: Any, backend: Backend, kind: str | None, code: grpc.StatusCode,
        mounting: str) -> None:
    """grpc.aio: the retries of a client stream whose iterator waits on a queue send the kept
    message at once; the caller gets the server's status, not its own deadline."""
    backend.plan("k", fail=9, read=1, code=code)
    stub = aio_stub(routes_for(kind), mounting)
    pipe = AsyncPipe()
    pipe.add(req("k", "a"))
    started = time.monotonic()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.ClientStream(pipe, timeout=BOUND)
    assert info.value.code() is code
    assert time.monotonic() - started < BOUND / 2
    attempts = backend.attempts("k")
    assert len(attempts) == (1 if kind is None else 3)
    assert all(a.received == ["a"] for a in attempts)
    pipe.close()


async def test_message_drawn_for_a_failed_attempt_goes_to_the_retry_aio(
        aio_stub: Any, backend: Backend, mounting: str) -> None:
    """grpc.aio ping-pong: "b", handed over while the failed attempt was waiting for it, is
    sent by the retry."""
    backend.plan("k", fail=1)
    pipe = AsyncPipe()
    pipe.add(req("k", "a"))
    call = aio_stub(point(), mounting).Bidi(pipe)
    first = await asyncio.wait_for(call.read(), BOUND)
    assert (first.text, first.attempt) == ("a", 2)
    pipe.add(req("k", "b"))
    assert (await asyncio.wait_for(call.read(), BOUND)).text == "b"
    pipe.close()
    assert await asyncio.wait_for(call.read(), BOUND) is grpc.aio.EOF
    assert [a.received for a in backend.attempts("k")] == [[], ["a", "b"]]
    assert pipe.drawn == 2


async def test_many_tasks_retrying_blocked_streams_at_once_aio(
        aio_stub: Any, backend: Backend, mounting: str) -> None:
    """32 tasks, each a client stream that fails twice while its iterator waits: all end."""
    p = point(bulkhead=seawall.Bulkhead(max_concurrent=64, max_wait=5))
    stub = aio_stub(p, mounting)
    pipes = []
    for n in range(32):
        backend.plan(f"k{n}", fail=2, read=1)
        pipe = AsyncPipe()
        pipe.add(req(f"k{n}", "a"))
        pipes.append(pipe)
    replies = await asyncio.wait_for(
        asyncio.gather(*(stub.ClientStream(pipe) for pipe in pipes)), BOUND)
    assert [r.attempt for r in replies] == [3] * 32
    assert (p.stats().successes, p.stats().retries) == (32, 64)
    for pipe in pipes:
        pipe.close()


# ---------------------------------------------------------------------------
# the replay buffer itself, with threads


def test_replay_buffer_hands_a_message_drawn_for_a_retired_view_to_the_next() -> None:
    """A view blocked in the caller's iterator never holds up a new view; what it draws goes to
    the new view, and past ``limit`` no further view starts and nothing more is kept."""
    from seawall.interceptors._grpc_replay import ReplayBuffer

    with Pipe() as pipe:
        pipe.add("a")
        pipe.add("b")
        buffer = ReplayBuffer(pipe, limit=2)
        first = buffer.view()
        assert first is not None
        got_first: list[Any] = []
        t1 = threading.Thread(target=lambda: got_first.extend(first), daemon=True)
        t1.start()
        assert _wait(lambda: pipe.drawn == 2 and got_first == ["a", "b"])  # now blocked on "c"
        second = buffer.view()  # at once, although t1 is inside the caller's iterator
        assert second is not None
        got_second: list[Any] = []
        t2 = threading.Thread(target=lambda: got_second.extend(second), daemon=True)
        t2.start()
        assert _wait(lambda: got_second == ["a", "b"])
        pipe.add("c")  # drawn by t1 for the retired view: the second view sends it
        t1.join(BOUND)
        assert got_first == ["a", "b"] and not t1.is_alive()
        assert _wait(lambda: got_second == ["a", "b", "c"])
        assert buffer.view() is None  # three drawn, limit two: no replay any more
        pipe.add("d")
        assert _wait(lambda: got_second == ["a", "b", "c", "d"])
    t2.join(BOUND)
    assert not t2.is_alive() and pipe.drawn == 4


def _wait(predicate: Any) -> bool:
    end = time.monotonic() + BOUND
    while not predicate():
        if time.monotonic() > end:
            return False
        time.sleep(0.005)
    return True
