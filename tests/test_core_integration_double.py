"""A test double of an integration drives the pipeline through point.run / point.arun.

The "transport" returns status-carrying responses and raises its own errors,
as httpx or gRPC would; the integration supplies its classifiers, closes
discarded responses and hands the attempt timeout to the transport.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pytest

import seawall
from seawall import (
    Backoff,
    Classification,
    Classifier,
    IntegrationPoint,
    Retry,
    Timeout,
)
from seawall._classify import CLIENT_ERROR, PERMANENT, RATE_LIMITED, TIMEOUT, TRANSIENT, UNAVAILABLE
from seawall.testing import FakeClock


class TransportError(Exception):
    """Base of the fake transport's own errors."""


class ConnectFailed(TransportError):
    """The request never left: safe to retry."""


class ReadTimedOut(TransportError):
    """The transport's own timeout fired."""


class ProtocolBroken(TransportError):
    """A bug, not a blip."""


@dataclass
class Response:
    status: int
    retry_after: float | None = None
    closed: bool = False

    def close(self) -> None:
        self.closed = True

    async def aclose(self) -> None:
        self.closed = True


@dataclass
class FakeTransport:
    """Plays a script of outcomes; records each attempt's timeout and what was open at its start."""

    script: list[Response | TransportError]
    clock: FakeClock
    cost: float = 0.0
    timeouts: list[float | None] = field(default_factory=list)
    returned: list[Response] = field(default_factory=list)
    open_at_send: list[int] = field(default_factory=list)

    def send(self, timeout: float | None) -> Response:
        self.timeouts.append(timeout)
        self.open_at_send.append(sum(not r.closed for r in self.returned))
        self.clock.advance(self.cost)
        outcome = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if isinstance(outcome, TransportError):
            raise outcome
        response = Response(outcome.status, outcome.retry_after)
        self.returned.append(response)
        return response

    async def asend(self, timeout: float | None) -> Response:
        return self.send(timeout)


def classify_exception(exc: BaseException) -> Classification | None:
    """The integration's table, keyed on exception type."""
    if isinstance(exc, ConnectFailed):
        return TRANSIENT
    if isinstance(exc, ReadTimedOut):
        return TIMEOUT
    if isinstance(exc, TransportError):
        return PERMANENT
    return None


def classify_result(response: Response) -> Classification | None:
    """The integration's table, keyed on status code; None is success."""
    if response.status == 429:
        c = RATE_LIMITED
    elif response.status in (502, 503, 504):
        c = UNAVAILABLE
    elif 400 <= response.status < 500:
        return CLIENT_ERROR
    else:
        return None
    return c.with_delay(response.retry_after) if response.retry_after is not None else c


class Integration:
    """What an httpx transport or gRPC interceptor does with a point, in miniature."""

    def __init__(self, point: IntegrationPoint, transport: FakeTransport) -> None:
        self.point = point
        self.transport = transport

    def request(self, timeout: float | None = None) -> Response:
        deadline = None if timeout is None else self.point.clock.now() + timeout
        return self.point.run(self.transport.send, operation="GET /items", deadline=deadline,
                              classify_exception=classify_exception,
                              classify_result=classify_result, discard=Response.close)

    async def arequest(self, timeout: float | None = None) -> Response:
        deadline = None if timeout is None else self.point.clock.now() + timeout
        return await self.point.arun(self.transport.asend, operation="GET /items",
                                     deadline=deadline, classify_exception=classify_exception,
                                     classify_result=classify_result, discard=Response.aclose)


def make(script: list[Response | TransportError], *, cost: float = 0.0, **policy: Any
         ) -> tuple[Integration, IntegrationPoint, FakeTransport, FakeClock]:
    clock = FakeClock()
    policy.setdefault("retry", Retry(attempts=3, backoff=Backoff.constant(0.1), budget=None))
    point = IntegrationPoint("items-api", clock=clock, **policy)
    transport = FakeTransport(script, clock, cost)
    return Integration(point, transport), point, transport, clock


def test_discarded_results_are_closed_before_the_retry() -> None:
    """Each failed response is closed before the next attempt is sent; the good one stays open."""
    client, point, transport, _ = make([Response(503), Response(502), Response(200)])
    response = client.request()
    assert response.status == 200 and not response.closed
    assert [r.closed for r in transport.returned] == [True, True, False]
    assert transport.open_at_send == [0, 0, 0]
    stats = point.stats()
    assert (stats.successes, stats.attempts, stats.retries) == (1, 3, 2)


def test_last_failed_result_is_returned_when_retries_run_out() -> None:
    """When every attempt gets a 503, the caller gets the last 503, still open."""
    client, point, transport, _ = make([Response(503)])
    response = client.request()
    assert response is transport.returned[-1]
    assert response.status == 503 and not response.closed
    assert [r.closed for r in transport.returned] == [True, True, False]
    assert point.stats().failures_by_category["unavailable"] == 1


def test_client_errors_are_returned_without_retry_or_breaker() -> None:
    """A 404 is a client error: returned at once, not retried, not counted by the breaker."""
    client, point, transport, _ = make(
        [Response(404)], breaker=seawall.CircuitBreaker(minimum_calls=1, window=1))
    assert client.request().status == 404
    assert len(transport.returned) == 1
    assert point.breaker_state is seawall.BreakerState.CLOSED


def test_retry_after_hint_sets_the_wait() -> None:
    """A 429 with Retry-After waits what the server asked, clamped by max_server_delay."""
    client, _, _, clock = make([Response(429, retry_after=2.0), Response(429, retry_after=600.0),
                                Response(200)],
                               retry=Retry(attempts=3, max_server_delay=30.0, budget=None))
    assert client.request().status == 200
    assert clock.sleeps == [2.0, 30.0]


def test_transport_errors_are_reraised_as_they_are() -> None:
    """The transport's own exception reaches the caller, annotated with the attempts."""
    failure = ConnectFailed("refused")
    client, _, _, _ = make([failure])
    with pytest.raises(ConnectFailed) as info:
        client.request()
    assert info.value is failure
    assert "3 attempt(s)" in info.value.__notes__[-1]


def test_integration_rules_classify_unknown_errors() -> None:
    """The integration's table decides for its own errors: ProtocolBroken is permanent."""
    client, _, transport, _ = make([ProtocolBroken(), Response(200)])
    with pytest.raises(ProtocolBroken):
        client.request()
    assert transport.timeouts == [None]


def test_user_rules_win_over_the_integrations() -> None:
    """A user's result rule is asked first: here a 503 is permanent, so it is not retried."""
    client, _, transport, _ = make(
        [Response(503), Response(200)],
        classifier=Classifier().on_result(
            lambda r: PERMANENT if isinstance(r, Response) and r.status == 503 else None))
    assert client.request().status == 503
    assert len(transport.returned) == 1


def test_attempt_timeout_is_handed_to_the_transport() -> None:
    """Each attempt gets min(attempt timeout, what is left of the total) as its timeout."""
    client, _, transport, _ = make(
        [Response(503)], cost=1.5, timeout=Timeout(attempt=2.0, total=4.0),
        retry=Retry(attempts=5, backoff=Backoff.constant(0.1), budget=None))
    client.request()
    # attempts start at 0, 1.6 and 3.2 s; the third has 0.8 s of the total left
    assert transport.timeouts == pytest.approx([2.0, 2.0, 0.8])


def test_caller_deadline_narrows_the_attempt_timeout() -> None:
    """A caller's deadline (a gRPC timeout=) narrows every attempt's timeout."""
    client, _, transport, _ = make(
        [ReadTimedOut(), ReadTimedOut(), Response(200)], cost=1.0,
        timeout=Timeout(attempt=5.0))
    assert client.request(timeout=2.5).status == 200
    assert transport.timeouts == pytest.approx([2.5, 1.4, 0.3])


def test_remaining_inside_the_attempt_matches_the_timeout() -> None:
    """seawall.remaining() inside the attempt equals the timeout handed to it."""
    _, point, _, _ = make([Response(200)], timeout=Timeout(attempt=3.0))
    seen: list[tuple[float | None, float | None]] = []

    def attempt(timeout: float | None) -> str:
        seen.append((timeout, seawall.remaining()))
        return "ok"

    point.run(attempt, operation="probe")
    assert seen == [(3.0, 3.0)]


async def test_async_integration_closes_discarded_results() -> None:
    """arun awaits an async discard on each failed response before retrying."""
    client, point, transport, _ = make([Response(503), Response(200)])
    response = await client.arequest()
    assert response.status == 200
    assert [r.closed for r in transport.returned] == [True, False]
    assert point.stats().successes == 1


async def test_async_integration_returns_the_last_failed_result() -> None:
    """arun returns the last failed response when retries run out."""
    client, _, transport, _ = make([Response(504)])
    response = await client.arequest()
    assert response.status == 504 and response is transport.returned[-1]
    assert [r.closed for r in transport.returned] == [True, True, False]


async def test_async_integration_hands_timeouts_down() -> None:
    """arun passes each attempt's timeout to the transport, narrowed by the caller's deadline."""
    client, _, transport, _ = make([ConnectFailed(), Response(200)], cost=1.0,
                                   timeout=Timeout(attempt=5.0, total=10.0))
    assert (await client.arequest(timeout=3.0)).status == 200
    assert transport.timeouts == pytest.approx([3.0, 1.9])


async def test_transport_that_enforces_its_own_timeout_is_not_cancelled() -> None:
    """With enforce_timeout=False, arun leaves the timeout to the transport."""
    point = IntegrationPoint("own-timeout", timeout=Timeout(attempt=0.01))

    async def slow_but_bounded(timeout: float | None) -> str:
        await asyncio.sleep(0.05)  # the transport's own work, longer than the attempt timeout
        return f"finished with timeout={timeout}"

    result = await point.arun(slow_but_bounded, operation="op", enforce_timeout=False)
    assert result == "finished with timeout=0.01"


def test_sans_io_execution_drives_a_stream() -> None:
    """execution(): begin/failure/success let a stream retry until its first message."""
    clock = FakeClock()
    point = IntegrationPoint("stream", clock=clock,
                             retry=Retry(attempts=3, backoff=Backoff.constant(0.5), budget=None),
                             timeout=Timeout(attempt=1.0))
    ex = point.execution("Watch", deadline=clock.now() + 10.0)
    first_messages = [ConnectFailed("reset before the first message"), "message 1"]
    received = []
    while True:
        timeout = ex.begin()
        assert timeout == 1.0
        outcome = first_messages.pop(0)
        if isinstance(outcome, Exception):
            delay = ex.failure(point.classify_exception(outcome, classify_exception))
            assert delay is not None
            clock.sleep(delay)
            continue
        ex.success()
        received.append(outcome)
        break
    assert received == ["message 1"]
    assert clock.sleeps == [0.5]
    stats = point.stats()
    assert (stats.successes, stats.attempts, stats.retries) == (1, 2, 1)
