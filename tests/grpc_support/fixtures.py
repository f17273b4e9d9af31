"""pytest fixtures for the gRPC tests: a fault-injecting backend and servers on 127.0.0.1.

Import the fixtures you use into the test module (conftest.py belongs to the
whole suite).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from .mounts import MOUNTINGS, AioChannels, SyncChannels
from .servers import Backend, pb2_grpc, start_aio_server, start_sync_server


@pytest.fixture(params=MOUNTINGS)
def mounting(request: pytest.FixtureRequest) -> str:
    """How seawall is mounted: ``interceptors`` or ``wrapper`` (each test runs over both)."""
    return str(request.param)


@pytest.fixture
def backend() -> Backend:
    """Plans and records of one test (fresh per test)."""
    return Backend()


@pytest.fixture
def sync_target(backend: Backend) -> Iterator[str]:
    """A sync ``grpc.server`` serving ``backend``; yields ``host:port``."""
    server, port = start_sync_server(backend)
    yield f"127.0.0.1:{port}"
    server.stop(None).wait(5)


@pytest.fixture
async def aio_target(backend: Backend) -> AsyncIterator[str]:
    """A ``grpc.aio.server`` serving ``backend`` on the test's loop; yields ``host:port``."""
    server, port = await start_aio_server(backend)
    yield f"127.0.0.1:{port}"
    await server.stop(None)



@pytest.fixture
def sync_channels() -> Iterator[SyncChannels]:
    """``sync_channels.open(target, routes, mounting, **options)``; all closed when the test ends."""
    channels = SyncChannels()
    yield channels
    channels.close()


@pytest.fixture
async def aio_channels() -> AsyncIterator[AioChannels]:
    """The grpc.aio twin of ``sync_channels``."""
    channels = AioChannels()
    yield channels
    await channels.close()


@pytest.fixture
def sync_stub(sync_target: str, mounting: str,
              sync_channels: SyncChannels) -> Callable[[Any], Any]:
    """``sync_stub(routes)``: an Echo stub to ``sync_target`` with ``routes`` mounted."""
    def make(routes: Any) -> Any:
        return pb2_grpc.EchoStub(sync_channels.open(sync_target, routes, mounting))

    return make


@pytest.fixture
def aio_stub(aio_target: str, mounting: str, aio_channels: AioChannels) -> Callable[[Any], Any]:
    """The grpc.aio twin of ``sync_stub``: an Echo stub to ``aio_target``."""
    def make(routes: Any) -> Any:
        return pb2_grpc.EchoStub(aio_channels.open(aio_target, routes, mounting))

    return make
