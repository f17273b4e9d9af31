"""The channel wrappers (``resilient_channel``, ``aio_resilient_channel``) against real servers.

Most cases run over both mountings, for what the rest of the suite does not
reach: result rules, fallbacks for refusals, bulkhead waits, many callers
at once, grpc.aio calls that nobody awaits or that several readers share.
The rest is the wrappers' own: channel methods act on the wrapped channel,
unrouted methods get the wrapped channel's own multicallable, and a
wrapped channel may itself carry interceptors.
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
from seawall.testing import FakeClock
from tests.grpc_support.servers import ATTEMPT, Backend, pb2, pb2_grpc

pytest_plugins = ["tests.grpc_support.fixtures"]

UNARY = "/seawall.test.v1.Echo/Unary"
BOUND = 10.0  # seconds: far above what these calls take, far below "forever"
RETRY_FIRST = seawall.Classification(seawall.Category.TRANSIENT, retry=True, breaker=False)


def point(**policies: Any) -> seawall.IntegrationPoint:
    policies.setdefault("retry", seawall.Retry(attempts=3, backoff=seawall.Backoff.constant(0.01),
                                               budget=None))
    return seawall.IntegrationPoint("echo", clock=policies.pop("clock", FakeClock()), **policies)


def req(key: str, text: str = "hi") -> Any:
    return pb2.EchoRequest(key=key, text=text)


def first_attempt_rejected() -> seawall.Classifier:
    """A result rule: a reply from attempt 1 is a (retryable) failure."""
    return seawall.Classifier().on_result(lambda reply: RETRY_FIRST if reply.attempt == 1 else None)


def wait_for(predicate: Any, seconds: float = BOUND) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.005)


async def await_for(predicate: Any, seconds: float = BOUND) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


# ---------------------------------------------------------------------------
# both mountings, sync


@pytest.mark.parametrize("path", ["call", "with_call", "future"])
def test_result_rule_retries_a_rejected_reply_sync(sync_stub: Any, backend: Backend,
                                                    path: str) -> None:
    """A result rule that rejects attempt 1's reply: retried, the caller gets attempt 2's."""
    p = point(classifier=first_attempt_rejected())
    unary = sync_stub(p).Unary
    if path == "call":
        reply = unary(req("k"))
    elif path == "with_call":
        reply, call = unary.with_call(req("k"))
        assert call.code() is grpc.StatusCode.OK
    else:
        reply = unary.future(req("k")).result(timeout=BOUND)
    assert reply.attempt == 2
    assert (p.stats().successes, p.stats().retries, p.stats().failures) == (1, 1, 0)


def test_fallback_answers_a_refusal_sync(sync_stub: Any, backend: Backend) -> None:
    """An open breaker with ``Fallback(on_rejection=True)``: the fallback's value, no traffic."""
    p = point(retry=None, breaker=seawall.CircuitBreaker(minimum_calls=2, window=2, open_for=60),
              fallback=seawall.Fallback(value=pb2.EchoReply(text="cached")))
    backend.plan("k", fail=10, code=grpc.StatusCode.DATA_LOSS)  # not a fallback category
    stub = sync_stub(p)
    for _ in range(2):
        with pytest.raises(grpc.RpcError):
            stub.Unary(req("k"))
    assert p.breaker_state is seawall.BreakerState.OPEN
    assert stub.Unary(req("k")).text == "cached"
    reply, call = stub.Unary.with_call(req("k"))
    assert (reply.text, call.code()) == ("cached", grpc.StatusCode.OK)
    assert stub.Unary.future(req("k")).result(timeout=BOUND).text == "cached"
    assert backend.calls == 2
    assert (p.stats().rejected, p.stats().fallbacks) == (3, 3)


def test_a_call_waits_for_a_bulkhead_permit_sync(sync_stub: Any, backend: Backend) -> None:
    """Bulkhead(1, max_wait=5): a second call waits while the first holds the permit."""
    p = point(bulkhead=seawall.Bulkhead(max_concurrent=1, max_wait=5))
    backend.plan("slow", delay=0.3)
    stub = sync_stub(p)
    slow: list[Any] = []
    thread = threading.Thread(target=lambda: slow.append(stub.Unary(req("slow"))), daemon=True)
    thread.start()
    wait_for(lambda: backend.attempts("slow"))
    assert stub.Unary(req("fast")).text == "hi"
    thread.join(BOUND)
    assert [r.text for r in slow] == ["hi"]
    assert (p.stats().successes, p.stats().rejections["bulkhead"]) == (2, 0)
    assert p.permits is not None and p.permits.active == 0


def test_many_threads_retrying_through_one_small_bulkhead_sync(sync_stub: Any,
                                                                backend: Backend) -> None:
    """24 threads, each call failing once, through Bulkhead(4): all succeed on attempt 2,
    the counters add up, and every permit comes back."""
    p = point(bulkhead=seawall.Bulkhead(max_concurrent=4, max_wait=BOUND))
    stub = sync_stub(p)
    replies: list[Any] = []
    lock = threading.Lock()

    def run(n: int) -> None:
        backend.plan(f"k{n}", fail=1)
        reply = stub.Unary(req(f"k{n}")) if n % 2 else stub.Unary.future(req(f"k{n}")).result()
        with lock:
            replies.append(reply)

    threads = [threading.Thread(target=run, args=(n,), daemon=True) for n in range(24)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(BOUND)
    assert [r.attempt for r in replies] == [2] * 24
    stats = p.stats()
    assert (stats.successes, stats.retries, stats.attempts, stats.failures) == (24, 24, 48, 0)
    assert p.permits is not None and p.permits.active == 0


# ---------------------------------------------------------------------------
# both mountings, grpc.aio


async def test_result_rule_retries_a_rejected_reply_aio(aio_stub: Any, backend: Backend) -> None:
    """grpc.aio: a rejected reply from attempt 1 is retried; the call reports attempt 2's."""
    p = point(classifier=first_attempt_rejected())
    call = aio_stub(p).Unary(req("k"))
    assert (await call).attempt == 2
    assert await call.code() is grpc.StatusCode.OK
    assert (p.stats().successes, p.stats().retries, p.stats().failures) == (1, 1, 0)


async def test_fallback_answers_a_refusal_aio(aio_stub: Any, backend: Backend) -> None:
    """grpc.aio: an open breaker's refusal answered by the fallback (an async handler too)."""
    async def handler(error: BaseException) -> Any:
        assert isinstance(error, seawall.CircuitOpenError)
        return pb2.EchoReply(text="from handler")

    for fallback in (seawall.Fallback(value=pb2.EchoReply(text="cached")),
                     seawall.Fallback(handler=handler)):
        p = point(retry=None, fallback=fallback,
                  breaker=seawall.CircuitBreaker(minimum_calls=2, window=2, open_for=60))
        backend.plan("k", fail=100, code=grpc.StatusCode.DATA_LOSS)
        stub = aio_stub(p)
        for _ in range(2):
            with pytest.raises(grpc.aio.AioRpcError):
                await stub.Unary(req("k"))
        call = stub.Unary(req("k"))
        assert (await call).text in ("cached", "from handler")
        assert await call.code() is grpc.StatusCode.OK
        assert (p.stats().rejected, p.stats().fallbacks) == (1, 1)


async def test_a_call_waits_for_a_bulkhead_permit_aio(aio_stub: Any, backend: Backend) -> None:
    """grpc.aio: Bulkhead(1, max_wait=5): a second call waits while the first holds the permit."""
    p = point(bulkhead=seawall.Bulkhead(max_concurrent=1, max_wait=5))
    backend.plan("slow", delay=0.3)
    stub = aio_stub(p)
    slow = asyncio.ensure_future(stub.Unary(req("slow")))
    await await_for(lambda: backend.attempts("slow"))
    fast = stub.Unary(req("fast"))
    assert (await fast).text == "hi"
    assert await fast.code() is grpc.StatusCode.OK
    assert (await slow).text == "hi"
    assert (p.stats().successes, p.stats().rejections["bulkhead"]) == (2, 0)
    assert p.permits is not None and p.permits.active == 0


async def test_many_tasks_retrying_through_one_small_bulkhead_aio(aio_stub: Any,
                                                                  backend: Backend) -> None:
    """48 tasks, each call failing once, through Bulkhead(4): all succeed on attempt 2, the
    counters add up, and every permit comes back."""
    p = point(bulkhead=seawall.Bulkhead(max_concurrent=4, max_wait=BOUND))
    stub = aio_stub(p)
    for n in range(48):
        backend.plan(f"k{n}", fail=1)
    replies = await asyncio.wait_for(
        asyncio.gather(*(stub.Unary(req(f"k{n}")) for n in range(48))), BOUND)
    assert [r.attempt for r in replies] == [2] * 48
    stats = p.stats()
    assert (stats.successes, stats.retries, stats.attempts, stats.failures) == (48, 48, 96, 0)
    assert p.permits is not None and p.permits.active == 0


async def test_a_call_nobody_awaits_still_retries_and_is_counted_aio(aio_stub: Any,
                                                                     backend: Backend) -> None:
    """A call only watched through ``add_done_callback``: its retry runs, the callback fires
    once it settled, and the counters see one call of two attempts."""
    backend.plan("k", fail=1)
    p = point()
    call = aio_stub(p).Unary(req("k"))
    settled = asyncio.Event()
    call.add_done_callback(lambda c: settled.set())
    await asyncio.wait_for(settled.wait(), BOUND)
    assert call.done()
    assert await call.code() is grpc.StatusCode.OK
    assert (await call).attempt == 2
    assert (p.stats().calls, p.stats().successes, p.stats().retries) == (1, 1, 1)
    assert backend.headers("k") == [None, "2"]


async def test_readers_sharing_a_call_see_one_outcome_aio(aio_stub: Any, backend: Backend) -> None:
    """``await call``, ``code()`` and ``trailing_metadata()`` at once on a call that retries:
    all see the final attempt, which is counted once."""
    backend.plan("k", fail=1)
    p = point()
    call = aio_stub(p).Unary(req("k"))
    reply, code, trailing = await asyncio.wait_for(
        asyncio.gather(call, call.code(), call.trailing_metadata()), BOUND)
    assert (reply.attempt, code) == (2, grpc.StatusCode.OK)
    assert trailing is not None
    assert (p.stats().calls, p.stats().attempts, p.stats().retries) == (1, 2, 1)


async def test_cancel_before_anyone_awaits_counts_one_cancellation_aio(
        aio_stub: Any, backend: Backend, mounting: str) -> None:
    """``cancel()`` on a call in flight that nobody awaited yet: CANCELLED, the server sees
    the cancellation, and the counters one cancelled call, no failure. (``cancelled()`` is
    true at once through the wrapper, as on a plain channel; grpc.aio's InterceptedCall says
    so only once the call ended.)"""
    backend.plan("k", delay=5.0)
    p = point()
    call = aio_stub(p).Unary(req("k"))
    await await_for(lambda: backend.attempts("k"))
    assert call.cancel()
    assert call.cancelled() is (mounting == "wrapper")
    assert await call.code() is grpc.StatusCode.CANCELLED
    assert call.cancelled()
    with pytest.raises(asyncio.CancelledError):
        await call
    await await_for(backend.cancelled.is_set)
    assert (p.stats().cancelled, p.stats().failures, p.stats().calls) == (1, 0, 1)


async def test_time_remaining_is_the_callers_timeout_aio(aio_stub: Any, backend: Backend,
                                                        mounting: str) -> None:
    """``time_remaining()`` while attempt 1 is in flight (made without an Execution): the
    caller's 2 s on the point's clock; the call then succeeds and is counted once. (grpc.aio's
    InterceptedCall has no ``time_remaining``: through the interceptors it raises
    NotImplementedError, as grpc.aio does without seawall.)"""
    clock = FakeClock(100.0)
    p = point(clock=clock, timeout=seawall.Timeout(attempt=30.0, total=60.0))
    backend.plan("k", delay=0.05)
    call = aio_stub(p).Unary(req("k"), timeout=2.0)
    if mounting != "wrapper":
        with pytest.raises(NotImplementedError):
            call.time_remaining()
        assert (await asyncio.wait_for(call, BOUND)).attempt == 1
        return
    assert call.time_remaining() == 2.0
    clock.advance(0.5)
    assert call.time_remaining() == 1.5
    assert (await asyncio.wait_for(call, BOUND)).attempt == 1
    assert (p.stats().calls, p.stats().successes, p.stats().attempts) == (1, 1, 1)


# ---------------------------------------------------------------------------
# the wrappers' own


def test_sync_wrapper_is_a_channel_acting_on_the_wrapped_one(sync_target: str) -> None:
    """It is a ``grpc.Channel``; subscribe reports connectivity; leaving ``with`` closes the
    wrapped channel; an unrouted method gets the wrapped channel's own multicallable."""
    inner = grpc.insecure_channel(sync_target)
    states: list[grpc.ChannelConnectivity] = []
    ready = threading.Event()

    def watch(state: grpc.ChannelConnectivity) -> None:
        states.append(state)
        if state is grpc.ChannelConnectivity.READY:
            ready.set()

    with sw_grpc.resilient_channel(inner, {UNARY: point()}) as channel:
        assert isinstance(channel, grpc.Channel)
        channel.subscribe(watch, try_to_connect=True)
        assert ready.wait(BOUND)
        channel.unsubscribe(watch)
        other = channel.unary_stream("/seawall.test.v1.Echo/ServerStream")
        assert type(other) is type(inner.unary_stream("/seawall.test.v1.Echo/ServerStream"))
        assert pb2_grpc.EchoStub(channel).Unary(req("k")).text == "hi"
    with pytest.raises(ValueError, match="closed channel"):
        pb2_grpc.EchoStub(inner).Unary(req("k"))
    assert grpc.ChannelConnectivity.READY in states


async def test_aio_wrapper_is_a_channel_acting_on_the_wrapped_one(aio_target: str) -> None:
    """It is a ``grpc.aio.Channel``; ``channel_ready``, ``get_state`` and
    ``wait_for_state_change`` are the wrapped channel's; ``async with`` closes it."""
    inner = grpc.aio.insecure_channel(aio_target)
    async with sw_grpc.aio_resilient_channel(inner, {UNARY: point()}) as channel:
        assert isinstance(channel, grpc.aio.Channel)
        first = channel.get_state(try_to_connect=True)
        await asyncio.wait_for(channel.channel_ready(), BOUND)
        assert channel.get_state() is grpc.ChannelConnectivity.READY
        if first is not grpc.ChannelConnectivity.READY:
            await asyncio.wait_for(channel.wait_for_state_change(first), BOUND)
        other = channel.unary_stream("/seawall.test.v1.Echo/ServerStream")
        assert type(other) is type(inner.unary_stream("/seawall.test.v1.Echo/ServerStream"))
        assert (await pb2_grpc.EchoStub(channel).Unary(req("k"))).text == "hi"
    assert inner.get_state() is grpc.ChannelConnectivity.SHUTDOWN


class _Recording(grpc.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    """A user's own sync interceptor: records the attempt header of every call it sees."""

    def __init__(self) -> None:
        self.seen: list[str | None] = []

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        self.seen.append(dict(details.metadata or ()).get(ATTEMPT))
        return continuation(details, request)


class _AioRecording(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    """The grpc.aio twin of :class:`_Recording`."""

    def __init__(self) -> None:
        self.seen: list[str | None] = []

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        self.seen.append(dict(details.metadata or ()).get(ATTEMPT))
        return await continuation(details, request)


def test_wrapped_channel_may_carry_interceptors_sync(sync_target: str, backend: Backend) -> None:
    """Wrapping an intercepted channel: the user's interceptor sees every attempt, retries
    with their header."""
    backend.plan("k", fail=2)
    recording = _Recording()
    inner = grpc.intercept_channel(grpc.insecure_channel(sync_target), recording)
    with sw_grpc.resilient_channel(inner, point()) as channel:
        assert pb2_grpc.EchoStub(channel).Unary(req("k")).attempt == 3
    assert recording.seen == [None, "2", "3"]


async def test_wrapped_channel_may_carry_interceptors_aio(aio_target: str,
                                                          backend: Backend) -> None:
    """grpc.aio: the user's interceptors on the wrapped channel see every attempt."""
    backend.plan("k", fail=2)
    recording = _AioRecording()
    inner = grpc.aio.insecure_channel(aio_target, interceptors=[recording])
    async with sw_grpc.aio_resilient_channel(inner, point()) as channel:
        assert (await pb2_grpc.EchoStub(channel).Unary(req("k"))).attempt == 3
    assert recording.seen == [None, "2", "3"]


async def test_an_intercepted_call_nobody_awaits_gives_its_permit_back_aio(
        aio_target: str, backend: Backend) -> None:
    """An attempt that is not grpc.aio's own call (the wrapped channel's interceptors make
    another): watched through its public ``add_done_callback``, nobody awaiting it, it
    gives its permit back, retries, and is counted once."""
    backend.plan("k", fail=1)
    p = point(bulkhead=seawall.Bulkhead(max_concurrent=2, max_wait=0.0))
    inner = grpc.aio.insecure_channel(aio_target, interceptors=[_AioRecording()])
    async with sw_grpc.aio_resilient_channel(inner, p) as channel:
        call = pb2_grpc.EchoStub(channel).Unary(req("k"))
        settled = asyncio.Event()
        call.add_done_callback(lambda c: settled.set())
        await asyncio.wait_for(settled.wait(), BOUND)
        assert (await call).attempt == 2
    assert p.permits is not None and p.permits.active == 0
    assert (p.stats().calls, p.stats().successes, p.stats().retries) == (1, 1, 1)


def test_sending_on_a_closed_channel_raises_counted_with_the_permit_back_sync(
        sync_target: str) -> None:
    """Attempt 1 raising in the inner multicallable (a closed channel): the caller sees gRPC's
    own error, the call counts one failure, never retried, and the permit is back."""
    inner = grpc.insecure_channel(sync_target)
    p = point(bulkhead=seawall.Bulkhead(max_concurrent=2))
    stub = pb2_grpc.EchoStub(sw_grpc.resilient_channel(inner, p))
    inner.close()
    with pytest.raises(ValueError, match="closed channel"):
        stub.Unary(req("k"))
    assert p.permits is not None and p.permits.active == 0
    s = p.stats()
    assert (s.calls, s.failures, s.attempts, s.retries) == (1, 1, 1, 0)


async def test_sending_on_a_closed_channel_raises_counted_with_the_permit_back_aio(
        aio_target: str) -> None:
    """The grpc.aio twin: the error is raised by ``stub.M(req)`` itself, as grpc.aio does."""
    inner = grpc.aio.insecure_channel(aio_target)
    p = point(bulkhead=seawall.Bulkhead(max_concurrent=2))
    stub = pb2_grpc.EchoStub(sw_grpc.aio_resilient_channel(inner, p))
    await inner.close()
    with pytest.raises(grpc.aio.UsageError, match="closed"):
        stub.Unary(req("k"))  # raised before any await, as by the plain channel's
    assert p.permits is not None and p.permits.active == 0
    s = p.stats()
    assert (s.calls, s.failures, s.attempts, s.retries) == (1, 1, 1, 0)
