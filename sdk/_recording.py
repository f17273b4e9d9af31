"""Entry point for persisting metrics; the recorder lives in ``seawall.storage``."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # seawall.storage loads SQLAlchemy: only when metrics are persisted
    from seawall.storage import Recorder


def persist_metrics(
    url: str | None = None,
    flush_interval: float = 1.0,
    *,
    flush_on_signal: bool = True,
    close_timeout: float = 2.0,
    drain_interval: float = 0.1,
    max_pending: int = 250_000,
    max_keys: int = 100_000,
    max_transitions: int = 10_000,
    busy_timeout: float = 10.0,
) -> Recorder:
    """Persist every point's events to the metrics store at ``url``; returns the running recorder.

    ``url`` is any SQLAlchemy URL or a SQLite file path. ``None`` reads
    ``$SEAWALL_METRICS_URL`` and falls back to ``sqlite:///seawall-metrics.db``,
    a file in the current working directory. The store is opened now: a bad
    URL, a missing driver, a file that is not a database or cannot be written
    raise :class:`seawall.ConfigurationError` saying what to do (a database
    server that does not answer yet is not an error: writes are retried).
    Calling it again for the same URL returns the running recorder.

    * ``flush_interval`` (seconds): how often the background thread writes;
      a crash (SIGKILL, power loss) loses at most that much.
    * ``flush_on_signal``: on SIGTERM or SIGINT, write first, then hand the
      signal to the handler installed before (or the default action: SIGTERM
      still ends the process, with the same status). On by default because
      Kubernetes, systemd and docker stop processes with SIGTERM, whose
      default action skips :mod:`atexit` and would lose the last interval.
      Handlers are only installed from the main thread, and not over a signal
      that is ignored; a handler the application installs later replaces
      this one (call ``recorder.close()`` from it). ``False`` leaves signals
      alone.
    * ``close_timeout`` (seconds): the longest :meth:`Recorder.close` (run at
      exit) and a signal wait for the store; what is not written by then is
      counted in :attr:`Recorder.dropped`.
    * ``drain_interval`` (seconds), ``max_pending`` (queued calls, and as
      many other events), ``max_keys`` (aggregates), ``max_transitions``:
      memory bounds, see :class:`seawall.storage.Recorder`; beyond them
      events are dropped and counted, never blocking the caller.
    * ``busy_timeout`` (seconds): how long a SQLite writer waits for the lock.

    Thread-safe. The store failing later never raises into the application:
    failed writes are logged and retried.
    """
    from seawall.storage import persist_metrics as start

    return start(url, flush_interval, flush_on_signal=flush_on_signal,
                 close_timeout=close_timeout, drain_interval=drain_interval,
                 max_pending=max_pending, max_keys=max_keys, max_transitions=max_transitions,
                 busy_timeout=busy_timeout)
