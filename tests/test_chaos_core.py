"""Fault injection in the core: Chaos as the innermost step, seen by every policy as a real fault."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

import seawall
from seawall import (
    Category,
    Chaos,
    CircuitBreaker,
    CircuitOpenError,
    Classification,
    Classifier,
    ConfigurationError,
    DeadlineExceeded,
    Fallback,
    IntegrationPoint,
    Retry,
    Timeout,
)
from seawall.testing import FakeClock

DOWN = Classification(Category.UNAVAILABLE, retry=True, breaker=True)


def ok() -> str:
    return "real"


async def aok() -> str:
    return "real"


def chaotic(chaos: Chaos, **kwargs: Any) -> IntegrationPoint:
    kwargs.setdefault("clock", FakeClock())
    return IntegrationPoint("chaotic", chaos=chaos, **kwargs)


# -- validation -------------------------------------------------------------------


@pytest.mark.parametrize(("kwargs", "named"), [
    ({"fault_rate": 1.5, "fault": ConnectionError}, "fault_rate"),
    ({"fault_rate": -0.1, "fault": ConnectionError}, "fault_rate"),
    ({"latency_rate": "0.5", "latency": 1.0}, "latency_rate"),
    ({"result_rate": float("nan"), "result": 1}, "result_rate"),
    ({"latency": -1.0}, "latency"),
    ({"fault_rate": 0.5}, "fault"),
    ({"latency_rate": 0.5}, "latency"),
    ({"result_rate": 0.5}, "result"),
    ({"fault": "boom"}, "fault"),
    ({"fault": KeyboardInterrupt}, "fault"),
    ({"fault": KeyboardInterrupt()}, "fault"),
    ({"seed": "7"}, "seed"),
    ({"seed": True}, "seed"),
    ({"enabled": 1}, "enabled"),
])
def test_bad_values_name_field_and_value(kwargs: dict[str, Any], named: str) -> None:
    """Each bad value is refused at construction with its field and value in the message."""
    with pytest.raises(ConfigurationError, match=rf"Chaos\.{named}\b") as info:
        Chaos(**kwargs)
    value = next(iter(kwargs.values())) if len(kwargs) == 1 else kwargs[named] \
        if named in kwargs else None
    assert repr(value) in str(info.value)


def test_point_refuses_a_non_chaos() -> None:
    """IntegrationPoint(chaos=...) takes a Chaos or None only."""
    with pytest.raises(ConfigurationError, match=r"IntegrationPoint\.chaos"):
        IntegrationPoint("p", chaos={"fault_rate": 1.0})  # type: ignore[arg-type]


def test_off_unless_configured() -> None:
    """A point without chaos= has no fault injection at all."""
    assert IntegrationPoint("plain").chaos is None
    assert Chaos().fault_rate == 0.0 and Chaos().latency_rate == 0.0 and Chaos().result_rate == 0.0


# -- faults -----------------------------------------------------------------------


def test_injected_fault_is_retried_and_reraised() -> None:
    """Every attempt gets the fault; retries run out; the fault itself is raised, counted apart."""
    point = chaotic(Chaos(fault_rate=1.0, fault=ConnectionError("injected")),
                    retry=Retry(attempts=3, budget=None))
    calls = []
    with pytest.raises(ConnectionError, match="injected"):
        point.call(lambda: calls.append(1))
    assert calls == []  # the dependency was never reached
    stats = point.stats()
    assert stats.attempts == 3 and stats.retries == 2
    assert stats.injected_attempts == 3 and stats.injected_failures == 1
    assert stats.failures == 0 and sum(stats.failures_by_category.values()) == 0
    assert stats.calls == stats.successes + stats.failures + stats.injected_failures \
        + stats.rejected + stats.cancelled


def test_fault_instance_is_copied_class_and_factory_called() -> None:
    """An instance is copied per injection; a class and a factory make a new one each time."""
    template = ConnectionError("tmpl")
    for fault in (template, ConnectionError, lambda: ConnectionError("made")):
        point = chaotic(Chaos(fault_rate=1.0, fault=fault))
        seen = []
        for _ in range(2):
            try:
                point.call(ok)
            except ConnectionError as exc:
                seen.append(exc)
        assert len(seen) == 2 and seen[0] is not seen[1] and template not in seen


def test_factory_returning_a_non_exception_is_a_type_error() -> None:
    """A factory must return an Exception; anything else is a TypeError, not a silent pass."""
    point = chaotic(Chaos(fault_rate=1.0, fault=lambda: "nope"))  # type: ignore[arg-type,return-value]
    with pytest.raises(TypeError, match="factory"):
        point.call(ok)


def test_injected_faults_open_the_breaker() -> None:
    """The breaker counts injected faults like real ones and opens."""
    point = chaotic(Chaos(fault_rate=1.0, fault=ConnectionError),
                    breaker=CircuitBreaker(failure_rate=0.5, minimum_calls=4, window=4))
    for _ in range(4):
        with pytest.raises(ConnectionError):
            point.call(ok)
    with pytest.raises(CircuitOpenError):
        point.call(ok)
    assert point.stats().rejected == 1


def test_fallback_answers_an_injected_fault() -> None:
    """The fallback takes an injected fault as any other."""
    point = chaotic(Chaos(fault_rate=1.0, fault=ConnectionError), fallback=Fallback(value="fb"))
    assert point.call(ok) == "fb"
    assert point.stats().fallbacks == 1


async def test_async_fault_and_decorator() -> None:
    """The async shell and the decorator (def and async def) inject too."""
    point = chaotic(Chaos(fault_rate=1.0, fault=TimeoutError))

    @point
    def sync_work() -> str:
        return "real"

    @point
    async def async_work() -> str:
        return "real"

    with pytest.raises(TimeoutError):
        sync_work()
    with pytest.raises(TimeoutError):
        await async_work()
    with pytest.raises(TimeoutError):
        await point.acall(aok)
    assert point.stats().injected_failures == 3


# -- results ----------------------------------------------------------------------


def test_injected_result_is_judged_by_the_classifier() -> None:
    """An injected result goes to the classifier: a failure is retried, then returned."""
    classifier = Classifier().on_result(lambda r: DOWN if r == 503 else None)
    point = chaotic(Chaos(result_rate=1.0, result=503), classifier=classifier,
                    retry=Retry(attempts=2, budget=None))
    assert point.call(ok) == 503
    stats = point.stats()
    assert stats.attempts == 2 and stats.injected_failures == 1 and stats.failures == 0


async def test_chaos_result_shapes_the_result() -> None:
    """run/arun's chaos_result turns Chaos.result into the integration's own value."""
    point = chaotic(Chaos(result_rate=1.0, result=503))

    async def attempt(_t: float | None) -> tuple[str, int]:
        return ("real", 200)

    shaped = await point.arun(attempt, "op", chaos_result=lambda status: ("injected", status))
    assert shaped == ("injected", 503)
    assert point.run(lambda _t: ("real", 200), "op",
                     chaos_result=lambda status: ("injected", status)) == ("injected", 503)


# -- latency ----------------------------------------------------------------------


def test_latency_waits_on_the_points_clock_then_calls() -> None:
    """Injected latency is a wait through the point's clock; the call then runs."""
    clock = FakeClock()
    point = chaotic(Chaos(latency_rate=1.0, latency=0.25), clock=clock)
    assert point.call(ok) == "real"
    assert clock.sleeps == [0.25]
    stats = point.stats()
    assert stats.successes == 1 and stats.injected_attempts == 1


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_latency_past_the_attempt_timeout_is_a_timeout(mode: str) -> None:
    """Latency longer than the attempt timeout waits that long and fails as a timeout."""
    clock = FakeClock()
    point = chaotic(Chaos(latency_rate=1.0, latency=5.0), clock=clock,
                    timeout=Timeout(attempt=0.5), retry=Retry(attempts=2, budget=None))
    with pytest.raises(DeadlineExceeded):
        if mode == "sync":
            point.call(ok)
        else:
            await point.acall(aok)
    assert [s for s in clock.sleeps if s == 0.5] == [0.5, 0.5]
    stats = point.stats()
    assert stats.injected_failures == 1 and stats.timeouts == 0 and stats.failures == 0


# -- switches and sequences ---------------------------------------------------------


def test_enable_disable_at_run_time() -> None:
    """point.chaos.disable() lets calls through; enable() brings injection back."""
    point = chaotic(Chaos(fault_rate=1.0, fault=ConnectionError, enabled=False))
    assert point.chaos is not None and not point.chaos.enabled
    assert point.call(ok) == "real"
    point.chaos.enable()
    with pytest.raises(ConnectionError):
        point.call(ok)
    point.chaos.disable()
    assert point.call(ok) == "real"


@pytest.mark.parametrize("value", ["off", "OFF", "0", "false"])
def test_environment_turns_every_injection_off(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    """SEAWALL_CHAOS=off wins over an enabled point, read at each call."""
    point = chaotic(Chaos(fault_rate=1.0, fault=ConnectionError))
    monkeypatch.setenv("SEAWALL_CHAOS", value)
    assert point.chaos is not None and not point.chaos.enabled
    assert point.call(ok) == "real"
    monkeypatch.setenv("SEAWALL_CHAOS", "on")
    with pytest.raises(ConnectionError):
        point.call(ok)


def outcomes(seed: int, n: int) -> list[str]:
    point = chaotic(Chaos(fault_rate=0.3, fault=ConnectionError, seed=seed))
    out = []
    for _ in range(n):
        try:
            out.append(point.call(ok))
        except ConnectionError:
            out.append("fault")
    return out


def test_seed_gives_a_reproducible_sequence() -> None:
    """The same seed injects at the same calls; another seed elsewhere."""
    first = outcomes(7, 200)
    assert first == outcomes(7, 200)
    assert first != outcomes(8, 200)
    assert 30 < first.count("fault") < 90  # about 30 %


def test_draw_is_none_without_injection() -> None:
    """draw() answers None for an attempt left alone, an Injection otherwise."""
    runtime = chaotic(Chaos(fault_rate=1.0, fault=ConnectionError, seed=1)).chaos
    assert runtime is not None
    injection = runtime.draw()
    assert injection is not None and isinstance(injection.fault, ConnectionError)
    runtime.disable()
    assert runtime.draw() is None


# -- events -----------------------------------------------------------------------


def test_events_mark_injected_attempts_and_calls() -> None:
    """AttemptEvent and CallEvent carry injected=True for injected outcomes, False for real ones."""
    clock = FakeClock()
    point = IntegrationPoint("marks", clock=clock, retry=Retry(attempts=2, budget=None),
                             chaos=Chaos(fault_rate=0.5, fault=ConnectionError, seed=3))
    events: list[seawall.Event] = []
    point.add_hook(events.append)
    for _ in range(20):
        try:
            point.call(ok)
        except ConnectionError:
            pass
    attempts = [e for e in events if isinstance(e, seawall.AttemptEvent)]
    calls = [e for e in events if isinstance(e, seawall.CallEvent)]
    assert {e.injected for e in attempts} == {True, False}
    assert all(e.injected == (e.category is not None) for e in attempts)
    assert all(e.injected == (e.category is not None) for e in calls)
    stats = point.stats()
    assert stats.injected_failures == sum(1 for e in calls if e.injected)
    assert stats.injected_attempts == sum(1 for e in attempts if e.injected)


# -- many threads and tasks ---------------------------------------------------------


def expected_faults(seed: int, n: int) -> int:
    return outcomes(seed, n).count("fault")


def test_many_threads_share_one_sequence() -> None:
    """Threads draw from one seeded sequence: the number of faults matches a serial run."""
    n_threads, per_thread = 8, 50
    point = chaotic(Chaos(fault_rate=0.3, fault=ConnectionError, seed=11))
    barrier = threading.Barrier(n_threads)

    def worker() -> None:
        barrier.wait(timeout=10)
        for _ in range(per_thread):
            try:
                point.call(ok)
            except ConnectionError:
                pass

    threads = [threading.Thread(target=worker) for _ in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads)
    stats = point.stats()
    total = n_threads * per_thread
    assert stats.calls == total
    assert stats.injected_failures == expected_faults(11, total)
    assert stats.successes + stats.injected_failures == total


async def test_many_tasks_share_one_sequence() -> None:
    """Tasks draw from one seeded sequence: the number of faults matches a serial run."""
    point = chaotic(Chaos(fault_rate=0.3, fault=ConnectionError, seed=12))

    async def work() -> str:
        await asyncio.sleep(0)
        return "real"

    async def one() -> None:
        try:
            await point.acall(work)
        except ConnectionError:
            pass

    await asyncio.wait_for(asyncio.gather(*(one() for _ in range(400))), timeout=30)
    stats = point.stats()
    assert stats.calls == 400
    assert stats.injected_failures == expected_faults(12, 400)


def test_trio_shell_injects_inside_the_attempt_deadline() -> None:
    """Under trio, injected latency past the attempt timeout fails as a timeout; faults retry."""
    import trio

    clock = FakeClock()
    slow = chaotic(Chaos(latency_rate=1.0, latency=2.0), clock=clock,
                   timeout=Timeout(attempt=0.5), retry=Retry(attempts=2, budget=None))
    down = chaotic(Chaos(fault_rate=1.0, fault=ConnectionError), retry=Retry(attempts=3,
                                                                             budget=None))

    async def main() -> None:
        with pytest.raises(DeadlineExceeded):
            await slow.acall(aok)
        with pytest.raises(ConnectionError):
            await down.acall(aok)

    trio.run(main)
    assert slow.stats().injected_attempts == 2 and clock.sleeps.count(0.5) == 2
    assert down.stats().attempts == 3 and down.stats().injected_failures == 1
