"""``point.stats()``: the counters of one point, as one immutable snapshot (the ledger,
``_ledger.py``, keeps them and builds it)."""

from __future__ import annotations

from typing import NamedTuple


class PointStats(NamedTuple):
    """Counters of one point since it was created (or :meth:`IntegrationPoint.reset_stats`).

    ``calls`` = ``successes + failures + rejected + cancelled`` (rejected:
    refused before any attempt; cancelled: the caller cancelled, or the
    failure was classified ``cancelled``: never a failure, so
    ``failures_by_category`` has no ``cancelled`` key, as the metrics
    service has none). ``fallbacks`` counts calls answered by the fallback,
    which are also counted under their failure or rejection. ``timeouts``
    counts attempts in the ``timeout`` category, including sync attempts
    that returned after their deadline (see :class:`seawall.Timeout`).

    Fault injection (:class:`seawall.Chaos`) is counted apart, so a
    rehearsal never pollutes the real error counts: ``injected_failures``
    counts calls whose last, failed attempt was injected (not in
    ``failures``, ``failures_by_category`` nor ``timeouts``), so ``calls``
    = ``successes + failures + injected_failures + rejected + cancelled``;
    ``injected_attempts`` counts the attempts an injection shaped (also in
    ``attempts``).
    ``paused_waits`` counts attempts that waited for a server's pause to end
    (server pacing), ``rate_limit_waits`` attempts that waited for a token
    of the :class:`seawall.RateLimit`; refusals of either are under
    ``rejections["paused"]`` and ``rejections["rate_limit"]``.
    ``concurrency_limit`` is the bulkhead's limit when the snapshot was taken
    (an :class:`seawall.AdaptiveBulkhead`'s moves: its learned limit, which a
    latency probe halves for two windows now and then), ``None`` without one.
    ``hedges`` counts the extra attempts a :class:`seawall.Hedge` started,
    ``hedges_won`` the calls whose answer came from one of them.
    """

    calls: int
    successes: int
    failures: int
    rejected: int
    attempts: int
    retries: int
    fallbacks: int
    cancelled: int
    failures_by_category: dict[str, int]
    rejections: dict[str, int]
    timeouts: int = 0
    injected_attempts: int = 0
    injected_failures: int = 0
    paused_waits: int = 0
    rate_limit_waits: int = 0
    concurrency_limit: int | None = None
    hedges: int = 0
    hedges_won: int = 0
