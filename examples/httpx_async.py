"""Send concurrent httpx requests through seawall's async transport.

A small HTTP API on 127.0.0.1 fails the first try of every third price
with 503 and never answers ``/slow`` in time. Twenty concurrent requests go
through ``AsyncResilientTransport``: failed ones are retried, a bulkhead
keeps at most five in flight, and the attempt timeout cuts the slow call,
which the fallback then answers.

Run: python examples/httpx_async.py
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

import seawall
from seawall.interceptors import httpx as sw_httpx

hits: Counter[str] = Counter()
in_flight = 0
most_in_flight = 0
lock = threading.Lock()
stopping = threading.Event()


class PriceAPI(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        global in_flight, most_in_flight
        with lock:
            hits[self.path] += 1
            first_try = hits[self.path] == 1
            in_flight += 1
            most_in_flight = max(most_in_flight, in_flight)
        try:
            if self.path == "/slow":
                stopping.wait(2.0)  # far longer than the attempt timeout
            else:
                stopping.wait(0.02)
        finally:
            # done before answering: once the client has the answer it may send the next
            # request (on another connection, another thread) before this one got here
            with lock:
                in_flight -= 1
        item = int(self.path.rsplit("/", 1)[-1]) if self.path[-1].isdigit() else 0
        status = 503 if first_try and item % 3 == 0 else 200
        body = b'{"price": 1299}'
        try:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            pass  # the client gave up on /slow


prices = seawall.IntegrationPoint(
    "prices-api",
    retry=seawall.Retry(attempts=3, backoff=seawall.Backoff.exponential(initial=0.02, maximum=0.2)),
    bulkhead=seawall.Bulkhead(max_concurrent=5, max_wait=5.0),
    timeout=seawall.Timeout(attempt=0.3, total=1.0),
    fallback=seawall.Fallback(value=httpx.Response(200, json={"price": None, "stale": True})),
)


async def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), PriceAPI)
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        transport = sw_httpx.AsyncResilientTransport(prices)
        async with httpx.AsyncClient(base_url=base, transport=transport) as client:
            responses = await asyncio.gather(*(client.get(f"/prices/{i}") for i in range(1, 21)))
            ok = sum(r.status_code == 200 for r in responses)
            print(f"20 concurrent GETs: {ok} answered 200, {sum(hits.values())} requests reached "
                  f"the API, never more than {most_in_flight} at once (bulkhead of 5)")
            slow = await client.get("/slow")
            print(f"GET /slow: {slow.status_code} {slow.json()} after {hits['/slow']} attempts "
                  "cut at 0.3 s (the fallback answered)")
    finally:
        stopping.set()
        server.shutdown()
        server.server_close()
        thread.join()
    s = prices.stats()
    print(f"prices-api: {s.calls} calls, {s.retries} retries, {s.fallbacks} fallback, "
          f"failures by category {dict((k, v) for k, v in s.failures_by_category.items() if v)}")
    assert ok == 20 and most_in_flight <= 5 and s.fallbacks == 1


if __name__ == "__main__":
    asyncio.run(main())
