"""What the gRPC tests call the echo service with: a retrying point and a request."""

from __future__ import annotations

from typing import Any

import seawall
from seawall.testing import FakeClock

from .servers import pb2


def echo_point(name: str = "echo", *, attempts: int = 3, clock: Any = None,
               **policies: Any) -> seawall.IntegrationPoint:
    """A point that tries ``attempts`` times, 10 ms apart, without a budget (``0``: no retry),
    on ``clock`` (default: a fresh ``FakeClock``, so backoffs take no time)."""
    return seawall.IntegrationPoint(
        name,
        retry=seawall.Retry(attempts=attempts, backoff=seawall.Backoff.constant(0.01), budget=None)
        if attempts else None,
        clock=clock or FakeClock(),
        **policies,
    )


def req(key: str, text: str = "hi", count: int = 0) -> Any:
    """An ``EchoRequest``: ``key`` picks the backend's plan, ``count`` the streamed replies."""
    return pb2.EchoRequest(key=key, text=text, count=count)
