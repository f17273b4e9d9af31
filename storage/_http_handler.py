"""The HTTP request handler of ``seawall serve --http``: routes, the Host and token checks.

Each request is answered by :class:`Handler`: the dashboard's page and
assets (open: they hold no data), ``/healthz``, ``/metrics`` (Prometheus
exposition through :mod:`._prometheus`) and the JSON API
(:mod:`._dashboard_api`), the last two behind the token when there is one
(compared in constant time). Without a token only requests naming a
loopback host are answered (no DNS rebinding). A bad query gets 400, a
failing store 503, a bug of ours 500; the server keeps serving. The server
itself (socket, TLS, connection limit, lifecycle) is :mod:`._http`.
"""

from __future__ import annotations

import hmac
import json
import logging
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from sqlalchemy.exc import SQLAlchemyError

from . import _dashboard_api as api
from ._service import is_loopback
from ._types import MetricsQueryError

if TYPE_CHECKING:
    from ._http import _Server

log = logging.getLogger("seawall.storage")

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


def load_assets() -> dict[str, bytes]:
    """The bytes of every asset in :data:`ASSETS`, by path."""
    folder = resources.files(__package__ or "seawall.storage").joinpath("_dashboard")
    return {path: folder.joinpath(name).read_bytes() for path, (name, _) in ASSETS.items()}


class Handler(BaseHTTPRequestHandler):
    """One request: route it, check its Host and token, answer it (never raises)."""

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
