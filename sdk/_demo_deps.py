"""The demo's flaky dependencies: a gRPC service, an HTTP API and a SQLite database.

Each binds to 127.0.0.1 only, injects real faults and counts, on its own
side, every request that reached it (and how many arrived during the
outage window). Faults follow a :class:`FaultPlan`:

* a share of requests fail at once (gRPC ``UNAVAILABLE``, HTTP ``503``);
* a share are slow (a latency spike of a few hundred milliseconds);
* a share are rate limited (gRPC ``RESOURCE_EXHAUSTED`` with
  ``grpc-retry-pushback-ms``, HTTP ``429`` with ``Retry-After``);
* during the outage window every request fails, unless the outage is
  rehearsed (``outage_injected``, ``seawall demo --chaos``): then the
  dependencies stay up and :class:`seawall.Chaos` in the clients injects it.

Which fault a request meets is drawn from the seed, the request id the
client sends and how many times that id has already arrived, so the first
attempt of request *n* meets the same fault in the bare run and in the
seawall run, while a retry draws again. The database has no server to
decide per request; a seeded schedule stands in for it: exclusive locks
(short ones are latency spikes, long ones make reads wait and fail with
``database is locked``) and, for the outage, the database file moving away
(``unable to open database file``).
"""

from __future__ import annotations

import contextlib
import os
import random
import sqlite3
import threading
import time
from concurrent import futures
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc

GRPC_METHOD = "/seawall.demo.Inventory/GetStock"
REQUEST_ID_KEY = "x-demo-request"

OK = "ok"
ERROR = "error"
SLOW = "slow"
LIMITED = "limited"
OUTAGE = "outage"


@dataclass(frozen=True, slots=True, kw_only=True)
class FaultPlan:
    """The fault mix and the outage window, in seconds from the start of a run."""

    seed: int = 7
    error_rate: float = 0.10
    latency_rate: float = 0.05
    rate_limit_rate: float = 0.02
    spike: float = 0.40
    outage_start: float = 4.0
    outage_end: float = 8.0
    pushback_ms: int = 100
    retry_after: int = 1
    outage_injected: bool = False  # the outage is injected by the clients' Chaos, not served

    def draw(self, request_id: str, arrival: int) -> str:
        """The fault met by the ``arrival``-th attempt (1-based) of ``request_id``."""
        roll = random.Random(f"{self.seed}:{request_id}:{arrival}").random()
        if roll < self.error_rate:
            return ERROR
        roll -= self.error_rate
        if roll < self.latency_rate:
            return SLOW
        roll -= self.latency_rate
        if roll < self.rate_limit_rate:
            return LIMITED
        return OK


class Arrivals:
    """Server-side counts of requests that reached a dependency. Thread-safe."""

    def __init__(self, plan: FaultPlan, start: float) -> None:
        self.plan = plan
        self.start = start
        self._lock = threading.Lock()
        self._seen: dict[str, int] = {}
        self.total = 0
        self.during_outage = 0
        self.faults: dict[str, int] = {OK: 0, ERROR: 0, SLOW: 0, LIMITED: 0, OUTAGE: 0}

    def in_outage(self, now: float | None = None) -> bool:
        """True while the outage window is open."""
        t = (time.monotonic() if now is None else now) - self.start
        return self.plan.outage_start <= t < self.plan.outage_end

    def arrive(self, request_id: str) -> str:
        """Count one arriving request and return the fault it meets."""
        outage = self.in_outage()
        with self._lock:
            arrival = self._seen.get(request_id, 0) + 1
            if request_id:
                self._seen[request_id] = arrival
            self.total += 1
            if outage:
                self.during_outage += 1
            served = outage and not self.plan.outage_injected
            fault = OUTAGE if served else self.plan.draw(request_id, arrival)
            self.faults[fault] += 1
        return fault

    def count_statement(self) -> None:
        """Count one request that reached the database (an open of its file; no fault is drawn)."""
        outage = self.in_outage()
        with self._lock:
            self.total += 1
            if outage:
                self.during_outage += 1


# -- gRPC -------------------------------------------------------------------


class GrpcDependency:
    """The ``Inventory`` gRPC service: one unary method on raw bytes, no generated code."""

    def __init__(self, arrivals: Arrivals) -> None:
        self.arrivals = arrivals
        self._pool = futures.ThreadPoolExecutor(max_workers=16, thread_name_prefix="demo-grpc")
        self._server = grpc.server(self._pool)
        handler = grpc.method_handlers_generic_handler(
            "seawall.demo.Inventory",
            {"GetStock": grpc.unary_unary_rpc_method_handler(
                self._get_stock, request_deserializer=None, response_serializer=None)},
        )
        self._server.add_generic_rpc_handlers((handler,))
        port = self._server.add_insecure_port("127.0.0.1:0")
        self.target = f"127.0.0.1:{port}"

    def start(self) -> None:
        self._server.start()

    def stop(self) -> None:
        self._server.stop(grace=None).wait(5.0)
        self._pool.shutdown(wait=True)

    def _get_stock(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        request_id = ""
        for key, value in context.invocation_metadata():
            if key == REQUEST_ID_KEY:
                request_id = str(value)
        fault = self.arrivals.arrive(request_id)
        if fault in (ERROR, OUTAGE):
            context.abort(grpc.StatusCode.UNAVAILABLE, f"injected {fault}")
        if fault == LIMITED:
            context.set_trailing_metadata(
                (("grpc-retry-pushback-ms", str(self.arrivals.plan.pushback_ms)),))
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "injected rate limit")
        if fault == SLOW:
            done = threading.Event()
            context.add_callback(done.set)  # the client gave up: stop waiting
            done.wait(self.arrivals.plan.spike)
        return b"stock:" + request


# -- HTTP -------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in separate writes
    server: _HttpServer

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        arrivals = self.server.arrivals
        fault = arrivals.arrive(self.headers.get(REQUEST_ID_KEY, ""))
        headers: list[tuple[str, str]] = []
        if fault in (ERROR, OUTAGE):
            status, body = 503, b'{"error": "unavailable"}'
        elif fault == LIMITED:
            status, body = 429, b'{"error": "slow down"}'
            headers.append(("Retry-After", str(arrivals.plan.retry_after)))
        else:
            if fault == SLOW:
                self.server.stopping.wait(arrivals.plan.spike)
            status, body = 200, b'{"sku": "A-1", "price": 1299}'
        try:
            self.send_response(status)
            for key, value in headers:
                self.send_header(key, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:  # the client timed out and left
            self.close_connection = True


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = False
    block_on_close = True

    def __init__(self, arrivals: Arrivals) -> None:
        self.arrivals = arrivals
        self.stopping = threading.Event()
        super().__init__(("127.0.0.1", 0), _Handler)


class HttpDependency:
    """The ``Pricing`` HTTP API: ``GET /price`` on a threaded stdlib server."""

    def __init__(self, arrivals: Arrivals) -> None:
        self.arrivals = arrivals
        self._server = _HttpServer(arrivals)
        host, port = self._server.server_address[:2]
        self.url = f"http://{host!s}:{port}/price"
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, name="demo-http")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.stopping.set()
        self._server.shutdown()
        self._thread.join(5.0)
        self._server.server_close()  # joins the handler threads


# -- SQLite -----------------------------------------------------------------


LOCK = "lock"
DOWN = "down"
UP = "up"


def chaos_schedule(plan: FaultPlan, duration: float,
                   slot: float = 0.1) -> list[tuple[float, str, float]]:
    """``(start, action, hold)`` steps of the database's faults, in seconds from the run's start.

    ``lock`` holds an exclusive lock for ``hold`` seconds: long holds outlast
    the clients' busy timeout (``database is locked``), short ones are
    latency spikes. ``down`` moves the database file away (every open fails
    with ``unable to open database file``) and ``up`` puts it back.
    """
    rng = random.Random(f"{plan.seed}:db")
    steps: list[tuple[float, str, float]] = []
    t = 0.0
    busy_until = 0.0
    while t < duration:
        roll = rng.random()
        hold = 0.0
        if roll < plan.error_rate / 2:
            hold = 0.45
        elif roll < plan.error_rate / 2 + plan.latency_rate:
            hold = 0.05 + 0.05 * rng.random()
        in_outage = plan.outage_start - 0.5 <= t < plan.outage_end
        if hold and not in_outage and t >= busy_until:
            steps.append((round(t, 3), LOCK, hold))
            busy_until = t + hold + 0.02
        t += slot
    if plan.outage_end > plan.outage_start and not plan.outage_injected:
        steps.append((plan.outage_start, DOWN, 0.0))
        steps.append((plan.outage_end, UP, 0.0))
    steps.sort()
    return steps


class _CountingSqlite:
    """The ``sqlite3`` module as SQLAlchemy's DBAPI, counting every open of the database.

    With one connection per call (``NullPool``, as SQLite engines often
    run), each open is one call reaching the database.
    """

    def __init__(self, arrivals: Arrivals) -> None:
        self._arrivals = arrivals

    def connect(self, *args: Any, **kwargs: Any) -> sqlite3.Connection:
        self._arrivals.count_statement()
        connection: sqlite3.Connection = sqlite3.connect(*args, **kwargs)
        return connection

    def __getattr__(self, name: str) -> Any:
        return getattr(sqlite3, name)


class SqliteDependency:
    """An ``orders`` SQLite database in rollback-journal mode with scheduled faults.

    Exclusive locks make readers wait their busy timeout and fail with
    ``database is locked`` (``SQLITE_BUSY``); during the outage the file is
    gone and every open fails with ``SQLITE_CANTOPEN``. Real faults of the
    real library, nothing simulated. ``url`` opens it read-write without
    creating it (``mode=rw``); ``dbapi`` is the module to hand to
    ``create_engine(module=...)`` so opens are counted.
    """

    BUSY_TIMEOUT = 0.25

    def __init__(self, arrivals: Arrivals, path: str, duration: float) -> None:
        self.arrivals = arrivals
        self.path = path
        self.url = f"sqlite:///file:{path}?mode=rw&uri=true"
        self.dbapi = _CountingSqlite(arrivals)
        self._schedule = chaos_schedule(arrivals.plan, duration)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._chaos, name="demo-db-chaos")
        self._away = path + ".away"
        with contextlib.closing(sqlite3.connect(path)) as db, db:
            db.execute("PRAGMA journal_mode=DELETE")
            db.execute("CREATE TABLE IF NOT EXISTS stock (sku TEXT PRIMARY KEY, qty INTEGER)")
            db.execute("INSERT OR REPLACE INTO stock VALUES ('A-1', 42)")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5.0)
        if os.path.exists(self._away):
            os.replace(self._away, self.path)

    def _chaos(self) -> None:
        db = sqlite3.connect(self.path, timeout=2.0, isolation_level=None,
                             check_same_thread=False)
        try:
            for start, action, hold in self._schedule:
                wait = self.arrivals.start + start - time.monotonic()
                if wait > 0 and self._stop.wait(wait):
                    return
                if action == DOWN:
                    os.replace(self.path, self._away)
                elif action == UP:
                    os.replace(self._away, self.path)
                else:
                    self._lock(db, self.arrivals.start + start + hold)
                if self._stop.is_set():
                    return
        finally:
            db.close()

    def _lock(self, db: sqlite3.Connection, until: float) -> None:
        try:
            db.execute("BEGIN EXCLUSIVE")
        except sqlite3.OperationalError:
            return  # readers kept it busy: skip this one
        try:
            self._stop.wait(max(0.0, until - time.monotonic()))
        finally:
            db.execute("COMMIT")
