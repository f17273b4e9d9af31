"""Server pacing: one server's Retry-After or pushback pauses every caller of the point."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from seawall import (
    Category,
    Classification,
    Classifier,
    ConfigurationError,
    IntegrationPoint,
    RateLimit,
    RateLimitedError,
    Retry,
    Timeout,
)
from seawall.interceptors import httpx as sw_httpx
from seawall.testing import FakeClock
from tests.timed_support import (
    TimedHandler,
    check_quiet_second,
    http_server,
    tasks_past_the_pause,
    threads_past_the_pause,
)


class Throttled(Exception):
    """What a dependency raises when it asks for a pause."""


def throttled(delay: float) -> Classifier:
    return Classifier().on(Throttled, Classification(Category.RATE_LIMITED, retry=True,
                                                     breaker=False, delay=delay))


def raise_throttled() -> None:
    raise Throttled


def test_server_pacing_must_be_a_bool() -> None:
    """IntegrationPoint.server_pacing is True or False, nothing else."""
    with pytest.raises(ConfigurationError, match=r"server_pacing .*'yes'"):
        IntegrationPoint("x", server_pacing="yes")  # type: ignore[arg-type]


def test_a_server_delay_pauses_the_next_call_of_another_caller() -> None:
    """After one call hears 'wait 2 s', the next call of the point waits 2 s before starting."""
    clock = FakeClock()
    p = IntegrationPoint("api", classifier=throttled(2.0), clock=clock)
    with pytest.raises(Throttled):
        p.call(raise_throttled)
    assert p.call(lambda: 7) == 7
    assert clock.sleeps == [2.0]
    assert p.stats().paused_waits == 1


def test_the_retrying_call_waits_once_not_twice() -> None:
    """The call that got the hint waits its retry delay; the pause does not add to it."""
    clock = FakeClock()
    p = IntegrationPoint("api", classifier=throttled(2.0), clock=clock,
                         retry=Retry(attempts=2, budget=None))
    outcomes = iter([Throttled(), None])

    def flaky() -> str:
        error = next(outcomes)
        if error is not None:
            raise error
        return "ok"

    assert p.call(flaky) == "ok"
    assert clock.sleeps == [2.0]
    assert p.stats().paused_waits == 0
    p.call(lambda: None)  # the pause is over
    assert clock.sleeps == [2.0]


def test_a_pause_longer_than_the_deadline_is_refused_as_paused() -> None:
    """A caller whose deadline ends inside the pause gets RateLimitedError(reason='paused')."""
    clock = FakeClock()
    p = IntegrationPoint("api", classifier=throttled(2.0), clock=clock,
                         timeout=Timeout(total=1.0))
    with pytest.raises(Throttled):
        p.call(raise_throttled)
    with pytest.raises(RateLimitedError) as info:
        p.call(lambda: None)
    assert info.value.reason == "paused"
    assert info.value.retry_after == pytest.approx(2.0)
    stats = p.stats()
    assert (stats.rejected, stats.rejections["paused"], clock.sleeps) == (1, 1, [])


def test_the_pause_is_capped_by_max_server_delay() -> None:
    """A server asking for 100 s pauses the point for Retry.max_server_delay only."""
    clock = FakeClock()
    p = IntegrationPoint("api", classifier=throttled(100.0), clock=clock,
                         retry=Retry(attempts=1, max_server_delay=0.5))
    with pytest.raises(Throttled):
        p.call(raise_throttled)
    p.call(lambda: None)
    assert clock.sleeps == [0.5]


def test_server_pacing_false_turns_it_off() -> None:
    """With server_pacing=False, a server delay only concerns the call that got it."""
    clock = FakeClock()
    p = IntegrationPoint("api", classifier=throttled(2.0), clock=clock, server_pacing=False)
    assert p.pacing is None
    with pytest.raises(Throttled):
        p.call(raise_throttled)
    p.call(lambda: None)
    assert clock.sleeps == []


def test_a_pause_then_a_token_adds_up() -> None:
    """With a rate limit too, an attempt waits for the pause and then for its token."""
    clock = FakeClock()
    p = IntegrationPoint("api", classifier=throttled(1.0), clock=clock,
                         rate_limit=RateLimit(rate=0.5, burst=1, max_wait=5.0))
    with pytest.raises(Throttled):
        p.call(raise_throttled)  # took the only token
    p.call(lambda: None)  # the 1 s pause refills half a token; the other half takes 1 s more
    assert clock.sleeps == pytest.approx([2.0])
    stats = p.stats()
    assert (stats.paused_waits, stats.rate_limit_waits) == (1, 1)


async def test_async_callers_are_paused_too() -> None:
    """acall waits for the pause with clock.asleep."""
    clock = FakeClock()
    p = IntegrationPoint("api", classifier=throttled(3.0), clock=clock)

    async def refuse() -> None:
        raise Throttled

    async def work() -> int:
        return 5

    with pytest.raises(Throttled):
        await p.acall(refuse)
    assert await p.acall(work) == 5
    assert clock.sleeps == [3.0]


def test_admit_first_starts_no_attempt_during_a_pause() -> None:
    """The integrations' inline first attempt (admit_first) holds off while a pause is in
    force, and starts again once it has passed or was resumed."""
    clock = FakeClock()
    p = IntegrationPoint("api", clock=clock)
    assert p.pacing is not None
    first = p.admit_first()
    assert first is not None
    p.observer().succeeded("op", first[0], first[1])
    p.pacing.note(clock.now(), 2.0)
    assert p.admit_first() is None
    clock.advance(2.0)
    assert p.admit_first() is not None
    p.pacing.note(clock.now(), 5.0)
    assert p.admit_first() is None
    p.pacing.resume()
    assert p.admit_first() is not None


def test_a_pause_noted_by_one_thread_holds_off_every_thread() -> None:
    """8 threads admit first attempts while one notes a pause: each admission that begins
    after the note returned is refused, in every thread."""
    clock = FakeClock()
    p = IntegrationPoint("api", clock=clock)
    assert p.pacing is not None
    noted = threading.Event()
    start = threading.Barrier(9)
    late: list[object] = []
    errors: list[BaseException] = []

    def admitter() -> None:
        try:
            start.wait(10)
            for _ in range(2000):  # bounded: admissions while the note may land
                seen = noted.is_set()
                got = p.admit_first()
                if seen:
                    late.append(got)
            noted.wait(10)
            late.extend(p.admit_first() for _ in range(50))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=admitter) for _ in range(8)]
    for t in threads:
        t.start()
    start.wait(10)
    p.pacing.note(clock.now(), 30.0)
    noted.set()
    for t in threads:
        t.join(30)
    assert not errors
    assert len(late) >= 8 * 50
    assert all(got is None for got in late)


async def test_a_pause_noted_by_one_task_holds_off_every_task() -> None:
    """20 tasks: one hears 'wait 3 s'; no task's call starts before the pause's end."""
    clock = FakeClock()
    p = IntegrationPoint("api", classifier=throttled(3.0), clock=clock)
    gate = asyncio.Event()

    async def refuse() -> None:
        raise Throttled

    started: list[float] = []

    async def work() -> int:
        started.append(clock.now())
        return 1

    async def caller() -> int:
        await gate.wait()
        return await p.acall(work)

    tasks = [asyncio.create_task(caller()) for _ in range(20)]
    with pytest.raises(Throttled):
        await p.acall(refuse)
    assert p.pacing is not None
    end = p.pacing.until
    gate.set()
    assert sum(await asyncio.gather(*tasks)) == 20
    assert len(started) == 20 and min(started) >= end
    assert p.stats().paused_waits >= 1


# -- a real HTTP server answering 429 + Retry-After ---------------------------------


class _SlowDown(TimedHandler):
    """Answers the request numbered server.throttle_at with 429 + Retry-After: 1, others 200."""

    def reply(self, now: float) -> tuple[int, tuple[tuple[str, str], ...]]:
        server: Any = self.server
        if len(server.arrivals) != server.throttle_at:
            return 200, ()
        server.throttled_at = now
        return 429, (("Retry-After", "1"),)


@pytest.fixture
def slow_down_server() -> Iterator[Any]:
    with http_server(_SlowDown) as server:
        server.throttle_at = 80
        server.throttled_at = None
        yield server


def test_one_429_pauses_8_threads_for_a_second(slow_down_server: Any) -> None:
    """8 threads through the httpx transport: after a 429 + Retry-After: 1 the server sees none."""
    p = IntegrationPoint("api", retry=Retry(attempts=3, budget=None))
    url = f"http://127.0.0.1:{slow_down_server.server_address[1]}/"

    def caller(i: int, stop: threading.Event) -> None:
        with httpx.Client(transport=sw_httpx.ResilientTransport(p)) as client:
            while not stop.is_set():
                assert client.get(f"{url}c{i}").status_code == 200

    threads_past_the_pause(p, slow_down_server, caller)
    check_quiet_second(slow_down_server, p)
    assert p.stats().paused_waits >= 1


async def test_one_429_pauses_8_tasks_for_a_second(slow_down_server: Any) -> None:
    """8 tasks through the async httpx transport: the same quiet second."""
    p = IntegrationPoint("api", retry=Retry(attempts=3, budget=None))
    url = f"http://127.0.0.1:{slow_down_server.server_address[1]}/"

    async with httpx.AsyncClient(transport=sw_httpx.AsyncResilientTransport(p)) as client:
        async def caller(i: int, stop: asyncio.Event) -> None:
            while not stop.is_set():
                assert (await client.get(f"{url}c{i}")).status_code == 200

        await tasks_past_the_pause(p, slow_down_server, caller)
    check_quiet_second(slow_down_server, p)
    assert p.stats().paused_waits >= 1


def test_the_quiet_second_check_allows_one_request_in_flight_per_caller() -> None:
    """check_quiet_second: one late arrival per caller passes; a second one, however late, fails."""
    p = IntegrationPoint("api", retry=Retry(attempts=3, budget=None))
    assert p.pacing is not None
    p.pacing.note(100.0, 1.0)  # heard at 100.0, paused until 101.0
    source = SimpleNamespace(throttled_at=99.99, arrivals=[
        (99.99, "/c0"), (100.9, "/c1"), (100.95, "/c2"), (101.0, "/c0")])
    check_quiet_second(source, p)  # c1 and c2 were on their way when the pause began
    source.arrivals.append((100.97, "/c1"))
    with pytest.raises(AssertionError, match="sent during the pause"):
        check_quiet_second(source, p)
    source.arrivals[:] = [(99.99, "/c0"), (100.5, "/c1")]
    with pytest.raises(AssertionError):  # nobody came back after the pause
        check_quiet_second(source, p)
