"""Checks across a point's policies, at construction: options that contradict each other.

Each policy validates its own fields (``_policies.py``); some mistakes only
show when two policies meet. :func:`check_point` runs once, at the end of
``IntegrationPoint.__init__``, for every point (presets and config files
included), and raises :class:`ConfigurationError` naming both fields and
their values:

* ``Timeout.attempt`` must be ``<=`` ``Timeout.total``: an attempt cannot
  outlive the call it belongs to.
* A time-window breaker's ``window`` must be ``>=`` twice the attempt
  timeout (``Timeout.attempt``, else ``Timeout.total``): an outcome is
  recorded when its attempt ends, so attempts as long as half the window
  land in a window that no longer holds the calls made with them, and a
  failing dependency is judged on a handful of late outcomes.
* The waits a retry policy asks for must fit in ``Timeout.total``:
  ``attempts - 1`` waits of at least the backoff's smallest delay (its
  ``initial``; jitter only spreads delays, a custom backoff is not asked).
  Otherwise the last retries are refused by the deadline, every time.
"""

from __future__ import annotations

from ._errors import ConfigurationError
from ._policies import CircuitBreaker, Retry, Timeout


def _s(value: float) -> str:
    return f"{value!r} s"


def check_point(name: str, retry: Retry | None, breaker: CircuitBreaker | None,
                timeout: Timeout | None) -> None:
    """Raise :class:`ConfigurationError` when the point's policies contradict each other."""
    if timeout is None:
        return
    where = f"IntegrationPoint {name!r}"
    attempt, total = timeout.attempt, timeout.total
    if attempt is not None and total is not None and attempt > total:
        raise ConfigurationError(
            f"{where}: Timeout.attempt ({_s(attempt)}) must be <= Timeout.total ({_s(total)})"
        )
    limit, field = (attempt, "Timeout.attempt") if attempt is not None else (total, "Timeout.total")
    if breaker is not None and breaker.window_kind == "time" and limit is not None \
            and breaker.window < 2 * limit:
        raise ConfigurationError(
            f"{where}: CircuitBreaker.window ({_s(breaker.window)}, a time window) must be "
            f">= 2 x {field} ({_s(limit)}) = {_s(2 * limit)}: attempts that long land their "
            f"outcomes in a window that no longer holds their calls"
        )
    if retry is not None and total is not None and retry.attempts > 1 \
            and retry.backoff.kind != "custom":
        waits = retry.attempts - 1
        smallest = retry.backoff.initial
        if waits * smallest >= total:
            raise ConfigurationError(
                f"{where}: Retry.attempts ({retry.attempts}) asks for {waits} waits of at least "
                f"Backoff.initial ({_s(smallest)}) = {_s(waits * smallest)}, which do not fit in "
                f"Timeout.total ({_s(total)}); lower the attempts or the backoff, or raise the "
                f"total"
            )
