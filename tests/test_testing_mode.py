"""seawall.testing.instant() and attempts(n): no waits and capped attempts, decisions unchanged.

Each "real run" reference is the same policy on a FakeClock (whose sleeps
advance it): the decisions under instant() must be the ones it takes.
Elapsed-time bounds are loose (a loaded machine stays far inside them):
the skipped waits are seconds long, the real ones a few milliseconds.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import trio

import seawall
from seawall import Backoff, Bulkhead, CircuitBreaker, IntegrationPoint, Retry, Timeout
from seawall.testing import FakeClock, attempts, instant
from tests.docs_support import Page

pytest_plugins = ["tests.grpc_support.fixtures"]


def flaky_point(name: str = "svc", clock: Any = None, *, n: int = 4, wait: float = 5.0,
                **options: Any) -> IntegrationPoint:
    return IntegrationPoint(name, retry=Retry(attempts=n, backoff=Backoff.constant(wait),
                                              budget=None), clock=clock, **options)


def failing(counter: list[int]) -> Any:
    def fn() -> None:
        counter.append(1)
        raise ConnectionError("down")
    return fn


def run_sync(p: IntegrationPoint) -> tuple[int, list[str]]:
    """Call a function that always fails; (attempts made, the exception's notes)."""
    calls: list[int] = []
    with pytest.raises(ConnectionError) as info:
        p.call(failing(calls))
    return len(calls), list(getattr(info.value, "__notes__", []))


# -- instant(): the waits ------------------------------------------------------------

def test_instant_skips_backoff_of_a_point_made_before() -> None:
    """Three 5 s backoffs: skipped, listed in the view, and every attempt still made."""
    p = flaky_point()
    started = time.monotonic()
    with instant() as view:
        made, notes = run_sync(p)
    assert time.monotonic() - started < 2.0
    assert made == 4
    assert view.skipped == [5.0, 5.0, 5.0]
    assert "4 attempt(s) in 15.000 s" in notes[0]  # the call's time is the view's


def test_instant_covers_points_made_inside() -> None:
    """A point built inside the block skips its waits too."""
    with instant() as view:
        made, _ = run_sync(flaky_point(n=3))
    assert (made, view.skipped) == (3, [5.0, 5.0])


def test_decisions_match_a_real_run_at_the_total_deadline() -> None:
    """Waits 1, 2, 4 s within a 6 s total: retries stop where a real run stops them."""
    policy: dict[str, Any] = {
        "retry": Retry(attempts=4, budget=None,
                       backoff=Backoff.exponential(initial=1.0, maximum=10.0, jitter="none")),
        "timeout": Timeout(total=6.0),
    }
    real = run_sync(IntegrationPoint("ref", clock=FakeClock(), **policy))
    with instant() as view:
        fast = run_sync(IntegrationPoint("svc", **policy))
    assert fast[0] == real[0] == 3
    assert view.skipped == [1.0, 2.0]
    assert "would pass the deadline" in fast[1][0] and "would pass the deadline" in real[1][0]


def test_instant_async_and_decorator() -> None:
    """``@instant()`` on ``async def``: the coroutine's waits are skipped under asyncio."""
    p = flaky_point()
    seen: list[int] = []

    @instant()
    async def scenario() -> float:
        started = time.monotonic()
        with pytest.raises(ConnectionError):
            await p.acall(_async_failing, seen)
        return time.monotonic() - started

    assert scenario.__name__ == "scenario"
    assert asyncio.run(scenario()) < 2.0
    assert len(seen) == 4


async def _async_failing(seen: list[int]) -> None:
    seen.append(1)
    raise ConnectionError("down")


def test_instant_under_trio() -> None:
    """The async shell under trio skips its waits inside instant() too."""
    p = flaky_point()
    seen: list[int] = []

    async def scenario() -> None:
        with instant() as view:
            with pytest.raises(ConnectionError):
                await p.acall(_async_failing, seen)
        assert view.skipped == [5.0, 5.0, 5.0]

    started = time.monotonic()
    trio.run(scenario)
    assert time.monotonic() - started < 2.0 and len(seen) == 4


def test_decorated_sync_function() -> None:
    """``@instant()`` on ``def``: each call runs inside its own instant scope."""
    p = flaky_point()

    @instant()
    def scenario() -> int:
        return run_sync(p)[0]

    started = time.monotonic()
    assert scenario() == 4 and scenario() == 4
    assert time.monotonic() - started < 2.0
    assert seawall._clock.INSTANT.get() is None


def test_bulkhead_wait_is_skipped_and_refuses() -> None:
    """A full bulkhead with a 5 s max_wait refuses at once; the view moves by the wait."""
    p = IntegrationPoint("svc", bulkhead=Bulkhead(max_concurrent=1, max_wait=5.0))
    assert p.permits is not None and p.permits.try_acquire()
    try:
        started = time.monotonic()
        with instant() as view, pytest.raises(seawall.BulkheadFullError):
            p.call(lambda: None)
        assert time.monotonic() - started < 2.0
        assert view.skipped == [5.0]
    finally:
        p.permits.release()
    assert p.stats().rejections["bulkhead"] == 1


def test_async_bulkhead_wait_is_skipped() -> None:
    """The same refusal in the async shell."""
    p = IntegrationPoint("svc", bulkhead=Bulkhead(max_concurrent=1, max_wait=5.0))
    assert p.permits is not None and p.permits.try_acquire()

    async def scenario() -> list[float]:
        with instant() as view:
            with pytest.raises(seawall.BulkheadFullError):
                await p.acall(asyncio.sleep, 0)
            return view.skipped

    try:
        assert asyncio.run(scenario()) == [5.0]
    finally:
        p.permits.release()


def test_advance_moves_past_the_breakers_open_for() -> None:
    """An open breaker (30 s) refuses; view.advance(30) lets the trial call through."""
    p = IntegrationPoint("svc", breaker=CircuitBreaker(failure_rate=0.5, minimum_calls=2,
                                                       window=2, open_for=30.0,
                                                       half_open_calls=1))
    with instant() as view:
        for _ in range(2):
            with pytest.raises(ConnectionError):
                p.call(failing([]))
        with pytest.raises(seawall.CircuitOpenError):
            p.call(lambda: "refused")
        view.advance(29.0)
        with pytest.raises(seawall.CircuitOpenError):
            p.call(lambda: "still refused")
        view.advance(1.0)
        assert p.call(lambda: "trial") == "trial"
    assert p.breaker_state is seawall.BreakerState.CLOSED


def test_advance_rejects_negative_seconds() -> None:
    """Time never moves backwards."""
    with instant() as view, pytest.raises(ValueError, match="-1"):
        view.advance(-1)


def test_async_attempt_timeout_still_cuts_after_a_skew() -> None:
    """A 0.2 s attempt timeout still stops a 30 s attempt once the view is 100 s ahead."""
    p = IntegrationPoint("svc", timeout=Timeout(attempt=0.2))

    async def scenario() -> float:
        with instant() as view:
            view.advance(100.0)
            started = time.monotonic()
            with pytest.raises(seawall.DeadlineExceeded):
                await p.acall(asyncio.sleep, 30)
            return time.monotonic() - started

    assert asyncio.run(scenario()) < 10.0


def test_remaining_reads_the_view() -> None:
    """seawall.remaining() inside an attempt is measured on the view's time."""
    p = flaky_point(n=2, wait=1.0, timeout=Timeout(total=5.0))
    left: list[float | None] = []

    def fn() -> None:
        left.append(seawall.remaining())
        raise ConnectionError("down")

    with instant(), pytest.raises(ConnectionError):
        p.call(fn)
    assert left[0] is not None and left[1] is not None
    assert 3.5 < left[1] <= 4.0  # the skipped second is gone from the budget


def test_nested_blocks_share_one_view_and_restore() -> None:
    """An inner instant() is the outer view; leaving both ends the mode."""
    with instant() as outer:
        with instant() as inner:
            assert inner is outer
        assert seawall._clock.INSTANT.get() is outer
    assert seawall._clock.INSTANT.get() is None


def test_after_the_block_waits_are_real_again() -> None:
    """Leaving instant() restores real sleeps (a 50 ms backoff takes 50 ms)."""
    p = flaky_point(n=2, wait=0.05)
    with instant():
        run_sync(p)
    started = time.monotonic()
    run_sync(p)
    assert time.monotonic() - started >= 0.045


def test_exception_inside_the_block_still_restores() -> None:
    """An error leaving the block ends the mode."""
    with pytest.raises(RuntimeError), instant():
        raise RuntimeError("boom")
    assert seawall._clock.INSTANT.get() is None


# -- threads and tasks ----------------------------------------------------------------

def test_threads_each_see_their_own_mode() -> None:
    """16 threads on one point: those inside instant() skip 5 s waits, the others wait 20 ms."""
    fast = flaky_point("fast")
    slow = flaky_point("slow", n=2, wait=0.02)
    barrier = threading.Barrier(16)
    elapsed: dict[int, float] = {}

    def worker(i: int) -> None:
        barrier.wait(timeout=10)
        started = time.monotonic()
        if i % 2:
            with instant():
                assert run_sync(fast)[0] == 4
        else:
            assert run_sync(slow)[0] == 2
        elapsed[i] = time.monotonic() - started

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(elapsed) == 16
    assert all(elapsed[i] < 5.0 for i in range(1, 16, 2))  # skipped 15 s each
    assert all(elapsed[i] >= 0.015 for i in range(0, 16, 2))  # really waited
    assert fast.stats().retries == 8 * 3 and slow.stats().retries == 8


def test_a_thread_started_inside_does_not_inherit_unless_given_the_context() -> None:
    """A plain thread is outside the mode; one run in a copy of the context is inside."""
    seen: dict[str, object] = {}
    with instant() as view:
        plain = threading.Thread(target=lambda: seen.update(plain=seawall._clock.INSTANT.get()))
        ctx = contextvars.copy_context()
        copied = threading.Thread(
            target=lambda: ctx.run(lambda: seen.update(copied=seawall._clock.INSTANT.get())))
        for t in (plain, copied):
            t.start()
            t.join(timeout=10)
        with ThreadPoolExecutor(1) as pool:
            seen["pool"] = pool.submit(seawall._clock.INSTANT.get).result(timeout=10)
    assert seen == {"plain": None, "copied": view, "pool": None}


def test_many_tasks_mixed() -> None:
    """40 asyncio tasks: instant ones skip 5 s waits, the others really wait 20 ms."""
    fast = flaky_point("fast")
    slow = flaky_point("slow", n=2, wait=0.02)

    async def one(i: int) -> float:
        started = time.monotonic()
        seen: list[int] = []
        if i % 2:
            with instant():
                with pytest.raises(ConnectionError):
                    await fast.acall(_async_failing, seen)
        else:
            with pytest.raises(ConnectionError):
                await slow.acall(_async_failing, seen)
        return time.monotonic() - started

    async def main() -> list[float]:
        return await asyncio.gather(*(one(i) for i in range(40)))

    elapsed = asyncio.run(main())
    assert all(e < 5.0 for e in elapsed[1::2])
    assert all(e >= 0.015 for e in elapsed[0::2])
    assert fast.stats().retries == 20 * 3 and slow.stats().retries == 20


def test_tasks_started_inside_inherit_the_mode() -> None:
    """Tasks created inside the block (asyncio.gather) skip their waits too."""
    p = flaky_point()

    async def main() -> None:
        with instant() as view:
            seen: list[int] = []

            async def one() -> None:
                with pytest.raises(ConnectionError):
                    await p.acall(_async_failing, seen)

            await asyncio.gather(*(asyncio.create_task(one()) for _ in range(5)))
            assert len(view.skipped) == 15 and len(seen) == 20

    started = time.monotonic()
    asyncio.run(main())
    assert time.monotonic() - started < 5.0


# -- attempts(n) -----------------------------------------------------------------------

def test_attempts_caps_every_point() -> None:
    """attempts(2) caps a 4-attempt policy; the stop reads as attempts exhausted."""
    p = flaky_point(wait=0.0)
    with attempts(2):
        made, notes = run_sync(p)
    assert made == 2 and "attempts exhausted" in notes[0]
    assert run_sync(p)[0] == 4  # restored


def test_attempts_one_turns_retries_off() -> None:
    """attempts(1): one attempt, no retry counted."""
    p = flaky_point(wait=0.0)
    with attempts(1):
        assert run_sync(p)[0] == 1
    assert p.stats().retries == 0


def test_attempts_keeps_a_smaller_policy() -> None:
    """A policy of 2 attempts keeps 2 under attempts(3)."""
    with attempts(3):
        assert run_sync(flaky_point(n=2, wait=0.0))[0] == 2


def test_attempts_nested_and_as_decorator() -> None:
    """An inner cap replaces the outer until it exits; the decorator form (sync and async)."""
    p = flaky_point(n=5, wait=0.0)
    with attempts(3):
        with attempts(2):
            assert run_sync(p)[0] == 2
        assert run_sync(p)[0] == 3

    @attempts(1)
    def once() -> int:
        return run_sync(p)[0]

    @attempts(2)
    async def twice() -> int:
        seen: list[int] = []
        with pytest.raises(ConnectionError):
            await p.acall(_async_failing, seen)
        return len(seen)

    assert once() == 1 and asyncio.run(twice()) == 2
    assert run_sync(p)[0] == 5


@pytest.mark.parametrize("bad", [0, -1, 1.5, "3", True])
def test_attempts_rejects_bad_numbers(bad: Any) -> None:
    """attempts(n) needs an integer >= 1, and says what it got."""
    with pytest.raises(seawall.ConfigurationError, match=repr(bad).replace("(", r"\(")):
        attempts(bad)


def test_attempts_is_per_thread() -> None:
    """A cap in one thread leaves another thread's calls alone."""
    p = flaky_point(wait=0.0)
    results: dict[str, int] = {}
    inside, done = threading.Event(), threading.Event()

    def capped() -> None:
        with attempts(1):
            inside.set()
            results["capped"] = run_sync(p)[0]
            done.wait(timeout=10)

    t = threading.Thread(target=capped)
    t.start()
    assert inside.wait(timeout=10)
    results["free"] = run_sync(p)[0]
    done.set()
    t.join(timeout=10)
    assert results == {"capped": 1, "free": 4}


# -- integrations -------------------------------------------------------------------------

def test_grpc_sync_unary_and_stream_retries_skip_their_waits(
        mounting: str, sync_target: str, backend: Any) -> None:
    """A real gRPC server failing twice: unary and server-stream retries wait 5 s each, skipped."""
    from tests.grpc_support.mounts import sync_channel
    from tests.grpc_support.servers import pb2, pb2_grpc

    p = flaky_point("echo")
    backend.plan("u", fail=2)
    backend.plan("s", fail=2)
    channel = sync_channel(sync_target, p, mounting)
    try:
        stub = pb2_grpc.EchoStub(channel)
        started = time.monotonic()
        with instant() as view:
            assert stub.Unary(pb2.EchoRequest(key="u", text="hi")).text
            replies = list(stub.ServerStream(pb2.EchoRequest(key="s", text="s", count=2)))
        assert time.monotonic() - started < 5.0
    finally:
        channel.close()
    assert [r.text for r in replies] == ["s-0", "s-1"]
    assert view.skipped == [5.0] * 4


# -- docs/testing.md ------------------------------------------------------------------------

def test_the_testing_doc_runs(tmp_path: Path) -> None:
    """Every ```python block of docs/testing.md runs in a fresh interpreter."""
    page = Page("docs/testing.md")
    assert len(page.blocks) >= 2
    assert set(page.infos) == {"python"}
    for i in range(len(page.blocks)):  # one after the other, in one folder, as a reader would
        page.run(i, tmp_path)


ARMING = """
import time
import seawall
from seawall.testing import instant

point = seawall.IntegrationPoint("early", breaker=seawall.CircuitBreaker(
    minimum_calls=2, window=2, open_for=30.0))
start = point.observer().start           # bound once, as the SQLAlchemy hook binds it
def fail() -> None:
    raise ConnectionError("down")
for _ in range(2):
    try:
        point.call(fail)
    except ConnectionError:
        pass
assert point.breaker_state is seawall.BreakerState.OPEN
assert point.clock.now is time.monotonic  # no view has moved: the C function itself
with instant() as view:
    assert point.clock.now is time.monotonic  # entering alone changes nothing
    view.advance(120.0)                       # the first move arms the clock
    assert point.clock.now is not time.monotonic
    assert point.clock.now() - time.monotonic() >= 119.0
    assert start()[0] - time.monotonic() >= 119.0
    assert point.call(lambda: "probe") == "probe"  # open_for has passed on the point's clock
    late = seawall.IntegrationPoint("late")
    assert late.clock.now() - time.monotonic() >= 119.0
assert abs(point.clock.now() - time.monotonic()) < 5.0  # outside the view: real time again
assert abs(start()[0] - time.monotonic()) < 5.0
print("ok")
"""


def test_points_read_time_monotonic_itself_until_a_view_first_moves() -> None:
    """The system clock costs nothing extra until instant() skips a wait (a fresh process).

    A point made before that moment, and an observer's ``start`` bound before it,
    see the view's time afterwards, inside the view only.
    """
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", ARMING], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
