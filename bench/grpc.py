"""Unary echo over loopback: what seawall's gRPC interceptors cost per call, sync and grpc.aio.

Run: ``.venv/bin/python bench/grpc.py`` (or ``make bench``); about 15-30 s.
The echo server runs in a child process (a sync ``grpc.server``), so the
client measured here has the interpreter to itself. Cases per mode:

* plain channel, no interceptor;
* a no-op interceptor: the floor, gRPC's own interceptor machinery;
* seawall's interceptors with the full pipeline (retry + budget, breaker,
  bulkhead, attempt and total timeouts);
* gRPC's native service-config retry (``retryPolicy``), no interceptor.

Every case has its own warmed-up channel; the cases take turns call by
call, so a noisy neighbour hurts them alike; p50 and p99 are over all calls. The target is
seawall p50 <= 1.10 x the no-op floor's p50.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import statistics
import sys
import time
import warnings
from typing import Any

# this file is bench/grpc.py: drop bench/ from the path so ``import grpc`` finds grpcio,
# and put the repository root there so the test service (tests/grpc_support) imports
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]
sys.path.insert(0, os.path.dirname(_HERE))

import grpc  # noqa: E402
import grpc.aio  # noqa: E402

from seawall.interceptors import grpc as sw_grpc  # noqa: E402
from seawall.testing import full_pipeline_point  # noqa: E402

warnings.simplefilter("ignore")

SERVICE = "seawall.test.v1.Echo"
TARGET_RATIO = 1.10


def _serve(ready: Any, stop: Any) -> None:
    from tests.grpc_support.servers import Backend, start_sync_server

    server, port = start_sync_server(Backend())
    ready.put(port)
    stop.wait()
    server.stop(None)




NATIVE_RETRY = json.dumps({
    "methodConfig": [{
        "name": [{"service": SERVICE}],
        "retryPolicy": {"maxAttempts": 3, "initialBackoff": "0.05s", "maxBackoff": "1s",
                        "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"]},
    }],
    "retryThrottling": {"maxTokens": 10, "tokenRatio": 0.1},
})


class NoopSync(grpc.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(details, request)


class NoopAio(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(details, request)


def sync_channels(target: str) -> dict[str, grpc.Channel]:
    return {
        "plain channel": grpc.insecure_channel(target),
        "no-op interceptor (floor)": grpc.intercept_channel(grpc.insecure_channel(target),
                                                            NoopSync()),
        "seawall full pipeline": grpc.intercept_channel(
            grpc.insecure_channel(target), *sw_grpc.client_interceptors(full_pipeline_point("bench-sync"))),
        "native retryPolicy": grpc.insecure_channel(
            target, options=[("grpc.service_config", NATIVE_RETRY)]),
    }


def aio_channels(target: str) -> dict[str, grpc.aio.Channel]:
    return {
        "plain channel": grpc.aio.insecure_channel(target),
        "no-op interceptor (floor)": grpc.aio.insecure_channel(target, interceptors=[NoopAio()]),
        "seawall full pipeline": grpc.aio.insecure_channel(
            target, interceptors=sw_grpc.aio_client_interceptors(full_pipeline_point("bench-aio"))),
        "native retryPolicy": grpc.aio.insecure_channel(
            target, options=[("grpc.service_config", NATIVE_RETRY)]),
    }


def run_sync(target: str, calls: int) -> dict[str, list[float]]:
    from tests.grpc_support.servers import pb2, pb2_grpc

    channels = sync_channels(target)
    stubs = {name: pb2_grpc.EchoStub(ch) for name, ch in channels.items()}
    request = pb2.EchoRequest(key="bench", text="x")
    now = time.perf_counter
    samples: dict[str, list[float]] = {name: [] for name in stubs}
    for stub in stubs.values():  # connect and warm up
        for _ in range(200):
            stub.Unary(request)
    # one call per case in turn (alternating direction), so load from the rest of the
    # machine lands on every case alike
    order = [(samples[name], stub.Unary) for name, stub in stubs.items()]
    for i in range(calls):
        for out, unary in (order if i % 2 else order[::-1]):
            t0 = now()
            unary(request)
            out.append(now() - t0)
    for ch in channels.values():
        ch.close()
    return samples


async def run_aio(target: str, calls: int) -> dict[str, list[float]]:
    from tests.grpc_support.servers import pb2, pb2_grpc

    channels = aio_channels(target)
    stubs = {name: pb2_grpc.EchoStub(ch) for name, ch in channels.items()}
    request = pb2.EchoRequest(key="bench", text="x")
    now = time.perf_counter
    samples: dict[str, list[float]] = {name: [] for name in stubs}
    for stub in stubs.values():
        for _ in range(200):
            await stub.Unary(request)
    order = [(samples[name], stub.Unary) for name, stub in stubs.items()]
    for i in range(calls):
        for out, unary in (order if i % 2 else order[::-1]):
            t0 = now()
            await unary(request)
            out.append(now() - t0)
    for ch in channels.values():
        await ch.close()
    return samples


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def table(title: str, samples: dict[str, list[float]]) -> tuple[list[str], float]:
    floor = "no-op interceptor (floor)"
    p50_floor = statistics.median(samples[floor])
    p99_floor = percentile(samples[floor], 0.99)
    lines = [f"\n{title}", f"{'case':<28}{'p50 us':>10}{'p99 us':>10}{'p50/floor':>11}{'p99/floor':>11}"]
    for name, values in samples.items():
        p50, p99 = statistics.median(values), percentile(values, 0.99)
        lines.append(f"{name:<28}{p50 * 1e6:>10.1f}{p99 * 1e6:>10.1f}"
                     f"{p50 / p50_floor:>10.2f}x{p99 / p99_floor:>10.2f}x")
    ratio = statistics.median(samples["seawall full pipeline"]) / p50_floor
    return lines, ratio


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=3000, help="calls per case and mode")
    args = parser.parse_args()

    ctx = multiprocessing.get_context("spawn")
    ready, stop = ctx.Queue(), ctx.Event()
    server = ctx.Process(target=_serve, args=(ready, stop), daemon=True)
    server.start()
    started = time.monotonic()
    try:
        port = ready.get(timeout=30)
        target = f"127.0.0.1:{port}"
        sync_samples = run_sync(target, args.calls)
        aio_samples = asyncio.run(run_aio(target, args.calls))
    finally:
        stop.set()
        server.join(10)
        if server.is_alive():
            server.kill()
    print(f"gRPC unary echo over loopback, grpcio {grpc.__version__}, Python "
          f"{sys.version.split()[0]}, {args.calls} calls per case, cases interleaved call by call "
          f"({time.monotonic() - started:.1f} s)")
    sync_lines, sync_ratio = table("sync (grpc.intercept_channel)", sync_samples)
    aio_lines, aio_ratio = table("grpc.aio (interceptors=...)", aio_samples)
    print("\n".join(sync_lines + aio_lines))
    verdict = "met" if max(sync_ratio, aio_ratio) <= TARGET_RATIO else "MISSED"
    print(f"\ntarget seawall p50 <= {TARGET_RATIO:.2f}x floor: sync {sync_ratio:.3f}x, "
          f"aio {aio_ratio:.3f}x -> {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
