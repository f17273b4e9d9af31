"""The two ways to mount seawall on a gRPC channel, so every test can run over both.

``interceptors``: ``grpc.intercept_channel(channel, *client_interceptors(...))``
in sync, ``grpc.aio.insecure_channel(target, interceptors=aio_client_interceptors(...))``
in aio. ``wrapper``: ``resilient_channel(channel, ...)`` and
``aio_resilient_channel(channel, ...)``, which must show every behaviour of
the interceptors.
"""

from __future__ import annotations

from typing import Any

import grpc
import grpc.aio

from seawall.interceptors import grpc as sw_grpc

MOUNTINGS = ["interceptors", "wrapper"]


def sync_channel(target: str, routes: Any, mounting: str, **options: Any) -> grpc.Channel:
    """A sync channel to ``target`` with ``routes`` mounted as ``mounting`` (``None``: plain)."""
    channel = grpc.insecure_channel(target)
    if routes is None:
        return channel
    if mounting == "wrapper":
        return sw_grpc.resilient_channel(channel, routes, **options)
    assert mounting == "interceptors", mounting
    return grpc.intercept_channel(channel, *sw_grpc.client_interceptors(routes, **options))


def aio_channel(target: str, routes: Any, mounting: str, **options: Any) -> grpc.aio.Channel:
    """The grpc.aio twin of :func:`sync_channel` (call it on the test's event loop)."""
    if routes is None:
        return grpc.aio.insecure_channel(target)
    if mounting == "wrapper":
        return sw_grpc.aio_resilient_channel(grpc.aio.insecure_channel(target), routes,
                                             **options)
    assert mounting == "interceptors", mounting
    return grpc.aio.insecure_channel(
        target, interceptors=sw_grpc.aio_client_interceptors(routes, **options))


class SyncChannels:
    """The sync channels one test opens with seawall mounted, closed together at its end."""

    def __init__(self) -> None:
        self._open: list[grpc.Channel] = []

    def open(self, target: str, routes: Any, mounting: str, **options: Any) -> grpc.Channel:
        """:func:`sync_channel`'s channel, remembered to be closed by :meth:`close`."""
        self._open.append(sync_channel(target, routes, mounting, **options))
        return self._open[-1]

    def close(self) -> None:
        """Close every channel opened so far (again: a no-op)."""
        while self._open:
            self._open.pop().close()


class AioChannels:
    """The grpc.aio twin of :class:`SyncChannels` (open channels on the test's event loop)."""

    def __init__(self) -> None:
        self._open: list[grpc.aio.Channel] = []

    def open(self, target: str, routes: Any, mounting: str, **options: Any) -> grpc.aio.Channel:
        """:func:`aio_channel`'s channel, remembered to be closed by :meth:`close`."""
        self._open.append(aio_channel(target, routes, mounting, **options))
        return self._open[-1]

    async def close(self) -> None:
        """Close every channel opened so far (again: a no-op)."""
        while self._open:
            await self._open.pop().close()
