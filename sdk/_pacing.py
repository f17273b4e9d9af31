"""Server pacing: one server's "slow down" pauses every caller of the point.

When an outcome's classification carries a server delay (HTTP 429 or 503
with ``Retry-After``, a gRPC ``grpc-retry-pushback-ms`` trailer on
``RESOURCE_EXHAUSTED`` or any other status), the point stops starting
attempts until that delay has passed, for all its callers, not only the
call that retries: the dependency asked the *client* to slow down, and
every thread and task of this point is that client. The delay is capped by
``Retry.max_server_delay`` (30 s without a ``Retry``). A status without a
delay hint pauses nothing (the retry's own backoff applies to that call).

Admission (:meth:`Execution.begin`) reads :attr:`Pacing.until`, a plain
float (one attribute read on the hot path); an attempt that would start
before it waits until then, or is refused with
:class:`seawall.RateLimitedError` (reason ``paused``) when its deadline
comes first. ``IntegrationPoint(server_pacing=False)`` turns it off.

Sans-IO, thread-safe: pauses only ever extend (``max`` under a lock).
"""

from __future__ import annotations

import threading


class Pacing:
    """The point's pause: no new attempt starts before :attr:`until` (the point's clock)."""

    __slots__ = ("cap", "lock", "pauses", "until")

    def __init__(self, cap: float) -> None:
        self.cap = cap
        self.until = float("-inf")
        self.pauses = 0  # how many server hints started or extended a pause
        self.lock = threading.Lock()

    def note(self, now: float, delay: float) -> float:
        """A server asked for ``delay`` seconds at ``now``: pause until then (capped); the pause's end."""
        if delay <= 0.0:
            return self.until
        end = now + (delay if delay < self.cap else self.cap)
        with self.lock:
            if end > self.until:
                self.until = end
                self.pauses += 1
            return self.until

    def remaining(self, now: float) -> float:
        """Seconds of pause left at ``now`` (``0.0``: not paused)."""
        left = self.until - now
        return left if left > 0.0 else 0.0

    def resume(self) -> None:
        """End the pause now (the point's owner knows the dependency is back)."""
        with self.lock:
            self.until = float("-inf")
