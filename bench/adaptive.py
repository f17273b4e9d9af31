"""AdaptiveBulkhead against a fixed Bulkhead(64), 64 callers, a dependency of capacity N.

Run: ``.venv/bin/python bench/adaptive.py`` (or ``make bench``). A loopback
TCP server serves N requests at a time, each for ``--service`` seconds
(uniform within +-50 %, seeded);
beyond N, requests queue inside it (so its latency grows with the load,
as a saturated database or thread pool does). 64 asyncio callers send
requests back to back through one point with ``AdaptiveBulkhead`` (limit
sampled every 50 ms), then through one with ``Bulkhead(max_concurrent=64)``.
Printed side by side: the time until the limit enters and stays within
+-30 % of N, the final limit, and the dependency's p99 latency (measured by
the server, queueing included; for the adaptive run, of the requests after
it settled, and of the whole run) against its unloaded p99 (N/2 callers).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import threading
import time
from typing import Any

import seawall

CALLERS = 64


class Dependency:
    """A loopback server with ``capacity`` concurrent slots; beyond them requests queue."""

    def __init__(self, capacity: int, service: float) -> None:
        self.capacity = capacity
        self.service = service
        self.rand = random.Random(7)
        self.latencies: list[float] = []  # arrival to reply, seconds (queueing included)
        self.finished: list[float] = []  # when each reply left, seconds since started
        self.started = 0.0
        self.ready = threading.Event()
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    def __enter__(self) -> Dependency:
        self._thread.start()
        self.ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        slots = asyncio.Semaphore(self.capacity)

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while await reader.readline():
                    arrived = time.monotonic()
                    async with slots:
                        await asyncio.sleep(self.service * self.rand.uniform(0.5, 1.5))
                    done = time.monotonic()
                    self.latencies.append(done - arrived)
                    self.finished.append(done - self.started)
                    writer.write(b"ok\n")
                    await writer.drain()
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        self.ready.set()
        await self._stop.wait()
        server.close()
        await server.wait_closed()


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98] if len(values) >= 2 else values[0]


async def load(dep: Dependency, point: seawall.IntegrationPoint, callers: int,
               seconds: float) -> tuple[list[tuple[float, int]], list[tuple[float, float]]]:
    """``callers`` tasks calling back to back for ``seconds``: the limit's trace, and
    (finished at, latency) of each request, in seconds from the start."""
    conns = [await asyncio.open_connection("127.0.0.1", dep.port) for _ in range(callers)]
    dep.latencies.clear()
    dep.finished.clear()
    dep.started = time.monotonic()
    stop = time.monotonic() + seconds
    trace: list[tuple[float, int]] = []
    t0 = time.monotonic()

    async def caller(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async def send() -> bytes:
            writer.write(b"x\n")
            return await reader.readline()

        while time.monotonic() < stop:
            await point.acall(send)

    async def watch() -> None:
        while time.monotonic() < stop:
            permits: Any = point.permits
            limit = permits.limit if hasattr(permits, "limit") else point.stats().concurrency_limit
            trace.append((time.monotonic() - t0, limit or 0))
            await asyncio.sleep(0.05)

    await asyncio.gather(watch(), *(caller(r, w) for r, w in conns))
    for _, w in conns:
        w.close()
    return trace, list(zip(dep.finished, dep.latencies, strict=True))


def settle_time(trace: list[tuple[float, int]], target: int, band: float = 0.3) -> float | None:
    """Seconds until the limit entered, for good, [target * (1 - band), target * (1 + band)]."""
    low, high = target * (1 - band), target * (1 + band)
    last_out = None
    for t, limit in trace:
        if not (low <= limit <= high):
            last_out = t
    if last_out is not None and last_out >= trace[-1][0]:
        return None
    return 0.0 if last_out is None else last_out + 0.05


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--capacity", type=int, default=6, help="the dependency's N")
    parser.add_argument("--service", type=float, default=0.02, help="seconds per request")
    parser.add_argument("--seconds", type=float, default=12.0, help="the adaptive run's length")
    args = parser.parse_args()
    n = args.capacity
    with Dependency(n, args.service) as dep:
        # unloaded: half the capacity in use, so nothing queues (and enough samples for a p99)
        unloaded = asyncio.run(load(dep, seawall.IntegrationPoint("bench-unloaded"),
                                    max(1, n // 2), 2.0))[1]
        base = p99([x for _, x in unloaded])
        adaptive = seawall.IntegrationPoint(
            "bench-adaptive", bulkhead=seawall.AdaptiveBulkhead(initial=16, max_wait=30.0))
        trace, done = asyncio.run(load(dep, adaptive, CALLERS, args.seconds))
        tail = [limit for t, limit in trace if t >= trace[-1][0] - 2.0]
        fixed = seawall.IntegrationPoint(
            "bench-fixed", bulkhead=seawall.Bulkhead(max_concurrent=CALLERS, max_wait=30.0))
        _, fixed_done = asyncio.run(load(dep, fixed, CALLERS, 4.0))
    settled = settle_time(trace, n)
    whole = [x for _, x in done]
    # once settled: the requests that finished after the limit stayed within the band
    lat = [x for t, x in done if settled is not None and t >= settled] or whole
    fixed_lat = [x for _, x in fixed_done]
    final = trace[-1][1]
    rows: list[tuple[str, Any, Any]] = [
        ("settle time (+-30 % of N)", "never" if settled is None else f"{settled:.1f} s", "-"),
        (f"final limit (N = {n})",
         f"{final} (last 2 s: {min(tail)}-{max(tail)})", CALLERS),
        ("dependency p99, once settled", f"{p99(lat) * 1e3:.1f} ms",
         f"{p99(fixed_lat) * 1e3:.1f} ms"),
        ("p99 / unloaded p99", f"{p99(lat) / base:.2f}x", f"{p99(fixed_lat) / base:.2f}x"),
        ("p99 of the whole run", f"{p99(whole) * 1e3:.1f} ms ({p99(whole) / base:.2f}x)", "-"),
        ("requests per second", f"{len(whole) / args.seconds:.0f}",
         f"{len(fixed_lat) / 4.0:.0f}"),
    ]
    print(f"adaptive concurrency: {CALLERS} callers, capacity N={n}, "
          f"{args.service * 1e3:.0f} ms +-50 % per request, unloaded p99 {base * 1e3:.1f} ms")
    print(f"{'':30} {'AdaptiveBulkhead':>28} {'Bulkhead(64)':>14}")
    for name, a, b in rows:
        print(f"{name:30} {a!s:>28} {b!s:>14}")
    ok = settled is not None and settled <= 10.0 and p99(lat) <= 2 * base \
        and abs(final - n) <= 0.3 * n and p99(fixed_lat) > 5 * base
    print("targets (settle <= 10 s, within +-30 %, p99 <= 2x; fixed p99 > 5x):",
          "met" if ok else "NOT met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
