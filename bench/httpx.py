"""Cost of seawall's httpx transports on a loopback GET, against the floor and httpx-retries.

Run: ``.venv/bin/python bench/httpx.py`` (or ``make bench``); about 25 s.

A minimal keep-alive HTTP/1.1 server runs in a child process on
127.0.0.1 and answers every request with a fixed 200, so the client's own
cost dominates what is measured. Each case is a client sending GETs:

* ``plain client``: ``httpx.Client()`` as it comes;
* ``pass-through``: ``httpx.Client(transport=T)`` where ``T`` only forwards
  to an ``HTTPTransport`` -- the floor any wrapping transport starts from;
* ``seawall full pipeline``: ``ResilientTransport`` on a point with retry
  and retry budget, breaker, bulkhead, attempt and total timeouts;
* ``seawall retry only``: the same transport on a point with just ``Retry``;
* ``httpx-retries``: ``httpx_retries.RetryTransport(retry=Retry(total=3))``.

The same cases run with the async client. The cases take turns request by
request (a noisy neighbour hurts all alike); p50 and p99 are in
microseconds per request, ratios are against the pass-through's.
"""

from __future__ import annotations

import os
import sys

# run as a script, this file would shadow the httpx package: drop bench/ from the path
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]

import argparse  # noqa: E402
import asyncio  # noqa: E402
import gc  # noqa: E402
import multiprocessing  # noqa: E402
import socket  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Awaitable, Callable  # noqa: E402
from typing import Any  # noqa: E402

import httpx  # noqa: E402

import seawall  # noqa: E402
from seawall.interceptors import httpx as sw_httpx  # noqa: E402
from seawall.testing import full_pipeline_point  # noqa: E402

warnings.simplefilter("ignore")

_RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"


# -- the server (child process) -------------------------------------------------------------

class _Protocol(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: Any = transport
        self.buf = b""

    def data_received(self, data: bytes) -> None:
        self.buf += data
        # GETs carry no body: one blank line ends one request
        while b"\r\n\r\n" in self.buf:
            _, self.buf = self.buf.split(b"\r\n\r\n", 1)
            self.transport.write(_RESPONSE)


def _serve(sock: socket.socket) -> None:
    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(_Protocol, sock=sock)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


# -- the cases --------------------------------------------------------------------------------

class PassThrough(httpx.BaseTransport):
    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


class AsyncPassThrough(httpx.AsyncBaseTransport):
    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()




def sync_clients() -> dict[str, httpx.Client]:
    import httpx_retries

    return {
        "plain client": httpx.Client(),
        "pass-through (floor)": httpx.Client(transport=PassThrough()),
        "seawall full pipeline": httpx.Client(
            transport=sw_httpx.ResilientTransport(full_pipeline_point("bench-httpx"))),
        "seawall retry only": httpx.Client(transport=sw_httpx.ResilientTransport(
            seawall.IntegrationPoint("bench-httpx-retry", retry=seawall.Retry(attempts=3)))),
        "httpx-retries": httpx.Client(transport=httpx_retries.RetryTransport(
            transport=httpx.HTTPTransport(), retry=httpx_retries.Retry(total=3))),
    }


def async_clients() -> dict[str, httpx.AsyncClient]:
    import httpx_retries

    return {
        "plain client": httpx.AsyncClient(),
        "pass-through (floor)": httpx.AsyncClient(transport=AsyncPassThrough()),
        "seawall full pipeline": httpx.AsyncClient(
            transport=sw_httpx.AsyncResilientTransport(full_pipeline_point("bench-httpx-async"))),
        "seawall retry only": httpx.AsyncClient(transport=sw_httpx.AsyncResilientTransport(
            seawall.IntegrationPoint("bench-httpx-retry-async", retry=seawall.Retry(attempts=3)))),
        "httpx-retries": httpx.AsyncClient(transport=httpx_retries.RetryTransport(
            transport=httpx.AsyncHTTPTransport(), retry=httpx_retries.Retry(total=3))),
    }


# -- measuring --------------------------------------------------------------------------------

def measure_sync(clients: dict[str, httpx.Client], url: str, rounds: int, per_round: int
                 ) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {name: [] for name in clients}
    clock = time.perf_counter
    for client in clients.values():  # warm: connection open, code paths hot
        for _ in range(200):
            client.get(url)
    cases = [(client.get, samples[name]) for name, client in clients.items()]
    for _ in range(rounds):
        gc.disable()
        for _ in range(per_round):
            for get, out in cases:
                t0 = clock()
                get(url)
                out.append(clock() - t0)
        gc.enable()
    return samples


async def measure_async(clients: dict[str, httpx.AsyncClient], url: str, rounds: int,
                        per_round: int) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {name: [] for name in clients}
    clock = time.perf_counter
    for client in clients.values():
        for _ in range(200):
            await client.get(url)
    cases: list[tuple[Callable[[str], Awaitable[httpx.Response]], list[float]]] = [
        (client.get, samples[name]) for name, client in clients.items()]
    for _ in range(rounds):
        gc.disable()
        for _ in range(per_round):
            for get, out in cases:
                t0 = clock()
                await get(url)
                out.append(clock() - t0)
        gc.enable()
    return samples


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def table(title: str, samples: dict[str, list[float]]) -> tuple[float, float]:
    floor = percentile(samples["pass-through (floor)"], 0.50)
    print(f"\n{title}  ({len(next(iter(samples.values())))} requests per case)")
    print(f"  {'case':<24} {'p50 us':>9} {'p99 us':>9} {'p50 / floor':>12} {'p99 / floor p99':>16}")
    floor99 = percentile(samples["pass-through (floor)"], 0.99)
    for name, values in samples.items():
        p50, p99 = percentile(values, 0.50), percentile(values, 0.99)
        print(f"  {name:<24} {p50 * 1e6:>9.1f} {p99 * 1e6:>9.1f} {p50 / floor:>11.3f}x "
              f"{p99 / floor99:>15.3f}x")
    return percentile(samples["seawall full pipeline"], 0.50), floor


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--per-round", type=int, default=200)
    args = parser.parse_args()

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/items/1"
    server = multiprocessing.get_context("fork").Process(target=_serve, args=(sock,), daemon=True)
    server.start()
    sock.close()
    try:
        print(f"httpx {httpx.__version__}, seawall {seawall.__version__}, Python "
              f"{sys.version.split()[0]}; loopback GET, server in a child process")
        clients = sync_clients()
        try:
            sync = measure_sync(clients, url, args.rounds, args.per_round)
        finally:
            for c in clients.values():
                c.close()
        s50, sfloor = table("sync (httpx.Client)", sync)

        async def run_async() -> dict[str, list[float]]:
            aclients = async_clients()
            try:
                return await measure_async(aclients, url, args.rounds, args.per_round)
            finally:
                for c in aclients.values():
                    await c.aclose()

        a50, afloor = table("async (httpx.AsyncClient)", asyncio.run(run_async()))
    finally:
        server.terminate()
        server.join(5)
    target = 1.05
    print(f"\ntarget: seawall p50 <= {target:.2f}x pass-through p50 -> "
          f"sync {s50 / sfloor:.3f}x {'ok' if s50 <= target * sfloor else 'MISSED'}, "
          f"async {a50 / afloor:.3f}x {'ok' if a50 <= target * afloor else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
