"""pytest fixtures for the httpx transport tests: the scripted server and drivers of each kind.

Load with ``pytest_plugins = ["tests.http_fixtures"]`` in the test module.
Each test taking ``make`` runs for the sync and the async transport of
every host package installed (httpx, httpx2).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import seawall
from tests.http_support import PACKAGES, Driver, ScriptedServer


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
def make(kind: str, package: str) -> Iterator[Any]:
    """``make(point, **options)``: a driver of this test's kind and package, closed at teardown."""
    made: list[Driver] = []

    def build(point: seawall.IntegrationPoint, **options: Any) -> Driver:
        d = Driver(kind, point, package=package, **options)
        made.append(d)
        return d

    yield build
    for d in made:
        d.close()
