"""Entry point for persisting metrics; the recorder lives in ``seawall.storage``."""

from __future__ import annotations

from typing import Any


def persist_metrics(url: str | None = None, flush_interval: float = 1.0, **options: Any) -> Any:
    """Persist every point's events to the store at ``url`` (env ``SEAWALL_METRICS_URL``).

    Returns the running recorder; see :class:`seawall.storage.Recorder`.
    """
    from seawall.storage import persist_metrics as start

    return start(url, flush_interval=flush_interval, **options)
