"""Send httpx requests through seawall's transport.

A small HTTP API on 127.0.0.1 answers 503 twice before it succeeds, rate
limits with ``Retry-After``, and has one endpoint that is down. The client
is an ordinary ``httpx.Client`` whose transport is seawall's: idempotent
requests are retried (honouring ``Retry-After``), a POST is not, and the
breaker stops sending requests to the endpoint that is down.

Run: python examples/httpx_sync.py
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

import seawall
from seawall.interceptors import httpx as sw_httpx

hits: Counter[str] = Counter()


class FlakyAPI(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def reply(self, status: int, body: bytes = b"{}", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        hits[self.path] += 1
        if self.path == "/orders/42" and hits[self.path] <= 2:
            self.reply(503)  # fails twice, then works
        elif self.path == "/quota" and hits[self.path] == 1:
            self.reply(429, headers={"Retry-After": "1"})  # come back in a second
        elif self.path.startswith("/reports"):
            self.reply(503)  # down for good
        else:
            self.reply(200, b'{"id": 42, "status": "shipped"}')

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        hits["POST " + self.path] += 1
        self.reply(503)


api = seawall.IntegrationPoint(
    "orders-api",
    retry=seawall.Retry(attempts=3, backoff=seawall.Backoff.exponential(initial=0.05, maximum=0.5)),
    breaker=seawall.CircuitBreaker(failure_rate=0.5, minimum_calls=10, window=20, open_for=30.0),
    timeout=seawall.Timeout(attempt=1.0, total=3.0),
)


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FlakyAPI)
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with httpx.Client(base_url=base, transport=sw_httpx.ResilientTransport(api)) as client:
            r = client.get("/orders/42")
            print(f"GET /orders/42  -> {r.status_code} after {hits['/orders/42']} requests (two 503s retried)")

            t0 = time.monotonic()
            r = client.get("/quota")
            print(f"GET /quota      -> {r.status_code} after a 429 and {time.monotonic() - t0:.1f} s "
                  "(Retry-After: 1 honoured)")

            r = client.post("/orders", json={"sku": "A-1"})
            print(f"POST /orders    -> {r.status_code} after {hits['POST /orders']} request "
                  "(a POST is not retried: it may have been processed)")

            outcomes = []
            for _ in range(6):
                try:
                    outcomes.append(str(client.get("/reports").status_code))
                except seawall.CircuitOpenError:
                    outcomes.append("circuit open")
            print(f"GET /reports x6 -> {', '.join(outcomes)}; the API saw {hits['/reports']} requests")
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    s = api.stats()
    print(f"orders-api: {s.calls} calls, {s.successes} ok, {s.retries} retries, "
          f"{s.rejections['breaker']} refused by the breaker")
    assert outcomes[-1] == "circuit open"


if __name__ == "__main__":
    main()
