# Generated from interceptors/_httpx_routes.py by `python -m seawall.interceptors._httpx2_gen`: do not edit.
"""The httpx2 transports' route table: which point, and which operation name, for a request.

:class:`Route` is the public line of a table (host, path pattern, methods,
point); :class:`Router` compiles the table once and picks ``(point,
operation)`` per request, with a cache for the common case of a transport
without routes. Shared by the sync and the async transport; no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass

import httpx2

from seawall import ConfigurationError, IntegrationPoint

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


def host_label(url: httpx2.URL) -> str:
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

    def resolve(self, request: httpx2.Request) -> tuple[IntegrationPoint, str] | None:
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
