"""One breaker shared by many threads and tasks: no count is lost, transitions stay sane."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Callable

import seawall
from seawall import CircuitBreaker, CircuitOpenError, IntegrationPoint

LEGAL = {
    ("closed", "open"), ("open", "half_open"), ("half_open", "open"), ("half_open", "closed"),
}


class Tally:
    """Outcomes seen by callers, counted under a lock."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts: Counter[str] = Counter()

    def add(self, outcome: str) -> None:
        with self.lock:
            self.counts[outcome] += 1


def test_breaker_counts_nothing_twice_and_loses_nothing() -> None:
    """Threads and tasks hammering one breaker: stats match what the callers saw."""
    p = IntegrationPoint(
        "hot",
        breaker=CircuitBreaker(failure_rate=0.5, minimum_calls=10, window=20, open_for=0.002,
                               half_open_calls=2),
    )
    transitions: list[seawall.BreakerTransition] = []
    transitions_lock = threading.Lock()

    def on_event(event: seawall.Event) -> None:
        if isinstance(event, seawall.BreakerTransition):
            with transitions_lock:
                transitions.append(event)

    p.add_hook(on_event)
    tally = Tally()
    sequence = iter(range(10**9))
    sequence_lock = threading.Lock()

    def flaky() -> str:
        with sequence_lock:
            n = next(sequence)
        # failing stretches open the breaker; the trials after one (each takes a number)
        # soon reach the successes that close it, however few calls a loaded machine makes
        if n % 16 < 10:
            raise ConnectionError("down")
        return "ok"

    async def aflaky() -> str:
        await asyncio.sleep(0)
        return flaky()

    def one_sync_call() -> None:
        try:
            p.call(flaky)
            tally.add("success")
        except ConnectionError:
            tally.add("failure")
        except CircuitOpenError:
            tally.add("rejected")

    async def one_async_call() -> None:
        try:
            await p.acall(aflaky)
            tally.add("success")
        except ConnectionError:
            tally.add("failure")
        except CircuitOpenError:
            tally.add("rejected")

    async def tasks() -> None:
        for _ in range(10):
            await asyncio.gather(*(one_async_call() for _ in range(50)))

    errors: list[BaseException] = []

    def guarded(target: Callable[[], object]) -> Callable[[], None]:
        def run() -> None:
            try:
                target()
            except BaseException as exc:
                errors.append(exc)
        return run

    def sync_worker() -> None:
        for _ in range(400):
            one_sync_call()

    threads = [threading.Thread(target=guarded(sync_worker)) for _ in range(16)]
    threads.append(threading.Thread(target=guarded(lambda: asyncio.run(tasks()))))
    for t in threads:
        t.start()
    asyncio.run(tasks())
    for t in threads:
        t.join(60)

    assert errors == []
    made = 16 * 400 + 2 * 500
    seen = tally.counts
    assert sum(seen.values()) == made
    stats = p.stats()
    assert stats.calls == made
    assert (stats.successes, stats.failures, stats.rejected) == (
        seen["success"], seen["failure"], seen["rejected"])
    assert stats.attempts == seen["success"] + seen["failure"]
    assert stats.rejections["breaker"] == seen["rejected"]
    assert seen["rejected"] > 0 and seen["success"] > 0  # the breaker did open and close

    # transitions, in whatever order hooks saw them, form one path from closed to the end state
    assert transitions
    edges = Counter((t.from_state, t.to_state) for t in transitions)
    assert set(edges) <= LEGAL
    balance: Counter[str] = Counter()
    for (src, dst), n in edges.items():
        balance[src] -= n
        balance[dst] += n
    final = p.breaker_state
    assert final is not None
    expected = Counter() if final.value == "closed" else Counter({"closed": -1, final.value: 1})
    assert +balance == +expected and -balance == -expected


def test_breaker_window_counts_match_records_under_threads() -> None:
    """Concurrent records into a count window keep calls = records (up to the window size)."""
    from seawall._breaker import BreakerRuntime

    runtime = BreakerRuntime(CircuitBreaker(failure_rate=1.0, minimum_calls=1000, window=1000,
                                            half_open_calls=1000, open_for=1.0))
    barrier = threading.Barrier(8, timeout=30)

    def recorder() -> None:
        barrier.wait()
        for i in range(100):
            ticket = runtime.admit(0.0)
            runtime.record(ticket, 0.0, i % 2 == 0, False)

    threads = [threading.Thread(target=recorder) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert runtime.window_counts() == (800, 400, 0)
