# Generated from interceptors/_httpx_sync.py (itself generated from interceptors/_httpx_async.py) by `python -m seawall.interceptors._httpx2_gen`: do not edit.
"""The sync httpx2 transport, :class:`ResilientTransport`: generated, do not edit.

Generated from ``_httpx2_async.py`` by ``python sdk/_unasync.py``: the
transport is written once, in the async module, and this one is derived
from it (``await`` dropped, the async names given their sync twins, the
lines marked for the sync side swapped in). Read and change the async
module, then regenerate. What differs: this transport blocks the calling
thread, and it cannot interrupt an attempt, so a response that arrives
after the attempt's deadline is returned and counted as an overrun.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator
from functools import partial
from types import TracebackType
from typing import Any, TypeVar

import httpx2

from seawall import ConfigurationError, IntegrationPoint

from ._httpx2_body import (
    DRAIN_LIMIT,
    OnceStream,
    body_deadline_error,
    declared_length,
    is_replayable,
    read_limit,
)
from ._httpx2_call import Call, checked
from ._httpx2_chaos import injected_response
from ._httpx2_classify import (
    IDEMPOTENT_EXTENSION,
    IDEMPOTENT_METHODS,
    RETRY_STATUSES,
    is_idempotent,
)
from ._httpx2_inner import (
    UNSET,
    check_options,
    environment_proxy_mounts,
    proxied,
    transport_kwargs,
)
from ._httpx2_options import ABSENT, Options
from ._httpx2_routes import Route

_BYTES = httpx2.ByteStream

_Sync = TypeVar("_Sync", bound="ResilientTransport")

# the async transport hands each attempt's time to httpx2 and never cancels a request
# (see the class); the sync one cannot cancel and counts a late success as an overrun
_ENFORCE_TIMEOUT = True


class _PrefixedStream(httpx2.SyncByteStream):
    """A body whose first chunks were read by the transport; the rest still streams."""

    def __init__(self, head: list[bytes], rest: Iterator[bytes],
                 stream: httpx2.SyncByteStream) -> None:
        self._head = head
        self._rest = rest
        self._stream = stream

    def __iter__(self) -> Iterator[bytes]:
        head, self._head = self._head, []
        for chunk in head:
            yield chunk
        for chunk in self._rest:
            yield chunk

    def close(self) -> None:
        self._stream.close()


def _read_body(
    response: httpx2.Response, limit: int, deadline: float | None, point: IntegrationPoint
) -> httpx2.Response:
    """Read up to ``limit`` bytes of the body now, so read failures happen inside the attempt."""
    declared = declared_length(response)
    if declared is not None and declared > limit:
        return response
    stream = response.stream
    assert isinstance(stream, httpx2.SyncByteStream)
    now = point.clock.now
    chunks: list[bytes] = []
    size = 0
    iterator = stream.__iter__()
    try:
        for chunk in iterator:
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                response.stream = _PrefixedStream(chunks, iterator, stream)
                return response
            if deadline is not None and now() > deadline:
                raise body_deadline_error()
    except BaseException:
        response.close()
        raise
    stream.close()
    response.stream = httpx2.ByteStream(b"".join(chunks))
    return response


def _discard(response: httpx2.Response) -> None:
    """Give a failed response's connection back before the next attempt; never raises."""
    try:
        declared = declared_length(response)
        if declared is not None and declared <= DRAIN_LIMIT and not response.is_closed:
            response.read()
    except Exception:
        pass
    finally:
        try:
            response.close()
        except Exception:
            pass


def _attempt(options: Options, inner: httpx2.BaseTransport, request: httpx2.Request,
             original: Any, limit: int | None, point: IntegrationPoint,
             timeout: float | None) -> httpx2.Response:
    """One attempt, the step the point repeats: hand httpx2 the attempt's time, send, read.

    No phase of httpx2's own timeouts may be longer than ``timeout`` (the
    point's attempt time); with ``limit`` (``read_body``), up to that many
    body bytes are read within the attempt too. Everything an attempt does
    is here: a step that wraps each attempt slots in at this function.
    """
    if timeout is not None:
        last = options.narrowing
        request.extensions["timeout"] = last[2].copy() \
            if timeout == last[0] and original == last[1] else options.narrowed(original, timeout)
    sent = inner.handle_request(request)
    if limit is None:
        return sent
    return _read_within(sent, limit, point, timeout)


def _read_within(
    sent: httpx2.Response, limit: int, point: IntegrationPoint, timeout: float | None
) -> httpx2.Response:
    """The attempt's response once up to ``limit`` body bytes are read, within ``timeout``."""
    response = sent
    deadline = None if timeout is None else point.clock.now() + timeout
    return _read_body(response, limit, deadline, point)


class _SyncCall(Call):
    """A watched request's attempt: sends, and remembers the response it got."""

    __slots__ = ()

    def __call__(self, timeout: float | None) -> httpx2.Response:
        response: httpx2.Response = self.send(timeout)
        self.last = response
        return response


def _run_watched(
    point: IntegrationPoint, operation: str, options: Options, request: httpx2.Request,
    replayable: bool, send: Callable[[float | None], httpx2.Response],
    shape: Callable[[Any], httpx2.Response] | None = None,
) -> httpx2.Response:
    """Run a request whose body cannot be sent twice, or whose point has a fallback."""
    once = None
    if not replayable:
        once = OnceStream(request.stream)
        request.stream = once
    call = _SyncCall(options, request, once, send)
    try:
        result = point.run(
            call, operation=operation, classify_exception=call.classify_exception,
            classify_result=call.classify_result, discard=_discard,
            enforce_timeout=_ENFORCE_TIMEOUT, chaos_result=shape)
    finally:
        call.restore()
    if result is not call.last:
        if call.last is not None:
            _discard(call.last)
        return checked(result, point)
    return result


class ResilientTransport(httpx2.BaseTransport):
    """A sync httpx2 transport that sends each request through an integration point.

    ``point`` protects every request (``None`` is allowed with ``routes``:
    unmatched requests then go straight through). ``transport`` is the inner
    transport; without it one is built as ``httpx2.HTTPTransport(verify=...,
    cert=..., trust_env=..., http1=..., http2=..., limits=..., proxy=...,
    uds=..., local_address=..., socket_options=...)`` from the options given
    here (an ``httpx2.Client(transport=...)`` ignores its own), and
    environment proxies are honoured like the client would.

    ``routes`` (a sequence of :class:`Route`) sends requests to other points
    by host and path. ``retry_statuses`` are retried for idempotent requests
    (default 429, 502, 503, 504); ``retry_non_idempotent=True`` also retries
    POST and PATCH (otherwise only with an ``Idempotency-Key`` header or the
    ``seawall.idempotent`` request extension). ``read_body`` (bytes) reads a
    body up to that size inside the transport, so a connection dropped
    mid-body is retried too, within the deadline; ``None`` (the default)
    leaves the body to the client.

    Attempt timeouts are handed to httpx2 as timeouts (no phase longer than
    the attempt); a thread cannot be interrupted, so a response that comes
    after the attempt's deadline is returned and counted as an overrun.
    Thread-safe. Entering and exiting the transport
    (``with httpx2.Client(transport=...)``) enters and exits the
    inner one; ``close()`` closes it.
    """

    def __init__(
        self,
        point: IntegrationPoint | None,
        transport: httpx2.BaseTransport | None = None,
        *,
        routes: Iterable[Route] = (),
        retry_statuses: Collection[int] = RETRY_STATUSES,
        retry_non_idempotent: bool = False,
        read_body: int | None = None,
        verify: Any = UNSET,
        cert: Any = UNSET,
        trust_env: Any = UNSET,
        http1: Any = UNSET,
        http2: Any = UNSET,
        limits: Any = UNSET,
        proxy: Any = UNSET,
        uds: Any = UNSET,
        local_address: Any = UNSET,
        socket_options: Any = UNSET,
    ) -> None:
        options = dict(verify=verify, cert=cert, trust_env=trust_env, http1=http1, http2=http2,
                       limits=limits, proxy=proxy, uds=uds, local_address=local_address,
                       socket_options=socket_options)
        check_options(transport, options, "ResilientTransport")
        if transport is not None and not isinstance(transport, httpx2.BaseTransport):
            raise ConfigurationError(
                f"ResilientTransport.transport must be an httpx2.BaseTransport, "
                f"got {transport!r}"
            )
        self._options = Options("ResilientTransport", point, routes, retry_statuses,
                                retry_non_idempotent, read_body)
        self._proxies: list[tuple[Any, httpx2.BaseTransport | None]] = []
        if transport is None:
            kwargs = transport_kwargs(options)
            transport = httpx2.HTTPTransport(**kwargs)
            for pattern, url in environment_proxy_mounts(kwargs):
                mounted = None if url is None else httpx2.HTTPTransport(
                    **{**kwargs, "proxy": url})
                self._proxies.append((pattern, mounted))
        self.transport = transport

    @property
    def points(self) -> tuple[IntegrationPoint, ...]:
        """The points this transport applies (its default first, then the routes')."""
        return self._options.router.points

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        """Send ``request`` through its point: retries, breaker, bulkhead, deadline, fallback."""
        inner = self.transport
        if self._proxies:
            inner = proxied(self._proxies, request.url) or inner
        options = self._options
        router = options.router
        point = router.only
        operation = None
        if point is not None:  # no routes: the last request's operation is likely this one's
            ref = request.url._uri_reference
            last = router.last
            if request.method == last[0] and ref.host == last[1] and ref.port == last[2]:
                operation = last[3]
        if point is None or operation is None:
            plan = router.resolve(request)
            if plan is None:
                return inner.handle_request(request)
            point, operation = plan
        extensions = request.extensions
        original = extensions.get("timeout", ABSENT)
        limit = options.read_body
        if limit is not None:
            limit = read_limit(limit, request)
        send = partial(_attempt, options, inner, request, original, limit, point)
        # fault injection (seawall.Chaos): an injected result becomes a response to this request
        shape = None if point.chaos is None else partial(injected_response, request)
        body = request.stream
        replayable = type(body) is _BYTES or is_replayable(body)
        try:
            if not replayable or point.fallback is not None:
                return _run_watched(point, operation, options, request, replayable, send,
                                           shape)
            # the common case: the result is always the last attempt's response, and
            # whether the request may be sent again cannot change between attempts
            resendable = (request.method in IDEMPOTENT_METHODS
                          and IDEMPOTENT_EXTENSION not in extensions) \
                or is_idempotent(request, options.retry_non_idempotent)
            # arguments by position: the cheapest call of the core's shell
            response: httpx2.Response = point.run(
                send, operation, None, options.exceptions[resendable],
                options.results[resendable], _discard, _ENFORCE_TIMEOUT, shape)
            return response
        finally:
            if original is ABSENT:
                request.extensions.pop("timeout", None)
            else:
                request.extensions["timeout"] = original

    def __enter__(self: _Sync) -> _Sync:
        """Enter the inner transport (and the proxy transports built for the environment).

        ``with httpx2.Client(transport=...)`` enters the client's
        transport: the inner one is entered in turn, as it would be without seawall.
        """
        self.transport.__enter__()
        for _, mounted in self._proxies:
            if mounted is not None:
                mounted.__enter__()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None, traceback: TracebackType | None = None,
    ) -> None:
        """Exit the inner transport (which closes it), then the proxy transports."""
        self.transport.__exit__(exc_type, exc_value, traceback)
        for _, mounted in self._proxies:
            if mounted is not None:
                mounted.__exit__(exc_type, exc_value, traceback)

    def close(self) -> None:
        """Close the inner transport (and the proxy transports built for the environment)."""
        self.transport.close()
        for _, mounted in self._proxies:
            if mounted is not None:
                mounted.close()
