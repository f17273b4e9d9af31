"""Hedge(delay ~ p95) against latency spikes: p99 and the server's request count, gRPC and HTTP.

Run: ``.venv/bin/python bench/hedge.py`` (or ``make bench``); about 30 s.
Two loopback servers in a child process's event loop, a grpc.aio server
and a minimal HTTP/1.1 server, answer each request after 1 ms, except one
request in every 20 (at a seeded random place in each block of 20: 5 %
exactly) which takes 200 ms. 4 asyncio callers send ``--calls`` requests:

* gRPC: a grpc.aio channel with seawall's interceptors, the route
  ``idempotent=True`` (the hedged unary-unary path of the interceptors);
* HTTP: an ``httpx.AsyncClient`` GET inside a decorated ``async def``.

Each protocol runs once without a hedge, then with ``Hedge(delay=p95)``,
where p95 is the unhedged run's 95th percentile (nearest rank, so the
slowest of the fast 95 %). Printed: p50 and p99 of each run, the p99
ratio (target <= 1/5), and the requests the server received per call
(target <= 1.10).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import random
import statistics
import sys
import time
import warnings
from collections.abc import Awaitable, Callable
from typing import Any

# this file is bench/hedge.py: drop bench/ from the path so ``import grpc`` finds grpcio
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]

import grpc  # noqa: E402
import grpc.aio  # noqa: E402
import httpx  # noqa: E402

import seawall  # noqa: E402
from seawall.interceptors import grpc as sw_grpc  # noqa: E402

warnings.simplefilter("ignore")

CALLERS = 4
FAST, SLOW, BLOCK = 0.001, 0.2, 20
METHOD = "/bench.Hedge/Get"


class Spiky:
    """The latency schedule of one server: one slow answer per block of 20, seeded."""

    def __init__(self, seed: int, counter: Any) -> None:
        self.rand = random.Random(seed)
        self.block: list[float] = []
        self.counter = counter  # a multiprocessing.Value: the requests received

    def next(self) -> float:
        with self.counter.get_lock():
            self.counter.value += 1
        if not self.block:
            self.block = [FAST] * (BLOCK - 1) + [SLOW]
            self.rand.shuffle(self.block)
        return self.block.pop()


async def _serve(ports: Any, grpc_count: Any, http_count: Any, stop: Any) -> None:
    grpc_latency, http_latency = Spiky(1, grpc_count), Spiky(2, http_count)

    async def get(request: bytes, context: Any) -> bytes:
        await asyncio.sleep(grpc_latency.next())
        return b"ok"

    server = grpc.aio.server()
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        "bench.Hedge", {"Get": grpc.unary_unary_rpc_method_handler(get)}),))
    grpc_port = server.add_insecure_port("127.0.0.1:0")
    await server.start()

    async def http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                while (await reader.readline()) not in (b"\r\n", b""):
                    pass
                await asyncio.sleep(http_latency.next())
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    http_server = await asyncio.start_server(http, "127.0.0.1", 0)
    ports.put((grpc_port, http_server.sockets[0].getsockname()[1]))
    while not stop.is_set():
        await asyncio.sleep(0.05)
    http_server.close()
    await server.stop(None)


def _server_process(ports: Any, grpc_count: Any, http_count: Any, stop: Any) -> None:
    asyncio.run(_serve(ports, grpc_count, http_count, stop))


class Servers:
    """A grpc.aio server and an HTTP/1.1 server on 127.0.0.1, in a child process (so the
    client measured here has the interpreter to itself)."""

    def __init__(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.grpc_count = ctx.Value("i", 0)
        self.http_count = ctx.Value("i", 0)
        self._ports = ctx.Queue()
        self._stop = ctx.Event()
        self._process = ctx.Process(target=_server_process, daemon=True, args=(
            self._ports, self.grpc_count, self.http_count, self._stop))
        self.grpc_port = self.http_port = 0

    def __enter__(self) -> Servers:
        self._process.start()
        self.grpc_port, self.http_port = self._ports.get(timeout=30)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._process.join(10)


def rank(values: list[float], q: float) -> float:
    """The nearest-rank (lower) ``q`` quantile."""
    ordered = sorted(values)
    return ordered[max(0, int(q * len(ordered)) - 1)]


async def drive(call: Callable[[], Awaitable[Any]], calls: int) -> list[float]:
    """``calls`` calls from CALLERS tasks; each call's latency in seconds."""
    latencies: list[float] = []
    left = [calls]

    async def caller() -> None:
        while left[0] > 0:
            left[0] -= 1
            t0 = time.perf_counter()
            await call()
            latencies.append(time.perf_counter() - t0)

    await asyncio.gather(*(caller() for _ in range(CALLERS)))
    return latencies


async def grpc_run(servers: Servers, hedge: seawall.Hedge | None, calls: int,
                   ) -> tuple[list[float], int, seawall.PointStats]:
    point = seawall.IntegrationPoint("bench-hedge-grpc", hedge=hedge)
    route = sw_grpc.Route(point, idempotent=True)
    async with grpc.aio.insecure_channel(
            f"127.0.0.1:{servers.grpc_port}",
            interceptors=sw_grpc.aio_client_interceptors(route)) as channel:
        get = channel.unary_unary(METHOD)
        for _ in range(20):
            await get(b"x", timeout=5)
        before = servers.grpc_count.value
        latencies = await drive(lambda: get(b"x", timeout=5), calls)
        return latencies, servers.grpc_count.value - before, point.stats()


async def http_run(servers: Servers, hedge: seawall.Hedge | None, calls: int,
                   ) -> tuple[list[float], int, seawall.PointStats]:
    point = seawall.IntegrationPoint("bench-hedge-http", hedge=hedge)
    url = f"http://127.0.0.1:{servers.http_port}/item"
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=64)) as client:
        @point
        async def get() -> bytes:
            return (await client.get(url)).content

        for _ in range(20):
            await get()
        before = servers.http_count.value
        latencies = await drive(get, calls)
        return latencies, servers.http_count.value - before, point.stats()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=2000, help="calls per run")
    parser.add_argument("--quantiles", action="store_true",
                        help="print the unhedged runs' latency quantiles too")
    args = parser.parse_args()
    rows = []
    with Servers() as servers:
        for name, run in (("gRPC", grpc_run), ("HTTP", http_run)):
            plain, plain_requests, _ = asyncio.run(run(servers, None, args.calls))
            delay = rank(plain, 0.95)
            if args.quantiles:
                print(name, "unhedged ms at p50/80/90/94/95/96/99:",
                      [round(rank(plain, q) * 1e3, 1) for q in (.5, .8, .9, .94, .95, .96, .99)])
            hedged, hedged_requests, stats = asyncio.run(
                run(servers, seawall.Hedge(delay=delay), args.calls))
            rows.append((name, plain, plain_requests, delay, hedged, hedged_requests, stats))
    print(f"hedging: {CALLERS} callers, {args.calls} calls per run; the server answers in "
          f"{FAST * 1e3:.0f} ms, 1 request in {BLOCK} in {SLOW * 1e3:.0f} ms")
    print(f"{'':6} {'p50 / p99 without':>20} {'delay':>8} {'p50 / p99 with':>18} "
          f"{'p99 ratio':>10} {'requests/call':>14} {'hedges won':>11}")
    ok = True
    for name, plain, plain_requests, delay, hedged, hedged_requests, stats in rows:
        p99_plain, p99_hedged = rank(plain, 0.99), rank(hedged, 0.99)
        ratio = p99_hedged / p99_plain
        per_call = hedged_requests / args.calls
        ok = ok and ratio <= 0.2 and per_call <= 1.10
        print(f"{name:6} {statistics.median(plain) * 1e3:7.1f} / {p99_plain * 1e3:6.1f} ms "
              f"{delay * 1e3:5.1f} ms {statistics.median(hedged) * 1e3:6.1f} / "
              f"{p99_hedged * 1e3:5.1f} ms {ratio:10.3f} "
              f"{per_call:8.3f} (was {plain_requests / args.calls:.2f}) "
              f"{stats.hedges_won:5d}/{stats.hedges}")
    print("targets (p99 <= 1/5 of unhedged, <= 1.10 requests per call):",
          "met" if ok else "NOT met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
