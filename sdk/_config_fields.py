"""The keys each table of a config file takes, and what each value must be (``_config.py``).

Each check takes a value as TOML gave it and returns the complaint (``"must
be an integer ≥ 1"``) or ``None``; the reader adds the file, the key path and
the value. :data:`FIELDS` maps each policy to its table's keys.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from ._policies import (
    JITTERS,
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



def _number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) \
        and not math.isnan(value) and not math.isinf(value)


def _int(v: Any) -> bool:
    return not isinstance(v, bool) and isinstance(v, int)


def integer(minimum: int) -> Check:
    def check(v: Any) -> str | None:
        return None if _int(v) and v >= minimum else f"must be an integer ≥ {minimum}"
    return check


def integer_in(low: int, high: int) -> Check:
    def check(v: Any) -> str | None:
        return None if _int(v) and low <= v <= high else f"must be an integer in [{low}, {high}]"
    return check


def whole(v: Any) -> str | None:
    return None if _int(v) else "must be an integer"


def seconds(*, positive: bool) -> Check:
    def check(v: Any) -> str | None:
        if _number(v) and (v > 0 if positive else v >= 0):
            return None
        return f"must be a number of seconds {'> 0' if positive else '≥ 0'}"
    return check


def at_least(low: float) -> Check:
    def check(v: Any) -> str | None:
        return None if _number(v) and v >= low else f"must be a number ≥ {low:g}"
    return check


def positive(v: Any) -> str | None:
    return None if _number(v) and v > 0 else "must be a number > 0"


def rate(*, zero: bool) -> Check:
    def check(v: Any) -> str | None:
        if _number(v) and (v >= 0 if zero else v > 0) and v <= 1:
            return None
        return f"must be a number in {'[0, 1]' if zero else '(0, 1]'}"
    return check


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
    Retry: {"attempts": integer(1), "on": names, "max_server_delay": seconds(positive=False),
            "backoff": anything, "budget": anything},
    Backoff: {"kind": one_of("constant", "linear", "exponential", "custom"),
              "initial": seconds(positive=False), "step": seconds(positive=False),
              "multiplier": at_least(1), "maximum": seconds(positive=False),
              "jitter": one_of(*JITTERS), "function": text},
    RetryBudget: {"ratio": rate(zero=True), "minimum_per_second": at_least(0),
                  "period": seconds(positive=True)},
    CircuitBreaker: {"failure_rate": rate(zero=False), "minimum_calls": integer(1),
                     "window": positive, "window_kind": one_of("count", "time"),
                     "buckets": integer(1), "slow_call_duration": seconds(positive=True),
                     "slow_call_rate": rate(zero=False), "open_for": seconds(positive=True),
                     "open_for_multiplier": at_least(1), "open_for_max": seconds(positive=True),
                     "half_open_calls": integer(1)},
    Bulkhead: {"kind": one_of("fixed", "adaptive"), "max_concurrent": integer(1),
               "max_wait": seconds(positive=False)},
    AdaptiveBulkhead: {"kind": one_of("fixed", "adaptive"), "initial": integer(1),
                       "minimum": integer(1), "maximum": integer(1),
                       "max_wait": seconds(positive=False), "tolerance": at_least(1),
                       "smoothing": rate(zero=False)},
    Timeout: {"attempt": seconds(positive=True), "total": seconds(positive=True)},
    Fallback: {"value": anything, "handler": text, "on": names, "on_rejection": boolean},
    RateLimit: {"rate": positive, "burst": integer(1), "max_wait": seconds(positive=False)},
    Hedge: {"delay": seconds(positive=False), "max_extra": integer_in(1, 10), "on": names},
    Chaos: {"fault_rate": rate(zero=True), "fault": fault, "latency_rate": rate(zero=True),
            "latency": seconds(positive=False), "result_rate": rate(zero=True),
            "result": anything, "result_name": text, "seed": whole, "enabled": boolean},
}
# a fault written as a table: the exception class and the message it is made with
FAULT_FIELDS: dict[str, Check] = {"class": text, "message": string}
POLICIES: dict[str, type] = {"retry": Retry, "breaker": CircuitBreaker, "bulkhead": Bulkhead,
                             "timeout": Timeout, "fallback": Fallback,
                             "rate_limit": RateLimit, "hedge": Hedge, "chaos": Chaos}
