"""Helpers for the tests that time what reaches a real server on 127.0.0.1.

A threaded HTTP server with a backlog wide enough for many callers at once,
and the wait and check shared by the server-pacing tests (HTTP and gRPC):
wait until a point's pause is over, then check the server heard nothing
during it.
"""

from __future__ import annotations

import asyncio
import http.server
import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from seawall import IntegrationPoint


class _Server(http.server.ThreadingHTTPServer):
    # socketserver's backlog of 5 drops SYNs when 8 callers connect at once; a dropped SYN
    # is resent after 1 s, and that late first request would look like a paced one
    request_queue_size = 64
    daemon_threads = True


class TimedHandler(http.server.BaseHTTPRequestHandler):
    """Notes when each GET arrived in ``server.arrivals``; answers what :meth:`reply` says, body ``ok``."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # header and body are two writes: no 40 ms delayed ACK

    def reply(self, now: float) -> tuple[int, tuple[tuple[str, str], ...]]:
        """``(status, headers)`` for the request that arrived at ``now`` (under ``server.lock``)."""
        return 200, ()

    def do_GET(self) -> None:
        server: Any = self.server
        with server.lock:
            now = time.monotonic()
            server.arrivals.append(now)
            status, headers = self.reply(now)
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def http_server(handler: type[TimedHandler] = TimedHandler) -> Iterator[Any]:
    """Serve ``handler`` on 127.0.0.1 in a thread; the server has ``lock`` and ``arrivals``."""
    server: Any = _Server(("127.0.0.1", 0), handler)
    server.lock = threading.Lock()
    server.arrivals = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _pause_over(point: IntegrationPoint) -> bool:
    """A pause was noted and ended at least 0.3 s ago (callers have had time to come back)."""
    assert point.pacing is not None
    return point.pacing.until > -math.inf and time.monotonic() > point.pacing.until + 0.3


def wait_past_pause(point: IntegrationPoint, bound: float = 20.0) -> None:
    """Poll, for at most ``bound`` seconds, until the point's pause is over."""
    end = time.monotonic() + bound
    while not _pause_over(point) and time.monotonic() < end:
        time.sleep(0.05)


async def await_past_pause(point: IntegrationPoint, bound: float = 20.0) -> None:
    """:func:`wait_past_pause` for a test on an event loop."""
    end = time.monotonic() + bound
    while not _pause_over(point) and time.monotonic() < end:
        await asyncio.sleep(0.05)


def check_quiet_second(source: Any, point: IntegrationPoint) -> None:
    """Nothing reached ``source`` from 0.3 s after the client heard the 1 s hint until the pause ended.

    ``source`` (a server or a gRPC backend) has ``throttled_at``, when the
    throttled request arrived, and ``arrivals``, when every request did, on
    the monotonic clock of this process. The pause runs from when the client
    classified the reply (``until - 1 s``) to ``until``; requests admitted
    just before may still arrive in its first moments.
    """
    t = source.throttled_at
    assert t is not None, "the throttled request never arrived"
    assert point.pacing is not None
    end = point.pacing.until
    heard = end - 1.0
    assert t <= heard < t + 5.0
    assert [a - heard for a in source.arrivals if heard + 0.3 < a < end - 0.01] == []
    assert any(a >= end for a in source.arrivals)  # and the callers came back
