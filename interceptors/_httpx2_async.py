# Generated from interceptors/_httpx_async.py by `python -m seawall.interceptors._httpx2_gen`: do not edit.
"""The async httpx2 transport, :class:`AsyncResilientTransport`: written by hand, once.

``_httpx2_sync.py`` (:class:`ResilientTransport`) is generated from this
file by ``python sdk/_unasync.py``, the way the core's sync shell is
generated from its async one: ``async``/``await`` go, the async names get
their sync twins (the table in ``sdk/_unasync.py``), a line marked
``# async only`` goes, a ``# sync: <code>`` comment becomes that code.
So change this file, regenerate, and commit both; what differs between
the two transports is in this file line by line, and in the generator's
table (the attempt timeout, below, is the one difference in behaviour).

What a request goes through, in order: the router picks its point and
operation (:meth:`AsyncResilientTransport.handle_async_request`); a
request whose body cannot be sent twice, or whose point has a fallback, is
watched (:func:`_arun_watched`); every attempt is :func:`_attempt`,
the single step the point repeats; a failed response is given back to the
pool by :func:`_adiscard` before its retry. What the transport decides
lives in the modules that do no I/O: ``_httpx2_classify`` (methods,
statuses, exceptions), ``_httpx2_routes``, ``_httpx2_options``,
``_httpx2_body``, ``_httpx2_call`` and ``_httpx2_inner``.
"""

from __future__ import annotations

# sync: from collections.abc import Callable, Collection, Iterable, Iterator
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterable  # async only
from functools import partial
from types import TracebackType
from typing import Any, TypeVar

import httpx2

from seawall import ConfigurationError, IntegrationPoint

from ._httpx2_body import (
    DRAIN_LIMIT,
    OnceStream,
    async_bytes_body,  # async only
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

_Async = TypeVar("_Async", bound="AsyncResilientTransport")

# the async transport hands each attempt's time to httpx2 and never cancels a request
# (see the class); the sync one cannot cancel and counts a late success as an overrun
_ENFORCE_TIMEOUT = False  # sync: _ENFORCE_TIMEOUT = True


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


async def _aread_body(
    response: httpx2.Response, limit: int, deadline: float | None, point: IntegrationPoint
) -> httpx2.Response:
    """Read up to ``limit`` bytes of the body now, so read failures happen inside the attempt."""
    declared = declared_length(response)
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
                raise body_deadline_error()
    except BaseException:
        await response.aclose()
        raise
    await stream.aclose()
    response.stream = httpx2.ByteStream(b"".join(chunks))
    return response


async def _adiscard(response: httpx2.Response) -> None:
    """Give a failed response's connection back before the next attempt; never raises."""
    try:
        declared = declared_length(response)
        if declared is not None and declared <= DRAIN_LIMIT and not response.is_closed:
            await response.aread()
    except Exception:
        pass
    finally:
        try:
            await response.aclose()
        except Exception:
            pass


def _attempt(options: Options, inner: httpx2.AsyncBaseTransport, request: httpx2.Request,
             original: Any, limit: int | None, point: IntegrationPoint,
             timeout: float | None) -> Awaitable[httpx2.Response]:
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
    # a plain function, not a coroutine function: without a limit, the inner  # async only
    # transport's own coroutine is the attempt, one fewer to resume per wait  # async only
    sent = inner.handle_async_request(request)
    if limit is None:
        return sent
    return _aread_within(sent, limit, point, timeout)


async def _aread_within(
    sent: Awaitable[httpx2.Response], limit: int, point: IntegrationPoint, timeout: float | None
) -> httpx2.Response:
    """The attempt's response once up to ``limit`` body bytes are read, within ``timeout``."""
    response = await sent
    deadline = None if timeout is None else point.clock.now() + timeout
    return await _aread_body(response, limit, deadline, point)


def _bodiless(request: httpx2.Request) -> bool:  # async only
    """Whether ``request`` sends no body (so parallel attempts share nothing but the URL)."""
    headers = request.headers
    return "transfer-encoding" not in headers and headers.get("content-length", "0") == "0"


class _AsyncCall(Call):
    """A watched request's attempt: sends, and remembers the response it got."""

    __slots__ = ()

    async def __call__(self, timeout: float | None) -> httpx2.Response:
        response: httpx2.Response = await self.send(timeout)
        self.last = response
        return response


async def _arun_watched(
    point: IntegrationPoint, operation: str, options: Options, request: httpx2.Request,
    replayable: bool, send: Callable[[float | None], Awaitable[httpx2.Response]],
    shape: Callable[[Any], httpx2.Response] | None = None,
) -> httpx2.Response:
    """Run a request whose body cannot be sent twice, or whose point has a fallback."""
    once = None
    if not replayable:
        once = OnceStream(request.stream)
        request.stream = once
    call = _AsyncCall(options, request, once, send)
    try:
        result = await point.arun(
            call, operation=operation, classify_exception=call.classify_exception,
            classify_result=call.classify_result, discard=_adiscard,
            enforce_timeout=_ENFORCE_TIMEOUT, chaos_result=shape)
    finally:
        call.restore()
    if result is not call.last:
        if call.last is not None:
            await _adiscard(call.last)
        return checked(result, point)
    return result


class AsyncResilientTransport(httpx2.AsyncBaseTransport):
    """An async httpx2 transport that sends each request through an integration point.

    ``point`` protects every request (``None`` is allowed with ``routes``:
    unmatched requests then go straight through). ``transport`` is the inner
    transport; without it one is built as ``httpx2.AsyncHTTPTransport(verify=...,
    cert=..., trust_env=..., http1=..., http2=..., limits=..., proxy=...,
    uds=..., local_address=..., socket_options=...)`` from the options given
    here (an ``httpx2.AsyncClient(transport=...)`` ignores its own), and
    environment proxies are honoured like the client would.

    ``routes`` (a sequence of :class:`Route`) sends requests to other points
    by host and path. ``retry_statuses`` are retried for idempotent requests
    (default 429, 502, 503, 504); ``retry_non_idempotent=True`` also retries
    POST and PATCH (otherwise only with an ``Idempotency-Key`` header or the
    ``seawall.idempotent`` request extension). ``read_body`` (bytes) reads a
    body up to that size inside the transport, so a connection dropped
    mid-body is retried too, within the deadline; ``None`` (the default)
    leaves the body to the client.

    Runs under asyncio and under trio, like httpx2's async client: the
    retry waits and the bulkhead queue use the library of the calling task.
    Attempt timeouts are handed to httpx2 as timeouts, never enforced by
    cancelling the request: cancelling httpcore2 under pool contention can
    leak connections (encode/httpcore#830). Cancelling the caller's task
    cancels the request and never counts as a failure. Safe to share
    between tasks of one event loop. Entering and exiting the transport
    (``async with httpx2.AsyncClient(transport=...)``) enters and exits the
    inner one; ``aclose()`` closes it.
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
        self._options = Options("AsyncResilientTransport", point, routes, retry_statuses,
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
            if type(body) is _BYTES:  # async only
                request.stream = async_bytes_body(request, body)
            if not replayable or point.fallback is not None:
                return await _arun_watched(point, operation, options, request, replayable, send,
                                           shape)
            # the common case: the result is always the last attempt's response, and
            # whether the request may be sent again cannot change between attempts
            resendable = (request.method in IDEMPOTENT_METHODS
                          and IDEMPOTENT_EXTENSION not in extensions) \
                or is_idempotent(request, options.retry_non_idempotent)
            if point.hedge is not None and resendable and _bodiless(request):  # async only
                # hedged: parallel attempts of a request with nothing to send twice
                hedged: httpx2.Response = await point.ahedged(
                    send, operation, None, options.exceptions[True], options.results[True],
                    _adiscard, shape)
                return hedged
            # arguments by position: the cheapest call of the core's shell
            response: httpx2.Response = await point.arun(
                send, operation, None, options.exceptions[resendable],
                options.results[resendable], _adiscard, _ENFORCE_TIMEOUT, shape)
            return response
        finally:
            request.stream = body  # async only
            if original is ABSENT:
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

    async def __aexit__(
        self, exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None, traceback: TracebackType | None = None,
    ) -> None:
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
