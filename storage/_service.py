"""The metrics service: a gRPC server over a :class:`Store`.

Loopback by default. Listening anywhere else needs a token, checked on
every call as ``authorization: Bearer <token>`` metadata with a
constant-time comparison; TLS is one option away. Health
(``grpc.health.v1``, open without a token so probes work) and reflection
are on. A bad request gets ``INVALID_ARGUMENT`` with a message; a store
that fails gets ``UNAVAILABLE``; nothing a client sends stops the server.
"""

from __future__ import annotations

import errno
import hmac
import ipaddress
import logging
import math
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from datetime import timedelta
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from sqlalchemy.exc import SQLAlchemyError

from seawall import ConfigurationError

from ._gen import metrics_pb2 as pb
from ._gen import metrics_pb2_grpc as pb_grpc
from ._store import (
    DEFAULT_PAGE,
    MAX_PAGE,
    Store,
    check_name,
    check_time,
    check_window,
)
from ._types import BREAKDOWNS, STATS_FIELDS, MetricsQueryError, Stats, Summary

log = logging.getLogger("seawall.storage")

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["MetricsService"].full_name
DEFAULT_LISTEN = "127.0.0.1:50057"
DEFAULT_WATCH_INTERVAL = 5.0
MIN_TOKEN_LENGTH = 8
_HEALTH_PREFIX = f"/{health.SERVICE_NAME}/"
_MAX_ID = 2**63 - 1
_SHOWN_POINTS = 20


class _PointNotFound(MetricsQueryError):
    """A request named a point (or an operation) the store has never seen: NOT_FOUND."""

T = TypeVar("T")


# -- addresses -----------------------------------------------------------------

def parse_listen(listen: str, *, name: str = "listen", lowest: int = 0) -> tuple[str, int]:
    """Split ``host:port`` (``[v6]:port`` for IPv6) and check the port.

    ``name`` is how the value is called in messages (``--target``, say);
    ``lowest`` the lowest port accepted (0 asks the system for a free one).
    """
    if not isinstance(listen, str) or ":" not in listen:
        raise ConfigurationError(f"{name} must be HOST:PORT, got {listen!r}")
    if listen.startswith("["):
        host, sep, port_text = listen[1:].partition("]:")
        if not sep:
            raise ConfigurationError(f"{name} must be [IPV6]:PORT, got {listen!r}")
    else:
        host, _, port_text = listen.rpartition(":")
        if ":" in host:
            raise ConfigurationError(f"{name}: write IPv6 addresses in brackets: "
                                     f"[{host}]:{port_text}")
    try:
        port = int(port_text)
    except ValueError:
        raise ConfigurationError(f"{name} port must be a number, got {port_text!r} "
                                 f"in {listen!r}") from None
    if not lowest <= port <= 65535 or not host:
        raise ConfigurationError(f"{name} must be HOST:PORT with a port {lowest}-65535, "
                                 f"got {listen!r}")
    return host, port


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve anywhere


# -- conversions ------------------------------------------------------------------

def _stats_pb(stats: Stats) -> pb.Stats:
    fields: dict[str, Any] = {name: getattr(stats, name) for name in STATS_FIELDS}
    for name in BREAKDOWNS:
        fields[name] = dict(fields[name])
    return pb.Stats(**fields)


def _summary_pb(summaries: list[Summary], start: float, end: float) -> pb.SummaryResponse:
    return pb.SummaryResponse(
        summaries=[pb.PointSummary(point=s.point, stats=_stats_pb(s), breaker_state=s.breaker_state)
                   for s in summaries],
        start=start, end=end,
    )


# -- the servicer ------------------------------------------------------------------

class _Servicer(pb_grpc.MetricsServiceServicer):
    def __init__(self, store: Store, stopping: threading.Event, max_watchers: int) -> None:
        self.store = store
        self.stopping = stopping
        self.watchers = threading.BoundedSemaphore(max_watchers)

    def _answer(self, context: grpc.ServicerContext, work: Callable[[], T]) -> T:
        try:
            return work()
        except _PointNotFound as exc:
            context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
        except MetricsQueryError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except SQLAlchemyError as exc:
            log.warning("seawall.storage: store error while serving: %s", exc)
            context.abort(grpc.StatusCode.UNAVAILABLE,
                          f"metrics store unavailable: {type(exc).__name__}")
        raise AssertionError("unreachable")  # pragma: no cover - abort raises

    def _known(self, point: str, operation: str) -> None:
        """Raise NOT_FOUND for a point (or an operation of it) the store has never seen."""
        points = {p.name: p for p in self.store.points()}
        found = points.get(point)
        if found is None:
            names = sorted(points)
            shown = ", ".join(names[:_SHOWN_POINTS]) or "none yet"
            if len(names) > _SHOWN_POINTS:
                shown += f" and {len(names) - _SHOWN_POINTS} more"
            raise _PointNotFound(f"no such point {point!r}; known points: {shown}")
        if operation and operation not in found.operations:
            raise _PointNotFound(f"point {point!r} has no operation {operation!r}; its "
                                 f"operations: {', '.join(found.operations)}")

    def _known_if_empty(self, point: str, operation: str, buckets: list[Any]) -> None:
        if not any(b.calls for b in buckets):  # nothing in range: quiet, or never seen?
            self._known(point, operation)

    def _summary(self, point: str, operation: str, window: float,
                 strict: bool = True) -> pb.SummaryResponse:
        window = check_window(window)
        point_name = check_name("point", point)
        operation_name = check_name("operation", operation)
        now = time.time()
        found = self.store.summary(point_name, operation=operation_name, window=window, now=now)
        if strict and not found and point_name is not None:
            self._known(point_name, operation_name or "")  # nothing in range: quiet, or unknown?
        return _summary_pb(found, (now - window) // 60 * 60.0, now)

    def ListPoints(self, request: pb.ListPointsRequest,
                   context: grpc.ServicerContext) -> pb.ListPointsResponse:
        def work() -> pb.ListPointsResponse:
            return pb.ListPointsResponse(points=[
                pb.PointInfo(name=p.name, operations=list(p.operations),
                             first_seen=p.first_seen, last_seen=p.last_seen)
                for p in self.store.points()
            ])
        return self._answer(context, work)

    def GetSummary(self, request: pb.SummaryRequest,
                   context: grpc.ServicerContext) -> pb.SummaryResponse:
        return self._answer(context, lambda: self._summary(
            request.point, request.operation, request.window_seconds))

    def GetSeries(self, request: pb.SeriesRequest,
                  context: grpc.ServicerContext) -> pb.SeriesResponse:
        def work() -> pb.SeriesResponse:
            buckets = self.store.series(request.point, start=request.start, end=request.end,
                                        step=request.step_seconds,
                                        operation=request.operation or None)
            self._known_if_empty(request.point, request.operation, buckets)
            return pb.SeriesResponse(
                point=request.point, step_seconds=request.step_seconds,
                buckets=[pb.SeriesBucket(start=b.start, stats=_stats_pb(b)) for b in buckets],
            )
        return self._answer(context, work)

    def ListTransitions(self, request: pb.ListTransitionsRequest,
                        context: grpc.ServicerContext) -> pb.ListTransitionsResponse:
        def work() -> pb.ListTransitionsResponse:
            size = request.page_size or DEFAULT_PAGE
            if not 0 < size <= MAX_PAGE:
                raise MetricsQueryError(
                    f"page_size must be between 1 and {MAX_PAGE}, got {request.page_size}")
            after = 0
            if request.page_token:
                try:
                    after = int(request.page_token) if request.page_token.isdigit() else -1
                except ValueError:
                    after = -1
                if not 0 <= after <= _MAX_ID:
                    raise MetricsQueryError(f"page_token {request.page_token[:40]!r} is not one "
                                            "this service issued")
            check_time("start", request.start)
            check_time("end", request.end)
            point = check_name("point", request.point)
            rows = self.store.transitions(
                point, start=request.start or None, end=request.end or None,
                limit=size, after=after)
            if not rows and point is not None and not after:
                self._known(point, "")
            return pb.ListTransitionsResponse(
                transitions=[pb.Transition(point=t.point, from_state=t.from_state,
                                           to_state=t.to_state, reason=t.reason, time=t.time,
                                           host=t.host, pid=t.pid) for t in rows],
                # a full page may be followed by more: hand out where to go on
                next_page_token=str(rows[-1].id) if len(rows) == size else "",
            )
        return self._answer(context, work)

    def WatchSummary(self, request: pb.WatchSummaryRequest,
                     context: grpc.ServicerContext) -> Iterator[pb.SummaryResponse]:
        def check() -> float:
            check_window(request.window_seconds)
            check_name("point", request.point)
            check_name("operation", request.operation)
            interval = request.interval_seconds or DEFAULT_WATCH_INTERVAL
            if math.isnan(interval) or not 0.1 <= interval <= 3600:
                raise MetricsQueryError(
                    f"interval_seconds must be between 0.1 and 3600, got {request.interval_seconds!r}")
            return interval

        interval = self._answer(context, check)
        if not self.watchers.acquire(blocking=False):
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                          "too many watchers on this metrics service; try again later")
        try:
            done = threading.Event()
            context.add_callback(done.set)
            while not done.is_set() and not self.stopping.is_set():
                yield self._answer(context, lambda: self._summary(
                    request.point, request.operation, request.window_seconds, strict=False))
                deadline = time.monotonic() + interval
                while not done.is_set() and not self.stopping.is_set():
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    done.wait(min(left, 0.25))  # wakes for a server stop too
        finally:
            self.watchers.release()


class _TokenCheck(grpc.ServerInterceptor):  # type: ignore[type-arg]
    """Refuse calls without ``authorization: Bearer <token>`` (health checks excepted)."""

    def __init__(self, token: str) -> None:
        self._expected = f"Bearer {token}".encode()

    def intercept_service(self, continuation: Callable[[grpc.HandlerCallDetails], Any],
                          details: grpc.HandlerCallDetails) -> Any:
        if details.method.startswith(_HEALTH_PREFIX):
            return continuation(details)
        given = b""
        for key, value in details.invocation_metadata or ():
            if key == "authorization":
                given = value.encode() if isinstance(value, str) else value
                break
        if hmac.compare_digest(given, self._expected):
            return continuation(details)
        handler = continuation(details)
        if handler is None:
            return None
        return _denying(handler)


def _deny(request: Any, context: grpc.ServicerContext) -> Any:
    context.abort(grpc.StatusCode.UNAUTHENTICATED,
                  "this metrics service needs 'authorization: Bearer <token>' metadata")


def _denying(handler: Any) -> Any:
    kwargs = {"request_deserializer": handler.request_deserializer,
              "response_serializer": handler.response_serializer}
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(_deny, **kwargs)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(_deny, **kwargs)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(_deny, **kwargs)
    return grpc.unary_unary_rpc_method_handler(_deny, **kwargs)


# -- the server ---------------------------------------------------------------------

class MetricsServer:
    """A running metrics service; made by :func:`serve`.

    ``address`` is where it listens (``host:port``, with the real port when
    0 was asked). Stop it with :meth:`stop` or by leaving a ``with`` block.
    """

    def __init__(self, server: grpc.Server, store: Store, address: str, port: int,
                 health_servicer: health.HealthServicer, stopping: threading.Event,
                 owns_store: bool, retention: float | None,
                 executor: futures.ThreadPoolExecutor | None = None) -> None:
        self._server = server
        self._executor = executor
        self.store = store
        self.address = address
        self.port = port
        self._health = health_servicer
        self._stopping = stopping
        self._owns_store = owns_store
        self._pruner: threading.Thread | None = None
        if retention is not None:
            self._pruner = threading.Thread(target=self._prune_loop, args=(retention,),
                                            name="seawall-metrics-retention", daemon=True)
            self._pruner.start()

    def __repr__(self) -> str:
        return f"<MetricsServer {self.address} over {self.store!r}>"

    def _prune_loop(self, retention: float) -> None:
        every = min(max(retention / 10.0, 1.0), 3600.0)
        while not self._stopping.is_set():
            try:
                deleted = self.store.prune(retention)
                if deleted:
                    log.info("seawall.storage: pruned %d rows older than %g s", deleted, retention)
            except Exception as exc:
                log.warning("seawall.storage: pruning failed (%s); will retry", exc)
            self._stopping.wait(every)

    def stop(self, grace: float | None = 1.0) -> None:
        """Stop serving; in-flight calls get ``grace`` seconds. Idempotent."""
        if self._stopping.is_set():
            return
        self._health.enter_graceful_shutdown()
        self._stopping.set()
        self._server.stop(grace).wait()
        if self._executor is not None:  # grpc never shuts down the pool it was given
            self._executor.shutdown(wait=True)
        if self._pruner is not None:
            self._pruner.join(5.0)
        if self._owns_store:
            self.store.close()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the server stops (or ``timeout`` seconds); True when it stopped."""
        return self._server.wait_for_termination(timeout) is False or self._stopping.is_set()

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# How serve()'s messages name its options: Python keywords, or the command line's flags.
PYTHON_NAMES = {"token": "token=", "tls": "tls_cert= and tls_key=", "create": "create=True",
                "listen": "listen", "retention": "retention", "max_workers": "max_workers"}
CLI_NAMES = {"token": "--token (or $SEAWALL_METRICS_TOKEN)", "tls": "--tls-cert and --tls-key",
             "create": "--create", "listen": "--listen", "retention": "--retention-days",
             "max_workers": "max_workers"}


def serve(
    store: Store | str | None = None,
    listen: str = DEFAULT_LISTEN,
    *,
    token: str | None = None,
    tls_cert: str | bytes | None = None,
    tls_key: str | bytes | None = None,
    retention: float | timedelta | None = None,
    max_workers: int = 8,
    create: bool = False,
) -> MetricsServer:
    """Start the metrics service over ``store`` on ``listen`` and return it (non-blocking).

    ``store`` is a :class:`Store` or a URL (``None``: ``$SEAWALL_METRICS_URL``
    or ``sqlite:///seawall-metrics.db``). A URL must name an existing store
    (what :func:`seawall.persist_metrics` writes): a missing SQLite file, or
    a database without seawall's tables, raises
    :class:`seawall.ConfigurationError` naming it, unless ``create`` asks for
    a new, empty store; a SQLite file this user may not write is served
    read-only. ``listen`` is ``host:port`` (port 0: any free one, see
    :attr:`MetricsServer.port`); a port another process listens on raises
    :class:`seawall.ConfigurationError` ("address in use"), never sharing it.
    A non-loopback address requires ``token`` (at least
    :data:`MIN_TOKEN_LENGTH` characters, no spaces); without one this raises
    before binding anything. ``tls_cert`` / ``tls_key`` (PEM file paths or
    bytes) turn on TLS. ``retention`` (seconds or a timedelta) prunes older
    data at start and periodically (not for a read-only store).
    ``max_workers`` threads answer calls; watch streams may hold all but
    two of them (``max_workers - 2`` at once; more get RESOURCE_EXHAUSTED).
    """
    return _serve(store, listen, token=token, tls_cert=tls_cert, tls_key=tls_key,
                  retention=retention, max_workers=max_workers, create=create,
                  names=PYTHON_NAMES)


def _serve(store: Store | str | None, listen: str, *, token: str | None,
           tls_cert: str | bytes | None, tls_key: str | bytes | None,
           retention: float | timedelta | None, max_workers: int, create: bool,
           names: dict[str, str]) -> MetricsServer:
    """:func:`serve`, with messages naming the options as ``names`` says."""
    host, port = parse_listen(listen, name=names["listen"])
    if token is not None and (not isinstance(token, str) or len(token) < MIN_TOKEN_LENGTH
                              or any(c.isspace() for c in token)):
        raise ConfigurationError(f"{names['token']}: the token must be a string of at least "
                                 f"{MIN_TOKEN_LENGTH} characters without spaces")
    if not is_loopback(host) and token is None:
        raise ConfigurationError(
            f"refusing to serve metrics on {listen} without a token: any host that can reach "
            f"it could read them. Pass {names['token']} (TLS with {names['tls']} is advised "
            "too), or listen on 127.0.0.1")
    if (tls_cert is None) != (tls_key is None):
        raise ConfigurationError(f"TLS needs both a certificate and a key ({names['tls']})")
    if isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers < 3:
        raise ConfigurationError(f"{names['max_workers']} must be an int >= 3, "
                                 f"got {max_workers!r}")
    age: float | None = None
    if retention is not None:
        age = retention.total_seconds() if isinstance(retention, timedelta) else float(retention)
        if not age > 0 or math.isinf(age):
            raise ConfigurationError(f"{names['retention']} must be > 0, got {retention!r}")
    credentials = None
    if tls_cert is not None and tls_key is not None:
        credentials = grpc.ssl_server_credentials([(_pem(tls_key), _pem(tls_cert))])

    owns_store = not isinstance(store, Store)
    if isinstance(store, Store):
        the_store = store
        the_store.ensure_schema()
    else:
        the_store = Store.open(store, create=create, create_hint=names["create"])
    try:
        if age is not None and the_store.read_only:
            raise ConfigurationError(
                f"{the_store!r} is read-only for this user: it cannot be pruned "
                f"({names['retention']}); serve it without retention, or fix its permissions")
        stopping = threading.Event()
        interceptors: list[Any] = [_TokenCheck(token)] if token is not None else []
        executor = futures.ThreadPoolExecutor(max_workers=max_workers,
                                              thread_name_prefix="seawall-metrics-rpc")
        # gRPC sets SO_REUSEPORT by default: a second server on the same port would start
        # and take half the connections. Without it, the second bind fails as it should.
        server = grpc.server(executor, interceptors=interceptors,
                             options=[("grpc.so_reuseport", 0)])
        try:
            pb_grpc.add_MetricsServiceServicer_to_server(
                _Servicer(the_store, stopping, max_workers - 2), server)
            health_servicer = health.HealthServicer()
            health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
            for name in ("", SERVICE_NAME):
                health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
            reflection.enable_server_reflection(
                (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
            bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            try:
                bound = (server.add_secure_port(bind, credentials) if credentials is not None
                         else server.add_insecure_port(bind))
            except RuntimeError:
                bound = 0
            if bound == 0:
                raise ConfigurationError(f"cannot listen on {listen}: {_bind_problem(host, port)}")
            server.start()
        except BaseException:
            server.stop(None)
            executor.shutdown(wait=False)
            raise
    except BaseException:
        if owns_store:
            the_store.close()
        raise
    address = f"[{host}]:{bound}" if ":" in host else f"{host}:{bound}"
    return MetricsServer(server, the_store, address, bound, health_servicer, stopping,
                         owns_store, age, executor)


def _bind_problem(host: str, port: int) -> str:
    """Why ``host:port`` cannot be bound, found by trying it with a plain socket."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        return f"{host} is not an address of this host ({exc.strerror})"
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return ("address in use: another process (another seawall serve?) listens on "
                        "that port; stop it, or choose another port")
            if exc.errno == errno.EADDRNOTAVAIL:
                return f"{host} is not an address of this host"
            if exc.errno == errno.EACCES:
                return "permission denied (ports below 1024 need privileges)"
            return exc.strerror or str(exc)
    return "gRPC could not bind it (set GRPC_VERBOSITY=debug to see why)"


def _pem(value: str | bytes) -> bytes:
    if isinstance(value, bytes):
        return value
    try:
        with open(value, "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise ConfigurationError(f"cannot read {value}: {exc.strerror}") from exc
