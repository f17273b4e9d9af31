"""``point.admit_first``: a first attempt admitted inline, taken over by an Execution if it fails."""

from __future__ import annotations

import threading

import seawall
from seawall import Bulkhead, CircuitBreaker, IntegrationPoint, Retry, Timeout
from seawall._classify import TRANSIENT
from seawall.testing import FakeClock


def test_admits_with_the_breaker_ticket_the_first_timeout_and_a_permit() -> None:
    """(start, ticket, timeout): the clock's time, the breaker's ticket, min(attempt, total); a
    permit is taken and is the caller's to give back."""
    clock = FakeClock(10.0)
    p = IntegrationPoint("svc", clock=clock, breaker=CircuitBreaker(),
                         bulkhead=Bulkhead(max_concurrent=2),
                         timeout=Timeout(attempt=2.0, total=5.0))
    first = p.admit_first()
    assert first is not None
    start, ticket, timeout = first
    assert (start, timeout) == (10.0, 2.0) and ticket >= 0
    assert p.permits is not None and p.permits.active == 1
    p.permits.release()
    p.observer().succeeded("op", start, ticket)
    s = p.stats()
    assert (s.calls, s.successes, s.attempts) == (1, 1, 1)


def test_a_deadline_narrows_the_timeout() -> None:
    """The caller's absolute deadline and an enclosing seawall deadline narrow the timeout."""
    clock = FakeClock(10.0)
    p = IntegrationPoint("svc", clock=clock, timeout=Timeout(attempt=2.0))
    assert p.admit_first(10.5) == (10.0, seawall.Observer.NO_TICKET, 0.5)

    def inside(_timeout: float | None) -> float | None:
        first = p.admit_first()
        assert first is not None
        return first[2]

    assert IntegrationPoint("none", clock=clock).admit_first() == (10.0, -1, None)
    p = IntegrationPoint("svc", timeout=Timeout(attempt=2.0))  # the clock the outer one keeps
    outer = IntegrationPoint("outer", timeout=Timeout(attempt=0.25))
    narrowed = outer.run(inside, "outer")
    assert narrowed is not None and 0 < narrowed <= 0.25


def test_none_takes_and_counts_nothing_when_the_attempt_cannot_start() -> None:
    """An open breaker, no time left, a full bulkhead: None, no ticket or permit kept, no count."""
    clock = FakeClock(10.0)
    p = IntegrationPoint("svc", clock=clock, breaker=CircuitBreaker(half_open_calls=1),
                         bulkhead=Bulkhead(max_concurrent=1))
    assert p.circuit is not None and p.permits is not None
    assert p.admit_first(9.0) is None  # the deadline has passed
    assert p.permits.active == 0
    assert p.permits.try_acquire()
    assert p.admit_first() is None  # no free permit
    p.permits.release()
    p.circuit.force_open()
    assert p.admit_first() is None
    p.circuit.reset()
    assert p.stats().calls == 0
    # fault injection on: attempts go through an Execution, as in the shells
    chaotic = IntegrationPoint("svc", clock=clock, chaos=seawall.Chaos(latency_rate=1.0, latency=0.01),
                               bulkhead=Bulkhead(max_concurrent=1))
    assert chaotic.admit_first() is None
    assert chaotic.permits is not None and chaotic.permits.active == 0


def test_a_failed_first_attempt_is_taken_over_by_an_execution() -> None:
    """execution(first=...) adopts attempt 1: its failure counts once, the retry is attempt 2."""
    clock = FakeClock(10.0)
    p = IntegrationPoint("svc", clock=clock, retry=Retry(attempts=3), breaker=CircuitBreaker())
    first = p.admit_first()
    assert first is not None
    clock.advance(0.5)
    ex = p.execution("op", first=(first[0], first[1]))
    assert (ex.attempts, ex.start, ex.attempt_start) == (1, 10.0, 10.0)
    delay = ex.failure(TRANSIENT)
    assert delay is not None
    ex.begin()
    assert ex.attempts == 2
    ex.success()
    s = p.stats()
    assert (s.calls, s.successes, s.attempts, s.retries) == (1, 1, 2, 1)


def test_many_threads_keep_the_permits_and_the_counts() -> None:
    """Threads admitting and succeeding at once: every permit back, every success counted."""
    p = IntegrationPoint("svc", breaker=CircuitBreaker(), bulkhead=Bulkhead(max_concurrent=4))
    assert p.permits is not None
    permits, succeeded = p.permits, p.observer().succeeded
    admitted = [0] * 8
    barrier = threading.Barrier(8, timeout=30)

    def worker(i: int) -> None:
        barrier.wait()
        for _ in range(500):
            first = p.admit_first()
            if first is not None:
                admitted[i] += 1
                permits.release()
                succeeded("op", first[0], first[1])

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    assert permits.active == 0
    assert p.stats().successes == sum(admitted) > 0


def test_a_server_pause_or_an_empty_bucket_sends_the_call_to_the_general_path() -> None:
    """Server pacing in force, no rate-limit token: None; a token taken for an attempt that
    then finds the bulkhead full goes back to the bucket."""
    clock = FakeClock(10.0)
    p = IntegrationPoint("svc", clock=clock, rate_limit=seawall.RateLimit(rate=1.0, burst=1),
                         bulkhead=Bulkhead(max_concurrent=1))
    assert p.pacing is not None and p.bucket is not None and p.permits is not None
    p.pacing.note(clock.now(), 2.0)
    assert p.admit_first() is None  # paused for 2 s
    p.pacing.resume()
    assert p.permits.try_acquire()
    assert p.admit_first() is None  # no permit: the token it took is refunded
    p.permits.release()
    first = p.admit_first()  # the token is there again
    assert first is not None
    p.permits.release()
    assert p.admit_first() is None  # the one token of the burst is spent
    assert p.stats().calls == 0


def test_a_rate_limit_holds_inline_admissions_from_the_first_call() -> None:
    """A rate limit given at construction, no server pause ever: admit_first spends the
    burst, then refuses until a token is back (the inline path checks the bucket at once)."""
    clock = FakeClock(10.0)
    p = IntegrationPoint("svc", clock=clock, rate_limit=seawall.RateLimit(rate=1.0, burst=2))
    admitted = [p.admit_first() for _ in range(3)]
    assert admitted[0] is not None and admitted[1] is not None
    assert admitted[2] is None
    clock.advance(1.0)
    assert p.admit_first() is not None
    assert p.admit_first() is None
