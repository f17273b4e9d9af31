"""seawall: keep a service standing when what it depends on fails.

Describe each integration point once with its policy, then apply it to a
gRPC channel, an httpx client, a SQLAlchemy engine or any function.
"""

from . import presets as presets  # seawall.presets.http_api(...)
from . import testing as testing  # seawall.testing.instant()
from ._breaker import BreakerState
from ._classify import Category, Classification, Classifier
from ._clock import Clock, SystemClock
from ._config import load_points
from ._deadline import remaining
from ._errors import (
    BulkheadFullError,
    CircuitOpenError,
    ConfigurationError,
    DeadlineExceeded,
    RateLimitedError,
    RejectedError,
    ResultFailure,
    SeawallError,
)
from ._events import (
    AttemptEvent,
    BreakerTransition,
    CallEvent,
    Event,
    HedgeEvent,
    RejectionEvent,
    RetryEvent,
    WaitEvent,
    add_hook,
    remove_hook,
)
from ._execution import Execution
from ._ledger import PointStats
from ._observer import Observer
from ._otel import otel_metrics
from ._point import IntegrationPoint
from ._policies import (
    AdaptiveBulkhead,
    Backoff,
    Bulkhead,
    Chaos,
    CircuitBreaker,
    Fallback,
    Hedge,
    RateLimit,
    Retry,
    RetryBudget,
    Timeout,
)
from ._recording import persist_metrics

__all__ = [
    "AdaptiveBulkhead",
    "AttemptEvent",
    "Backoff",
    "BreakerState",
    "BreakerTransition",
    "Bulkhead",
    "BulkheadFullError",
    "CallEvent",
    "Category",
    "Chaos",
    "CircuitBreaker",
    "CircuitOpenError",
    "Classification",
    "Classifier",
    "Clock",
    "ConfigurationError",
    "DeadlineExceeded",
    "Event",
    "Execution",
    "Fallback",
    "Hedge",
    "HedgeEvent",
    "IntegrationPoint",
    "Observer",
    "PointStats",
    "RateLimit",
    "RateLimitedError",
    "RejectedError",
    "RejectionEvent",
    "ResultFailure",
    "Retry",
    "RetryBudget",
    "RetryEvent",
    "SeawallError",
    "SystemClock",
    "Timeout",
    "WaitEvent",
    "add_hook",
    "load_points",
    "otel_metrics",
    "persist_metrics",
    "remaining",
    "remove_hook",
]

__version__ = "0.1.0"
