"""What the sync and aio gRPC interceptors share: routes, classification, errors, replay.

Nothing here waits or does I/O; the two shells (``_grpc_sync``, ``_grpc_aio``)
do. Status codes are classified from a table keyed on ``grpc.StatusCode``
(never on details text); the table covers every code, and a test walks them.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, cast

import grpc
import grpc.aio

from seawall import (
    BulkheadFullError,
    CircuitOpenError,
    Classification,
    ConfigurationError,
    DeadlineExceeded,
    Execution,
    Fallback,
    IntegrationPoint,
    RejectedError,
    SeawallError,
)
from seawall._classify import (
    CANCELLED,
    CLIENT_ERROR,
    PERMANENT,
    RATE_LIMITED,
    TIMEOUT,
    TRANSIENT,
    UNAVAILABLE,
    Category,
)
from seawall._point import _add_note

add_note = _add_note  # re-exported for _grpc_sync

ATTEMPT_HEADER = "seawall-attempt"
"""Request metadata key carrying the 1-based attempt number, sent on retries only (``"2"``, ``"3"``...)."""

PUSHBACK_TRAILER = "grpc-retry-pushback-ms"
"""Trailing metadata key a server sets to pace (``"250"``) or stop (``"-1"``) retries (gRFC A6)."""

REJECTED_TRAILER = "seawall-rejected"
"""Trailing metadata key on a local rejection: ``breaker``, ``bulkhead`` or ``deadline``."""

DEFAULT_REQUEST_BUFFER = 64

_OK = grpc.StatusCode.OK

# ---------------------------------------------------------------------------
# classification

# code -> (classification, retried only when the method is idempotent)
STATUS_TABLE: dict[grpc.StatusCode, tuple[Classification, bool]] = {
    grpc.StatusCode.CANCELLED: (CANCELLED, False),
    grpc.StatusCode.UNKNOWN: (TRANSIENT, True),
    grpc.StatusCode.INVALID_ARGUMENT: (CLIENT_ERROR, False),
    grpc.StatusCode.DEADLINE_EXCEEDED: (TIMEOUT, True),
    grpc.StatusCode.NOT_FOUND: (CLIENT_ERROR, False),
    grpc.StatusCode.ALREADY_EXISTS: (CLIENT_ERROR, False),
    grpc.StatusCode.PERMISSION_DENIED: (CLIENT_ERROR, False),
    grpc.StatusCode.RESOURCE_EXHAUSTED: (RATE_LIMITED, False),
    grpc.StatusCode.FAILED_PRECONDITION: (CLIENT_ERROR, False),
    # a conflict between concurrent writers: the method may be re-run, the server is healthy
    grpc.StatusCode.ABORTED: (Classification(Category.TRANSIENT, retry=True, breaker=False), True),
    grpc.StatusCode.OUT_OF_RANGE: (CLIENT_ERROR, False),
    grpc.StatusCode.UNIMPLEMENTED: (CLIENT_ERROR, False),
    grpc.StatusCode.INTERNAL: (TRANSIENT, True),
    grpc.StatusCode.UNAVAILABLE: (UNAVAILABLE, False),
    grpc.StatusCode.DATA_LOSS: (PERMANENT, False),
    grpc.StatusCode.UNAUTHENTICATED: (CLIENT_ERROR, False),
}


def _build(idempotent: bool) -> dict[grpc.StatusCode, Classification]:
    table = {}
    for code, (c, needs_idempotent) in STATUS_TABLE.items():
        table[code] = c.with_retry(False) if needs_idempotent and not idempotent else c
    return table


_BY_CODE = {False: _build(False), True: _build(True)}
_PUSHBACK = re.compile(r"[0-9]{1,9}")


def classify_status(code: grpc.StatusCode, trailing_metadata: Iterable[Any] | None = None,
                    *, idempotent: bool = False) -> Classification | None:
    """How a finished RPC's status counts: ``None`` for ``OK``, else its classification.

    ``UNAVAILABLE`` and ``RESOURCE_EXHAUSTED`` are retried for every method;
    ``DEADLINE_EXCEEDED``, ``ABORTED``, ``INTERNAL`` and ``UNKNOWN`` only when
    ``idempotent``; client errors never, and they do not count against the
    breaker; ``CANCELLED`` is neither. A ``grpc-retry-pushback-ms`` trailer
    with a non-negative integer sets the delay (milliseconds); a negative or
    malformed one vetoes the retry.
    """
    if code is _OK:
        return None
    c = _BY_CODE[idempotent].get(code, TRANSIENT.with_retry(idempotent))
    if trailing_metadata:
        for item in trailing_metadata:
            key, value = item[0], item[1]
            if key == PUSHBACK_TRAILER:
                if isinstance(value, bytes):
                    value = value.decode("ascii", "replace")
                value = value.strip()
                if _PUSHBACK.fullmatch(value):
                    c = c.with_delay(int(value) / 1000.0)
                else:
                    c = c.with_retry(False)
                break
    return c


# ---------------------------------------------------------------------------
# routes


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
    """A resolved route: the point, its flags, and the status table to use."""

    __slots__ = ("attempts", "buffer", "idempotent", "max_wait", "permits", "point", "retries",
                 "table")

    def __init__(self, route: Route) -> None:
        point = route.point
        self.point = point
        self.idempotent = route.idempotent
        self.buffer = route.request_buffer
        self.table = _BY_CODE[route.idempotent]
        self.permits = point._permits
        self.max_wait = point.bulkhead.max_wait if point.bulkhead is not None else 0.0
        self.attempts = point.retry.attempts if point.retry is not None else 1
        # whether a second attempt can ever happen: streams skip buffering otherwise
        self.retries = self.attempts > 1


class Router:
    """Method name -> :class:`Rule` (``None``: no policy), with a bounded cache."""

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
        name = method.decode("utf-8", "replace") if isinstance(method, bytes) else method
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
# rejections that are also gRPC errors

if TYPE_CHECKING:
    _Future = grpc.Future[Any]
else:
    _Future = grpc.Future


class Finished:
    """The ``grpc.Call`` / ``grpc.Future`` answers of a call that is already over."""

    def is_active(self) -> bool:
        return False

    def time_remaining(self) -> float:
        return 0.0

    def add_callback(self, callback: Any) -> bool:
        return False

    def cancel(self) -> bool:
        return False

    def cancelled(self) -> bool:
        return False

    def running(self) -> bool:
        return False

    def done(self) -> bool:
        return True

    def add_done_callback(self, fn: Any) -> None:
        fn(self)


class _Refusal:
    """What the six refusal classes share: the message, the reason and the seawall fields."""

    _status: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE
    _reason = "rejected"
    _message = ""

    def _adopt(self, source: SeawallError) -> None:
        self._message = str(source)
        cast(Exception, self).args = (self._message,)
        for name in ("point", "operation", "retry_after", "retry_at", "max_concurrent", "timeout"):
            if hasattr(source, name):
                setattr(self, name, getattr(source, name))

    def code(self) -> grpc.StatusCode:
        return self._status

    def details(self) -> str:
        return self._message

    def debug_error_string(self) -> str:
        return self._message

    def __str__(self) -> str:
        return self._message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._status.name}, {self._message!r})"


class _SyncRefusal(Finished, _Refusal, grpc.RpcError, grpc.Call, _Future):
    """A finished, failed sync call: ``except grpc.RpcError``, ``code()``, a done ``Future``
    whose ``result()`` raises it, and a response iterator whose first ``next()`` raises it."""

    def initial_metadata(self) -> tuple[tuple[str, str | bytes], ...]:
        return ()

    # grpc-stubs types this differently on grpc.Call and grpc.RpcError (grpc's own
    # _InactiveRpcError has the same clash); we follow grpc.Call, as gRPC does at runtime
    def trailing_metadata(self) -> tuple[tuple[str, str | bytes], ...]:  # type: ignore[override]
        return ((REJECTED_TRAILER, self._reason),)

    def result(self, timeout: float | None = None) -> Any:
        raise self

    def exception(self, timeout: float | None = None) -> Exception | None:
        return self

    def traceback(self, timeout: float | None = None) -> Any:
        return self.__traceback__

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        raise self


class _AioRefusal(_Refusal, grpc.aio.AioRpcError):
    """A failed grpc.aio call: the intercepted call's ``code()`` and metadata report it."""

    def _adopt(self, source: SeawallError) -> None:
        grpc.aio.AioRpcError.__init__(
            self, self._status, grpc.aio.Metadata(),
            grpc.aio.Metadata((REJECTED_TRAILER, self._reason)), str(source), str(source))
        super()._adopt(source)


class CircuitOpenRpcError(CircuitOpenError, _SyncRefusal):
    """The breaker refused a sync call: a :class:`seawall.CircuitOpenError` that is also a
    ``grpc.RpcError``, ``grpc.Call`` and ``grpc.Future``.

    ``code()`` is ``UNAVAILABLE``; the trailing metadata holds ``seawall-rejected: breaker``.
    Returned as the failed call (so ``stub.M(req)`` raises it) without touching the network.
    """

    _status = grpc.StatusCode.UNAVAILABLE
    _reason = "breaker"

    def __init__(self, source: CircuitOpenError) -> None:
        self._adopt(source)


class BulkheadFullRpcError(BulkheadFullError, _SyncRefusal):
    """The bulkhead refused a sync call: a :class:`seawall.BulkheadFullError` and a gRPC error.

    ``code()`` is ``RESOURCE_EXHAUSTED``; trailing metadata ``seawall-rejected: bulkhead``.
    """

    _status = grpc.StatusCode.RESOURCE_EXHAUSTED
    _reason = "bulkhead"

    def __init__(self, source: BulkheadFullError) -> None:
        self._adopt(source)


class DeadlineExceededRpcError(DeadlineExceeded, _SyncRefusal):
    """No time was left to start a sync call: a :class:`seawall.DeadlineExceeded` and a gRPC error.

    ``code()`` is ``DEADLINE_EXCEEDED``; trailing metadata ``seawall-rejected: deadline``.
    """

    _status = grpc.StatusCode.DEADLINE_EXCEEDED
    _reason = "deadline"

    def __init__(self, source: DeadlineExceeded) -> None:
        self._adopt(source)


class AioCircuitOpenRpcError(CircuitOpenError, _AioRefusal):
    """The breaker refused a grpc.aio call: a :class:`seawall.CircuitOpenError` that is also a
    ``grpc.aio.AioRpcError`` (``code()`` ``UNAVAILABLE``, trailer ``seawall-rejected: breaker``)."""

    _status = grpc.StatusCode.UNAVAILABLE
    _reason = "breaker"

    def __init__(self, source: CircuitOpenError) -> None:
        self._adopt(source)


class AioBulkheadFullRpcError(BulkheadFullError, _AioRefusal):
    """The bulkhead refused a grpc.aio call: a :class:`seawall.BulkheadFullError` that is also
    an ``AioRpcError`` (``code()`` ``RESOURCE_EXHAUSTED``)."""

    _status = grpc.StatusCode.RESOURCE_EXHAUSTED
    _reason = "bulkhead"

    def __init__(self, source: BulkheadFullError) -> None:
        self._adopt(source)


class AioDeadlineExceededRpcError(DeadlineExceeded, _AioRefusal):
    """No time was left to start a grpc.aio call: a :class:`seawall.DeadlineExceeded` that is
    also an ``AioRpcError`` (``code()`` ``DEADLINE_EXCEEDED``)."""

    _status = grpc.StatusCode.DEADLINE_EXCEEDED
    _reason = "deadline"

    def __init__(self, source: DeadlineExceeded) -> None:
        self._adopt(source)


_SYNC_KINDS: tuple[tuple[type[SeawallError], Any], ...] = (
    (CircuitOpenError, CircuitOpenRpcError), (BulkheadFullError, BulkheadFullRpcError),
    (DeadlineExceeded, DeadlineExceededRpcError),
)
_AIO_KINDS: tuple[tuple[type[SeawallError], Any], ...] = (
    (CircuitOpenError, AioCircuitOpenRpcError), (BulkheadFullError, AioBulkheadFullRpcError),
    (DeadlineExceeded, AioDeadlineExceededRpcError),
)


def as_rpc_error(exc: RejectedError | DeadlineExceeded, *, aio: bool = False) -> Any:
    """The gRPC-flavoured twin of a seawall refusal, chained to it."""
    for kind, twin in (_AIO_KINDS if aio else _SYNC_KINDS):
        if isinstance(exc, kind):
            err = twin(exc)
            break
    else:  # a future kind of refusal: still a gRPC failure
        source = CircuitOpenError(str(exc), point=exc.point, operation=exc.operation)
        err = (AioCircuitOpenRpcError if aio else CircuitOpenRpcError)(source)
    err.__cause__ = exc
    err.__suppress_context__ = True
    return err


# ---------------------------------------------------------------------------
# fallbacks and endings


def fallback_for(point: IntegrationPoint, category: Category | None,
                 rejected: bool) -> Fallback | None:
    """The point's fallback if it answers this failure (``rejected``: a local refusal)."""
    fb = point.fallback
    if fb is None:
        return None
    if rejected:
        return fb if fb.on_rejection else None
    return fb if category in fb.on else None


def resolve_fallback(fb: Fallback, error: BaseException) -> Any:
    """The fallback's value, or its handler's answer for ``error`` (may be awaitable)."""
    if fb.handler is not None:
        return fb.handler(error)
    return fb.value


def refuse(ex: Execution, exc: RejectedError | DeadlineExceeded, *,
           aio: bool = False) -> tuple[Fallback | None, Any]:
    """Account for a refusal before any attempt ran; returns ``(fallback, rpc_error)``."""
    point = ex.point
    fb = fallback_for(point, None, True)
    ex.end_rejected(exc, fallback=fb is not None)
    return fb, as_rpc_error(exc, aio=aio)


def end_failure(ex: Execution, c: Classification, error: BaseException | None) -> Fallback | None:
    """Account for a failed call; returns the fallback to use, else notes ``error``."""
    fb = fallback_for(ex.point, c.category, False)
    ex.end_failure(c, fallback=fb is not None)
    if fb is None and error is not None and (ex.attempts > 1 or ex.stop_reason):
        add_note(error, ex.describe(c))
    return fb


# ---------------------------------------------------------------------------
# request streams: record what was sent so a retry can send it again


class _Exhausted:
    pass


EXHAUSTED: Any = _Exhausted()
NEED_MORE: Any = object()


class ReplayState:
    """The bookkeeping of a replayable request stream, shared by the sync and async buffers.

    Each attempt reads through its own view; starting a new view retires the
    previous one (a retired view ends at once, so gRPC's consumer of a failed
    attempt cannot steal messages from the next). Once more than ``limit``
    messages were drawn no new view can start, and what the current view has
    read is dropped.

    The caller's iterator may block for as long as it likes (a client that
    sends its next message only after a reply, or waits on a queue), so no
    lock is ever held while drawing from it: the failure path of an attempt
    must be able to start a new view at once. One draw at a time
    (``pulling``); every message drawn is kept for whichever view reads next,
    so a message drawn while its attempt failed is sent by the retry. A view
    that needs the next message while another draws it waits, and a retired
    view stops waiting. The shells hold their lock around every method here.
    """

    __slots__ = ("_items", "_limit", "exhausted", "generation", "overflow", "pulling")

    def __init__(self, limit: int) -> None:
        self._items: list[Any] = []
        self._limit = limit
        self.exhausted = False
        self.overflow = limit <= 0
        self.generation = 0
        self.pulling = False

    def next_generation(self) -> int | None:
        """The generation of a new view, or ``None`` when the stream cannot be replayed."""
        if self.overflow and self.generation > 0:
            return None
        self.generation += 1
        return self.generation

    def cached(self, view: Any) -> Any:
        """What ``view`` reads next without drawing from the source: an item,
        ``EXHAUSTED``, or ``NEED_MORE`` (the next message must be drawn)."""
        if view.generation != self.generation:
            return EXHAUSTED
        items = self._items
        if view.index < len(items):
            item = items[view.index]
            view.index += 1
            if self.overflow and view.index == len(items):
                items.clear()  # past the limit nothing reads a message twice
                view.index = 0
            return item
        return EXHAUSTED if self.exhausted else NEED_MORE

    def drawn(self, item: Any) -> None:
        """Keep ``item``, just drawn from the source, for the view that reads next."""
        self._items.append(item)
        if len(self._items) > self._limit:
            self.overflow = True


class ReplayBuffer(ReplayState):
    """Keeps up to ``limit`` request messages of a sync request iterator (see :class:`ReplayState`).

    Thread-safe (sync gRPC drains request iterators on its own thread); the
    lock is never held while the caller's iterator is asked for a message.
    """

    __slots__ = ("_cond", "_source")

    def __init__(self, source: Iterable[Any], limit: int) -> None:
        super().__init__(limit)
        self._source = iter(source)
        self._cond = threading.Condition(threading.Lock())

    def view(self) -> Iterator[Any] | None:
        """A fresh iterator over the whole stream, or ``None`` when it cannot be replayed.

        Never waits for the caller's iterator; a view waiting for a message
        being drawn for the previous one is retired and ends.
        """
        with self._cond:
            generation = self.next_generation()
            self._cond.notify_all()
            return None if generation is None else _View(self, generation)

    def pull(self, view: _View) -> Any:
        """The next message of ``view`` (``EXHAUSTED`` at the end or once retired)."""
        cond = self._cond
        with cond:
            while True:
                item = self.cached(view)
                if item is not NEED_MORE:
                    return item
                if self.pulling:
                    cond.wait()  # another attempt's thread is drawing the next message
                    continue
                self.pulling = True
                cond.release()  # never held while the caller's iterator runs
                try:
                    item = next(self._source, EXHAUSTED)
                finally:
                    cond.acquire()
                    self.pulling = False
                    cond.notify_all()
                if item is EXHAUSTED:
                    self.exhausted = True
                else:
                    self.drawn(item)


class _View:
    __slots__ = ("buffer", "generation", "index")

    def __init__(self, buffer: ReplayBuffer, generation: int) -> None:
        self.buffer = buffer
        self.generation = generation
        self.index = 0

    def __iter__(self) -> _View:
        return self

    def __next__(self) -> Any:
        item = self.buffer.pull(self)
        if item is EXHAUSTED:
            raise StopIteration
        return item


class _Replayable(Protocol):
    def view(self) -> Any: ...


def replay_view(rule: Rule, ex: Execution, c: Classification,
                buffer: _Replayable | None) -> tuple[Classification, Any]:
    """Whether a failed request-streaming attempt may be retried: ``(c, view to send)``.

    First decides from ``c`` and the attempts left whether a retry is
    possible at all; only then asks the buffer for a new view (which never
    waits on the caller's iterator). The view is ``None`` when no retry
    will run; ``c`` loses its retry when the stream cannot be replayed.
    """
    if buffer is None or not c.retry or ex.attempts >= rule.attempts:
        return c, None
    view = buffer.view()
    if view is None:
        return c.with_retry(False), None
    return c, view


def stream_limits(ex: Execution, timeout: float | None) -> tuple[float | None, float | None]:
    """A response-streaming attempt's gRPC timeout and its first-message limit, in seconds.

    ``timeout`` is what :meth:`Execution.begin` granted (``Timeout.attempt``
    narrowed by the call's deadline). For a response stream the attempt
    timeout bounds only the phase that can still be retried, until the first
    message reaches the caller; the wire gets the call's own deadline (the
    caller's ``timeout=`` and ``Timeout.total``; ``None``: unbounded). The
    limit is ``None`` when that deadline comes first anyway.
    """
    left = ex.remaining()
    if timeout is None or (left is not None and timeout >= left):
        return left, None
    return left, timeout


def with_attempt(metadata: Any, attempt: int) -> list[tuple[str, str | bytes]]:
    """The caller's metadata plus our attempt header (sync: a fresh list)."""
    md: list[tuple[str, str | bytes]] = [(item[0], item[1]) for item in metadata or ()]
    md.append((ATTEMPT_HEADER, str(attempt)))
    return md
