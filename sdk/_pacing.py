"""Server pacing: one server's "slow down" pauses every caller of the point.

When an outcome's classification carries a server delay (HTTP 429 or 503
with ``Retry-After``, a gRPC ``grpc-retry-pushback-ms`` trailer on
``RESOURCE_EXHAUSTED`` or any other status), the point stops starting
attempts until that delay has passed, for all its callers, not only the
call that retries: the dependency asked the *client* to slow down, and
every thread and task of this point is that client. The delay is capped by
``Retry.max_server_delay`` (30 s without a ``Retry``).

A server that says it is out of capacity without saying for how long (gRPC
``RESOURCE_EXHAUSTED`` with no pushback trailer) is classified as
:class:`Exhausted`: the point pauses for :func:`hintless_pause`, the
backoff's base delay (before jitter) of the retry that follows the failed
attempt (``Retry.backoff.base(n)``; the default ``Backoff.exponential()``
without a ``Retry``), capped the same way. Any other failure without a
delay pauses nothing (the retry's own backoff applies to that call).

Admission (:meth:`Execution.begin`) reads :attr:`Pacing.until`, a plain
float (one attribute read); the inline first attempts read it only once a
pause has begun (``on_pause`` opens the point's gate); an attempt that would start
before it waits until then, or is refused with
:class:`seawall.RateLimitedError` (reason ``paused``) when its deadline
comes first. ``IntegrationPoint(server_pacing=False)`` turns it off.

Sans-IO, thread-safe: pauses only ever extend (``max`` under a lock).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from ._classify import Classification
from ._errors import ConfigurationError
from ._policies import Backoff, Retry

_DEFAULT_BACKOFF = Backoff.exponential()


@dataclass(frozen=True, slots=True, eq=False)
class Exhausted(Classification):
    """A server out of capacity that gave no delay (gRPC ``RESOURCE_EXHAUSTED`` without pushback).

    Counts like the :class:`seawall.Classification` it is, and also pauses
    the point for :func:`hintless_pause`. Stays itself through
    :meth:`with_retry`; :meth:`with_delay` with a delay gives a plain
    classification (a server delay is exact and pauses for itself).
    """

    def with_retry(self, retry: bool) -> Classification:
        """The same classification (still :class:`Exhausted`) with ``retry`` replaced."""
        return Exhausted(self.category, retry, self.breaker, self.delay)

    def with_delay(self, delay: float | None) -> Classification:
        """A plain classification carrying ``delay`` (``None``: this one)."""
        if delay is None:
            return self
        return Classification(self.category, self.retry, self.breaker, delay)


def hintless_pause(retry: Retry | None, attempt: int) -> float:
    """The pause of an :class:`Exhausted` failure of attempt ``attempt`` (1-based), in seconds.

    The base delay, before jitter, of the retry that would follow it:
    ``retry.backoff.base(attempt)``, or the default backoff's without a
    ``retry``. ``0.0`` when a custom backoff's function gives no valid delay
    (its own retry reports that).
    """
    backoff = retry.backoff if retry is not None else _DEFAULT_BACKOFF
    try:
        return backoff.base(attempt)
    except ConfigurationError:
        return 0.0


def note_outcome(pacing: Pacing | None, retry: Retry | None, now: float, c: Classification,
                 attempt: int) -> bool:
    """Pause ``pacing`` for a failure of attempt ``attempt`` that asks to slow down.

    ``c.delay`` (a Retry-After, a pushback) is the pause; an :class:`Exhausted`
    failure without one pauses for :func:`hintless_pause`. True when the
    failure asked to slow down (hedging stops there, pacing on or off).
    """
    if c.delay is not None:
        if pacing is not None:
            pacing.note(now, c.delay)
        return True
    if type(c) is Exhausted:
        if pacing is not None:
            pacing.note(now, hintless_pause(retry, attempt))
        return True
    return False


class Pacing:
    """The point's pause: no new attempt starts before :attr:`until` (the point's clock)."""

    __slots__ = ("cap", "lock", "on_pause", "pauses", "until")

    def __init__(self, cap: float, on_pause: Callable[[], None] | None = None) -> None:
        self.cap = cap
        self.until = float("-inf")
        self.pauses = 0  # how many server hints started or extended a pause
        self.lock = threading.Lock()
        # told after a pause began or grew (``until`` already set): the point opens its gate
        self.on_pause = on_pause

    def note(self, now: float, delay: float) -> float:
        """A server asked for ``delay`` seconds at ``now``: pause until then (capped); the pause's end."""
        if delay <= 0.0:
            return self.until
        end = now + (delay if delay < self.cap else self.cap)
        with self.lock:
            extended = end > self.until
            if extended:
                self.until = end
                self.pauses += 1
            until = self.until
        if extended and self.on_pause is not None:
            self.on_pause()
        return until

    def remaining(self, now: float) -> float:
        """Seconds of pause left at ``now`` (``0.0``: not paused)."""
        left = self.until - now
        return left if left > 0.0 else 0.0

    def resume(self) -> None:
        """End the pause now (the point's owner knows the dependency is back)."""
        with self.lock:
            self.until = float("-inf")
