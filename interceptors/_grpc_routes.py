"""Which policy a gRPC method gets: routes, their resolved rules, and the router.

A target is one point (or :class:`Route`) for every method, or a table from
method patterns (``"/pkg.Service/Method"``, ``"/pkg.Service/*"``, ``"*"``)
to points or routes; the most specific pattern wins and unmatched methods
pass through. Both mountings resolve methods here: the interceptors per
call (through a bounded cache), the channel wrappers once per multicallable.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from seawall import ConfigurationError, Execution, IntegrationPoint

from ._grpc_status import BY_CODE

DEFAULT_REQUEST_BUFFER = 64
"""How many request-stream messages a route keeps for replay unless it says otherwise."""


@dataclass(frozen=True, slots=True)
class Route:
    """The policy of one method pattern in a routing table.

    ``point`` is the :class:`seawall.IntegrationPoint` applied. ``idempotent``
    marks the methods as safe to re-run, which widens retries to
    ``DEADLINE_EXCEEDED``, ``ABORTED``, ``INTERNAL`` and ``UNKNOWN``.
    ``request_buffer`` is how many request-stream messages are kept so a
    failed client- or bidi-streaming call can be replayed (0: never replay).
    Immutable; safe to share.
    """

    point: IntegrationPoint
    idempotent: bool = field(default=False, kw_only=True)
    request_buffer: int = field(default=DEFAULT_REQUEST_BUFFER, kw_only=True)

    def __post_init__(self) -> None:
        if not isinstance(self.point, IntegrationPoint):
            raise ConfigurationError(f"Route.point must be an IntegrationPoint, got {self.point!r}")
        if not isinstance(self.idempotent, bool):
            raise ConfigurationError(f"Route.idempotent must be a bool, got {self.idempotent!r}")
        if isinstance(self.request_buffer, bool) or not isinstance(self.request_buffer, int) \
                or self.request_buffer < 0:
            raise ConfigurationError(
                f"Route.request_buffer must be an int >= 0, got {self.request_buffer!r}"
            )


_PATTERN = re.compile(r"\*|/[^/*]+/\*|/[^/*]+/[^/*]+")


class Rule:
    """A resolved route: the point, its flags, and the status table to use. Immutable."""

    __slots__ = ("attempts", "buffer", "idempotent", "max_wait", "permits", "point",
                 "result_rules", "retries", "table")

    def __init__(self, route: Route) -> None:
        point = route.point
        self.point = point
        self.idempotent = route.idempotent
        self.buffer = route.request_buffer
        self.table = BY_CODE[route.idempotent]
        self.permits = point.permits
        self.max_wait = point.bulkhead.max_wait if point.bulkhead is not None else 0.0
        self.attempts = point.retry.attempts if point.retry is not None else 1
        # whether a second attempt can ever happen: streams skip buffering otherwise
        self.retries = self.attempts > 1
        # whether a successful response must be shown to the point's result rules
        self.result_rules = bool(point.classifier.result_rules)

    def execution(self, operation: str, timeout: float | None) -> Execution:
        """The bookkeeping of one call of ``operation`` whose caller gave ``timeout`` seconds."""
        point = self.point
        return point.execution(
            operation, deadline=None if timeout is None else point.clock.now() + timeout)


class Router:
    """Method name -> :class:`Rule` (``None``: no policy), with a bounded cache. Thread-safe."""

    __slots__ = ("_cache", "_exact", "_fallback", "_services")

    _CACHE_LIMIT = 4096

    def __init__(self, target: Any, *, idempotent: bool, request_buffer: int) -> None:
        def as_route(value: Any, where: str) -> Route:
            if isinstance(value, Route):
                return value
            if isinstance(value, IntegrationPoint):
                return Route(value, idempotent=idempotent, request_buffer=request_buffer)
            raise ConfigurationError(
                f"{where} must be an IntegrationPoint or a Route, got {value!r}"
            )

        self._exact: dict[str, Rule] = {}
        self._services: dict[str, Rule] = {}
        self._fallback: Rule | None = None
        self._cache: dict[str | bytes, Rule | None] = {}
        if isinstance(target, (IntegrationPoint, Route)):
            self._fallback = Rule(as_route(target, "target"))
            return
        if not isinstance(target, Mapping) or not target:
            raise ConfigurationError(
                "target must be an IntegrationPoint, a Route, or a non-empty mapping of method "
                f"patterns ('/pkg.Service/Method', '/pkg.Service/*', '*') to them, got {target!r}"
            )
        for pattern, value in target.items():
            if not isinstance(pattern, str) or not _PATTERN.fullmatch(pattern):
                raise ConfigurationError(
                    f"route pattern must be '/pkg.Service/Method', '/pkg.Service/*' or '*', "
                    f"got {pattern!r}"
                )
            rule = Rule(as_route(value, f"route {pattern!r}"))
            if pattern == "*":
                self._fallback = rule
            elif pattern.endswith("/*"):
                self._services[pattern[:-1]] = rule
            else:
                self._exact[pattern] = rule

    def lookup(self, method: str | bytes) -> Rule | None:
        """The rule for ``method`` (``str`` in sync gRPC, ``bytes`` in aio)."""
        try:
            return self._cache[method]
        except KeyError:
            pass
        name = operation_name(method)
        rule = self._exact.get(name)
        if rule is None:
            cut = name.rfind("/")
            rule = self._services.get(name[:cut + 1]) if cut > 0 else None
            if rule is None:
                rule = self._fallback
        if len(self._cache) < self._CACHE_LIMIT:
            self._cache[method] = rule
        return rule


def operation_name(method: str | bytes) -> str:
    """The event ``operation`` for a method: its full name, ``/pkg.Service/Method``."""
    return method.decode("utf-8", "replace") if isinstance(method, bytes) else method


# ---------------------------------------------------------------------------
# the channel wrappers' routing, sync and aio alike


class Wrapped:
    """A stub method's multicallable in a channel wrapper: the method's rule, the wrapped
    channel's own multicallable, and the event operation. Built once per stub method."""

    __slots__ = ("_inner", "_operation", "_rule")

    def __init__(self, rule: Rule, inner: Any, method: str) -> None:
        self._rule = rule
        self._inner = inner
        self._operation = operation_name(method)


class RoutedChannel:
    """What both channel wrappers share: each multicallable the stubs ask for is the wrapped
    channel's own, wrapped in the shape's class when its method has a route.

    Subclasses name their four classes (``_unary_unary`` ... ``_stream_stream``)
    and add the host channel's own methods.
    """

    _unary_unary: type[Wrapped]
    _unary_stream: type[Wrapped]
    _stream_unary: type[Wrapped]
    _stream_stream: type[Wrapped]

    def __init__(self, channel: Any, router: Router) -> None:
        self._channel = channel
        self._lookup = router.lookup

    def _wrap(self, make: Any, shape: type[Wrapped], method: str, request_serializer: Any,
              response_deserializer: Any, registered: bool | None) -> Any:
        # generated stubs (grpcio >= 1.63) pass _registered_method=True; a channel that
        # predates it takes no such argument, so it is forwarded only when set
        if registered:
            inner = make(method, request_serializer, response_deserializer,
                         _registered_method=registered)
        else:
            inner = make(method, request_serializer, response_deserializer)
        rule = self._lookup(method)
        return inner if rule is None else shape(rule, inner, method)

    def unary_unary(self, method: str, request_serializer: Any = None,
                    response_deserializer: Any = None,
                    _registered_method: bool | None = False) -> Any:
        return self._wrap(self._channel.unary_unary, self._unary_unary, method,
                          request_serializer, response_deserializer, _registered_method)

    def unary_stream(self, method: str, request_serializer: Any = None,
                     response_deserializer: Any = None,
                     _registered_method: bool | None = False) -> Any:
        return self._wrap(self._channel.unary_stream, self._unary_stream, method,
                          request_serializer, response_deserializer, _registered_method)

    def stream_unary(self, method: str, request_serializer: Any = None,
                     response_deserializer: Any = None,
                     _registered_method: bool | None = False) -> Any:
        return self._wrap(self._channel.stream_unary, self._stream_unary, method,
                          request_serializer, response_deserializer, _registered_method)

    def stream_stream(self, method: str, request_serializer: Any = None,
                      response_deserializer: Any = None,
                      _registered_method: bool | None = False) -> Any:
        return self._wrap(self._channel.stream_stream, self._stream_stream, method,
                          request_serializer, response_deserializer, _registered_method)
