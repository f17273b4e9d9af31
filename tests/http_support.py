"""A scripted HTTP/1.1 server on 127.0.0.1 for the httpx transport tests and benchmark.

Each test scripts what the next requests get: a status with headers and a
body, a slow reply, a connection dropped before or in the middle of the
response. The server speaks just enough HTTP/1.1 (keep-alive,
Content-Length and chunked request bodies) and records every request and
every connection it accepted, so tests can assert what reached the wire.

Written on raw sockets rather than an ASGI server because dropping a
connection half-way through a response is the point of several tests.
"""

from __future__ import annotations

import asyncio
import collections
import importlib
import importlib.util
import socket
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

# The host packages the transport tests run against: httpx, and httpx2 (its
# continuation, Python 3.11+) wherever it can be installed. The dev extra installs
# it there, and a test checks it really is present.
HTTPX2_SUPPORTED = sys.version_info >= (3, 11)
PACKAGES: tuple[str, ...] = ("httpx", "httpx2") if HTTPX2_SUPPORTED and \
    importlib.util.find_spec("httpx2") is not None else ("httpx",)


def modules(package: str) -> tuple[ModuleType, ModuleType]:
    """``(host package, seawall's transports for it)``: httpx or httpx2."""
    return (importlib.import_module(package),
            importlib.import_module(f"seawall.interceptors.{package}"))


@dataclass(frozen=True)
class Reply:
    """Answer with ``status``, ``headers`` and ``body``.

    ``delay`` seconds pass before the status line (the server wakes early
    when it stops). ``drip`` sends the body one byte at a time with that
    many seconds between bytes. ``chunked`` sends it with chunked encoding
    instead of a Content-Length. ``gate``: wait until the test sets it
    (at most 10 s) before answering.
    """

    status: int = 200
    body: bytes = b"ok"
    headers: tuple[tuple[str, str], ...] = ()
    delay: float = 0.0
    drip: float = 0.0
    chunked: bool = False
    gate: threading.Event | None = None


@dataclass(frozen=True)
class Drop:
    """Close the connection. ``partial`` > 0: first send headers announcing more than ``partial`` body bytes, then that many."""

    partial: int = -1


Action = Reply | Drop


@dataclass
class Seen:
    """One request as the server received it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    connection: int


_REASONS = {200: "OK", 201: "Created", 204: "No Content", 400: "Bad Request", 404: "Not Found",
            408: "Request Timeout", 409: "Conflict", 429: "Too Many Requests",
            500: "Internal Server Error", 501: "Not Implemented", 502: "Bad Gateway",
            503: "Service Unavailable", 504: "Gateway Timeout"}


class ScriptedServer:
    """A threaded HTTP/1.1 server on 127.0.0.1 whose answers tests script.

    ``script(*actions)`` queues answers for the next requests (any path);
    ``script(*actions, path="/x")`` for one path only. Unscripted requests
    get ``200 ok``. ``requests`` lists what arrived, ``connections`` counts
    the TCP connections accepted. Use as a context manager or call
    ``start()``/``stop()``; ``stop()`` closes every socket it opened.
    """

    def __init__(self) -> None:
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(128)
        self.port: int = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._lock = threading.Lock()
        self._queue: collections.deque[Action] = collections.deque()
        self._by_path: dict[str, collections.deque[Action]] = {}
        self._conns: dict[int, socket.socket] = {}
        self._threads: list[threading.Thread] = []
        self.stopping = threading.Event()
        self.requests: list[Seen] = []
        self.connections = 0
        self.arrived = threading.Condition(self._lock)
        self._acceptor = threading.Thread(target=self._accept, name="scripted-http", daemon=True)

    # -- control ------------------------------------------------------------------

    def start(self) -> ScriptedServer:
        self._acceptor.start()
        return self

    def __enter__(self) -> ScriptedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self.stopping.set()
        try:
            # wake the acceptor blocked in accept()
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        except OSError:
            pass
        self._acceptor.join(5)
        self._listener.close()
        with self._lock:
            conns = list(self._conns.values())
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for t in self._threads:
            t.join(5)

    def script(self, *actions: Action, path: str | None = None) -> None:
        """Queue answers for the next requests (to ``path`` only, when given)."""
        with self._lock:
            if path is None:
                self._queue.extend(actions)
            else:
                self._by_path.setdefault(path, collections.deque()).extend(actions)

    def wait_for_requests(self, n: int, timeout: float = 5.0) -> bool:
        """Block until ``n`` requests have arrived (or ``timeout`` seconds passed)."""
        with self.arrived:
            return self.arrived.wait_for(lambda: len(self.requests) >= n, timeout)

    @property
    def paths(self) -> list[str]:
        """The paths of the requests received, in order."""
        with self._lock:
            return [r.path for r in self.requests]

    # -- serving ------------------------------------------------------------------

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            if self.stopping.is_set():
                conn.close()
                return
            with self._lock:
                self.connections += 1
                cid = self.connections
                self._conns[cid] = conn
            t = threading.Thread(target=self._serve, args=(conn, cid), daemon=True,
                                 name=f"scripted-http-{cid}")
            self._threads.append(t)
            t.start()

    def _next_action(self, path: str) -> Action:
        with self._lock:
            q = self._by_path.get(path.split("?", 1)[0])
            if q:
                return q.popleft()
            if self._queue:
                return self._queue.popleft()
        return Reply()

    def _serve(self, conn: socket.socket, cid: int) -> None:
        reader = _Reader(conn)
        try:
            while not self.stopping.is_set():
                seen = reader.request(cid)
                if seen is None:
                    return
                with self.arrived:
                    self.requests.append(seen)
                    self.arrived.notify_all()
                action = self._next_action(seen.path)
                if isinstance(action, Drop):
                    self._drop(conn, action)
                    return
                if not self._reply(conn, action, head=seen.method == "HEAD"):
                    return
        except OSError:
            return
        finally:
            with self._lock:
                self._conns.pop(cid, None)
            conn.close()

    def _drop(self, conn: socket.socket, action: Drop) -> None:
        if action.partial >= 0:
            head = (f"HTTP/1.1 200 OK\r\nContent-Length: {action.partial + 100}\r\n"
                    "Content-Type: text/plain\r\n\r\n").encode()
            conn.sendall(head + b"x" * action.partial)
        try:
            conn.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _reply(self, conn: socket.socket, r: Reply, *, head: bool) -> bool:
        if r.delay and self.stopping.wait(r.delay):
            return False
        if r.gate is not None:
            for _ in range(100):
                if r.gate.wait(0.1) or self.stopping.is_set():
                    break
            if self.stopping.is_set():
                return False
        lines = [f"HTTP/1.1 {r.status} {_REASONS.get(r.status, 'Status')}"]
        lines += [f"{k}: {v}" for k, v in r.headers]
        if r.chunked:
            lines.append("Transfer-Encoding: chunked")
        else:
            lines.append(f"Content-Length: {len(r.body)}")
        conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        if head:
            return True
        if r.drip:
            for i in range(len(r.body)):
                if self.stopping.wait(r.drip):
                    return False
                piece = r.body[i:i + 1]
                conn.sendall(b"1\r\n" + piece + b"\r\n" if r.chunked else piece)
            if r.chunked:
                conn.sendall(b"0\r\n\r\n")
        elif r.chunked:
            conn.sendall(b"%x\r\n%s\r\n0\r\n\r\n" % (len(r.body), r.body) if r.body else b"0\r\n\r\n")
        else:
            conn.sendall(r.body)
        return True


class _Reader:
    """Reads HTTP/1.1 requests off one connection."""

    def __init__(self, conn: socket.socket) -> None:
        self.conn = conn
        self.buf = b""

    def _fill(self) -> bool:
        data = self.conn.recv(65536)
        if not data:
            return False
        self.buf += data
        return True

    def _line(self) -> bytes | None:
        while b"\r\n" not in self.buf:
            if not self._fill():
                return None
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exactly(self, n: int) -> bytes | None:
        while len(self.buf) < n:
            if not self._fill():
                return None
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def request(self, cid: int) -> Seen | None:
        line = self._line()
        if not line:
            return None
        method, target, _ = line.decode("latin-1").split(" ", 2)
        headers: dict[str, str] = {}
        while True:
            h = self._line()
            if h is None:
                return None
            if not h:
                break
            k, v = h.decode("latin-1").split(":", 1)
            headers[k.strip().lower()] = v.strip()
        body = b""
        if headers.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            while True:
                size_line = self._line()
                if size_line is None:
                    return None
                size = int(size_line.split(b";")[0], 16)
                chunk = self._exactly(size + 2)
                if chunk is None:
                    return None
                if size == 0:
                    break
                parts.append(chunk[:-2])
            body = b"".join(parts)
        elif "content-length" in headers:
            data = self._exactly(int(headers["content-length"]))
            if data is None:
                return None
            body = data
        return Seen(method, target, headers, body, cid)


def refused_url() -> str:
    """A loopback URL where nothing listens: connecting is refused at once."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}"


class Driver:
    """One test body for both shells: requests through a sync or an async client.

    ``kind`` is ``"sync"`` (``Client`` + ``ResilientTransport``) or
    ``"async"`` (``AsyncClient`` + ``AsyncResilientTransport``, run on a
    private event loop), of ``package`` (``"httpx"`` or ``"httpx2"``).
    ``inner`` builds the inner transport for the kind (``None``: the
    transport's default); ``options`` go to the resilient transport,
    ``client`` to the client.
    """

    def __init__(self, kind: str, point: Any, *, inner: Callable[[str], Any] | None = None,
                 client: dict[str, Any] | None = None, package: str = "httpx",
                 **options: Any) -> None:
        host, sw_httpx = modules(package)
        self.package = package
        self.kind = kind
        inner_transport = inner(kind) if inner is not None else None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.transport: Any
        self.client: Any
        if kind == "sync":
            self.transport = sw_httpx.ResilientTransport(point, inner_transport, **options)
            self.client = host.Client(transport=self.transport, **(client or {}))
        else:
            self.loop = asyncio.new_event_loop()
            self.transport = sw_httpx.AsyncResilientTransport(point, inner_transport, **options)
            self.client = host.AsyncClient(transport=self.transport, **(client or {}))

    def run(self, make: Callable[[], Any]) -> Any:
        """``make()`` for sync; for async, run the coroutine it returns to completion."""
        if self.loop is None:
            return make()
        return self.loop.run_until_complete(make())

    def request(self, method: str, url: str, **kw: Any) -> Any:
        """Send one request and read its body, like ``client.request``."""
        return self.run(lambda: self.client.request(method, url, **kw))

    def stream_body(self, method: str, url: str, **kw: Any) -> bytes:
        """Send one request with ``client.stream`` and collect the body chunk by chunk."""
        if self.loop is None:
            with self.client.stream(method, url, **kw) as r:
                return b"".join(r.iter_bytes())

        async def go() -> bytes:
            async with self.client.stream(method, url, **kw) as r:
                return b"".join([c async for c in r.aiter_bytes()])

        return self.loop.run_until_complete(go())

    def close(self) -> None:
        if self.loop is None:
            self.client.close()
            return
        self.loop.run_until_complete(self.client.aclose())
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()
