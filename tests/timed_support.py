"""Helpers for the tests that time what reaches a real server on 127.0.0.1.

A threaded HTTP server with a backlog wide enough for many callers at once,
and the wait and check shared by the server-pacing tests (HTTP and gRPC):
wait until a point's pause is over and the callers are back, then check
that no caller sent anything during it.
"""

from __future__ import annotations

import asyncio
import http.server
import math
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

from seawall import IntegrationPoint


class _Server(http.server.ThreadingHTTPServer):
    # socketserver's backlog of 5 drops SYNs when 8 callers connect at once; a dropped SYN
    # is resent after 1 s, and that late first request would look like a paced one
    request_queue_size = 64
    daemon_threads = True


class TimedHandler(http.server.BaseHTTPRequestHandler):
    """Notes each GET in ``server.arrivals`` as ``(when, path)``; answers what :meth:`reply` says.

    The body is ``ok``; a caller that names itself in the path (``/c3``) can be
    told apart from the others.
    """

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # header and body are two writes: no 40 ms delayed ACK

    def reply(self, now: float) -> tuple[int, tuple[tuple[str, str], ...]]:
        """``(status, headers)`` for the request that arrived at ``now`` (under ``server.lock``)."""
        return 200, ()

    def do_GET(self) -> None:
        server: Any = self.server
        with server.lock:
            now = time.monotonic()
            server.arrivals.append((now, self.path))
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


def _pause_over(point: IntegrationPoint, source: Any) -> bool:
    """A pause was noted, and ``source`` has heard a request sent after it ended."""
    assert point.pacing is not None
    until = point.pacing.until
    return until > -math.inf and any(at >= until for at, _ in list(source.arrivals))


def wait_past_pause(point: IntegrationPoint, source: Any, bound: float = 20.0) -> None:
    """Poll, for at most ``bound`` seconds, until the point's pause is over and a caller is back.

    ``source`` is what :func:`check_quiet_second` reads; the callers may stop
    once this returns (or the check fails: nobody came back in ``bound``).
    """
    end = time.monotonic() + bound
    while not _pause_over(point, source) and time.monotonic() < end:
        time.sleep(0.05)


async def await_past_pause(point: IntegrationPoint, source: Any, bound: float = 20.0) -> None:
    """:func:`wait_past_pause` for a test on an event loop."""
    end = time.monotonic() + bound
    while not _pause_over(point, source) and time.monotonic() < end:
        await asyncio.sleep(0.05)


def threads_past_the_pause(point: IntegrationPoint, source: Any,
                           caller: Callable[[int, threading.Event], None], count: int = 8) -> None:
    """Run ``caller(i, stop)`` on ``count`` threads until the pause is over and a caller is back.

    Each caller loops until ``stop`` is set; an error raised in any of them
    fails the test. See :func:`wait_past_pause`.
    """
    stop = threading.Event()
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            caller(i, stop)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    wait_past_pause(point, source)
    stop.set()
    for t in threads:
        t.join(10)
    assert errors == []


async def tasks_past_the_pause(point: IntegrationPoint, source: Any,
                               caller: Callable[[int, asyncio.Event], Awaitable[None]],
                               count: int = 8) -> None:
    """:func:`threads_past_the_pause` with ``count`` tasks on the test's event loop."""
    stop = asyncio.Event()
    tasks = [asyncio.ensure_future(caller(i, stop)) for i in range(count)]
    await await_past_pause(point, source)
    stop.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 10)


def check_quiet_second(source: Any, point: IntegrationPoint) -> None:
    """No caller sent a request from when the client heard the 1 s hint until the pause ended.

    ``source`` (a server or a gRPC backend) has ``throttled_at``, when the
    throttled request arrived, and ``arrivals``, ``(when, caller)`` for every
    request, on the monotonic clock of this process. The pause runs from when
    the client classified the reply (``until - 1 s``) to ``until``. A caller
    may have had one request admitted and on its way when the pause began;
    on a loaded machine it can arrive at any moment of the pause, so each
    caller is allowed that one arrival in the window, and no time margin is
    needed (an unpaced caller sends dozens a second). At least one caller
    came back after the pause.
    """
    t = source.throttled_at
    assert t is not None, "the throttled request never arrived"
    assert point.pacing is not None
    end = point.pacing.until
    heard = end - 1.0
    assert t <= heard < t + 5.0
    during: dict[str, list[float]] = {}
    for at, caller in list(source.arrivals):
        if heard < at < end - 0.01:
            during.setdefault(caller, []).append(round(at - heard, 3))
    assert {c: ats for c, ats in during.items() if len(ats) > 1} == {}, "sent during the pause"
    assert any(at >= end for at, _ in source.arrivals)  # and the callers came back
