"""Every live integration point, held weakly, for exporters that read live state.

A point registers itself when it is built; it leaves when it is garbage
collected (nothing here keeps one alive). Exporters of gauges (the
breaker's state, the bulkhead's calls in flight) read the points at
collection time through :func:`live_points`. Thread-safe.
"""

from __future__ import annotations

import threading
import weakref
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
