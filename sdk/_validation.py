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
* A hedge must be due before the deadline: ``Hedge.delay x Hedge.max_extra``
  (when the last hedge starts, if no attempt answered) must be ``<``
  ``Timeout.total``, else the last hedges can never be sent.
* ``Hedge.delay`` must be ``<`` ``Timeout.attempt``: an attempt that times
  out before its hedge is due fails first, and the "hedge" is only a retry
  sent without a wait.
* ``RateLimit.max_wait`` must be ``<`` ``Timeout.total``: the deadline ends
  every wait for a token first, so a longer ``max_wait`` is never what stops
  a wait, and a call that waited that long would have no time left to run.
"""

from __future__ import annotations

from ._errors import ConfigurationError
from ._policies import CircuitBreaker, Hedge, RateLimit, Retry, Timeout


def _s(value: float) -> str:
    return f"{value!r} s"


def check_point(name: str, retry: Retry | None, breaker: CircuitBreaker | None,
                timeout: Timeout | None, *, hedge: Hedge | None = None,
                rate_limit: RateLimit | None = None) -> None:
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
    if hedge is not None:
        _check_hedge(where, hedge, attempt, total)
    if rate_limit is not None and total is not None and rate_limit.max_wait >= total:
        raise ConfigurationError(
            f"{where}: RateLimit.max_wait ({_s(rate_limit.max_wait)}) must be < Timeout.total "
            f"({_s(total)}): the deadline ends every wait for a token first, and a call that "
            f"waited that long would have no time left for its attempt"
        )


def _check_hedge(where: str, hedge: Hedge, attempt: float | None, total: float | None) -> None:
    """A hedge due after its attempt's timeout, or after the call's deadline, is refused."""
    delay = hedge.delay
    if attempt is not None and attempt <= delay:
        raise ConfigurationError(
            f"{where}: Hedge.delay ({_s(delay)}) must be < Timeout.attempt ({_s(attempt)}): "
            f"an attempt times out before its hedge is due, so the hedge is only a retry "
            f"sent without a wait"
        )
    # rounded: 0.1 x 3 is the 0.3 s a user wrote, not 0.30000000000000004
    last = round(delay * hedge.max_extra, 9)
    if total is not None and last >= total:
        raise ConfigurationError(
            f"{where}: Hedge.delay ({_s(delay)}) x Hedge.max_extra ({hedge.max_extra}) = "
            f"{_s(last)} must be < Timeout.total ({_s(total)}): the last hedge would be due "
            f"at or after the call's deadline and is never sent; lower the delay or max_extra, "
            f"or raise the total"
        )
