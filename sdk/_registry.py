"""Every live integration point, held weakly, for exporters that read live state.

A point registers itself when it is built; it leaves when it is garbage
collected (nothing here keeps one alive). Exporters of gauges (the
breaker's state, the bulkhead's calls in flight) read the points at
collection time through :func:`live_points`. Thread-safe.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Container
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._point import IntegrationPoint

_lock = threading.Lock()
# a WeakSet tolerates a point collected while it is iterated, not one added from another
# thread meanwhile: additions and snapshots take the lock
_points: weakref.WeakSet[IntegrationPoint] = weakref.WeakSet()


def register(point: IntegrationPoint) -> None:
    """Add ``point`` (called once, from ``IntegrationPoint.__init__``)."""
    with _lock:
        _points.add(point)


def live_points() -> list[IntegrationPoint]:
    """The points alive now, in no particular order."""
    with _lock:
        return list(_points)


def concurrency_limits(names: Container[str] | None = None) -> dict[str, int]:
    """The bulkhead's limit of each live point that has one, summed per name.

    Points sharing a name are one series, so their limits add up. With
    ``names``, only points of those names are read (each read takes a
    point's stats snapshot).
    """
    total: dict[str, int] = {}
    for point in live_points():
        if point.permits is not None and (names is None or point.name in names):
            limit = point.stats().concurrency_limit
            if limit is not None:
                total[point.name] = total.get(point.name, 0) + limit
    return total
