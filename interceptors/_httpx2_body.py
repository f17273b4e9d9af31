# Generated from interceptors/_httpx_body.py by `python -m seawall.interceptors._httpx2_gen`: do not edit.
"""Request and response bodies in the httpx2 transports, the parts that do no I/O.

Whether a request body can be sent again (:func:`is_replayable`), the
wrapper that tells whether an unreplayable one started to go out
(:class:`OnceStream`), the bytes body the async transport sends instead of
httpx2's own (:func:`async_bytes_body`), and what decides reading a response
body inside the attempt (the ``read_body`` option, the ``seawall.read_body``
extension, the declared length). Reading and draining bodies is I/O: each
transport does it (``_httpx2_async.py``, and the sync module generated from it).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx2

# per-request opt-out of reading the body inside the transport
READ_BODY_EXTENSION = "seawall.read_body"

# error bodies up to this size are read before a discarded response is closed,
# so its keep-alive connection goes back to the pool instead of being dropped
DRAIN_LIMIT = 16 * 1024


def is_replayable(stream: object) -> bool:
    """Whether a request body can be sent again as it was.

    ``content=bytes``, ``json=`` and ``data={...}`` bodies are in memory;
    multipart bodies are when every file is in memory or seekable (httpx2
    seeks back to 0). Generators, iterators and unseekable files are not.
    """
    if type(stream) is httpx2.ByteStream:
        return True
    fields = getattr(stream, "fields", None)
    if fields is None or type(stream).__name__ != "MultipartStream":
        return isinstance(stream, httpx2.ByteStream)
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


def read_limit(read_body: int | None, request: httpx2.Request) -> int | None:
    """How many body bytes to read inside the attempt for ``request`` (``None``: none)."""
    if read_body is None or request.extensions.get(READ_BODY_EXTENSION, True) is False:
        return None
    return read_body


def declared_length(response: httpx2.Response) -> int | None:
    """The response's ``Content-Length`` as a number, or ``None`` when absent or malformed."""
    value = response.headers.get("content-length")
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None


def body_deadline_error() -> httpx2.ReadTimeout:
    """What a body still arriving when the attempt's time ran out raises."""
    return httpx2.ReadTimeout("seawall: the attempt's time ran out while reading the response body")


class OnceStream(httpx2.SyncByteStream, httpx2.AsyncByteStream):
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


class AsyncBytes(httpx2.ByteStream):
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
    """The one chunk of an :class:`AsyncBytes` body, as an async iterator."""

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


def async_bytes_body(request: httpx2.Request, body: Any) -> Any:
    """The body an async attempt sends: non-empty bytes as :class:`AsyncBytes`."""
    try:
        content = request.content
    except httpx2.RequestNotRead:  # a ByteStream handed to Request(stream=...) unread
        return body
    return AsyncBytes(content) if content else body
