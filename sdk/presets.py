"""Presets: integration points with documented numbers for four kinds of dependency.

``seawall.presets.http_api("payments")`` is an :class:`IntegrationPoint`
with every policy set for a typical HTTP API; ``**overrides`` replace any
keyword of the point (``retry=None`` turns retries off, ``timeout=...``
replaces the timeouts). Each preset's numbers, and why they differ from
Microsoft's standard resilience handler, are in ``docs/presets.md``;
:func:`options` gives them as keyword arguments (what the config file's
``preset = "http_api"`` starts from). Every preset passes the point's
cross-option validation.

=============  ==========  ============  =======================  ==================
preset         attempts    first wait    timeout attempt / total  breaker
=============  ==========  ============  =======================  ==================
http_api       3           200 ms        5 s / 15 s               50 % over 30 s
grpc_service   3           100 ms        2 s / 6 s                50 % of 100 calls
database       3           50 ms         5 s / 10 s               50 % of 50 calls
llm_api        4           1 s           120 s / 300 s            80 % over 300 s
=============  ==========  ============  =======================  ==================

Every preset keeps server pacing on (one ``429`` / ``Retry-After`` or gRPC
pushback pauses every caller, for up to ``Retry.max_server_delay``), sets no
:class:`RateLimit` (a quota is the dependency's contract, not a kind's),
uses a fixed :class:`Bulkhead` (not an :class:`AdaptiveBulkhead`) and no
:class:`Hedge`; ``docs/presets.md`` says why, and how to turn each on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._errors import ConfigurationError
from ._point import IntegrationPoint
from ._policies import Backoff, Bulkhead, CircuitBreaker, Retry, RetryBudget, Timeout

# what no preset turns on (docs/presets.md says why): no rate limit, no hedge, no chaos;
# server pacing on, as IntegrationPoint has it by default
_BESIDES: dict[str, Any] = {"rate_limit": None, "server_pacing": True, "hedge": None,
                            "chaos": None}

__all__ = ["NAMES", "database", "grpc_service", "http_api", "llm_api", "options"]


def _retry(attempts: int, *, initial: float, maximum: float, ratio: float, per_second: float,
           server_delay: float) -> Retry:
    """Every preset's retry: exponential backoff (x2, full jitter) from ``initial`` up to
    ``maximum``, under a budget of ``ratio`` (``per_second`` at least), a server's delay
    honoured up to ``server_delay``."""
    return Retry(attempts=attempts,
                 backoff=Backoff.exponential(initial=initial, multiplier=2.0, maximum=maximum,
                                             jitter="full"),
                 budget=RetryBudget(ratio=ratio, minimum_per_second=per_second),
                 max_server_delay=server_delay)


def _http_api() -> dict[str, Any]:
    return {
        "retry": _retry(3, initial=0.2, maximum=2.0, ratio=0.2, per_second=10.0,
                        server_delay=10.0),
        "breaker": CircuitBreaker(failure_rate=0.5, minimum_calls=20, window=30.0,
                                  window_kind="time", buckets=10, open_for=10.0,
                                  open_for_multiplier=2.0, open_for_max=120.0,
                                  half_open_calls=3),
        "bulkhead": Bulkhead(max_concurrent=100, max_wait=0.05),
        "timeout": Timeout(attempt=5.0, total=15.0),
    }


def _grpc_service() -> dict[str, Any]:
    return {
        "retry": _retry(3, initial=0.1, maximum=1.0, ratio=0.2, per_second=10.0,
                        server_delay=5.0),
        "breaker": CircuitBreaker(failure_rate=0.5, minimum_calls=20, window=100,
                                  open_for=5.0, open_for_multiplier=2.0, open_for_max=60.0,
                                  half_open_calls=3),
        "bulkhead": Bulkhead(max_concurrent=100, max_wait=0.0),
        "timeout": Timeout(attempt=2.0, total=6.0),
    }


def _database() -> dict[str, Any]:
    return {
        "retry": _retry(3, initial=0.05, maximum=0.5, ratio=0.1, per_second=5.0,
                        server_delay=1.0),
        "breaker": CircuitBreaker(failure_rate=0.5, minimum_calls=10, window=50,
                                  open_for=5.0, open_for_multiplier=2.0, open_for_max=60.0,
                                  half_open_calls=2),
        "bulkhead": Bulkhead(max_concurrent=15, max_wait=2.0),
        "timeout": Timeout(attempt=5.0, total=10.0),
    }


def _llm_api() -> dict[str, Any]:
    # 429-heavy: server pacing on, said here rather than left to the default (one 429 pauses
    # every caller, up to the 60 s max_server_delay); no hedge: a duplicate generation is
    # paid twice
    return {
        "server_pacing": True,
        "hedge": None,
        "retry": _retry(4, initial=1.0, maximum=20.0, ratio=0.1, per_second=1.0,
                        server_delay=60.0),
        "breaker": CircuitBreaker(failure_rate=0.8, minimum_calls=10, window=300.0,
                                  window_kind="time", buckets=10, open_for=30.0,
                                  open_for_multiplier=2.0, open_for_max=300.0,
                                  half_open_calls=1),
        "bulkhead": Bulkhead(max_concurrent=16, max_wait=5.0),
        "timeout": Timeout(attempt=120.0, total=300.0),
    }


_PRESETS: dict[str, Callable[[], dict[str, Any]]] = {
    "http_api": _http_api,
    "grpc_service": _grpc_service,
    "database": _database,
    "llm_api": _llm_api,
}

NAMES: tuple[str, ...] = tuple(_PRESETS)
"""The presets' names, as the config file's ``preset =`` takes them."""


def options(preset: str) -> dict[str, Any]:
    """The keyword arguments of preset ``preset`` (a fresh dict of frozen policies).

    Every keyword a preset decides: ``retry``, ``breaker``, ``bulkhead``,
    ``timeout``, and ``rate_limit``, ``server_pacing``, ``hedge``, ``chaos``
    (``None``, ``True``, ``None``, ``None`` in every preset).
    """
    try:
        make = _PRESETS[preset]
    except (KeyError, TypeError):  # TypeError: not even a name (a list, say)
        raise ConfigurationError(
            f"unknown preset {preset!r}; the presets are {', '.join(NAMES)}",
            field="preset", value=preset, complaint=f"must be one of {', '.join(NAMES)}",
        ) from None
    return {**_BESIDES, **make()}  # a preset's own error is not an unknown name


def _build(preset: str, name: str, overrides: dict[str, Any]) -> IntegrationPoint:
    return IntegrationPoint(name, **{**options(preset), **overrides})


def http_api(name: str, **overrides: Any) -> IntegrationPoint:
    """A public or partner HTTP API called while a user waits (see the module's table).

    Three attempts from 200 ms (full jitter, at most 2 s, ``Retry-After``
    honoured up to 10 s) under a retry budget; a breaker opening at 50 %
    failures over 30 s (at least 20 calls) for 10 s, doubling per opening
    up to 2 min; 100 calls in flight (a 50 ms queue); 5 s per attempt,
    15 s in all. ``overrides`` replace any keyword of the point.
    """
    return _build("http_api", name, overrides)


def grpc_service(name: str, **overrides: Any) -> IntegrationPoint:
    """An internal gRPC service (see the module's table).

    Three attempts from 100 ms (at most 1 s, pushback honoured up to 5 s)
    under a budget; a count breaker, 50 % of the last 100 calls (20 at
    least), open 5 s doubling to 1 min; 100 in flight, no queue (HTTP/2's
    usual stream limit per connection); 2 s per attempt, 6 s in all.
    """
    return _build("grpc_service", name, overrides)


def database(name: str, **overrides: Any) -> IntegrationPoint:
    """A relational database behind SQLAlchemy (see the module's table).

    Three attempts from 50 ms (at most 500 ms) under a tight budget (10 %):
    the SQLAlchemy classifier retries only disconnects and safe statements;
    a count breaker, 50 % of 50 calls (10 at least), open 5 s doubling to
    1 min; 15 in flight with a 2 s queue (SQLAlchemy's default pool:
    5 + 10 overflow); 5 s per attempt (the statement timeout), 10 s in all.
    """
    return _build("database", name, overrides)


def llm_api(name: str, **overrides: Any) -> IntegrationPoint:
    """A hosted model API: long calls, frequent 429s (see the module's table).

    Four attempts from 1 s (at most 20 s), a server's ``Retry-After`` obeyed
    up to 60 s, under a 10 % budget; a breaker that opens only at 80 %
    failures over 5 min (10 calls at least; 429s are normal traffic) for
    30 s, doubling to 5 min, one trial call; 16 in flight with a 5 s queue;
    2 min per attempt, 5 min in all. Server pacing on (one 429 pauses every
    caller, up to the 60 s cap); no hedging (a duplicate generation is paid
    twice).
    """
    return _build("llm_api", name, overrides)
