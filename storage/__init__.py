"""seawall.storage: persist metrics, serve them over gRPC, query them.

* :func:`persist_metrics` starts a :class:`Recorder` that counts every
  point's events in memory and writes them to a :class:`Store` (SQLite by
  default, any SQLAlchemy URL) from one background thread.
* :func:`serve` runs the metrics service (``seawall serve`` on the command
  line) over a store; :class:`MetricsClient` (``seawall stats``) reads it.
* :func:`serve_http` serves the dashboard, ``/metrics`` (Prometheus) and a
  JSON API (``seawall serve --http``); :func:`prometheus_collector` puts
  seawall's metrics on an application's own ``prometheus_client`` registry.
"""

from ._client import MetricsClient
from ._http import WebServer, serve_http
from ._prometheus import SeawallCollector, prometheus_collector
from ._recorder import Recorder, persist_metrics
from ._service import MetricsServer, serve
from ._store import Store
from ._types import (
    MetricsQueryError,
    MetricsServiceError,
    PointInfo,
    SeriesBucket,
    Stats,
    Summary,
    Transition,
)

__all__ = [
    "MetricsClient",
    "MetricsQueryError",
    "MetricsServer",
    "MetricsServiceError",
    "PointInfo",
    "Recorder",
    "SeawallCollector",
    "SeriesBucket",
    "Stats",
    "Store",
    "Summary",
    "Transition",
    "WebServer",
    "persist_metrics",
    "prometheus_collector",
    "serve",
    "serve_http",
]
