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
"""

from __future__ import annotations

import errno
import hmac
import ipaddress
import json
import logging
import os
import socket
import socketserver
import ssl
import tempfile
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

from sqlalchemy.exc import SQLAlchemyError

from seawall import ConfigurationError

from . import _dashboard_api as api
from ._service import is_loopback, parse_listen
from ._store import Store
from ._types import MetricsQueryError

log = logging.getLogger("seawall.storage")

DEFAULT_HTTP_LISTEN = "127.0.0.1:8057"
MAX_CONNECTIONS = 32  # handled at once; more wait in the listen backlog
REQUEST_TIMEOUT = 10.0  # seconds a client may take to send its request (and the TLS handshake)
ASSETS = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/static/style.css": ("style.css", "text/css; charset=utf-8"),
}
_SECURITY_HEADERS = {
    # every asset is ours: no inline script, nothing from elsewhere
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
                               "frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


def check_token(token: str | None) -> None:
    """The gRPC service's token rule: at least 8 characters, no whitespace."""
    if token is not None and (not isinstance(token, str) or len(token) < 8
                              or any(c.isspace() for c in token)):
        raise ConfigurationError("token must be a string of at least 8 characters without spaces")


def _load_assets() -> dict[str, bytes]:
    folder = resources.files(__package__ or "seawall.storage").joinpath("_dashboard")
    return {path: folder.joinpath(name).read_bytes() for path, (name, _) in ASSETS.items()}


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "seawall"
    sys_version = ""
    timeout = REQUEST_TIMEOUT
    # one request per connection: a browser's idle keep-alive cannot hold a worker
    protocol_version = "HTTP/1.0"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("seawall.storage http: %s %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        self._dispatch(head=False)

    def do_HEAD(self) -> None:
        self._dispatch(head=True)

    def _dispatch(self, *, head: bool) -> None:
        try:
            self._route(head)
        except Exception as exc:  # a bug of ours: answer 500, keep serving
            log.exception("seawall.storage http: %s %s failed", self.command, self.path)
            self._json(HTTPStatus.INTERNAL_SERVER_ERROR,
                       {"error": f"internal error: {type(exc).__name__}"}, head)

    def _route(self, head: bool) -> None:
        if not self._host_allowed():
            self._json(HTTPStatus.MISDIRECTED_REQUEST,
                       {"error": "this server answers only requests addressed to "
                                 "its loopback address (Host header)"}, head)
            return
        parts = urlsplit(self.path)
        path = parts.path
        asset = ASSETS.get(path)
        if asset is not None:
            self._send(HTTPStatus.OK, self.server.assets[path], asset[1], head,
                       cache="no-cache")
            return
        if path == "/healthz":
            self._send(HTTPStatus.OK, b"ok\n", "text/plain; charset=utf-8", head)
            return
        if path not in ("/metrics", "/api/points", "/api/dashboard"):
            self._json(HTTPStatus.NOT_FOUND, {"error": f"no such page: {path}; see /, "
                                              "/metrics, /api/points, /api/dashboard"}, head)
            return
        if not self._authorized():
            self._json(HTTPStatus.UNAUTHORIZED,
                       {"error": "this server needs 'Authorization: Bearer <token>'"}, head,
                       extra={"WWW-Authenticate": 'Bearer realm="seawall"'})
            return
        try:
            params = parse_qs(parts.query, keep_blank_values=True, strict_parsing=False,
                              max_num_fields=20)
        except ValueError as exc:
            self._json(HTTPStatus.BAD_REQUEST, {"error": f"bad query string: {exc}"}, head)
            return
        try:
            if path == "/metrics":
                self._metrics(head)
            elif path == "/api/points":
                self._json(HTTPStatus.OK, api.points(self.server.store), head)
            else:
                self._json(HTTPStatus.OK, api.dashboard(self.server.store, params), head)
        except MetricsQueryError as exc:
            self._json(HTTPStatus.BAD_REQUEST, {"error": str(exc)}, head)
        except SQLAlchemyError as exc:
            log.warning("seawall.storage: store error while serving HTTP: %s", exc)
            self._json(HTTPStatus.SERVICE_UNAVAILABLE,
                       {"error": f"metrics store unavailable: {type(exc).__name__}"}, head)

    def _metrics(self, head: bool) -> None:
        registry = self.server.registry
        if registry is None:
            self._send(HTTPStatus.NOT_IMPLEMENTED,
                       b"Prometheus metrics need prometheus_client: "
                       b"pip install 'seawall[prometheus]'\n", "text/plain; charset=utf-8", head)
            return
        from ._prometheus import exposition

        body, content_type = exposition(registry, self.headers.get("Accept"))
        self._send(HTTPStatus.OK, body, content_type, head)

    def _host_allowed(self) -> bool:
        # Without a token, only a loopback server answers, and only to requests
        # naming a loopback host: a web page elsewhere that rebinds its DNS
        # name to 127.0.0.1 cannot read the metrics through the user's browser.
        if self.server.token is not None:
            return True
        given = self.headers.get("Host")
        if given is None:
            return True  # HTTP/1.0 without Host: not a browser
        name = given.rsplit(":", 1)[0] if not given.endswith("]") else given
        name = name.strip("[]").lower()
        return name in self.server.host_names or is_loopback(name)

    def _authorized(self) -> bool:
        expected = self.server.expected
        if expected is None:
            return True
        given = (self.headers.get("Authorization") or "").encode("latin-1", "replace")
        return hmac.compare_digest(given, expected)

    def _json(self, status: HTTPStatus, payload: Any, head: bool,
              extra: dict[str, str] | None = None) -> None:
        body = json.dumps(payload, separators=(",", ":"), allow_nan=False).encode()
        self._send(status, body, "application/json", head, extra=extra)

    def _send(self, status: HTTPStatus, body: bytes, content_type: str, head: bool, *,
              cache: str = "no-store", extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", cache)
        for name, value in _SECURITY_HEADERS.items():
            self.send_header(name, value)
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if not head:
            self.wfile.write(body)


class _Server(ThreadingHTTPServer):
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
        self.assets = _load_assets()
        self.registry = _registry(store)
        self.host_names = {"localhost", address[0].lower()}
        self.slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        super().__init__(address, _Handler)

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

