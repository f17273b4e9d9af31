"""Persist seawall's metrics, serve them over gRPC and query them from Python.

A decorated function with a flaky dependency runs a few dozen calls while
``persist_metrics`` records every event into a SQLite store in a temporary
folder. The metrics service is then started on 127.0.0.1 (a free port) and
``MetricsClient`` reads back the points, their summary and the breaker's
transitions: the same figures ``seawall stats --target HOST:PORT`` prints.

Run: python examples/metrics_service.py
"""

from __future__ import annotations

import os
import tempfile

import seawall
from seawall.storage import MetricsClient, serve

geo = seawall.IntegrationPoint(
    "geocoder",
    retry=seawall.Retry(attempts=3, backoff=seawall.Backoff.constant(0.0)),
    breaker=seawall.CircuitBreaker(failure_rate=0.5, minimum_calls=10, window=20, open_for=60.0),
    fallback=seawall.Fallback(value=(0.0, 0.0)),
)
calls = 0


@geo
def locate(address: str) -> tuple[float, float]:
    """Fails every fourth call, then (from call 40 on) every call."""
    global calls
    calls += 1
    if calls % 4 == 0 or calls >= 40:
        raise ConnectionResetError("geocoder dropped the connection")
    return (48.85, 2.35)


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        store = f"sqlite:///{os.path.join(folder, 'metrics.db')}"
        recorder = seawall.persist_metrics(store, flush_interval=0.2)
        try:
            for i in range(50):
                locate(f"{i} rue de Rivoli")
        finally:
            recorder.close()  # flushes everything counted so far

        server = serve(store, listen="127.0.0.1:0")
        try:
            with MetricsClient(f"127.0.0.1:{server.port}") as client:
                for info in client.points():
                    print(f"point {info.name}: operations {list(info.operations)}")
                for s in client.summary(window=600):
                    print(f"  {s.calls} calls, {s.successes} ok, {s.failures} failed, "
                          f"{s.retries} retries, {s.rejected} refused, {s.fallbacks} fallbacks, "
                          f"p99 {s.p99_ms:.2f} ms, breaker {s.breaker_state}")
                moves = list(client.transitions("geocoder"))
                for t in moves:
                    print(f"  breaker {t.from_state} -> {t.to_state}: {t.reason}")
        finally:
            server.stop()
    mine = geo.stats()
    print(f"in this process: {mine.calls} calls, {mine.retries} retries (the store agrees: "
          f"{s.calls == mine.calls and s.retries == mine.retries})")
    assert s.calls == mine.calls == 50 and any(t.to_state == "open" for t in moves)


if __name__ == "__main__":
    main()
