"""Protect a plain function with a decorator: retries, a breaker and a fallback.

A tiny TCP quote service on 127.0.0.1 drops every third connection, then
goes down for good. ``fetch_quote`` is an ordinary function; the decorator
retries the dropped connections (``ConnectionError`` is transient by
default), opens the breaker once the service is down, and answers from the
fallback while it is open.

Run: python examples/decorated_function.py
"""

from __future__ import annotations

import socket
import threading

import seawall

quotes = seawall.IntegrationPoint(
    "quotes",
    retry=seawall.Retry(attempts=3, backoff=seawall.Backoff.exponential(initial=0.01, maximum=0.05)),
    breaker=seawall.CircuitBreaker(failure_rate=0.5, minimum_calls=6, window=10, open_for=30.0),
    timeout=seawall.Timeout(attempt=0.5, total=2.0),
    fallback=seawall.Fallback(value="quote unavailable (cached: 101.50)"),
)


@quotes
def fetch_quote(port: int) -> str:
    """Ask the quote service for a price; an ordinary blocking function."""
    timeout = seawall.remaining()  # the time the current attempt may still take
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
        conn.sendall(b"ACME\n")
        reply = conn.recv(64)
    if not reply:
        raise ConnectionResetError("the quote service closed the connection")
    return reply.decode()


class QuoteService:
    """Drops every third connection; after ``down_after`` connections, drops them all."""

    def __init__(self, down_after: int) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.down_after = down_after
        self.connections = 0
        self.thread = threading.Thread(target=self.serve)
        self.thread.start()

    def serve(self) -> None:
        while True:
            conn, _ = self.sock.accept()
            with conn:
                if conn.recv(64) == b"STOP\n":
                    return
                self.connections += 1
                if self.connections % 3 != 0 and self.connections <= self.down_after:
                    conn.sendall(b"ACME 101.75")
                # otherwise: close without a reply (a dropped connection)

    def close(self) -> None:
        with socket.create_connection(("127.0.0.1", self.port)) as conn:
            conn.sendall(b"STOP\n")
        self.thread.join(5.0)
        self.sock.close()


def main() -> None:
    service = QuoteService(down_after=9)
    try:
        for i in range(10):
            print(f"call {i + 1:2}: {fetch_quote(service.port)}   (breaker {quotes.breaker_state.value})")
    finally:
        service.close()
    s = quotes.stats()
    print(f"{s.calls} calls, {s.successes} answered by the service, {s.fallbacks} by the fallback; "
          f"{s.retries} retries, {s.rejections['breaker']} refused by the open breaker; "
          f"the service saw {service.connections} connections")
    assert s.retries >= 1 and s.rejections["breaker"] >= 1


if __name__ == "__main__":
    main()
