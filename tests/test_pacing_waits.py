"""What waits out a server's pause (or a rate-limit token) instead of being refused.

gRPC ``.future()`` calls and response streams (sync and aio, both
mountings) and SQLAlchemy's new connections wait like unary calls do,
within the caller's deadline; a wait longer than the time left is refused
at once as :class:`seawall.RateLimitedError`. Real servers on 127.0.0.1
(the gRPC echo server, PostgreSQL); waits go through a fake clock unless
the test is about a real wait being cut short.
"""

from __future__ import annotations

import time
from typing import Any

import grpc
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

import seawall
from seawall.interceptors import sqlalchemy as sw_sa
from seawall.testing import FakeClock
from tests.grpc_support.calls import req
from tests.grpc_support.servers import Backend

pytest_plugins = ["tests.grpc_support.fixtures"]


def paced_point(clock: Any, pause: float = 1.0, **kw: Any) -> seawall.IntegrationPoint:
    """A point whose bare RESOURCE_EXHAUSTED (no retry) pauses it ``pause`` s (the backoff base)."""
    return seawall.IntegrationPoint("echo", clock=clock, retry=seawall.Retry(
        attempts=1, budget=None, backoff=seawall.Backoff.constant(pause)), **kw)


def token_point(clock: Any) -> seawall.IntegrationPoint:
    """Two attempts 0.25 s apart, one token a second (burst 1): a retry waits for its token."""
    return seawall.IntegrationPoint("echo", clock=clock, retry=seawall.Retry(
        attempts=2, budget=None, backoff=seawall.Backoff.constant(0.25)),
        rate_limit=seawall.RateLimit(rate=1.0, burst=1, max_wait=5.0))


@pytest.fixture
def sync_stub(sync_stub: Any, backend: Backend) -> Any:
    """The shared ``sync_stub(point)``; "busy" fails RESOURCE_EXHAUSTED once."""
    backend.plan("busy", fail=1, code=grpc.StatusCode.RESOURCE_EXHAUSTED)
    return sync_stub


@pytest.fixture
def aio_stub(aio_stub: Any, backend: Backend) -> Any:
    """The shared ``aio_stub(point)``; "busy" fails RESOURCE_EXHAUSTED once."""
    backend.plan("busy", fail=1, code=grpc.StatusCode.RESOURCE_EXHAUSTED)
    return aio_stub


def pause(stub: Any) -> None:
    with pytest.raises(grpc.RpcError) as info:
        stub.Unary(req("busy"))
    assert info.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED


# -- gRPC futures --------------------------------------------------------------------------

def test_a_future_waits_out_the_pause(sync_stub: Any, backend: Backend) -> None:
    """stub.Unary.future() during a 1 s pause: the attempt starts after it, the call succeeds."""
    clock = FakeClock()
    p = paced_point(clock)
    stub = sync_stub(p)
    pause(stub)
    assert stub.Unary.future(req("k")).result(timeout=10).text == "hi"
    assert clock.sleeps == pytest.approx([1.0])
    assert len(backend.attempts("k")) == 1
    assert p.stats().paused_waits == 1


def test_a_future_whose_deadline_ends_inside_the_pause_is_refused(sync_stub: Any,
                                                                  backend: Backend) -> None:
    """timeout=0.5 against a 1 s pause: refused at once as RateLimitedError (paused)."""
    clock = FakeClock()
    stub = sync_stub(paced_point(clock))
    pause(stub)
    error = stub.Unary.future(req("k"), timeout=0.5).exception(timeout=10)
    assert isinstance(error, seawall.RateLimitedError) and error.reason == "paused"
    assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert clock.sleeps == [] and backend.attempts("k") == []


def test_a_future_cancelled_while_paused_never_reaches_the_server(sync_stub: Any,
                                                                  backend: Backend) -> None:
    """A real 5 s pause: cancel() ends the wait at once; nothing is sent, a cancel is counted."""
    p = paced_point(seawall.SystemClock(), pause=5.0)
    stub = sync_stub(p)
    pause(stub)
    began = time.monotonic()
    future = stub.Unary.future(req("k"))
    assert not future.done()
    assert future.cancel()
    assert future.cancelled()
    with pytest.raises(grpc.FutureCancelledError):
        future.result(timeout=5)
    assert time.monotonic() - began < 4.0  # long before the pause would have ended
    assert backend.attempts("k") == []
    assert p.stats().cancelled == 1


def test_a_future_retry_waits_for_its_token(sync_stub: Any, backend: Backend) -> None:
    """The retry of a future takes a rate-limit token it must wait for, instead of stopping."""
    clock = FakeClock()
    p = token_point(clock)
    backend.plan("flaky", fail=1)
    assert sync_stub(p).Unary.future(req("flaky")).result(timeout=10).attempt == 2
    assert clock.sleeps == pytest.approx([0.25, 0.75])


# -- gRPC response streams -----------------------------------------------------------------

def test_a_sync_stream_waits_out_the_pause(sync_stub: Any, backend: Backend) -> None:
    """A server stream opened during the pause starts after it and delivers every message."""
    clock = FakeClock()
    stub = sync_stub(paced_point(clock))
    pause(stub)
    assert [m.text for m in stub.ServerStream(req("k", count=2))] == ["hi-0", "hi-1"]
    assert clock.sleeps == pytest.approx([1.0])


def test_a_sync_stream_whose_deadline_ends_inside_the_pause_is_refused(
        sync_stub: Any, backend: Backend) -> None:
    clock = FakeClock()
    stub = sync_stub(paced_point(clock))
    pause(stub)
    with pytest.raises(seawall.RateLimitedError) as info:
        list(stub.ServerStream(req("k", count=2), timeout=0.5))
    assert info.value.reason == "paused"
    assert backend.attempts("k") == [] and clock.sleeps == []


def test_a_sync_stream_retry_waits_for_its_token(sync_stub: Any, backend: Backend) -> None:
    """A stream failing before its first message retries after waiting for a token."""
    clock = FakeClock()
    p = token_point(clock)
    backend.plan("flaky", fail=1)
    assert [m.attempt for m in sync_stub(p).ServerStream(req("flaky", count=2))] == [2, 2]
    assert clock.sleeps == pytest.approx([0.25, 0.75])


async def test_an_aio_stream_waits_out_the_pause(aio_stub: Any, backend: Backend) -> None:
    """grpc.aio: a server stream opened during the pause starts after it."""
    clock = FakeClock()
    stub = aio_stub(paced_point(clock))
    with pytest.raises(grpc.aio.AioRpcError):
        await stub.Unary(req("busy"))
    assert [m.text async for m in stub.ServerStream(req("k", count=2))] == ["hi-0", "hi-1"]
    assert clock.sleeps == pytest.approx([1.0])


async def test_an_aio_stream_whose_deadline_ends_inside_the_pause_is_refused(
        aio_stub: Any, backend: Backend) -> None:
    clock = FakeClock()
    stub = aio_stub(paced_point(clock))
    with pytest.raises(grpc.aio.AioRpcError):
        await stub.Unary(req("busy"))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        [m async for m in stub.ServerStream(req("k", count=2), timeout=0.5)]
    assert isinstance(info.value, seawall.RateLimitedError) and info.value.reason == "paused"
    assert backend.attempts("k") == [] and clock.sleeps == []


# -- SQLAlchemy connect --------------------------------------------------------------------

class Throttled(Exception):
    """Another call of the database's point heard "slow down for 1 s"."""


def db_point(clock: FakeClock, **kw: Any) -> seawall.IntegrationPoint:
    classifier = seawall.Classifier().on(Throttled, seawall.Classification(
        seawall.Category.RATE_LIMITED, retry=False, breaker=False, delay=1.0))
    return seawall.IntegrationPoint("db", clock=clock, classifier=classifier, **kw)


def heard_slow_down(p: seawall.IntegrationPoint) -> None:
    def throttled() -> None:
        raise Throttled

    with pytest.raises(Throttled):
        p.call(throttled)


def test_a_new_connection_waits_out_the_pause(postgres_url: str) -> None:
    """The pool's first connect during a 1 s pause waits it, then connects."""
    clock = FakeClock()
    p = db_point(clock)
    engine = sw_sa.instrument(sa.create_engine(postgres_url), p)
    try:
        heard_slow_down(p)
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT 1")).scalar() == 1
        assert clock.sleeps == pytest.approx([1.0])
        assert p.stats().paused_waits == 1
    finally:
        sw_sa.uninstrument(engine)
        engine.dispose()


def test_a_connect_whose_total_ends_inside_the_pause_is_refused(postgres_url: str) -> None:
    """Timeout(total=0.5) against a 1 s pause: the connect is refused as RateLimitedError."""
    clock = FakeClock()
    p = db_point(clock, timeout=seawall.Timeout(total=0.5))
    engine = sw_sa.instrument(sa.create_engine(postgres_url), p)
    try:
        heard_slow_down(p)
        with pytest.raises(seawall.RateLimitedError) as info:
            engine.connect()
        assert info.value.reason == "paused" and clock.sleeps == []
    finally:
        sw_sa.uninstrument(engine)
        engine.dispose()


async def test_an_async_connect_waits_out_the_pause(postgres_async_url: str) -> None:
    """AsyncEngine: the wait runs on the point's clock from the connect's greenlet."""
    clock = FakeClock()
    p = db_point(clock)
    engine = create_async_engine(postgres_async_url)
    sw_sa.instrument(engine, p)
    try:
        heard_slow_down(p)
        async with engine.connect() as conn:
            assert (await conn.execute(sa.text("SELECT 1"))).scalar() == 1
        assert clock.sleeps == pytest.approx([1.0])
    finally:
        sw_sa.uninstrument(engine)
        await engine.dispose()
