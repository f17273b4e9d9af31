"""The demo's workload: the same paced calls, through bare clients or through seawall.

Each dependency gets a few worker threads; worker ``w`` sends request
``w-n`` at a fixed pace, so both runs send the same requests in the same
order. A client turns one request into an outcome the caller sees: ``ok``
(a real answer), ``fallback`` (a degraded answer seawall supplied) or
``error``. Given a :class:`seawall.Chaos` (``seawall demo --chaos``), a
client injects the outage itself: through seawall, the policy's point
carries it; bare, a point with nothing but that Chaos stands between the
caller and the dependency (no retry, breaker, timeout nor fallback).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
import httpx
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

import seawall

from ._demo_deps import GRPC_METHOD, REQUEST_ID_KEY, SqliteDependency

OK = "ok"
FALLBACK = "fallback"
ERROR = "error"

GRPC_TIMEOUT = 2.0
HTTP_TIMEOUT = 2.0
STOCK_QUERY = sa.text("SELECT qty FROM stock WHERE sku = :sku")
CACHED_STOCK = b"stock:cached"
CACHED_PRICE = b'{"sku": "A-1", "price": 1299, "cached": true}'
CACHED_QTY = -1


class CallLog:
    """What the callers of one dependency saw during one run. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.latencies: list[float] = []
        self.outcomes: dict[str, int] = {OK: 0, FALLBACK: 0, ERROR: 0}
        self.outside_outage: dict[str, int] = {OK: 0, FALLBACK: 0, ERROR: 0}

    def record(self, outcome: str, latency: float, *, in_outage: bool = False) -> None:
        """One call ended with ``outcome`` after ``latency`` seconds."""
        with self._lock:
            self.outcomes[outcome] += 1
            if not in_outage:
                self.outside_outage[outcome] += 1
            self.latencies.append(latency)

    def snapshot(self) -> tuple[dict[str, int], list[float]]:
        with self._lock:
            return dict(self.outcomes), list(self.latencies)

    def outside(self) -> dict[str, int]:
        """Outcomes of the calls that started outside the outage window."""
        with self._lock:
            return dict(self.outside_outage)


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values`` by nearest rank; 0 when empty."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q * len(ordered) + 0.5) - 1))
    return ordered[rank]


@dataclass
class Client:
    """One way of calling a dependency: ``call(request_id)`` returns an outcome."""

    call: Callable[[str], str]
    close: Callable[[], None]
    point: seawall.IntegrationPoint | None = None
    openings: list[int] = field(default_factory=lambda: [0])
    rehearsal: seawall.IntegrationPoint | None = None
    """The point whose ``chaos`` injects the outage (``--chaos``), else ``None``."""


# -- policies ----------------------------------------------------------------


def _breaker() -> seawall.CircuitBreaker:
    # a short open time so the demo shows probing and recovery within seconds
    return seawall.CircuitBreaker(failure_rate=0.5, minimum_calls=20, window=50,
                                  open_for=0.5, half_open_calls=3)


def _retry(initial: float) -> seawall.Retry:
    return seawall.Retry(
        attempts=3,
        backoff=seawall.Backoff.exponential(initial=initial, maximum=0.25),
        budget=seawall.RetryBudget(ratio=0.2, minimum_per_second=5.0, period=5.0),
        max_server_delay=1.5,
    )


def inventory_point(chaos: seawall.Chaos | None = None) -> seawall.IntegrationPoint:
    """The gRPC ``Inventory`` service's policy."""
    return seawall.IntegrationPoint(
        "inventory", retry=_retry(0.02), breaker=_breaker(),
        timeout=seawall.Timeout(attempt=0.15, total=1.0),
        fallback=seawall.Fallback(value=CACHED_STOCK), chaos=chaos,
    )


def pricing_point(chaos: seawall.Chaos | None = None) -> seawall.IntegrationPoint:
    """The HTTP ``Pricing`` API's policy."""
    # server pacing off: the demo's 429s are drawn at random for 2 % of requests, not from a
    # quota, so a 1 s pause of every caller cannot make them rarer (against a real quota, keep
    # it on); inventory keeps it on for its 100 ms pushbacks
    return seawall.IntegrationPoint(
        "pricing", retry=_retry(0.02), breaker=_breaker(),
        timeout=seawall.Timeout(attempt=0.15, total=1.0),
        fallback=seawall.Fallback(value=httpx.Response(200, content=CACHED_PRICE)), chaos=chaos,
        server_pacing=False,
    )


def orders_db_point(chaos: seawall.Chaos | None = None) -> seawall.IntegrationPoint:
    """The ``orders`` database's policy."""
    return seawall.IntegrationPoint(
        "orders-db", retry=_retry(0.05), breaker=_breaker(),
        timeout=seawall.Timeout(attempt=0.3, total=1.0),
        fallback=seawall.Fallback(value=CACHED_QTY), chaos=chaos,
    )


HEDGE_DELAY = 0.05  # well above a normal answer (about 1 ms), far below a 400 ms spike


def inventory_hedged_point(chaos: seawall.Chaos | None = None) -> seawall.IntegrationPoint:
    """The hedged variant of the ``Inventory`` policy: a second attempt after 50 ms.

    No per-attempt timeout: a slow attempt gets company instead of being cut
    off; the retry's budget (not its attempts) bounds the hedges.
    """
    return seawall.IntegrationPoint(
        "inventory-hedged", retry=_retry(0.02), breaker=_breaker(),
        timeout=seawall.Timeout(total=1.0), hedge=seawall.Hedge(delay=HEDGE_DELAY),
        fallback=seawall.Fallback(value=CACHED_STOCK), chaos=chaos,
    )


def rehearsal_chaos(name: str, seed: int) -> seawall.Chaos:
    """The injected outage of dependency ``name``: every attempt fails as a real outage would.

    Off at first (``enabled=False``); the demo switches it on for the outage
    window with ``point.chaos.enable()`` and off again after.
    """
    if name == "inventory":
        return seawall.Chaos(result_rate=1.0, result=grpc.StatusCode.UNAVAILABLE, seed=seed,
                             enabled=False)
    if name == "pricing":
        return seawall.Chaos(result_rate=1.0, result=503, seed=seed, enabled=False)
    from seawall.interceptors import sqlalchemy as sw_sa

    return seawall.Chaos(fault_rate=1.0, fault=sw_sa.injected_disconnect, seed=seed,
                         enabled=False)


def _chaos_only(name: str, chaos: seawall.Chaos | None) -> seawall.IntegrationPoint | None:
    """A bare client's point for a rehearsal: the Chaos and no policy at all (else ``None``)."""
    return None if chaos is None else seawall.IntegrationPoint(name, chaos=chaos)


def _count_openings(point: seawall.IntegrationPoint) -> list[int]:
    box = [0]

    def hook(event: Any) -> None:
        if isinstance(event, seawall.BreakerTransition) and event.to_state == "open":
            box[0] += 1

    point.add_hook(hook)
    return box


def _client(call: Callable[[str], str], close: Callable[[], None],
            mounted: seawall.IntegrationPoint | None, *, resilient: bool,
            chaos: seawall.Chaos | None) -> Client:
    """The :class:`Client` of ``call`` through ``mounted`` (the policy's point, the
    rehearsal's Chaos-only point, or ``None``); a policy's breaker openings are counted."""
    point = mounted if resilient else None
    client = Client(call=call, close=close, point=point,
                    rehearsal=mounted if chaos is not None else None)
    if point is not None:
        client.openings = _count_openings(point)
    return client


# -- gRPC ---------------------------------------------------------------------


def _stock_call(channel: grpc.Channel) -> Callable[[str], str]:
    """``Inventory/GetStock`` for ``A-1`` on ``channel``, as one outcome per request."""
    method = channel.unary_unary(GRPC_METHOD, request_serializer=None, response_deserializer=None)

    def call(request_id: str) -> str:
        try:
            reply = method(b"A-1", timeout=GRPC_TIMEOUT, metadata=((REQUEST_ID_KEY, request_id),))
        except (grpc.RpcError, seawall.RejectedError):
            return ERROR
        return FALLBACK if reply == CACHED_STOCK else OK

    return call


def grpc_client(target: str, *, resilient: bool, chaos: seawall.Chaos | None = None) -> Client:
    """Call ``Inventory/GetStock`` on a plain channel or one with seawall's interceptors."""
    raw = grpc.insecure_channel(target)
    channel: grpc.Channel = raw
    mounted = inventory_point(chaos) if resilient else _chaos_only("inventory", chaos)
    if mounted is not None:
        from seawall.interceptors import grpc as sw_grpc

        # GetStock is a read: safe to re-run after a timeout
        channel = grpc.intercept_channel(raw, *sw_grpc.client_interceptors(mounted,
                                                                            idempotent=True))
    return _client(_stock_call(channel), raw.close, mounted, resilient=resilient, chaos=chaos)


def hedged_grpc_client(target: str, *, resilient: bool,
                       chaos: seawall.Chaos | None = None) -> Client:
    """``Inventory/GetStock`` on a plain channel, or hedged through ``resilient_channel``.

    Sync calls are hedged by the channel wrapper (attempts are ``.future()``
    calls watched from the caller's thread), on a route marked idempotent.
    In a rehearsal (``chaos``) every attempt, hedges included, draws from it.
    """
    raw = grpc.insecure_channel(target)
    channel: grpc.Channel = raw
    mounted = inventory_hedged_point(chaos) if resilient \
        else _chaos_only("inventory-hedged", chaos)
    if mounted is not None:
        from seawall.interceptors import grpc as sw_grpc

        channel = sw_grpc.resilient_channel(raw, sw_grpc.Route(mounted, idempotent=True))
    return _client(_stock_call(channel), channel.close, mounted, resilient=resilient, chaos=chaos)


# -- HTTP ---------------------------------------------------------------------


def http_client(url: str, *, resilient: bool, chaos: seawall.Chaos | None = None) -> Client:
    """``GET /price`` with a plain httpx client or one on seawall's transport."""
    mounted = pricing_point(chaos) if resilient else _chaos_only("pricing", chaos)
    if mounted is not None:
        from seawall.interceptors import httpx as sw_httpx

        http = httpx.Client(transport=sw_httpx.ResilientTransport(mounted), timeout=HTTP_TIMEOUT)
    else:
        http = httpx.Client(timeout=HTTP_TIMEOUT)

    def call(request_id: str) -> str:
        try:
            response = http.get(url, headers={REQUEST_ID_KEY: request_id})
        except (httpx.HTTPError, seawall.RejectedError):
            return ERROR
        if response.status_code != 200:
            return ERROR
        return FALLBACK if response.content == CACHED_PRICE else OK

    return _client(call, http.close, mounted, resilient=resilient, chaos=chaos)


# -- SQLAlchemy ---------------------------------------------------------------


def db_client(db: SqliteDependency, *, resilient: bool,
              chaos: seawall.Chaos | None = None) -> Client:
    """Read the stock level on a plain engine or one instrumented by seawall."""
    engine = sa.create_engine(db.url, module=db.dbapi, poolclass=NullPool,
                              connect_args={"timeout": SqliteDependency.BUSY_TIMEOUT})

    def read(conn: sa.Connection) -> int:
        return int(conn.execute(STOCK_QUERY, {"sku": "A-1"}).scalar_one())

    mounted = orders_db_point(chaos) if resilient else _chaos_only("orders-db", chaos)
    if mounted is not None:
        from seawall.interceptors import sqlalchemy as sw_sa

        sw_sa.instrument(engine, mounted)

        def call(request_id: str) -> str:
            try:
                qty = sw_sa.run_transaction(engine, read, operation="read stock")
            except (sa.exc.SQLAlchemyError, seawall.SeawallError):
                return ERROR
            return FALLBACK if qty == CACHED_QTY else OK
    else:
        def call(request_id: str) -> str:
            try:
                with engine.connect() as conn:
                    read(conn)
            except sa.exc.SQLAlchemyError:
                return ERROR
            return OK

    return _client(call, engine.dispose, mounted, resilient=resilient, chaos=chaos)


# -- the paced workers ----------------------------------------------------------


class Workload:
    """``workers`` threads calling ``client`` at ``rate`` calls per second in total."""

    def __init__(self, client: Client, log: CallLog, *, workers: int, rate: float,
                 start: float, duration: float, stop: threading.Event,
                 in_outage: Callable[[float], bool] = lambda _t: False) -> None:
        self.client = client
        self._in_outage = in_outage
        self.log = log
        self._interval = workers / rate
        self._start = start
        self._end = start + duration
        self._stop = stop
        self._threads = [
            threading.Thread(target=self._work, args=(w, workers), name=f"demo-worker-{w}")
            for w in range(workers)
        ]

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def join(self, timeout: float) -> None:
        for t in self._threads:
            t.join(timeout)

    def _work(self, worker: int, workers: int) -> None:
        interval = self._interval
        next_at = self._start + interval * worker / workers
        n = 0
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= self._end:
                return
            if next_at > now and self._stop.wait(next_at - now):
                return
            n += 1
            began = time.monotonic()
            t0 = time.perf_counter()
            outcome = self.client.call(f"{worker}-{n}")
            self.log.record(outcome, time.perf_counter() - t0, in_outage=self._in_outage(began))
            next_at += interval
            now = time.monotonic()
            if next_at < now:
                next_at = now  # fell behind (a slow call): no burst to catch up
