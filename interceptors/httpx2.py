# Generated from interceptors/httpx.py by `python -m seawall.interceptors._httpx2_gen`: do not edit.
"""httpx2 transports that apply an integration point's policy to every request.

::

    import httpx2, seawall
    from seawall.interceptors import httpx2 as sw_httpx2

    api = seawall.IntegrationPoint("billing-api", retry=seawall.Retry(attempts=3),
                                   timeout=seawall.Timeout(attempt=2.0, total=5.0))
    client = httpx2.Client(transport=sw_httpx2.ResilientTransport(api))
    aclient = httpx2.AsyncClient(transport=sw_httpx2.AsyncResilientTransport(api))

:class:`ResilientTransport` and :class:`AsyncResilientTransport` wrap any
``httpx2.BaseTransport`` / ``httpx2.AsyncBaseTransport`` (by default a
``httpx2.HTTPTransport`` built from ``verify``, ``cert``, ``limits``,
``http2``, ``proxy``... so that nothing a client would have configured is
lost). Each request goes through its point's shell: classification of the
status and of every httpx2 exception, retries only when safe for the method,
``Retry-After``, the attempt timeout narrowing httpx2's own timeouts, the
total deadline, the breaker, the bulkhead and the fallback. Every attempt
is an event whose operation is ``"METHOD host"`` or, with a route table,
``"METHOD host/path/{pattern}"``.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterable, Iterator
from functools import partial
from types import TracebackType
from typing import Any, TypeVar

import httpx2

from seawall import Classification, ConfigurationError, IntegrationPoint
from seawall._classify import TRANSIENT, ExceptionRule, ResultRule

from ._httpx2_policy import (
    EXCEPTION_TABLE,
    IDEMPOTENT_EXTENSION,
    IDEMPOTENT_METHODS,
    READ_BODY_EXTENSION,
    RETRY_STATUSES,
    UNSET,
    Route,
    Router,
    check_options,
    classify_exception,
    environment_proxy_mounts,
    is_idempotent,
    is_replayable,
    narrowed_timeout,
    parse_retry_after,
    proxied,
    status_classification,
    transport_kwargs,
)

__all__ = [
    "EXCEPTION_TABLE",
    "IDEMPOTENT_EXTENSION",
    "IDEMPOTENT_METHODS",
    "READ_BODY_EXTENSION",
    "RETRY_STATUSES",
    "AsyncResilientTransport",
    "ResilientTransport",
    "Route",
    "classify_exception",
    "parse_retry_after",
    "status_classification",
]

_BYTES = httpx2.ByteStream

_Sync = TypeVar("_Sync", bound="ResilientTransport")
_Async = TypeVar("_Async", bound="AsyncResilientTransport")

# error bodies up to this size are read before a discarded response is closed,
# so its keep-alive connection goes back to the pool instead of being dropped
_DRAIN_LIMIT = 16 * 1024


_ABSENT: Any = object()  # the request had no timeout extension


class _Options:
    """The transport's settings, validated once; shared by the sync and async shells.

    Also the classifiers handed to the point for requests whose body can be
    sent again, built once so that a request on the common path allocates none.
    """

    __slots__ = ("exceptions", "narrowing", "read_body", "results", "retry_non_idempotent",
                 "retry_statuses", "router")

    def __init__(self, owner: str, point: IntegrationPoint | None, routes: Iterable[Route],
                 retry_statuses: Collection[int], retry_non_idempotent: bool,
                 read_body: int | None) -> None:
        self.router = Router(point, routes)
        statuses = frozenset(retry_statuses)
        for s in statuses:
            if isinstance(s, bool) or not isinstance(s, int) or not 400 <= s <= 599:
                raise ConfigurationError(
                    f"{owner}.retry_statuses must hold 4xx/5xx status codes, got {s!r}"
                )
        self.retry_statuses = statuses
        if not isinstance(retry_non_idempotent, bool):
            raise ConfigurationError(
                f"{owner}.retry_non_idempotent must be True or False, got {retry_non_idempotent!r}"
            )
        self.retry_non_idempotent = retry_non_idempotent
        if read_body is not None and (isinstance(read_body, bool) or not isinstance(read_body, int)
                                      or read_body < 0):
            raise ConfigurationError(
                f"{owner}.read_body must be a byte count >= 0 or None, got {read_body!r}"
            )
        self.read_body = read_body
        # indexed by "may this request be sent again?"
        self.results: tuple[ResultRule, ResultRule] = (self._final_result, self._resendable_result)
        self.exceptions: tuple[ExceptionRule, ExceptionRule] = (
            partial(classify_exception, idempotent=False),
            partial(classify_exception, idempotent=True),
        )
        # the last (attempt timeout, request timeouts, narrowed timeouts): the client
        # sends the same timeouts every time, and the first attempt's is the point's
        # (NaN equals no timeout, so the first request always computes)
        self.narrowing: tuple[float, Any, dict[str, float | None]] = (math.nan, _ABSENT, {})

    def narrowed(self, original: Any, timeout: float) -> dict[str, float | None]:
        """A fresh copy of the request's ``timeout`` extension with no phase over ``timeout``."""
        last = self.narrowing
        if timeout == last[0] and original == last[1]:
            return last[2].copy()
        out = narrowed_timeout(None if original is _ABSENT else original, timeout)
        # a dict is copied (its owner may change it later); anything else is ignored
        # by narrowed_timeout, so it may be kept as it is
        snapshot = original.copy() if type(original) is dict else original
        self.narrowing = (timeout, snapshot, out.copy())
        return out

    def _final_result(self, response: httpx2.Response) -> Classification | None:
        if response.status_code < 400:
            return None
        return self.status_outcome(response.status_code, response, False)

    def _resendable_result(self, response: httpx2.Response) -> Classification | None:
        if response.status_code < 400:
            return None
        return self.status_outcome(response.status_code, response, True)

    def status_outcome(self, status: int, response: httpx2.Response,
                       resendable: bool) -> Classification:
        """A failed status's classification; retried only if the request may be sent again."""
        c = status_classification(status)
        assert c is not None
        if resendable and status in self.retry_statuses:
            if not c.retry:  # a status the caller added (500, 409...)
                c = Classification(TRANSIENT.category, retry=True, breaker=c.breaker)
            delay = parse_retry_after(response.headers.get("retry-after"))
            return c if delay is None else c.with_delay(delay)
        return c.with_retry(False) if c.retry else c


class _Call:
    """One request whose every attempt must be watched: a body that cannot be sent twice,
    or a point with a fallback (whose value replaces the last response, which is then closed).

    Shared by the request's attempts, never by two requests.
    """

    __slots__ = ("idempotent", "last", "once", "options", "request", "send")

    def __init__(self, options: _Options, request: httpx2.Request, once: _OnceStream | None,
                 send: Callable[[float | None], Any]) -> None:
        self.options = options
        self.request = request
        self.once = once
        self.send = send
        self.idempotent: bool | None = None
        self.last: httpx2.Response | None = None

    def restore(self) -> None:
        """Put the request's own body back, as the caller will see it."""
        if self.once is not None:
            self.request.stream = self.once.stream

    def _is_idempotent(self) -> bool:
        if self.idempotent is None:
            self.idempotent = is_idempotent(self.request, self.options.retry_non_idempotent)
        return self.idempotent

    def _body_spent(self) -> bool:
        return self.once is not None and self.once.started

    def classify_exception(self, exc: BaseException) -> Classification | None:
        c = classify_exception(exc, self._is_idempotent())
        if c is not None and c.retry and self._body_spent():
            return c.with_retry(False)
        return c

    def classify_result(self, response: httpx2.Response) -> Classification | None:
        status = response.status_code
        if status < 400:
            return None
        resendable = self._is_idempotent() and not self._body_spent()
        return self.options.status_outcome(status, response, resendable)


def _read_limit(options: _Options, request: httpx2.Request) -> int | None:
    if options.read_body is None or request.extensions.get(READ_BODY_EXTENSION, True) is False:
        return None
    return options.read_body


def _declared_length(response: httpx2.Response) -> int | None:
    value = response.headers.get("content-length")
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None


def _body_deadline_error() -> httpx2.ReadTimeout:
    return httpx2.ReadTimeout("seawall: the attempt's time ran out while reading the response body")


def _checked(result: Any, point: IntegrationPoint) -> httpx2.Response:
    """The response to hand back: a fallback's value must be a response, and a fresh one."""
    if not isinstance(result, httpx2.Response):
        raise TypeError(
            f"seawall: the fallback of point {point.name!r} must give an httpx2.Response "
            f"when used with an httpx2 transport, got {type(result).__name__}"
        )
    fallback = point.fallback
    if fallback is not None and result is fallback.value:
        # one Response object must not be shared by several requests
        return httpx2.Response(result.status_code, headers=result.headers,
                              content=result.content, extensions=dict(result.extensions))
    return result


class _OnceStream(httpx2.SyncByteStream, httpx2.AsyncByteStream):
    """A request body that cannot be replayed; records whether sending it began."""

    __slots__ = ("started", "stream")

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.started = False

    def __iter__(self) -> Iterator[bytes]:
        self.started = True
        yield from self.stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        self.started = True
        async for chunk in self.stream:
            yield chunk

    def close(self) -> None:
        close = getattr(self.stream, "close", None)
        if close is not None:
            close()

    async def aclose(self) -> None:
        aclose = getattr(self.stream, "aclose", None)
        if aclose is not None:
            await aclose()


# -- sync -------------------------------------------------------------------------

class _PrefixedStream(httpx2.SyncByteStream):
    """A body whose first chunks were read by the transport; the rest still streams."""

    def __init__(self, head: list[bytes], rest: Iterator[bytes], stream: httpx2.SyncByteStream) -> None:
        self._head = head
        self._rest = rest
        self._stream = stream

    def __iter__(self) -> Iterator[bytes]:
        head, self._head = self._head, []
        yield from head
        yield from self._rest

    def close(self) -> None:
        self._stream.close()


def _read_body(response: httpx2.Response, limit: int, deadline: float | None,
               point: IntegrationPoint) -> httpx2.Response:
    """Read up to ``limit`` bytes of the body now, so read failures happen inside the attempt."""
    declared = _declared_length(response)
    if declared is not None and declared > limit:
        return response
    stream = response.stream
    assert isinstance(stream, httpx2.SyncByteStream)
    now = point.clock.now
    chunks: list[bytes] = []
    size = 0
    iterator = iter(stream)
    try:
        for chunk in iterator:
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                response.stream = _PrefixedStream(chunks, iterator, stream)
                return response
            if deadline is not None and now() > deadline:
                raise _body_deadline_error()
    except BaseException:
        response.close()
        raise
    stream.close()
    response.stream = httpx2.ByteStream(b"".join(chunks))
    return response


def _discard(response: httpx2.Response) -> None:
    """Give a failed response's connection back before the next attempt; never raises."""
    try:
        declared = _declared_length(response)
        if declared is not None and declared <= _DRAIN_LIMIT and not response.is_closed:
            response.read()
    except Exception:
        pass
    finally:
        try:
            response.close()
        except Exception:
            pass


def _send(options: _Options, inner: httpx2.BaseTransport, request: httpx2.Request, original: Any,
          timeout: float | None) -> httpx2.Response:
    """One attempt: hand the attempt's time to httpx2 (no phase longer than ``timeout``), send."""
    if timeout is not None:
        last = options.narrowing
        request.extensions["timeout"] = last[2].copy() \
            if timeout == last[0] and original == last[1] else options.narrowed(original, timeout)
    return inner.handle_request(request)


def _send_reading(options: _Options, inner: httpx2.BaseTransport, request: httpx2.Request,
                  original: Any, limit: int, point: IntegrationPoint,
                  timeout: float | None) -> httpx2.Response:
    """One attempt that also reads up to ``limit`` bytes of the body within the attempt's time."""
    response = _send(options, inner, request, original, timeout)
    deadline = None if timeout is None else point.clock.now() + timeout
    return _read_body(response, limit, deadline, point)


class _SyncCall(_Call):
    __slots__ = ()

    def __call__(self, timeout: float | None) -> httpx2.Response:
        response: httpx2.Response = self.send(timeout)
        self.last = response
        return response


def _run_watched(point: IntegrationPoint, operation: str, options: _Options,
                 request: httpx2.Request, replayable: bool,
                 send: Callable[[float | None], httpx2.Response]) -> httpx2.Response:
    """Run a request whose body cannot be sent twice, or whose point has a fallback."""
    once = None
    if not replayable:
        once = _OnceStream(request.stream)
        request.stream = once
    call = _SyncCall(options, request, once, send)
    try:
        result = point.run(call, operation=operation, classify_exception=call.classify_exception,
                           classify_result=call.classify_result, discard=_discard)
    finally:
        call.restore()
    if result is not call.last:
        if call.last is not None:
            _discard(call.last)
        return _checked(result, point)
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
    leaves the body to the client. Thread-safe. Entering and exiting the
    transport (``with httpx2.Client(transport=...)``) enters and exits the
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
                f"ResilientTransport.transport must be an httpx2.BaseTransport, got {transport!r}"
            )
        self._options = _Options("ResilientTransport", point, routes, retry_statuses,
                                 retry_non_idempotent, read_body)
        self._proxies: list[tuple[Any, httpx2.BaseTransport | None]] = []
        if transport is None:
            kwargs = transport_kwargs(options)
            transport = httpx2.HTTPTransport(**kwargs)
            for pattern, url in environment_proxy_mounts(kwargs):
                mounted = None if url is None else httpx2.HTTPTransport(**{**kwargs, "proxy": url})
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
        original = extensions.get("timeout", _ABSENT)
        limit = options.read_body
        if limit is not None:
            limit = _read_limit(options, request)
        send = partial(_send, options, inner, request, original) if limit is None else \
            partial(_send_reading, options, inner, request, original, limit, point)
        body = request.stream
        replayable = type(body) is _BYTES or is_replayable(body)
        try:
            if not replayable or point.fallback is not None:
                return _run_watched(point, operation, options, request, replayable, send)
            # the common case: the result is always the last attempt's response, and
            # whether the request may be sent again cannot change between attempts
            resendable = (request.method in IDEMPOTENT_METHODS
                          and IDEMPOTENT_EXTENSION not in extensions) \
                or is_idempotent(request, options.retry_non_idempotent)
            # arguments by position: the cheapest call of the core's shell
            response: httpx2.Response = point.run(
                send, operation, None, options.exceptions[resendable],
                options.results[resendable], _discard)
            return response
        finally:
            if original is _ABSENT:
                request.extensions.pop("timeout", None)
            else:
                request.extensions["timeout"] = original

    def __enter__(self: _Sync) -> _Sync:
        """Enter the inner transport (and the proxy transports built for the environment).

        ``with httpx2.Client(transport=...)`` enters the client's transport:
        the inner one is entered in turn, as it would be without seawall.
        """
        self.transport.__enter__()
        for _, mounted in self._proxies:
            if mounted is not None:
                mounted.__enter__()
        return self

    def __exit__(self, exc_type: type[BaseException] | None = None,
                 exc_value: BaseException | None = None,
                 traceback: TracebackType | None = None) -> None:
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


# -- async ------------------------------------------------------------------------

class _AsyncBytes(httpx2.ByteStream):
    """A bytes body whose async iteration is an iterator object, not an async generator.

    httpx2's own bytes body iterates through an async generator. An attempt whose write
    times out leaves it suspended; when a retry drops that attempt's error, the
    generator is collected mid-run, and trio warns about it (``ResourceWarning``), which
    plain httpx2, raising at once, never shows. The same bytes, sent the same way.
    """

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.data = data

    def __aiter__(self) -> AsyncIterator[bytes]:
        return _OneChunk(self.data)


class _OneChunk:
    """The one chunk of an :class:`_AsyncBytes` body, as an async iterator."""

    __slots__ = ("data",)

    def __init__(self, data: bytes | None) -> None:
        self.data = data

    def __aiter__(self) -> _OneChunk:
        return self

    async def __anext__(self) -> bytes:
        data = self.data
        if data is None:
            raise StopAsyncIteration
        self.data = None
        return data


def _bytes_body(request: httpx2.Request, body: Any) -> Any:
    """The body an async attempt sends: non-empty bytes as :class:`_AsyncBytes`."""
    try:
        content = request.content
    except httpx2.RequestNotRead:  # a ByteStream handed to Request(stream=...) unread
        return body
    return _AsyncBytes(content) if content else body


class _AsyncPrefixedStream(httpx2.AsyncByteStream):
    """A body whose first chunks were read by the transport; the rest still streams."""

    def __init__(self, head: list[bytes], rest: AsyncIterator[bytes],
                 stream: httpx2.AsyncByteStream) -> None:
        self._head = head
        self._rest = rest
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        head, self._head = self._head, []
        for chunk in head:
            yield chunk
        async for chunk in self._rest:
            yield chunk

    async def aclose(self) -> None:
        await self._stream.aclose()


async def _aread_body(response: httpx2.Response, limit: int, deadline: float | None,
                      point: IntegrationPoint) -> httpx2.Response:
    """Read up to ``limit`` bytes of the body now, so read failures happen inside the attempt."""
    declared = _declared_length(response)
    if declared is not None and declared > limit:
        return response
    stream = response.stream
    assert isinstance(stream, httpx2.AsyncByteStream)
    now = point.clock.now
    chunks: list[bytes] = []
    size = 0
    iterator = stream.__aiter__()
    try:
        async for chunk in iterator:
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                response.stream = _AsyncPrefixedStream(chunks, iterator, stream)
                return response
            if deadline is not None and now() > deadline:
                raise _body_deadline_error()
    except BaseException:
        await response.aclose()
        raise
    await stream.aclose()
    response.stream = httpx2.ByteStream(b"".join(chunks))
    return response


async def _adiscard(response: httpx2.Response) -> None:
    """Give a failed response's connection back before the next attempt; never raises."""
    try:
        declared = _declared_length(response)
        if declared is not None and declared <= _DRAIN_LIMIT and not response.is_closed:
            await response.aread()
    except Exception:
        pass
    finally:
        try:
            await response.aclose()
        except Exception:
            pass


def _asend(options: _Options, inner: httpx2.AsyncBaseTransport, request: httpx2.Request,
           original: Any, timeout: float | None) -> Awaitable[httpx2.Response]:
    """One attempt: hand the attempt's time to httpx2 (no phase longer than ``timeout``), send.

    A plain function returning the inner transport's coroutine: one coroutine
    fewer to resume each time the request waits for the network.
    """
    if timeout is not None:
        last = options.narrowing
        request.extensions["timeout"] = last[2].copy() \
            if timeout == last[0] and original == last[1] else options.narrowed(original, timeout)
    return inner.handle_async_request(request)


async def _asend_reading(options: _Options, inner: httpx2.AsyncBaseTransport,
                         request: httpx2.Request, original: Any, limit: int,
                         point: IntegrationPoint, timeout: float | None) -> httpx2.Response:
    """One attempt that also reads up to ``limit`` bytes of the body within the attempt's time."""
    response = await _asend(options, inner, request, original, timeout)
    deadline = None if timeout is None else point.clock.now() + timeout
    return await _aread_body(response, limit, deadline, point)


class _AsyncCall(_Call):
    __slots__ = ()

    async def __call__(self, timeout: float | None) -> httpx2.Response:
        response: httpx2.Response = await self.send(timeout)
        self.last = response
        return response


async def _arun_watched(point: IntegrationPoint, operation: str, options: _Options,
                        request: httpx2.Request, replayable: bool,
                        send: Callable[[float | None], Awaitable[httpx2.Response]]
                        ) -> httpx2.Response:
    """Run a request whose body cannot be sent twice, or whose point has a fallback."""
    once = None
    if not replayable:
        once = _OnceStream(request.stream)
        request.stream = once
    call = _AsyncCall(options, request, once, send)
    try:
        result = await point.arun(call, operation=operation,
                                  classify_exception=call.classify_exception,
                                  classify_result=call.classify_result, discard=_adiscard,
                                  enforce_timeout=False)
    finally:
        call.restore()
    if result is not call.last:
        if call.last is not None:
            await _adiscard(call.last)
        return _checked(result, point)
    return result


class AsyncResilientTransport(httpx2.AsyncBaseTransport):
    """The async twin of :class:`ResilientTransport` (same options, same behaviour).

    Runs under asyncio and under trio, like httpx2's async client: the
    retry waits and the bulkhead queue use the library of the calling task.
    The inner transport defaults to ``httpx2.AsyncHTTPTransport(...)``.
    Attempt timeouts are handed to httpx2 as timeouts, never enforced by
    cancelling the request: cancelling httpcore2 under pool contention can
    leak connections (encode/httpcore#830). Cancelling the caller's task
    cancels the request and never counts as a failure. Safe to share
    between tasks of one event loop. ``async with`` enters and exits the inner
    transport; ``aclose()`` closes it.
    """

    def __init__(
        self,
        point: IntegrationPoint | None,
        transport: httpx2.AsyncBaseTransport | None = None,
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
        check_options(transport, options, "AsyncResilientTransport")
        if transport is not None and not isinstance(transport, httpx2.AsyncBaseTransport):
            raise ConfigurationError(
                f"AsyncResilientTransport.transport must be an httpx2.AsyncBaseTransport, "
                f"got {transport!r}"
            )
        self._options = _Options("AsyncResilientTransport", point, routes, retry_statuses,
                                 retry_non_idempotent, read_body)
        self._proxies: list[tuple[Any, httpx2.AsyncBaseTransport | None]] = []
        if transport is None:
            kwargs = transport_kwargs(options)
            transport = httpx2.AsyncHTTPTransport(**kwargs)
            for pattern, url in environment_proxy_mounts(kwargs):
                mounted = None if url is None else httpx2.AsyncHTTPTransport(
                    **{**kwargs, "proxy": url})
                self._proxies.append((pattern, mounted))
        self.transport = transport

    @property
    def points(self) -> tuple[IntegrationPoint, ...]:
        """The points this transport applies (its default first, then the routes')."""
        return self._options.router.points

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
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
                return await inner.handle_async_request(request)
            point, operation = plan
        extensions = request.extensions
        original = extensions.get("timeout", _ABSENT)
        limit = options.read_body
        if limit is not None:
            limit = _read_limit(options, request)
        send = partial(_asend, options, inner, request, original) if limit is None else \
            partial(_asend_reading, options, inner, request, original, limit, point)
        body = request.stream
        replayable = type(body) is _BYTES or is_replayable(body)
        try:
            if type(body) is _BYTES:
                request.stream = _bytes_body(request, body)
            if not replayable or point.fallback is not None:
                return await _arun_watched(point, operation, options, request, replayable, send)
            # the common case: the result is always the last attempt's response, and
            # whether the request may be sent again cannot change between attempts
            resendable = (request.method in IDEMPOTENT_METHODS
                          and IDEMPOTENT_EXTENSION not in extensions) \
                or is_idempotent(request, options.retry_non_idempotent)
            # arguments by position: the cheapest call of the core's shell
            response: httpx2.Response = await point.arun(
                send, operation, None, options.exceptions[resendable],
                options.results[resendable], _adiscard, False)
            return response
        finally:
            request.stream = body
            if original is _ABSENT:
                request.extensions.pop("timeout", None)
            else:
                request.extensions["timeout"] = original

    async def __aenter__(self: _Async) -> _Async:
        """Enter the inner transport (and the proxy transports built for the environment).

        ``async with httpx2.AsyncClient(transport=...)`` enters the client's
        transport: the inner one is entered in turn, as it would be without seawall.
        """
        await self.transport.__aenter__()
        for _, mounted in self._proxies:
            if mounted is not None:
                await mounted.__aenter__()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None = None,
                        exc_value: BaseException | None = None,
                        traceback: TracebackType | None = None) -> None:
        """Exit the inner transport (which closes it), then the proxy transports."""
        await self.transport.__aexit__(exc_type, exc_value, traceback)
        for _, mounted in self._proxies:
            if mounted is not None:
                await mounted.__aexit__(exc_type, exc_value, traceback)

    async def aclose(self) -> None:
        """Close the inner transport (and the proxy transports built for the environment)."""
        await self.transport.aclose()
        for _, mounted in self._proxies:
            if mounted is not None:
                await mounted.aclose()
