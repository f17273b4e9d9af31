"""The metrics service: a gRPC server over a :class:`Store`.

Loopback by default. Listening anywhere else needs a token, checked on
every call as ``authorization: Bearer <token>`` metadata with a
constant-time comparison; TLS is one option away. Health
(``grpc.health.v1``, open without a token so probes work) and reflection
are on. A bad request gets ``INVALID_ARGUMENT`` with a message; a store
that fails gets ``UNAVAILABLE``; nothing a client sends stops the server.

This module is the server: addresses, the token check, TLS, binding and
the lifecycle (:func:`serve`, :class:`MetricsServer`, retention); what
each RPC does is :mod:`._servicer`.
"""

from __future__ import annotations

import errno
import hmac
import ipaddress
import logging
import math
import socket
import threading
from collections.abc import Callable
from concurrent import futures
from datetime import timedelta
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from seawall import ConfigurationError

from ._gen import metrics_pb2 as pb
from ._gen import metrics_pb2_grpc as pb_grpc
from ._servicer import Servicer
from ._store import Store

log = logging.getLogger("seawall.storage")

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["MetricsService"].full_name
DEFAULT_LISTEN = "127.0.0.1:50057"
MIN_TOKEN_LENGTH = 8
_HEALTH_PREFIX = f"/{health.SERVICE_NAME}/"


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
                Servicer(the_store, stopping, max_workers - 2), server)
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
