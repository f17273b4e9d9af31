"""The HTTP side of ``seawall serve --http``: the dashboard, ``/metrics`` and ``/api/``.

A standard-library ``ThreadingHTTPServer`` in one background thread (no
framework, no extra dependency but ``prometheus_client`` for ``/metrics``).
It follows the gRPC service's rules: loopback by default; any other
address needs a token, checked as ``Authorization: Bearer <token>`` with a
constant-time comparison on ``/metrics`` and ``/api/`` (the page and its
assets hold no data and stay open, so a browser can load them and then
ask for the token); TLS with the same certificate and key. A bad query
gets 400 with a message, a failing store 503; nothing a client sends stops
the server.

This module is the server (options, socket, TLS, connection limit,
lifecycle: :func:`serve_http`, :class:`WebServer`); what each request gets
is :mod:`._http_handler`.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import os
import socket
import socketserver
import ssl
import tempfile
import threading
from http.server import ThreadingHTTPServer
from typing import Any

from seawall import ConfigurationError

from ._http_handler import REQUEST_TIMEOUT, Handler, load_assets
from ._service import is_loopback, parse_listen
from ._store import Store

log = logging.getLogger("seawall.storage")

DEFAULT_HTTP_LISTEN = "127.0.0.1:8057"
MAX_CONNECTIONS = 32  # handled at once; more wait in the listen backlog


def check_token(token: str | None) -> None:
    """The gRPC service's token rule: at least 8 characters, no whitespace."""
    if token is not None and (not isinstance(token, str) or len(token) < 8
                              or any(c.isspace() for c in token)):
        raise ConfigurationError("token must be a string of at least 8 characters without spaces")


class _Server(ThreadingHTTPServer):
    """The listening socket: at most :data:`MAX_CONNECTIONS` requests at once, TLS per worker."""

    daemon_threads = True
    block_on_close = False
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], family: int, store: Store,
                 token: str | None, context: ssl.SSLContext | None) -> None:
        self.address_family = family
        self.store = store
        self.token = token
        self.expected = f"Bearer {token}".encode() if token is not None else None
        self.context = context
        self.assets = load_assets()
        self.registry = _registry(store)
        self.host_names = {"localhost", address[0].lower()}
        self.slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        super().__init__(address, Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves its own name (socket.getfqdn): a DNS
        # lookup that can hang on a machine without a resolver; we need none.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.slots.acquire(timeout=REQUEST_TIMEOUT):
            self.shutdown_request(request)  # overloaded: drop rather than queue forever
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()

    def finish_request(self, request: Any, client_address: Any) -> None:
        if self.context is not None:
            # The handshake runs on this worker thread, not the accepting one,
            # so a client that stalls it holds up no one else.
            request.settimeout(REQUEST_TIMEOUT)
            try:
                request = self.context.wrap_socket(request, server_side=True)
            except (OSError, ssl.SSLError) as exc:
                log.debug("seawall.storage http: TLS handshake with %s failed: %s",
                          client_address, exc)
                return
        try:
            super().finish_request(request, client_address)
        finally:
            if request is not None and self.context is not None:
                try:
                    request.close()
                except OSError:
                    pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        # a client that hangs up mid-answer is not worth a traceback on stderr
        log.debug("seawall.storage http: connection from %s ended in error", client_address,
                  exc_info=True)


def _registry(store: Store) -> Any:
    try:
        from ._prometheus import exposition_registry

        return exposition_registry(store)
    except ConfigurationError:  # prometheus_client is not installed
        return None


class WebServer:
    """A running HTTP server (dashboard, ``/metrics``, ``/api/``); made by :func:`serve_http`.

    ``address`` is ``host:port`` with the real port when 0 was asked;
    ``url`` the dashboard's address (``https://`` with TLS). Stop it with
    :meth:`stop` or by leaving a ``with`` block. ``prometheus`` is False
    when ``prometheus_client`` is missing (``/metrics`` then answers 501).
    """

    def __init__(self, server: _Server, thread: threading.Thread, store: Store,
                 address: str, port: int, owns_store: bool, tls: bool) -> None:
        self._server = server
        self._thread = thread
        self.store = store
        self.address = address
        self.port = port
        self.url = f"{'https' if tls else 'http'}://{address}/"
        self.prometheus = server.registry is not None
        self._owns_store = owns_store
        self._stopped = False
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<WebServer {self.url} over {self.store!r}>"

    def stop(self) -> None:
        """Stop serving (requests in flight are cut off). Idempotent, thread-safe."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5.0)
        if self._owns_store:
            self.store.close()

    def __enter__(self) -> WebServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve_http(
    store: Store | str | None = None,
    listen: str = DEFAULT_HTTP_LISTEN,
    *,
    token: str | None = None,
    tls_cert: str | bytes | None = None,
    tls_key: str | bytes | None = None,
) -> WebServer:
    """Serve the dashboard (``/``), ``/metrics`` and ``/api/`` over ``store``; non-blocking.

    ``store`` is a :class:`Store` or a URL (``None``: ``$SEAWALL_METRICS_URL``
    or ``sqlite:///seawall-metrics.db``). ``listen`` is ``host:port``
    (port 0 picks a free one; ``WebServer.url`` tells which). The rules of
    :func:`seawall.storage.serve` apply: a non-loopback address requires
    ``token`` (else :class:`seawall.ConfigurationError` before binding);
    with a token, ``/metrics`` and ``/api/`` need ``Authorization: Bearer
    <token>``; ``tls_cert`` / ``tls_key`` (PEM paths or bytes) turn on TLS.
    An address in use is a ConfigurationError saying so.
    """
    host, port = parse_listen(listen)
    check_token(token)
    if not is_loopback(host) and token is None:
        raise ConfigurationError(
            f"refusing to serve metrics over HTTP on {listen} without a token: any host that "
            "can reach it could read them. Pass a token (--token or $SEAWALL_METRICS_TOKEN; "
            "TLS with --tls-cert/--tls-key is advised too), or listen on 127.0.0.1")
    if (tls_cert is None) != (tls_key is None):
        raise ConfigurationError("TLS needs both a certificate and a key (--tls-cert and --tls-key)")
    context = _tls_context(tls_cert, tls_key) if tls_cert is not None else None
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if host != "localhost":
            family = socket.AF_INET  # a name: resolved by bind, IPv4 first
    owns_store = not isinstance(store, Store)
    the_store = store if isinstance(store, Store) else Store(store)
    try:
        the_store.ensure_schema()
        try:
            server = _Server((host, port), family, the_store, token, context)
        except OSError as exc:
            raise ConfigurationError(_bind_message(listen, exc)) from exc
        bound = int(server.server_address[1])
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                                  name="seawall-http", daemon=True)
        thread.start()
    except BaseException:
        if owns_store:
            the_store.close()
        raise
    address = f"[{host}]:{bound}" if ":" in host else f"{host}:{bound}"
    return WebServer(server, thread, the_store, address, bound, owns_store, context is not None)


def _bind_message(listen: str, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return (f"cannot listen on {listen} for HTTP: the address is in use (another "
                "seawall serve? pick another port)")
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"cannot listen on {listen} for HTTP: no such address on this machine"
    if exc.errno == errno.EACCES:
        return f"cannot listen on {listen} for HTTP: permission denied (a port below 1024?)"
    return f"cannot listen on {listen} for HTTP: {exc.strerror or exc}"


def _tls_context(cert: str | bytes, key: str | bytes | None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    assert key is not None
    with tempfile.TemporaryDirectory(prefix="seawall-tls-") as folder:
        # ssl reads PEM from files only: bytes go through a private temporary folder
        paths = [_pem_path(value, folder, name)
                 for value, name in ((cert, "cert.pem"), (key, "key.pem"))]
        try:
            context.load_cert_chain(paths[0], paths[1])
        except (OSError, ssl.SSLError) as exc:
            raise ConfigurationError(f"cannot load the TLS certificate and key: {exc}") from exc
    return context


def _pem_path(value: str | bytes, folder: str, name: str) -> str:
    if isinstance(value, str):
        if not os.path.isfile(value):
            raise ConfigurationError(f"cannot read {value}: no such file")
        return value
    path = os.path.join(folder, name)
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as handle:
        handle.write(value)
    return path

