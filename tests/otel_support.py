"""Helpers of the OpenTelemetry tests: a real SDK provider with its in-memory reader."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.metrics.view import View

Points = dict[str, list[tuple[dict[str, Any], Any]]]


@contextmanager
def sdk_provider(*views: View) -> Iterator[tuple[MeterProvider, InMemoryMetricReader]]:
    """An SDK meter provider reading into memory (cumulative), shut down afterwards."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader], views=list(views))
    try:
        yield provider, reader
    finally:
        provider.shutdown()


def read(reader: InMemoryMetricReader) -> Points:
    """Collect now: each seawall metric's data points as (attributes, point) pairs."""
    out: Points = {}
    data = reader.get_metrics_data()
    if data is None:
        return out
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            if scope.scope.name != "seawall":
                continue
            for metric in scope.metrics:
                for dp in metric.data.data_points:
                    out.setdefault(metric.name, []).append((dict(dp.attributes), dp))
    return out


def _matches(attributes: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    return all(attributes.get(f"seawall.{k}") == v for k, v in wanted.items())


def total(points: Points, name: str, **wanted: Any) -> int:
    """The sum of the values (histograms: the counts) of ``name`` whose attributes match.

    ``wanted`` names attributes without their ``seawall.`` prefix: ``point="x"``.
    """
    found = 0
    for attributes, dp in points.get(name, []):
        if _matches(attributes, wanted):
            found += dp.count if hasattr(dp, "count") else dp.value
    return int(found)


def series(points: Points, name: str, **wanted: Any) -> list[tuple[dict[str, Any], Any]]:
    """The data points of ``name`` whose attributes match ``wanted`` (see :func:`total`)."""
    return [(a, dp) for a, dp in points.get(name, []) if _matches(a, wanted)]


def gauge(points: Points, name: str, point: str) -> int | None:
    """The value of a gauge for ``point``, or ``None`` when it reports none."""
    found = series(points, name, point=point)
    assert len(found) <= 1, found
    return int(found[0][1].value) if found else None
