"""pytest fixtures for the gRPC tests: a fault-injecting backend and servers on 127.0.0.1.

Import the fixtures you use into the test module (conftest.py belongs to the
whole suite).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from .mounts import MOUNTINGS
from .servers import Backend, start_aio_server, start_sync_server


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

