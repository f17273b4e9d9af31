"""Policies: immutable, validated values. Runtime state lives in the point.

Each policy is a frozen dataclass that checks its own fields in
``__post_init__`` and raises :class:`ConfigurationError` naming the field
and the value (with ``field``, ``value`` and ``complaint`` as attributes).
They live by family; every name is importable from here, as before:

* ``_policy_retry.py``: :class:`Retry`, :class:`Backoff` (and its jitters),
  :class:`RetryBudget`;
* ``_policy_limits.py``: :class:`CircuitBreaker`, :class:`Bulkhead`,
  :class:`AdaptiveBulkhead`, :class:`RateLimit`;
* ``_policy_time.py``: :class:`Timeout`, :class:`Hedge`;
* ``_policy_failures.py``: :class:`Fallback`, :class:`Chaos`;
* ``_policy_checks.py``: the field checks they share.
"""

from __future__ import annotations

from ._policy_failures import Chaos, Fallback
from ._policy_limits import AdaptiveBulkhead, Bulkhead, CircuitBreaker, RateLimit
from ._policy_retry import JITTERS, Backoff, Jitter, Retry, RetryBudget
from ._policy_time import Hedge, Timeout

__all__ = [
    "JITTERS",
    "AdaptiveBulkhead",
    "Backoff",
    "Bulkhead",
    "Chaos",
    "CircuitBreaker",
    "Fallback",
    "Hedge",
    "Jitter",
    "RateLimit",
    "Retry",
    "RetryBudget",
    "Timeout",
]
