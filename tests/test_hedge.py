"""Hedge: a slow attempt gets company; the first good answer wins, the rest are cancelled."""

from __future__ import annotations

import asyncio
import math
import threading
import time
from typing import Any

import httpx
import pytest

import seawall
from seawall import (
    Bulkhead,
    Category,
    Classification,
    Classifier,
    ConfigurationError,
    Hedge,
    IntegrationPoint,
    Retry,
    RetryBudget,
    Timeout,
)
from tests.http_support import Reply, ScriptedServer

# -- validation -----------------------------------------------------------------


@pytest.mark.parametrize(("field", "value"), [
    ("delay", -0.1), ("delay", math.nan), ("delay", "1"), ("delay", None),
    ("max_extra", 0), ("max_extra", 11), ("max_extra", 1.5), ("max_extra", True),
    ("on", "transient"), ("on", ["sometimes"]), ("on", 5),
])
def test_each_field_is_validated(field: str, value: Any) -> None:
    """A bad value is refused at construction, naming the field and the value."""
    kwargs: dict[str, Any] = {"delay": 0.1, field: value}
    with pytest.raises(ConfigurationError, match=rf"Hedge\.{field}"):
        Hedge(**kwargs)


def test_on_is_kept_as_a_set_of_categories() -> None:
    """on accepts categories or their names."""
    assert Hedge(delay=0.1, on=["timeout", Category.TRANSIENT]).on == frozenset(
        {Category.TIMEOUT, Category.TRANSIENT})


def test_the_point_refuses_a_wrong_hedge_value() -> None:
    """IntegrationPoint(hedge=...) must be a Hedge."""
    with pytest.raises(ConfigurationError, match=r"IntegrationPoint\.hedge"):
        IntegrationPoint("x", hedge=0.1)  # type: ignore[arg-type]


def test_sync_work_is_refused_with_a_clear_error() -> None:
    """Decorating a def, or call(), through a hedged point raises ConfigurationError."""
    p = IntegrationPoint("x", hedge=Hedge(delay=0.1))
    with pytest.raises(ConfigurationError, match="Hedge needs async work"):
        p(lambda: None)
    with pytest.raises(ConfigurationError, match=r"call\(\) is sync"):
        p.call(lambda: None)

    @p
    async def fine() -> int:
        return 1

    assert asyncio.run(fine()) == 1


# -- behaviour ---------------------------------------------------------------------


class Script:
    """Async work whose n-th attempt (1-based) sleeps, raises or answers as scripted."""

    def __init__(self, *steps: Any) -> None:
        self.steps = list(steps)
        self.started: list[float] = []
        self.cancelled: list[int] = []
        self._one_started = asyncio.Event()

    async def __call__(self) -> Any:
        n = len(self.started)
        self.started.append(time.monotonic())
        self._one_started.set()
        step = self.steps[min(n, len(self.steps) - 1)]
        delay, outcome = step
        try:
            await asyncio.sleep(delay)
        except asyncio.CancelledError:
            self.cancelled.append(n + 1)
            raise
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    async def wait_started(self, n: int, timeout: float = 5.0) -> None:
        """Return once ``n`` attempts have started; TimeoutError after ``timeout`` seconds."""
        async def started() -> None:
            while len(self.started) < n:
                self._one_started.clear()
                await self._one_started.wait()

        await asyncio.wait_for(started(), timeout)


async def test_a_slow_first_attempt_is_hedged_and_the_hedge_wins() -> None:
    """After delay, a second attempt starts; its answer wins and the first is cancelled."""
    p = IntegrationPoint("api", hedge=Hedge(delay=0.05))
    work = Script((5.0, "slow"), (0.0, "fast"))
    t0 = time.monotonic()
    assert await p.acall(work) == "fast"
    assert time.monotonic() - t0 < 2.0
    assert work.cancelled == [1]
    assert work.started[1] - work.started[0] >= 0.045
    stats = p.stats()
    assert (stats.successes, stats.hedges, stats.hedges_won, stats.failures) == (1, 1, 1, 0)


async def test_a_fast_answer_sends_no_hedge() -> None:
    """An attempt answering before the delay is the only one."""
    p = IntegrationPoint("api", hedge=Hedge(delay=1.0))
    work = Script((0.0, "ok"))
    assert await p.acall(work) == "ok"
    assert len(work.started) == 1
    assert p.stats().hedges == 0


async def test_a_non_fatal_failure_starts_the_next_hedge_at_once() -> None:
    """A retryable failure does not wait for the delay: the hedge starts right away."""
    p = IntegrationPoint("api", hedge=Hedge(delay=30.0))
    work = Script((0.0, ConnectionError("reset")), (0.0, "second"))
    t0 = time.monotonic()
    assert await p.acall(work) == "second"
    assert time.monotonic() - t0 < 5.0
    stats = p.stats()
    assert (stats.hedges, stats.hedges_won, stats.attempts) == (1, 1, 2)


async def test_a_fatal_failure_ends_the_call_and_cancels_the_rest() -> None:
    """A permanent failure is raised as it is; the running hedge is cancelled."""
    p = IntegrationPoint("api", hedge=Hedge(delay=0.02))
    work = Script((0.2, ValueError("bad input")), (5.0, "late"))
    with pytest.raises(ValueError, match="bad input"):
        await p.acall(work)
    assert work.cancelled == [2]
    stats = p.stats()
    assert (stats.failures, stats.failures_by_category["permanent"], stats.hedges) == (1, 1, 1)


async def test_on_chooses_the_non_fatal_categories() -> None:
    """With on={'timeout'}, a transient failure is fatal."""
    p = IntegrationPoint("api", hedge=Hedge(delay=30.0, on={"timeout"}))
    work = Script((0.0, ConnectionError("reset")), (0.0, "never"))
    with pytest.raises(ConnectionError):
        await p.acall(work)
    assert len(work.started) == 1


async def test_when_every_attempt_fails_the_last_failure_is_raised() -> None:
    """1 + max_extra attempts, all failing: the caller gets the last one's exception."""
    p = IntegrationPoint("api", hedge=Hedge(delay=0.01, max_extra=2))
    work = Script((0.0, ConnectionError("one")), (0.0, ConnectionError("two")),
                  (0.0, ConnectionError("three")))
    with pytest.raises(ConnectionError, match="three"):
        await p.acall(work)
    stats = p.stats()
    assert (stats.attempts, stats.hedges, stats.failures) == (3, 2, 1)


async def test_a_spent_retry_budget_sends_no_hedge() -> None:
    """Hedges are withdrawn from the retry budget: an empty one sends none."""
    p = IntegrationPoint("api", hedge=Hedge(delay=0.01),
                         retry=Retry(budget=RetryBudget(ratio=0.0, minimum_per_second=0.0)))
    work = Script((0.1, "only"))
    assert await p.acall(work) == "only"
    assert len(work.started) == 1
    stats = p.stats()
    assert (stats.hedges, stats.rejections["budget"]) == (0, 1)


async def test_a_server_delay_hint_stops_further_hedges() -> None:
    """A failure carrying Retry-After / pushback sends no more hedges (and pauses the point)."""
    class Throttled(Exception):
        pass

    hint = Classification(Category.RATE_LIMITED, retry=True, breaker=False, delay=0.5)
    p = IntegrationPoint("api", hedge=Hedge(delay=0.01, max_extra=3),
                         classifier=Classifier().on(Throttled, hint))
    work = Script((0.0, Throttled()), (0.0, "never"))
    with pytest.raises(Throttled):
        await p.acall(work)
    assert len(work.started) == 1
    assert p.pacing is not None and p.pacing.remaining(time.monotonic()) > 0


async def test_a_bare_resource_exhausted_stops_hedges_and_pauses_the_point() -> None:
    """Out of capacity without a delay hint (gRPC's bare RESOURCE_EXHAUSTED): no more
    hedges, and the point pauses for the backoff's base delay, as an unhedged call does."""
    from seawall._pacing import Exhausted

    class Exhausting(Exception):
        pass

    p = IntegrationPoint("api", hedge=Hedge(delay=0.01, max_extra=3),
                         retry=seawall.Retry(attempts=3, backoff=seawall.Backoff.constant(2.0)),
                         classifier=Classifier().on(Exhausting, Exhausted(
                             Category.RATE_LIMITED, retry=True, breaker=False)))
    work = Script((0.0, Exhausting()), (0.0, "never"))
    with pytest.raises(Exhausting):
        await p.acall(work)
    assert len(work.started) == 1
    assert p.pacing is not None and 1.0 < p.pacing.remaining(time.monotonic()) <= 2.0


async def test_the_total_deadline_bounds_every_attempt() -> None:
    """Timeout(total=0.3): slow attempts and their hedge all end by the deadline."""
    p = IntegrationPoint("api", hedge=Hedge(delay=0.05, max_extra=2),
                         timeout=Timeout(total=0.3))
    work = Script((10.0, "never"))
    t0 = time.monotonic()
    with pytest.raises(seawall.DeadlineExceeded):
        await p.acall(work)
    assert time.monotonic() - t0 < 2.0
    assert len(work.started) == 3
    assert sorted(work.cancelled) == [1, 2, 3]


async def test_the_bulkhead_sees_each_hedge_as_an_attempt() -> None:
    """With one permit, the hedge finds none free: it is not sent, and that is counted."""
    p = IntegrationPoint("api", hedge=Hedge(delay=0.02), bulkhead=Bulkhead(max_concurrent=1))
    work = Script((0.2, "first"))
    assert await p.acall(work) == "first"
    stats = p.stats()
    assert (stats.hedges, stats.rejections["bulkhead"]) == (0, 1)
    assert p.permits is not None and p.permits.active == 0


async def test_the_breaker_counts_each_failed_hedge() -> None:
    """Two failed attempts of one hedged call are two failures in the breaker's window."""
    p = IntegrationPoint("api", hedge=Hedge(delay=0.0),
                         breaker=seawall.CircuitBreaker(minimum_calls=2, window=2,
                                                        failure_rate=1.0))
    work = Script((0.0, ConnectionError("a")), (0.0, ConnectionError("b")))
    with pytest.raises(ConnectionError):
        await p.acall(work)
    assert p.breaker_state is seawall.BreakerState.OPEN


async def test_cancelling_the_caller_cancels_every_attempt() -> None:
    """The caller's cancellation reaches all attempts and is not counted as a failure."""
    p = IntegrationPoint("api", hedge=Hedge(delay=0.01), bulkhead=Bulkhead(max_concurrent=4))
    work = Script((10.0, "never"))
    call = asyncio.ensure_future(p.acall(work))
    await work.wait_started(2)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert sorted(work.cancelled) == [1, 2]
    stats = p.stats()
    assert (stats.cancelled, stats.failures) == (1, 0)
    assert p.permits is not None and p.permits.active == 0


def test_threads_and_tasks_share_a_hedged_point() -> None:
    """4 loops x 50 hedged calls, a third of them slow: every call answered, every permit back."""
    p = IntegrationPoint("api", hedge=Hedge(delay=0.01), bulkhead=Bulkhead(max_concurrent=64,
                                                                          max_wait=5.0))
    lock = threading.Lock()
    count = [0]

    async def work() -> str:
        with lock:
            count[0] += 1
            n = count[0]
        if n % 3 == 0:
            await asyncio.sleep(0.5)
            return "slow"
        await asyncio.sleep(0.001)
        return "fast"

    answers: list[str] = []

    async def loop_calls() -> None:
        got = await asyncio.gather(*(p.acall(work) for _ in range(50)))
        with lock:
            answers.extend(got)

    threads = [threading.Thread(target=lambda: asyncio.run(loop_calls())) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(answers) == 200
    stats = p.stats()
    assert stats.successes == 200 and stats.failures == 0
    assert stats.hedges_won <= stats.hedges
    assert p.permits is not None and p.permits.active == 0


async def test_against_a_real_server_the_hedge_beats_a_stalled_request() -> None:
    """An HTTP server stalls one request for 3 s: the hedged GET answers well before."""
    with ScriptedServer() as server:
        gate = threading.Event()
        server.script(Reply(body=b"stalled", gate=gate), Reply(body=b"hedge"))
        p = IntegrationPoint("api", hedge=Hedge(delay=0.1))
        async with httpx.AsyncClient() as client:
            async def get() -> bytes:
                return (await client.get(server.url + "/item")).content

            t0 = time.monotonic()
            assert await p.acall(get) == b"hedge"
            elapsed = time.monotonic() - t0
        gate.set()
        assert elapsed < 2.0
        assert server.wait_for_requests(2)
        assert p.stats().hedges_won == 1


# -- events and metrics ---------------------------------------------------------------


async def test_hedges_are_told_to_hooks_and_to_opentelemetry() -> None:
    """A HedgeEvent when a hedge starts and when it wins; seawall.hedges counts both."""
    from tests.otel_support import read, sdk_provider, total

    p = IntegrationPoint("otel-hedge", hedge=Hedge(delay=0.02))
    seen: list[Any] = []
    p.add_hook(seen.append)
    with sdk_provider() as (provider, reader):
        handle = seawall.otel_metrics(provider)
        try:
            assert await p.acall(Script((5.0, "slow"), (0.0, "fast"))) == "fast"
            handle.flush()
            points = read(reader)
        finally:
            handle.close()
    hedge_events = [e for e in seen if isinstance(e, seawall.HedgeEvent)]
    assert [(e.attempt, e.won) for e in hedge_events] == [(2, False), (2, True)]
    assert total(points, "seawall.hedges", point="otel-hedge", outcome="sent") == 1
    assert total(points, "seawall.hedges", point="otel-hedge", outcome="won") == 1


# -- attempts that are futures, watched from the calling thread ---------------------------


def test_futures_are_hedged_in_the_calling_thread() -> None:
    """hedge_futures: attempt 1 never ends, attempt 2 does; 1 is cancelled, no thread made."""
    from concurrent.futures import Future

    from seawall.testing import FakeClock

    p = IntegrationPoint("api", hedge=Hedge(delay=0.02), clock=FakeClock())
    futures: list[Future[str]] = []

    def start(timeout: float | None, number: int) -> Future[str]:
        f: Future[str] = Future()
        if number == 2:
            f.set_result("second")
        futures.append(f)
        return f

    threads = threading.active_count()
    ex = p.execution("op")
    winner, c = p.hedge_futures(ex, start, lambda f: None)
    assert (winner.result(), c) == ("second", None)
    assert futures[0].cancelled()
    assert threading.active_count() == threads
    stats = p.stats()
    assert (stats.successes, stats.hedges, stats.hedges_won) == (1, 1, 1)
