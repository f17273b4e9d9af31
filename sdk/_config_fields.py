"""The keys each table of a config file takes, and the kind of TOML value each holds.

The checks here are the ones only the reader can make: the type a TOML value
must have (a string where a number goes, a list of names), and the keys a
table may hold. Each takes a value as TOML gave it and returns the complaint
(``"must be an integer"``) or ``None``; the reader adds the file, the key
path and the value. Ranges and the rules between fields are the policies'
own (``_policies.py``): the reader builds the policy and words its
:class:`ConfigurationError` (``field``, ``value``, ``complaint``) under the
key path. :data:`FIELDS` maps each policy to its table's keys.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

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

Check = Callable[[Any], str | None]  # the complaint about a value, or None when it is fine


def _number(v: Any) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, float))


def integer(v: Any) -> str | None:
    return None if not isinstance(v, bool) and isinstance(v, int) else "must be an integer"


def count(v: Any) -> str | None:
    """A whole number the policy wants >= 1; the wording says so, the range is the policy's."""
    return None if not isinstance(v, bool) and isinstance(v, int) else "must be an integer ≥ 1"


def number(v: Any) -> str | None:
    return None if _number(v) else "must be a number"


def seconds(v: Any) -> str | None:
    return None if _number(v) else "must be a number of seconds"


def one_of(*choices: str) -> Check:
    def check(v: Any) -> str | None:
        return None if v in choices else f"must be one of {', '.join(choices)}"
    return check


def boolean(v: Any) -> str | None:
    return None if isinstance(v, bool) else "must be true or false"


def anything(v: Any) -> str | None:
    return None


def names(v: Any) -> str | None:
    if isinstance(v, list) and all(isinstance(x, str) for x in v):
        return None
    return "must be a list of strings"


def text(v: Any) -> str | None:
    return None if isinstance(v, str) and v else "must be a non-empty string"


def string(v: Any) -> str | None:
    return None if isinstance(v, str) else "must be a string"


def fault(v: Any) -> str | None:
    if (isinstance(v, str) and v) or isinstance(v, dict):
        return None
    return 'must be a name ("module:attribute") or a table { class = "...", message = "..." }'


# the fields each policy table takes, and what each value must be
FIELDS: dict[type, dict[str, Check]] = {
    Retry: {"attempts": count, "on": names, "max_server_delay": seconds,
            "backoff": anything, "budget": anything},
    Backoff: {"kind": string, "initial": seconds, "step": seconds, "multiplier": number,
              "maximum": seconds, "jitter": string, "function": text},
    RetryBudget: {"ratio": number, "minimum_per_second": number, "period": seconds},
    CircuitBreaker: {"failure_rate": number, "minimum_calls": count, "window": number,
                     "window_kind": string, "buckets": count, "slow_call_duration": seconds,
                     "slow_call_rate": number, "open_for": seconds,
                     "open_for_multiplier": number, "open_for_max": seconds,
                     "half_open_calls": count},
    # kind is the reader's own: it chooses the class
    Bulkhead: {"kind": one_of("fixed", "adaptive"), "max_concurrent": count,
               "max_wait": seconds},
    AdaptiveBulkhead: {"kind": one_of("fixed", "adaptive"), "initial": count,
                       "minimum": count, "maximum": count, "max_wait": seconds,
                       "tolerance": number, "smoothing": number},
    Timeout: {"attempt": seconds, "total": seconds},
    Fallback: {"value": anything, "handler": text, "on": names, "on_rejection": boolean},
    RateLimit: {"rate": number, "burst": count, "max_wait": seconds},
    Hedge: {"delay": seconds, "max_extra": count, "on": names},
    Chaos: {"fault_rate": number, "fault": fault, "latency_rate": number, "latency": seconds,
            "result_rate": number, "result": anything, "result_name": text, "seed": integer,
            "enabled": boolean},
}
# a fault written as a table: the exception class and the message it is made with
FAULT_FIELDS: dict[str, Check] = {"class": text, "message": string}
POLICIES: dict[str, type] = {"retry": Retry, "breaker": CircuitBreaker, "bulkhead": Bulkhead,
                             "timeout": Timeout, "fallback": Fallback,
                             "rate_limit": RateLimit, "hedge": Hedge, "chaos": Chaos}
