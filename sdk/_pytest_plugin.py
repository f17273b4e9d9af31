"""seawall's pytest plugin: the fixtures ``seawall_instant``, ``seawall_points``, ``seawall_events``.

Loaded with :mod:`seawall.testing` (``pytest -p seawall.testing``, or on
its own once seawall is installed: the ``pytest11`` entry point), so a
test only names the fixture it wants::

    def test_charge_retries(seawall_instant, seawall_points, seawall_events):
        charge(order)                       # backoffs skipped, decisions unchanged
        assert seawall_points["payments"].stats.retries == 2
        assert [e.delay for e in seawall_events.of(seawall.RetryEvent)]

Each fixture is undone when its test ends.
"""

from __future__ import annotations

import weakref
from collections.abc import Generator, Iterator
from typing import Any, NamedTuple, TypeVar

import pytest

from ._clock import InstantView
from ._events import Event, add_hook, remove_hook
from ._ledger import PointStats
from ._point import IntegrationPoint
from ._registry import live_points
from .testing import instant

E = TypeVar("E")


class TouchedPoint(NamedTuple):
    """A point a test called through, and its counters during that test only."""

    point: IntegrationPoint
    stats: PointStats


_GAUGES = frozenset({"concurrency_limit"})  # PointStats fields that are levels, not counts


def _minus(now: PointStats, before: PointStats | None) -> PointStats:
    if before is None:
        return now
    values: list[Any] = []
    for field in PointStats._fields:
        a, b = getattr(now, field), getattr(before, field)
        if field in _GAUGES:  # a level, not a count: the value now
            values.append(a)
            continue
        values.append({k: v - b.get(k, 0) for k, v in a.items()} if isinstance(a, dict) else a - b)
    return PointStats(*values)


class TouchedPoints:
    """The points a test touched (calls counted since it began), each with its stats.

    Read when asked, so it is current at any line of the test: iterate for
    :class:`TouchedPoint` s (in no particular order), index by point name
    (``points["payments"].stats.retries``), ``names()``. Points made
    before the test count only what the test did; points made inside it,
    everything. Only live points are seen (a point already garbage
    collected is gone); two live points with one name: indexing by it is an error.
    """

    def __init__(self) -> None:
        self._before: weakref.WeakKeyDictionary[IntegrationPoint, PointStats] = (
            weakref.WeakKeyDictionary((p, p.stats()) for p in live_points())
        )

    def touched(self) -> list[TouchedPoint]:
        """Every point with a call counted during the test, with its counters since."""
        found = []
        for point in live_points():
            stats = _minus(point.stats(), self._before.get(point))
            if stats.calls or stats.attempts:
                found.append(TouchedPoint(point, stats))
        return found

    def names(self) -> list[str]:
        """The touched points' names, sorted."""
        return sorted(t.point.name for t in self.touched())

    def __iter__(self) -> Iterator[TouchedPoint]:
        return iter(self.touched())

    def __len__(self) -> int:
        return len(self.touched())

    def __contains__(self, name: object) -> bool:
        return any(t.point.name == name for t in self.touched())

    def __getitem__(self, name: str) -> TouchedPoint:
        matches = [t for t in self.touched() if t.point.name == name]
        if not matches:
            raise KeyError(f"no point named {name!r} was touched; touched: {self.names()}")
        if len(matches) > 1:
            raise KeyError(f"{len(matches)} touched points are named {name!r}")
        return matches[0]

    def report(self) -> str:
        """One line per touched point: calls, successes, failures, retries, rejections."""
        lines = []
        for t in sorted(self.touched(), key=lambda t: t.point.name):
            s = t.stats
            lines.append(f"{t.point.name}: calls={s.calls} successes={s.successes} "
                         f"failures={s.failures} attempts={s.attempts} retries={s.retries} "
                         f"rejected={s.rejected} fallbacks={s.fallbacks}")
        return "\n".join(lines) or "(no point touched)"


class Events(list[Event]):
    """Every event (``seawall.AttemptEvent``, ``CallEvent``...) of every point, in order."""

    def of(self, kind: type[E], point: str | None = None) -> list[E]:
        """The events of type ``kind`` (of the point named ``point``, when given)."""
        return [e for e in self if isinstance(e, kind)
                and (point is None or getattr(e, "point", None) == point)]


@pytest.fixture
def seawall_instant() -> Generator[InstantView, None, None]:
    """The test runs inside ``seawall.testing.instant()``; the fixture is its view of time."""
    with instant() as view:
        yield view


@pytest.fixture
def seawall_points(request: pytest.FixtureRequest) -> Generator[TouchedPoints, None, None]:
    """The points this test touched, each with its stats during the test (:class:`TouchedPoints`).

    A failed test's report shows them (section "seawall points").
    """
    points = TouchedPoints()
    yield points
    request.node.add_report_section("teardown", "seawall points", points.report())


@pytest.fixture
def seawall_events() -> Generator[Events, None, None]:
    """Every event any point emitted during this test, from any thread (:class:`Events`)."""
    events = Events()
    add_hook(events.append)
    try:
        yield events
    finally:
        remove_hook(events.append)
