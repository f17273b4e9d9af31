"""What the httpx transports decide, without doing any I/O.

Shared by the sync and the async transport: the method, status and
exception tables, ``Retry-After`` parsing, request-body replayability, the
route table, the per-attempt timeout extension, and the default inner
transport's construction options. Nothing here sends, sleeps or reads.
"""

from __future__ import annotations

import datetime
import email.utils
import re
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from typing import Any

import httpx

from seawall import Classification, ConfigurationError, IntegrationPoint
from seawall._classify import (
    CLIENT_ERROR,
    PERMANENT,
    RATE_LIMITED,
    TIMEOUT,
    TRANSIENT,
    UNAVAILABLE,
)

# -- methods --------------------------------------------------------------------

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
"""Methods that RFC 9110 defines as idempotent: safe to send twice."""

IDEMPOTENCY_HEADER = "idempotency-key"

# per-request opt-in (``extensions={"seawall.idempotent": True}``) or opt-out (False)
IDEMPOTENT_EXTENSION = "seawall.idempotent"
# per-request opt-out of reading the body inside the transport
READ_BODY_EXTENSION = "seawall.read_body"


def is_idempotent(request: httpx.Request, retry_non_idempotent: bool) -> bool:
    """Whether sending ``request`` twice is safe.

    A request extension ``seawall.idempotent`` decides when present; then
    the method, then an ``Idempotency-Key`` header, then the transport's
    ``retry_non_idempotent`` option.
    """
    explicit = request.extensions.get(IDEMPOTENT_EXTENSION)
    if explicit is not None:
        return bool(explicit)
    if request.method in IDEMPOTENT_METHODS:
        return True
    return retry_non_idempotent or IDEMPOTENCY_HEADER in request.headers


# -- statuses -------------------------------------------------------------------

RETRY_STATUSES = frozenset({429, 502, 503, 504})
"""Statuses retried by default (for idempotent requests)."""

_RATE_LIMITED_4XX = Classification(RATE_LIMITED.category, retry=True, breaker=False)
_TIMEOUT_4XX = Classification(TIMEOUT.category, retry=True, breaker=False)


def status_classification(status: int) -> Classification | None:
    """What a response status means before the method is considered; ``None`` = success.

    502/503 are unavailable and 504 a timeout: retryable, counted by the
    breaker. Any other 5xx is a server failure counted by the breaker but
    not retried. 4xx never count against the breaker: 429 is rate limited
    and 408 a timeout (both retryable: the caller is over its quota or was
    slow, the server is healthy), any other 4xx is the caller's error and
    permanent. 1xx-3xx are successes. Whether a retryable status is retried
    also depends on the method and the transport's ``retry_statuses``.
    """
    if status < 400:
        return None
    if status >= 500:
        if status in (502, 503):
            return UNAVAILABLE
        return TIMEOUT if status == 504 else PERMANENT
    if status == 429:
        return _RATE_LIMITED_4XX
    return _TIMEOUT_4XX if status == 408 else CLIENT_ERROR


def parse_retry_after(value: str | None, *, now: Callable[[], float] | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value, or ``None`` when absent or malformed.

    Accepts the two forms of RFC 9110 section 10.2.3: a non-negative whole
    number of seconds, or an HTTP-date (a date in the past means 0). ``now``
    returns wall-clock seconds since the epoch (tests pin it). Clamping to
    the maximum is the point's ``Retry(max_server_delay=...)``.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if text.isdigit():  # ASCII digits only: "-1", "1.5" and non-ASCII digits are malformed
        return float(int(text)) if text.isascii() else None
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110: HTTP-dates are UTC
        when = when.replace(tzinfo=datetime.timezone.utc)
    wall = now() if now is not None else datetime.datetime.now(datetime.timezone.utc).timestamp()
    return max(0.0, when.timestamp() - wall)


# -- exceptions -----------------------------------------------------------------

# exception class -> (classification, retried only for idempotent requests?)
# Every public httpx exception is listed on purpose (a test walks httpx.__all__).
EXCEPTION_TABLE: dict[type[BaseException], tuple[Classification, bool]] = {
    # the request never left: safe to retry for any method
    httpx.ConnectError: (TRANSIENT, False),
    httpx.ConnectTimeout: (TIMEOUT, False),
    httpx.ProxyError: (UNAVAILABLE, False),
    # no free connection in our own pool: local saturation, not the remote's
    # fault, so retried but never counted by the breaker
    httpx.PoolTimeout: (Classification(TIMEOUT.category, retry=True, breaker=False), False),
    # the request may have been processed: only idempotent requests are retried
    httpx.ReadTimeout: (TIMEOUT, True),
    httpx.WriteTimeout: (TIMEOUT, True),
    httpx.ReadError: (TRANSIENT, True),
    httpx.WriteError: (TRANSIENT, True),
    httpx.CloseError: (TRANSIENT, True),
    httpx.RemoteProtocolError: (TRANSIENT, True),
    # bases, raised as such only by custom transports: the cautious reading
    httpx.TimeoutException: (TIMEOUT, True),
    httpx.NetworkError: (TRANSIENT, True),
    httpx.ProtocolError: (TRANSIENT, True),
    httpx.TransportError: (TRANSIENT, True),
    # the server sent a body we cannot decode: its fault, retrying will not help
    httpx.DecodingError: (PERMANENT, False),
    # our own mistakes (bad URL, bad request, misuse of streams): never retried,
    # never the dependency's fault
    httpx.LocalProtocolError: (CLIENT_ERROR, False),
    httpx.UnsupportedProtocol: (CLIENT_ERROR, False),
    httpx.InvalidURL: (CLIENT_ERROR, False),
    httpx.CookieConflict: (CLIENT_ERROR, False),
    httpx.StreamError: (CLIENT_ERROR, False),
    httpx.StreamConsumed: (CLIENT_ERROR, False),
    httpx.StreamClosed: (CLIENT_ERROR, False),
    httpx.ResponseNotRead: (CLIENT_ERROR, False),
    httpx.RequestNotRead: (CLIENT_ERROR, False),
    # raised above the transport (redirect loop, raise_for_status); should one
    # reach us through a custom transport, it is not retried
    httpx.TooManyRedirects: (CLIENT_ERROR, False),
    httpx.HTTPStatusError: (PERMANENT, False),
    httpx.RequestError: (PERMANENT, False),
    httpx.HTTPError: (PERMANENT, False),
}
# httpx2's Server-Sent Events raise SSEError (a TransportError) above the transport when
# the server answered with another content type or an oversized event: not transient
_SSE_ERROR = getattr(httpx, "SSEError", None)
if _SSE_ERROR is not None:
    EXCEPTION_TABLE[_SSE_ERROR] = (PERMANENT, False)

_BY_TYPE: dict[type[BaseException], tuple[Classification, bool] | None] = {}


def exception_rule(exc_type: type[BaseException]) -> tuple[Classification, bool] | None:
    """The table entry for ``exc_type`` or its nearest listed base; ``None`` for non-httpx errors."""
    try:
        return _BY_TYPE[exc_type]
    except KeyError:
        pass
    found = None
    for klass in exc_type.__mro__:
        found = EXCEPTION_TABLE.get(klass)
        if found is not None:
            break
    if len(_BY_TYPE) < 1024:
        _BY_TYPE[exc_type] = found
    return found


def classify_exception(exc: BaseException, idempotent: bool) -> Classification | None:
    """How an exception from the inner transport is classified for a request.

    ``None`` (exceptions that are not httpx's) leaves the point's defaults
    in charge. An HTTPStatusError is classified by its response's status.
    """
    entry = exception_rule(type(exc))
    if entry is None:
        return None
    c, needs_idempotent = entry
    if isinstance(exc, httpx.HTTPStatusError):
        by_status = status_classification(exc.response.status_code)
        c = (by_status or PERMANENT).with_retry(False)
    if needs_idempotent and not idempotent and c.retry:
        return c.with_retry(False)
    return c


# -- request bodies -------------------------------------------------------------

def is_replayable(stream: object) -> bool:
    """Whether a request body can be sent again as it was.

    ``content=bytes``, ``json=`` and ``data={...}`` bodies are in memory;
    multipart bodies are when every file is in memory or seekable (httpx
    seeks back to 0). Generators, iterators and unseekable files are not.
    """
    if type(stream) is httpx.ByteStream:
        return True
    fields = getattr(stream, "fields", None)
    if fields is None or type(stream).__name__ != "MultipartStream":
        return isinstance(stream, httpx.ByteStream)
    for field in fields:
        file = getattr(field, "file", None)
        if file is None or isinstance(file, (str, bytes)):
            continue
        seekable = getattr(file, "seekable", None)
        try:
            if seekable is None or not seekable():
                return False
        except (OSError, ValueError):  # a closed file
            return False
    return True


# -- timeouts -------------------------------------------------------------------

_PHASES = ("connect", "read", "write", "pool")


def narrowed_timeout(current: Any, attempt: float) -> dict[str, float | None]:
    """The request's ``timeout`` extension with every phase at most ``attempt`` seconds."""
    if type(current) is not dict:
        return dict.fromkeys(_PHASES, attempt)
    out: dict[str, float | None] = current.copy()
    for phase in _PHASES:
        value = out.get(phase)
        if value is None or value > attempt:
            out[phase] = attempt
    return out


# -- routes ---------------------------------------------------------------------

_SEGMENT = re.compile(r"\{[^{}/]+\}")


def _compile_path(pattern: str) -> re.Pattern[str]:
    if not pattern.startswith("/"):
        raise ConfigurationError(f"Route.path must start with '/', got {pattern!r}")
    tail = pattern.endswith("/*")
    body = pattern[:-2] if tail else pattern
    if "*" in body:
        raise ConfigurationError(
            f"Route.path may use '*' only as its last segment ('/files/*'), got {pattern!r}"
        )
    rest = _SEGMENT.sub("", body)
    if "{" in rest or "}" in rest:
        # a brace left over is a typo ('/users/{id'), never a literal the caller meant
        raise ConfigurationError(
            f"Route.path has an unbalanced or empty '{{' '}}' (write {{name}} for one segment), "
            f"got {pattern!r}"
        )
    parts: list[str] = []
    last = 0
    for m in _SEGMENT.finditer(body):
        parts.append(re.escape(body[last:m.start()]))
        parts.append(r"[^/]+")
        last = m.end()
    parts.append(re.escape(body[last:]))
    regex = "".join(parts) + (r"(?:/.*)?" if tail else r"/?")
    return re.compile(regex)


@dataclass(frozen=True, slots=True)
class Route:
    """One line of a route table: requests matching ``host`` and ``path`` go through ``point``.

    ``host`` is ``"api.example.com"``, with a port (``"api.example.com:8443"``)
    to match only that port, ``"*.example.com"`` for any subdomain, or
    ``None`` for any host. ``path`` is a pattern where ``{name}`` matches
    one segment and a final ``/*`` any rest (``"/users/{id}/orders"``,
    ``"/static/*"``), or ``None`` for any path. ``methods`` limits the
    route to those methods (``None``: all). The operation recorded in
    events is ``"METHOD host+path-pattern"`` (the pattern, never the raw
    path, so ids do not explode metrics), or ``"METHOD name"`` when
    ``name`` is given. Immutable; routes are tried in order, first match wins.
    """

    host: str | None
    path: str | None
    point: IntegrationPoint
    methods: Collection[str] | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.point, IntegrationPoint):
            raise ConfigurationError(f"Route.point must be an IntegrationPoint, got {self.point!r}")
        if self.host is not None and (not isinstance(self.host, str) or not self.host
                                      or "/" in self.host):
            raise ConfigurationError(
                f"Route.host must be a host name like 'api.example.com' or None, got {self.host!r}"
            )
        if self.path is not None:
            if not isinstance(self.path, str):
                raise ConfigurationError(f"Route.path must be a string or None, got {self.path!r}")
            _compile_path(self.path)
        if self.methods is not None:
            if isinstance(self.methods, str) or not isinstance(self.methods, Iterable):
                raise ConfigurationError(
                    f"Route.methods must be a collection of method names, got {self.methods!r}"
                )
            object.__setattr__(self, "methods", frozenset(m.upper() for m in self.methods))
        if self.name is not None and (not isinstance(self.name, str) or not self.name):
            raise ConfigurationError(f"Route.name must be a non-empty string, got {self.name!r}")
        if self.host is not None:
            object.__setattr__(self, "host", self.host.lower())


class _CompiledRoute:
    __slots__ = ("host", "label", "methods", "path", "point", "port", "suffix")

    def __init__(self, route: Route) -> None:
        self.point = route.point
        self.methods = frozenset(route.methods) if route.methods is not None else None
        self.path = _compile_path(route.path) if route.path is not None else None
        host = route.host
        self.port: int | None = None
        if host is not None and not host.endswith("]") and host.rsplit(":", 1)[-1].isdigit() \
                and ":" in host:
            host, port = host.rsplit(":", 1)
            self.port = int(port)
        self.suffix = host[1:] if host is not None and host.startswith("*.") else None
        self.host = host
        self.label = route.name if route.name is not None else (
            None if route.host is None else route.host
        )
        if route.name is None and route.path is not None:
            self.label = (self.label or "") + route.path

    def match(self, method: str, host: str, port: int | None, path: str) -> bool:
        if self.methods is not None and method not in self.methods:
            return False
        if self.host is not None:
            if self.suffix is not None:
                if not host.endswith(self.suffix) or host == self.suffix[1:]:
                    return False
            elif host != self.host:
                return False
            if self.port is not None and port != self.port:
                return False
        return self.path is None or self.path.fullmatch(path) is not None


def host_label(url: httpx.URL) -> str:
    """``host`` or ``host:port`` when the port is not the scheme's default."""
    port = url.port
    return url.host if port is None else f"{url.host}:{port}"


class Router:
    """Picks the point and the operation name for each request.

    Without routes every request goes through ``default`` with the
    operation ``"METHOD host[:port]"``. With routes, the first match wins;
    unmatched requests go through ``default`` (or straight to the inner
    transport, unprotected, when ``default`` is ``None``).
    """

    __slots__ = ("_routes", "default", "last", "only", "operations")

    def __init__(self, default: IntegrationPoint | None, routes: Iterable[Route]) -> None:
        if default is not None and not isinstance(default, IntegrationPoint):
            raise ConfigurationError(
                f"the transport's point must be an IntegrationPoint or None, got {default!r}"
            )
        routes = tuple(routes)
        for r in routes:
            if not isinstance(r, Route):
                raise ConfigurationError(f"routes must hold Route values, got {r!r}")
        if default is None and not routes:
            raise ConfigurationError("a resilient transport needs a point, routes, or both")
        self.default = default
        self._routes = tuple(_CompiledRoute(r) for r in routes)
        # without routes: the point for every request, so that a transport can look its
        # operation up in ``operations`` directly and call resolve() only on a miss
        self.only = default if not routes else None
        # (method, raw host, port) -> operation, for requests that no route can claim by path;
        # keyed on the parsed reference's raw host and port, the cheapest to read
        # (URL.host decodes IDNA on each access)
        self.operations: dict[tuple[str, str, int | None], str] = {}
        # without routes: (method, raw host, port, operation) of the last request resolved,
        # compared field by field (cheaper than hashing a key; a client mostly talks to one host)
        self.last: tuple[str, str, int | None, str] = ("", "", None, "")

    @property
    def points(self) -> tuple[IntegrationPoint, ...]:
        """Every point this router can pick (the default first), without duplicates."""
        seen: dict[int, IntegrationPoint] = {}
        if self.default is not None:
            seen[id(self.default)] = self.default
        for r in self._routes:
            seen.setdefault(id(r.point), r.point)
        return tuple(seen.values())

    def resolve(self, request: httpx.Request) -> tuple[IntegrationPoint, str] | None:
        """``(point, operation)`` for ``request``, or ``None`` to pass it through unprotected."""
        url = request.url
        method = request.method
        if not self._routes:
            ref = url._uri_reference
            key = (method, ref.host, ref.port)
            op = self.operations.get(key)
            if op is None:
                op = f"{method} {host_label(url)}"  # the label uses the public API
                if len(self.operations) < 4096:
                    self.operations[key] = op
            self.last = (*key, op)
            assert self.default is not None
            return self.default, op
        host, port, path = url.host, url.port, url.path
        for r in self._routes:
            if r.match(method, host, port, path):
                label = r.label if r.label is not None else host_label(url)
                return r.point, f"{method} {label}"
        if self.default is None:
            return None
        return self.default, f"{method} {host_label(url)}"


# -- the default inner transport ------------------------------------------------

TRANSPORT_OPTIONS = (
    "verify", "cert", "trust_env", "http1", "http2", "limits", "proxy", "uds",
    "local_address", "socket_options",
)


def check_options(transport: object, options: dict[str, Any], owner: str) -> None:
    """Refuse inner-transport options next to a ready-made ``transport``."""
    given = sorted(k for k, v in options.items() if v is not _UNSET)
    if transport is not None and given:
        raise ConfigurationError(
            f"{owner}: {', '.join(given)} configure the default inner transport; "
            f"set them on the transport= you pass instead"
        )


class _Unset:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<default>"


_UNSET: Any = _Unset()
UNSET: Any = _UNSET


def transport_kwargs(options: dict[str, Any]) -> dict[str, Any]:
    """The options the caller set, ready for ``httpx.HTTPTransport(**kwargs)``."""
    return {k: v for k, v in options.items() if v is not _UNSET}


def environment_proxy_mounts(kwargs: dict[str, Any]) -> list[tuple[Any, str | None]]:
    """``[(URLPattern, proxy URL or None)]`` from ``HTTP(S)_PROXY``/``ALL_PROXY``/``NO_PROXY``.

    Mirrors what an ``httpx.Client`` does when it builds its own transport,
    sorted the way the client sorts its mounts. Empty when ``trust_env`` is
    false, when a ``proxy`` is set explicitly, or when ``uds`` is used.
    """
    if not kwargs.get("trust_env", True) or kwargs.get("proxy") is not None or kwargs.get("uds"):
        return []
    # private names: the version range in pyproject.toml pins them
    from httpx._utils import URLPattern, get_environment_proxies

    found = get_environment_proxies()
    mounts = [(URLPattern(key), url) for key, url in found.items()]
    mounts.sort(key=lambda item: item[0])
    return mounts


def proxied(mounts: Collection[tuple[Any, Any]], url: httpx.URL) -> Any:
    """The transport mounted for ``url``, or ``None`` for the direct one."""
    for pattern, transport in mounts:
        if pattern.matches(url):
            return transport
    return None
