"""Success-path cost per call of seawall's core against the peers users pick today.

Run: ``.venv/bin/python bench/core.py`` (or ``make bench``). Every figure
comes from this one run: cases are measured in interleaved rounds and the
best round of each is kept, so a noisy neighbour hurts every case alike.
Printed: ns per call (the called function's own cost included) and the
ratio to seawall's full pipeline, for sync and async.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import sys
import time
import warnings
from collections.abc import Awaitable, Callable
from typing import Any

import seawall
from seawall.testing import full_pipeline_point

warnings.simplefilter("ignore")




def retry_point(name: str) -> seawall.IntegrationPoint:
    return seawall.IntegrationPoint(name, retry=seawall.Retry(attempts=3))


# -- sync cases ---------------------------------------------------------------

def sync_cases() -> dict[str, Callable[[int], Any]]:
    import backoff
    import circuitbreaker
    import pybreaker
    import pyresilience
    import redress
    import stamina
    import tenacity

    def work(x: int) -> int:
        return x

    cases: dict[str, Callable[[int], Any]] = {"bare call": work}
    cases["seawall retry"] = retry_point("bench-retry")(work)
    cases["seawall full pipeline"] = full_pipeline_point("bench-full")(work)
    cases["tenacity retry"] = tenacity.retry(
        stop=tenacity.stop_after_attempt(3), wait=tenacity.wait_none())(work)
    stamina.set_active(True)
    cases["stamina retry"] = stamina.retry(on=ConnectionError, attempts=3)(work)
    cases["backoff retry"] = backoff.on_exception(backoff.expo, ConnectionError, max_tries=3)(work)
    cases["pybreaker breaker"] = pybreaker.CircuitBreaker(fail_max=5)(work)
    cases["circuitbreaker breaker"] = circuitbreaker.circuit(failure_threshold=5)(work)
    policy = redress.RetryPolicy(classifier=redress.default_classifier, max_attempts=3,
                                 strategy=redress.decorrelated_jitter(max_s=1.0))
    cases["redress retry"] = lambda x: policy.call(lambda: work(x))
    cases["pyresilience retry"] = pyresilience.resilient(
        retry=pyresilience.RetryConfig(max_attempts=3, retry_on=(ConnectionError,)))(work)
    cases["pyresilience breaker"] = pyresilience.resilient(
        circuit_breaker=pyresilience.CircuitBreakerConfig())(work)
    return cases


def extra_sync_cases() -> dict[str, Callable[[int], Any]]:
    """One retry with a zero delay, and a rejection by an open breaker."""
    flaky_point = seawall.IntegrationPoint(
        "bench-flaky", retry=seawall.Retry(attempts=2, backoff=seawall.Backoff.constant(0.0),
                                           budget=None))
    state = {"n": 0}

    @flaky_point
    def flaky(x: int) -> int:
        state["n"] += 1
        if state["n"] & 1:
            raise ConnectionError("first attempt fails")
        return x

    open_point = full_pipeline_point("bench-open")
    assert open_point.circuit is not None
    open_point.circuit.force_open()

    @open_point
    def never(x: int) -> int:
        return x

    def rejected(x: int) -> None:
        try:
            never(x)
        except seawall.CircuitOpenError:
            pass

    return {"seawall call with 1 retry (0 s delay)": flaky,
            "seawall rejection (breaker open)": rejected}


def time_sync(fn: Callable[[int], Any], n: int) -> float:
    start = time.perf_counter()
    for i in range(n):
        fn(i)
    return (time.perf_counter() - start) / n


# -- async cases --------------------------------------------------------------

def async_cases() -> dict[str, Callable[[int], Awaitable[Any]]]:
    import backoff
    import circuitbreaker
    import pyresilience
    import redress
    import stamina
    import tenacity

    async def work(x: int) -> int:
        return x

    cases: dict[str, Callable[[int], Awaitable[Any]]] = {"bare call": work}
    cases["seawall retry"] = retry_point("abench-retry")(work)
    cases["seawall full pipeline"] = full_pipeline_point("abench-full")(work)
    cases["tenacity retry"] = tenacity.retry(
        stop=tenacity.stop_after_attempt(3), wait=tenacity.wait_none())(work)
    stamina.set_active(True)
    cases["stamina retry"] = stamina.retry(on=ConnectionError, attempts=3)(work)
    cases["backoff retry"] = backoff.on_exception(backoff.expo, ConnectionError, max_tries=3)(work)
    cases["circuitbreaker breaker"] = circuitbreaker.circuit(failure_threshold=5)(work)
    policy = redress.AsyncRetryPolicy(classifier=redress.default_classifier, max_attempts=3,
                                      strategy=redress.decorrelated_jitter(max_s=1.0))
    cases["redress retry"] = lambda x: policy.call(lambda: work(x))
    cases["pyresilience retry"] = pyresilience.resilient(
        retry=pyresilience.RetryConfig(max_attempts=3, retry_on=(ConnectionError,)))(work)
    cases["pyresilience breaker"] = pyresilience.resilient(
        circuit_breaker=pyresilience.CircuitBreakerConfig())(work)

    async def with_asyncio_timeout(x: int) -> int:
        async with asyncio.timeout(1.0):
            return await work(x)

    if sys.version_info >= (3, 11):
        cases["asyncio.timeout() alone"] = with_asyncio_timeout
    cases["seawall attempt timeout alone"] = seawall.IntegrationPoint(
        "abench-timeout", timeout=seawall.Timeout(attempt=1.0))(work)
    return cases


def extra_async_cases() -> dict[str, Callable[[int], Awaitable[Any]]]:
    flaky_point = seawall.IntegrationPoint(
        "abench-flaky", retry=seawall.Retry(attempts=2, backoff=seawall.Backoff.constant(0.0),
                                            budget=None))
    state = {"n": 0}

    @flaky_point
    async def flaky(x: int) -> int:
        state["n"] += 1
        if state["n"] & 1:
            raise ConnectionError("first attempt fails")
        return x

    open_point = full_pipeline_point("abench-open")
    assert open_point.circuit is not None
    open_point.circuit.force_open()

    @open_point
    async def never(x: int) -> int:
        return x

    async def rejected(x: int) -> None:
        with contextlib.suppress(seawall.CircuitOpenError):
            await never(x)

    return {"seawall call with 1 retry (0 s delay)": flaky,
            "seawall rejection (breaker open)": rejected}


async def time_async(fn: Callable[[int], Awaitable[Any]], n: int) -> float:
    start = time.perf_counter()
    for i in range(n):
        await fn(i)
    return (time.perf_counter() - start) / n


# -- running and printing -----------------------------------------------------

def measure(cases: dict[str, Any], n: int, rounds: int, is_async: bool) -> dict[str, float]:
    best = {name: float("inf") for name in cases}
    loop = asyncio.new_event_loop() if is_async else None
    try:
        for _ in range(rounds):
            for name, fn in cases.items():
                gc.disable()
                try:
                    if loop is not None:
                        per = loop.run_until_complete(time_async(fn, n))
                    else:
                        per = time_sync(fn, n)
                finally:
                    gc.enable()
                best[name] = min(best[name], per)
    finally:
        if loop is not None:
            loop.close()
    return best


def table(title: str, best: dict[str, float], reference: str) -> list[str]:
    ref = best[reference]
    lines = [f"\n{title}", f"{'case':<40} {'ns/call':>10} {'x seawall full':>15}"]
    for name, per in best.items():
        lines.append(f"{name:<40} {per * 1e9:>10.0f} {per / ref:>15.2f}")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=20000, help="calls per case per round")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds (best kept)")
    args = parser.parse_args()
    if not (0 < args.calls <= 1_000_000 and 0 < args.rounds <= 50):
        parser.error("--calls must be in 1..1000000 and --rounds in 1..50")

    sync = measure({**sync_cases(), **extra_sync_cases()}, args.calls, args.rounds, False)
    asyn = measure({**async_cases(), **extra_async_cases()}, args.calls, args.rounds, True)
    out = ["bench/core.py: success-path cost per call (best of "
           f"{args.rounds} interleaved rounds of {args.calls} calls)"]
    out += table("sync", sync, "seawall full pipeline")
    out += table("async", asyn, "seawall full pipeline")

    def ratio(best: dict[str, float], a: str, b: str) -> float:
        return best[a] / best[b]

    out.append("\ntargets (ratios from this run)")
    for label, best in (("sync", sync), ("async", asyn)):
        out.append(f"  {label}: seawall retry / pyresilience retry = "
                   f"{ratio(best, 'seawall retry', 'pyresilience retry'):.2f} (target <= 1.00)")
        out.append(f"  {label}: tenacity retry / seawall full = "
                   f"{ratio(best, 'tenacity retry', 'seawall full pipeline'):.2f} (target >= 5.00)")
    out.append(f"  sync: seawall full / pyresilience retry = "
               f"{ratio(sync, 'seawall full pipeline', 'pyresilience retry'):.2f} (target <= 1.50)")
    if "asyncio.timeout() alone" in asyn:
        bare = asyn["bare call"]
        ours = asyn["seawall attempt timeout alone"] - bare
        theirs = asyn["asyncio.timeout() alone"] - bare
        out.append(f"  async: attempt timeout adds {ours * 1e9:.0f} ns, asyncio.timeout() adds "
                   f"{theirs * 1e9:.0f} ns ({theirs / ours:.1f}x)")
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
