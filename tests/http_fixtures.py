"""pytest fixtures for the httpx transport tests: the scripted server and drivers of each kind.

Load with ``pytest_plugins = ["tests.http_fixtures"]`` in the test module.
Each test taking ``make`` runs for the sync and the async transport of
every host package installed (httpx, httpx2); ``hx`` and ``sw`` are that
package and seawall's module for it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import seawall
from tests.http_support import PACKAGES, Driver, ScriptedServer, modules


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    """A scripted HTTP/1.1 server on 127.0.0.1, stopped after the test."""
    with ScriptedServer() as s:
        yield s


@pytest.fixture(params=["sync", "async"])
def kind(request: pytest.FixtureRequest) -> str:
    """The transport shell: ``sync`` or ``async``."""
    return str(request.param)


@pytest.fixture(params=PACKAGES)
def package(request: pytest.FixtureRequest) -> str:
    """The host package: ``httpx`` or ``httpx2``."""
    return str(request.param)


@pytest.fixture
def hx(package: str) -> Any:
    """The host package under test: httpx or httpx2."""
    return modules(package)[0]


@pytest.fixture
def sw(package: str) -> Any:
    """seawall's transports for that package."""
    return modules(package)[1]


@pytest.fixture
def drivers() -> Iterator[list[Driver]]:
    """Drivers a test made itself (append them): closed at teardown."""
    made: list[Driver] = []
    yield made
    for d in made:
        d.close()


@pytest.fixture
def make(kind: str, package: str, drivers: list[Driver]) -> Any:
    """``make(point, **options)``: a driver of this test's kind and package, closed at teardown."""

    def build(point: seawall.IntegrationPoint | None, **options: Any) -> Driver:
        d = Driver(kind, point, package=package, **options)
        drivers.append(d)
        return d

    return build
