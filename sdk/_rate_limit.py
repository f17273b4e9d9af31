"""Rate limit runtime: a token bucket per point, shared by threads and event loops.

A bucket of ``burst`` tokens refills at ``rate`` tokens per second; each
attempt takes one. An attempt that finds it empty does not queue on a lock:
it *reserves* the next token, driving the count below zero, and is told how
long to wait for it (``(1 - tokens) / rate`` seconds). The shell then waits
that long through the point's clock (so a fake clock makes tests instant),
holding nothing. Waiters are served in arrival order by construction: each
reservation made later finds the count lower and waits longer. A waiter
that gives up (cancelled) hands its token back with :meth:`refund`.

Sans-IO: told the time, never waits; the lock guards a few float
operations only. Thread-safe.
"""

from __future__ import annotations

import threading

from ._policies import RateLimit


class TokenBucket:
    """The token bucket of one :class:`seawall.RateLimit` (see the module docstring).

    ``tokens`` may be negative: that many reservations are waiting for
    tokens still to come. ``stamp`` is the time up to which the refill is
    accounted (it may lie in the future, when a reservation was made for the
    end of a server's pause).
    """

    __slots__ = ("burst", "lock", "max_wait", "rate", "stamp", "tokens")

    def __init__(self, policy: RateLimit, now: float) -> None:
        self.rate = float(policy.rate)
        self.burst = float(policy.burst or 1)
        self.max_wait = float(policy.max_wait)
        self.tokens = self.burst
        self.stamp = now
        self.lock = threading.Lock()

    def _refill(self, at: float) -> None:
        # callers hold the lock
        if at > self.stamp:
            tokens = self.tokens + (at - self.stamp) * self.rate
            self.tokens = tokens if tokens < self.burst else self.burst
            self.stamp = at

    def try_take(self, now: float) -> bool:
        """Take a token if one is there at ``now``, without waiting (the shells' hot path)."""
        with self.lock:
            self._refill(now)
            if self.tokens >= 1.0:
                self.tokens -= 1.0
                return True
            return False

    def reserve(self, at: float, max_wait: float) -> float | None:
        """Reserve the next token for an attempt starting no earlier than ``at``.

        Returns the seconds after ``at`` to wait for it (``0.0``: one is there
        now), or ``None`` when that wait would exceed ``max_wait`` (nothing is
        reserved then).
        """
        with self.lock:
            self._refill(at)
            if self.tokens >= 1.0:
                self.tokens -= 1.0
                return 0.0
            wait = (1.0 - self.tokens) / self.rate
            if wait > max_wait:
                return None
            self.tokens -= 1.0
            return wait

    def wait_for(self, at: float) -> float:
        """Seconds after ``at`` until a token would be free (``0.0``: one is there)."""
        with self.lock:
            self._refill(at)
            return max(0.0, (1.0 - self.tokens) / self.rate)

    def refund(self) -> None:
        """Give back a token taken or reserved but not used (its attempt never started)."""
        with self.lock:
            tokens = self.tokens + 1.0
            self.tokens = tokens if tokens < self.burst else self.burst

    @property
    def available(self) -> float:
        """Tokens in the bucket at the last refill (negative: reservations waiting)."""
        return self.tokens
