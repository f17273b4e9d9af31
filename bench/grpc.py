"""Unary echo over loopback: what seawall costs per gRPC call, sync and grpc.aio, both mountings.

Run: ``.venv/bin/python bench/grpc.py`` (or ``make bench``); about 40-60 s.
The echo server runs in a child process (a sync ``grpc.server``), so the
client measured here has the interpreter to itself. Cases per mode:

* plain channel, nothing mounted;
* the plain channel with a 1 s deadline on every call, as the full pipeline's
  attempt timeout puts on each attempt: gRPC's own cost of a deadline, shown
  beside (the targets stay against the plain channel without one);
* a no-op interceptor: gRPC's own interceptor machinery, the floor of any interceptor;
* seawall's interceptors with the full pipeline (retry + budget, breaker,
  bulkhead, attempt and total timeouts);
* seawall's channel wrapper (``resilient_channel`` / ``aio_resilient_channel``)
  with the same pipeline;
* gRPC's native service-config retry (``retryPolicy``), nothing mounted.

Every case has its own warmed-up channel; the cases take turns call by
call (the order reversed every other round), so a noisy neighbour hurts
them alike; p50 and p99 are over all calls. Targets: the interceptors'
p50 <= 1.10 x the no-op floor's, the wrapper's p50 <= 1.03 x the plain
channel's.

``--instructions`` counts instead, with callgrind (valgrind must be
installed; several minutes): the CPU instructions the client's main thread
spends per call in each case, which the machine's load cannot move. The
full pipeline there gets 30 s / 60 s timeouts, as calls under valgrind
are slow.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import multiprocessing
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from typing import Any

# this file is bench/grpc.py: drop bench/ from the path so ``import grpc`` finds grpcio,
# and put the repository root there so the test service (tests/grpc_support) imports
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]
sys.path.insert(0, os.path.dirname(_HERE))

import grpc  # noqa: E402
import grpc.aio  # noqa: E402

import seawall  # noqa: E402
from seawall.interceptors import grpc as sw_grpc  # noqa: E402
from seawall.testing import full_pipeline_point  # noqa: E402

warnings.simplefilter("ignore")

SERVICE = "seawall.test.v1.Echo"
INTERCEPTOR_TARGET = 1.10  # seawall's interceptors / the no-op interceptor, p50
WRAPPER_TARGET = 1.03  # seawall's channel wrapper / the plain channel, p50

PLAIN = "plain channel"
DEADLINE = "plain, 1 s deadline"
FLOOR = "no-op interceptor"
INTERCEPTORS = "seawall interceptors"
WRAPPER = "seawall channel wrapper"
NATIVE = "native retryPolicy"
CASES = (PLAIN, DEADLINE, FLOOR, INTERCEPTORS, WRAPPER, NATIVE)

NATIVE_RETRY = json.dumps({
    "methodConfig": [{
        "name": [{"service": SERVICE}],
        "retryPolicy": {"maxAttempts": 3, "initialBackoff": "0.05s", "maxBackoff": "1s",
                        "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"]},
    }],
    "retryThrottling": {"maxTokens": 10, "tokenRatio": 0.1},
})


def _serve(ready: Any, stop: Any) -> None:
    from tests.grpc_support.servers import Backend, start_sync_server

    server, port = start_sync_server(Backend())
    ready.put(port)
    stop.wait()
    server.stop(None)


class NoopSync(grpc.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(details, request)


class NoopAio(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(details, request)


def pipeline(name: str, slow: bool) -> seawall.IntegrationPoint:
    if slow:  # under valgrind a call takes tens of milliseconds
        return full_pipeline_point(name, timeout=seawall.Timeout(attempt=30.0, total=60.0))
    return full_pipeline_point(name)


def caller(stub: Any, case: str) -> Callable[[Any], Any]:
    """The stub's unary method as the case calls it (with a deadline, or without)."""
    if case == DEADLINE:
        return functools.partial(stub.Unary, timeout=1.0)
    return stub.Unary  # type: ignore[no-any-return]


def sync_channel(case: str, target: str, slow: bool = False) -> grpc.Channel:
    if case in (PLAIN, DEADLINE):
        return grpc.insecure_channel(target)
    if case == FLOOR:
        return grpc.intercept_channel(grpc.insecure_channel(target), NoopSync())
    if case == INTERCEPTORS:
        return grpc.intercept_channel(grpc.insecure_channel(target), *sw_grpc.client_interceptors(
            pipeline("bench-sync-interceptors", slow)))
    if case == WRAPPER:
        return sw_grpc.resilient_channel(grpc.insecure_channel(target),
                                         pipeline("bench-sync-wrapper", slow))
    assert case == NATIVE
    return grpc.insecure_channel(target, options=[("grpc.service_config", NATIVE_RETRY)])


def aio_channel(case: str, target: str, slow: bool = False) -> grpc.aio.Channel:
    if case in (PLAIN, DEADLINE):
        return grpc.aio.insecure_channel(target)
    if case == FLOOR:
        return grpc.aio.insecure_channel(target, interceptors=[NoopAio()])
    if case == INTERCEPTORS:
        return grpc.aio.insecure_channel(target, interceptors=sw_grpc.aio_client_interceptors(
            pipeline("bench-aio-interceptors", slow)))
    if case == WRAPPER:
        return sw_grpc.aio_resilient_channel(grpc.aio.insecure_channel(target),
                                             pipeline("bench-aio-wrapper", slow))
    assert case == NATIVE
    return grpc.aio.insecure_channel(target, options=[("grpc.service_config", NATIVE_RETRY)])


def run_sync(target: str, calls: int) -> dict[str, list[float]]:
    from tests.grpc_support.servers import pb2, pb2_grpc

    channels = {case: sync_channel(case, target) for case in CASES}
    unary = {case: caller(pb2_grpc.EchoStub(ch), case) for case, ch in channels.items()}
    request = pb2.EchoRequest(key="bench", text="x")
    now = time.perf_counter
    samples: dict[str, list[float]] = {case: [] for case in CASES}
    for call in unary.values():  # connect and warm up
        for _ in range(300):
            call(request)
    # one call per case in turn (alternating direction), so load from the rest of the
    # machine lands on every case alike
    order = [(samples[case], unary[case]) for case in CASES]
    for i in range(calls):
        for out, call in (order if i % 2 else order[::-1]):
            t0 = now()
            call(request)
            out.append(now() - t0)
    for ch in channels.values():
        ch.close()
    return samples


async def run_aio(target: str, calls: int) -> dict[str, list[float]]:
    from tests.grpc_support.servers import pb2, pb2_grpc

    channels = {case: aio_channel(case, target) for case in CASES}
    unary = {case: caller(pb2_grpc.EchoStub(ch), case) for case, ch in channels.items()}
    request = pb2.EchoRequest(key="bench", text="x")
    now = time.perf_counter
    samples: dict[str, list[float]] = {case: [] for case in CASES}
    for call in unary.values():
        for _ in range(300):
            await call(request)
    order = [(samples[case], unary[case]) for case in CASES]
    for i in range(calls):
        for out, call in (order if i % 2 else order[::-1]):
            t0 = now()
            await call(request)
            out.append(now() - t0)
    for ch in channels.values():
        await ch.close()
    return samples


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def table(title: str, samples: dict[str, list[float]]) -> tuple[list[str], float, float]:
    p50 = {case: statistics.median(values) for case, values in samples.items()}
    lines = [f"\n{title}",
             f"{'case':<26}{'p50 us':>9}{'p99 us':>9}{'p50/plain':>11}{'p50/no-op':>11}"]
    for case, values in samples.items():
        lines.append(f"{case:<26}{p50[case] * 1e6:>9.1f}{percentile(values, 0.99) * 1e6:>9.1f}"
                     f"{p50[case] / p50[PLAIN]:>10.3f}x{p50[case] / p50[FLOOR]:>10.3f}x")
    return lines, p50[INTERCEPTORS] / p50[FLOOR], p50[WRAPPER] / p50[PLAIN]


def with_server(work: Callable[[str], Any]) -> Any:
    ctx = multiprocessing.get_context("spawn")
    ready, stop = ctx.Queue(), ctx.Event()
    server = ctx.Process(target=_serve, args=(ready, stop), daemon=True)
    server.start()
    try:
        return work(f"127.0.0.1:{ready.get(timeout=120)}")
    finally:
        stop.set()
        server.join(10)
        if server.is_alive():
            server.kill()


# -- instruction counts (callgrind) ---------------------------------------------


def _count_calls(mode: str, case: str, calls: int) -> None:
    """The body of one callgrind run: ``calls`` unary calls in one case, after a warm-up."""
    from tests.grpc_support.servers import pb2, pb2_grpc

    request = pb2.EchoRequest(key="bench", text="x")

    def sync_work(target: str) -> None:
        unary = caller(pb2_grpc.EchoStub(sync_channel(case, target, slow=True)), case)
        for _ in range(50 + calls):
            unary(request)

    async def aio_work(target: str) -> None:
        unary = caller(pb2_grpc.EchoStub(aio_channel(case, target, slow=True)), case)
        for _ in range(50 + calls):
            await unary(request)

    with_server(sync_work if mode == "sync" else lambda t: asyncio.run(aio_work(t)))


def _main_thread_instructions(mode: str, case: str, calls: int, out: str) -> int:
    subprocess.run(
        ["valgrind", "--tool=callgrind", "--separate-threads=yes",
         f"--callgrind-out-file={out}", sys.executable, os.path.abspath(__file__),
         "--count-calls", mode, case, str(calls)],
        # one hash seed for every run: string hashing moves the dict lookups of start-up by
        # ~1M instructions from run to run, ~1k a call in the difference otherwise
        env={**os.environ, "PYTHONHASHSEED": "0"}, check=True, capture_output=True)
    with open(f"{out}-01") as f:  # thread 1: the one making the calls
        found = re.search(r"^summary: (\d+)", f.read(), re.M)
    assert found is not None, f"no summary in {out}-01"
    return int(found.group(1))


def instructions(calls: int, modes: list[str], cases: list[str]) -> None:
    if shutil.which("valgrind") is None:
        raise SystemExit("--instructions needs valgrind on the PATH")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="seawall-bench-") as tmp:
        print(f"CPU instructions per unary call, the client's calling thread (callgrind; "
              f"runs of 200 and {200 + calls} calls, the difference over {calls})")
        for mode in modes:
            per_call = {}
            for case in cases:
                small = _main_thread_instructions(mode, case, 200, f"{tmp}/{mode}-a")
                large = _main_thread_instructions(mode, case, 200 + calls, f"{tmp}/{mode}-b")
                per_call[case] = (large - small) / calls
            print(f"\n{mode}")
            print(f"{'case':<26}{'instructions':>13}{'vs plain':>10}")
            for case, count in per_call.items():
                ratio = f"{count / per_call[PLAIN]:>9.3f}x" if PLAIN in per_call else ""
                print(f"{case:<26}{count:>13,.0f}{ratio}")
    print(f"\n({time.monotonic() - started:.0f} s)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=4000, help="calls per case and mode")
    parser.add_argument("--instructions", action="store_true",
                        help="count instructions per call with callgrind instead of timing")
    parser.add_argument("--modes", nargs="+", choices=("sync", "aio"), default=["sync", "aio"],
                        help="with --instructions: only these modes (default both)")
    parser.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES),
                        metavar="CASE", help="with --instructions: only these cases "
                        f"(default all: {', '.join(CASES)})")
    parser.add_argument("--count-calls", nargs=3, metavar=("MODE", "CASE", "CALLS"),
                        help=argparse.SUPPRESS)  # one callgrind run (used by --instructions)
    args = parser.parse_args()
    if args.count_calls:
        mode, case, calls = args.count_calls
        _count_calls(mode, case, int(calls))
        return 0
    if args.instructions:
        instructions(min(args.calls, 800), args.modes, [c for c in CASES if c in args.cases])
        return 0

    started = time.monotonic()
    sync_samples, aio_samples = with_server(
        lambda target: (run_sync(target, args.calls), asyncio.run(run_aio(target, args.calls))))
    print(f"gRPC unary echo over loopback, grpcio {grpc.__version__}, Python "
          f"{sys.version.split()[0]}, {args.calls} calls per case, cases interleaved call by call "
          f"({time.monotonic() - started:.1f} s)")
    sync_lines, sync_interceptors, sync_wrapper = table("sync", sync_samples)
    aio_lines, aio_interceptors, aio_wrapper = table("grpc.aio", aio_samples)
    print("\n".join(sync_lines + aio_lines))
    met = max(sync_interceptors, aio_interceptors) <= INTERCEPTOR_TARGET
    print(f"\ntarget seawall interceptors p50 <= {INTERCEPTOR_TARGET:.2f}x the no-op interceptor: "
          f"sync {sync_interceptors:.3f}x, aio {aio_interceptors:.3f}x -> "
          f"{'met' if met else 'MISSED'}")
    met = max(sync_wrapper, aio_wrapper) <= WRAPPER_TARGET
    print(f"target seawall channel wrapper p50 <= {WRAPPER_TARGET:.2f}x the plain channel: "
          f"sync {sync_wrapper:.3f}x, aio {aio_wrapper:.3f}x -> {'met' if met else 'MISSED'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
