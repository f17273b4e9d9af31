"""The recorder: count every point's events in memory, flush batches from one thread.

The hook that runs on the caller's thread only appends the event record to
a list (one C call; no lock, no dict, no clock). A background thread
drains that list every ``drain_interval`` seconds into aggregates per
(point, operation, minute) and writes them to the store every
``flush_interval`` seconds in one transaction. So the hot path never
touches the database, a crash loses at most the last interval, and a
failing store only delays the write: the aggregates are kept (within
bounds) and retried at the next interval.
"""

from __future__ import annotations

import atexit
import itertools
import logging
import math
import os
import socket
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

from seawall import (
    AttemptEvent,
    BreakerTransition,
    CallEvent,
    Category,
    ConfigurationError,
    RejectionEvent,
    RetryEvent,
    add_hook,
    remove_hook,
)

from ._histogram import BASE as _BASE
from ._histogram import BUCKETS, PER_DOUBLING
from ._schema import (
    CALLS,
    CANCELLED,
    FAILED,
    FAILURES,
    FALLBACKS,
    H0,
    HOST_LENGTH,
    LATENCY_SUM,
    REFUSED,
    REJECTED,
    RETRIES,
    SUCCESSES,
    TIMEOUTS,
    WIDTH,
)
from ._store import Key, Store

log = logging.getLogger("seawall.storage")

_CANCELLED = Category.CANCELLED
_TIMEOUT = Category.TIMEOUT
# the histogram's bucket_of(), inlined in the aggregation loop
_INV_BASE = 1.0 / _BASE
_PER = float(PER_DOUBLING)
_LAST = BUCKETS - 1
_log2 = math.log2


class Recorder:
    """Persists the events of every integration point to a :class:`Store`.

    Start it with :func:`seawall.persist_metrics`. Memory is bounded:
    at most ``max_pending`` event records wait for the aggregating thread,
    at most ``max_keys`` (point, operation, minute) aggregates and
    ``max_transitions`` breaker transitions wait for the store; anything
    beyond is dropped and counted in :attr:`dropped`, never blocking the
    caller. :meth:`close` (also run at interpreter exit) flushes everything.
    Thread-safe; the hook is safe from any thread and event loop.
    """

    def __init__(
        self,
        store: Store,
        *,
        flush_interval: float = 1.0,
        drain_interval: float = 0.1,
        max_pending: int = 250_000,
        max_keys: int = 100_000,
        max_transitions: int = 10_000,
        close_timeout: float = 5.0,
        owns_store: bool = False,
    ) -> None:
        for name, value in (("flush_interval", flush_interval), ("drain_interval", drain_interval),
                            ("close_timeout", close_timeout)):
            if not isinstance(value, (int, float)) or not value > 0:
                raise ConfigurationError(f"persist_metrics: {name} must be > 0 seconds, "
                                         f"got {value!r}")
        for name, value in (("max_pending", max_pending), ("max_keys", max_keys),
                            ("max_transitions", max_transitions)):
            if not isinstance(value, int) or value < 1:
                raise ConfigurationError(f"persist_metrics: {name} must be an int >= 1, "
                                         f"got {value!r}")
        self.store = store
        self.flush_interval = float(flush_interval)
        self.drain_interval = min(float(drain_interval), self.flush_interval)
        self.max_pending = max_pending
        self.max_keys = max_keys
        self.max_transitions = max_transitions
        self.close_timeout = float(close_timeout)
        self.host = socket.gethostname()[:HOST_LENGTH]
        self.pid = os.getpid()
        self._owns_store = owns_store

        self._pending: list[Any] = []
        self._overflow = itertools.count()  # next() is atomic: no lock on the hot path
        self._overflow_seen = 0
        self._lock = threading.Lock()  # guards everything below; never taken by the hook
        self._counts: dict[Key, list[float]] = {}
        self._transitions: list[BreakerTransition] = []
        self._dropped = 0
        self._flushes = 0
        self._failures = 0
        self._last_error_log = 0.0
        self._stop = threading.Event()
        self._closed = False
        self.hook = self._make_hook()
        self._thread = self._start_thread()
        add_hook(self.hook)
        atexit.register(self.close)
        _live.add(self)

    def __repr__(self) -> str:
        return f"<Recorder {self.store!r} every {self.flush_interval:g} s>"

    def _make_hook(self) -> Callable[[Any], None]:
        pending = self._pending
        append = pending.append
        size = pending.__len__
        cap = self.max_pending
        overflow = self._overflow.__next__

        def record(event: Any) -> None:
            """seawall.storage: queue one event for the metrics store."""
            if size() < cap:
                append(event)
            else:
                overflow()

        return record

    def _start_thread(self) -> threading.Thread:
        thread = threading.Thread(target=self._run, name="seawall-metrics", daemon=True)
        thread.start()
        return thread

    # -- state ----------------------------------------------------------------

    @property
    def dropped(self) -> int:
        """Events (or transitions) dropped because a bound was reached."""
        with self._lock:
            return self._dropped + self._overflow_count()

    @property
    def flushes(self) -> int:
        """Batches written so far."""
        return self._flushes

    @property
    def failed_flushes(self) -> int:
        """Writes that failed (and were retried at a later interval)."""
        return self._failures

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has run."""
        return self._closed

    def _overflow_count(self) -> int:
        # itertools.count exposes its next value only through repr
        return int(repr(self._overflow)[6:-1])

    # -- the background thread ---------------------------------------------------

    def _run(self) -> None:
        next_flush = time.monotonic() + self.flush_interval
        while not self._stop.is_set():
            wait = min(self.drain_interval, max(0.0, next_flush - time.monotonic()))
            if self._stop.wait(wait):
                break
            try:
                if time.monotonic() >= next_flush:
                    self.flush()
                    next_flush = max(next_flush + self.flush_interval, time.monotonic())
                else:
                    with self._lock:
                        self._drain()
            except Exception:  # the thread must outlive any surprise
                log.exception("seawall.storage: the metrics thread hit an error; continuing")

    def _drain(self) -> None:
        """Fold queued events into the aggregates (caller holds ``_lock``)."""
        pending = self._pending
        n = len(pending)
        if n == 0:
            return
        events = pending[:n]
        del pending[:n]  # appends made meanwhile stay queued
        counts = self._counts
        get = counts.get
        for ev in events:
            kind = ev.__class__
            if kind is CallEvent:
                point, operation, category, _, duration, stamp, fallback, rejected = ev
                key = (point, operation, int(stamp // 60))
                vec = get(key)
                if vec is None:
                    vec = self._new_vector(key)
                    if vec is None:
                        continue
                vec[CALLS] += 1
                if rejected is not None:
                    vec[REJECTED] += 1
                elif category is _CANCELLED:
                    vec[CANCELLED] += 1
                else:
                    if category is None:
                        vec[SUCCESSES] += 1
                    else:
                        vec[FAILURES] += 1
                        vec[FAILED[category]] += 1
                    vec[LATENCY_SUM] += duration
                    if duration < _BASE:
                        vec[H0] += 1
                    else:
                        index = int(_log2(duration * _INV_BASE) * _PER) + 1
                        vec[H0 + (index if index < _LAST else _LAST)] += 1
                if fallback:
                    vec[FALLBACKS] += 1
            elif kind is AttemptEvent:
                if ev.category is _TIMEOUT:
                    self._bump(ev, TIMEOUTS)
            elif kind is RetryEvent:
                self._bump(ev, RETRIES)
            elif kind is RejectionEvent:
                refused = REFUSED.get(ev.reason)
                if refused is not None:
                    self._bump(ev, refused)
            elif kind is BreakerTransition:
                if len(self._transitions) < self.max_transitions:
                    self._transitions.append(ev)
                else:
                    self._dropped += 1

    def _bump(self, ev: Any, index: int) -> None:
        key = (ev.point, ev.operation, int(ev.time // 60))
        vec = self._counts.get(key)
        if vec is None:
            vec = self._new_vector(key)
            if vec is None:
                return
        vec[index] += 1

    def _new_vector(self, key: Key) -> list[float] | None:
        if len(self._counts) >= self.max_keys:
            self._dropped += 1
            return None
        vec: list[float] = [0] * WIDTH
        vec[LATENCY_SUM] = 0.0
        self._counts[key] = vec
        return vec

    def flush(self) -> bool:
        """Write everything recorded so far, now, from the calling thread.

        Returns True when the store took it (or there was nothing to write);
        on failure the data is kept for the next attempt and the error is
        logged, never raised.
        """
        with self._lock:
            self._drain()
            overflow = self._overflow_count()
            if overflow > self._overflow_seen:
                log.warning("seawall.storage: %d events dropped so far: the recorder's queue "
                            "of %d was full", overflow, self.max_pending)
                self._overflow_seen = overflow
            counts, self._counts = self._counts, {}
            moved, self._transitions = self._transitions, []
            if not counts and not moved:
                return True
            try:
                self.store.write(counts, moved, host=self.host, pid=self.pid)
            except Exception as exc:
                self._failures += 1
                self._keep(counts, moved)
                now = time.monotonic()
                if now - self._last_error_log >= 60.0 or self._failures == 1:
                    self._last_error_log = now
                    log.warning("seawall.storage: writing metrics to %r failed (%s: %s); "
                                "keeping them for the next attempt", self.store,
                                type(exc).__name__, exc)
                return False
            self._flushes += 1
            return True

    def _keep(self, counts: dict[Key, list[float]], moved: list[BreakerTransition]) -> None:
        """Put a batch the store refused back in front of what came since."""
        current = self._counts
        for key, vec in counts.items():
            row = current.get(key)
            if row is not None:
                for i in range(WIDTH):
                    row[i] += vec[i]
            elif len(current) < self.max_keys:
                current[key] = vec
            else:
                self._dropped += int(vec[CALLS]) or 1
        room = self.max_transitions - len(self._transitions)
        self._dropped += max(0, len(moved) - room)
        self._transitions[:0] = moved[:max(room, 0)]

    def close(self) -> None:
        """Stop recording and flush everything (retrying up to ``close_timeout`` seconds).

        Idempotent; registered with :mod:`atexit`.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            remove_hook(self.hook)
        except ValueError:
            pass
        atexit.unregister(self.close)
        _live.discard(self)
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(self.close_timeout)
        deadline = time.monotonic() + self.close_timeout
        while not self.flush():
            if time.monotonic() >= deadline:
                with self._lock:
                    lost = sum(int(v[CALLS]) for v in self._counts.values())
                log.error("seawall.storage: could not flush metrics to %r before exit; "
                          "%d calls not recorded", self.store, lost)
                break
            time.sleep(min(0.2, self.close_timeout / 10))
        if self._owns_store:
            self.store.close()

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- fork ------------------------------------------------------------------

    def _after_fork_in_child(self) -> None:
        """A forked child starts clean: its own pid, no inherited events, a new thread."""
        self._lock = threading.Lock()
        self.pid = os.getpid()
        del self._pending[:]
        self._counts = {}
        self._transitions = []
        self._overflow = itertools.count()
        self._overflow_seen = 0
        self._stop = threading.Event()
        self.store.engine.dispose(close=False)
        remove_hook(self.hook)
        self.hook = self._make_hook()
        add_hook(self.hook)
        self._thread = self._start_thread()


_live: weakref.WeakSet[Recorder] = weakref.WeakSet()
_registry_lock = threading.Lock()
_by_url: dict[str, Recorder] = {}


def _reinit_after_fork() -> None:
    for recorder in list(_live):
        if not recorder.closed:
            recorder._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reinit_after_fork)


def persist_metrics(url: str | None = None, flush_interval: float = 1.0,
                    **options: Any) -> Recorder:
    """Record the events of every integration point into the store at ``url``.

    ``url`` is any SQLAlchemy URL or a SQLite file path; ``None`` reads
    ``$SEAWALL_METRICS_URL`` and falls back to ``sqlite:///seawall-metrics.db``.
    Every ``flush_interval`` seconds one background thread writes what was
    counted; a crash loses at most that much. ``options`` go to
    :class:`Recorder` (``max_pending``, ``max_keys``, ``max_transitions``,
    ``drain_interval``, ``close_timeout``) and ``busy_timeout`` to
    :class:`Store`. Calling it again for the same URL returns the running
    recorder. The store being down never raises here or in the application:
    failed writes are logged and retried.
    """
    from ._store import resolve_url

    resolved = resolve_url(url)
    with _registry_lock:
        running = _by_url.get(resolved)
        if running is not None and not running.closed:
            return running
        store_options = {k: options.pop(k) for k in ("busy_timeout",) if k in options}
        store = Store(resolved, **store_options)
        try:
            recorder = Recorder(store, flush_interval=flush_interval, owns_store=True, **options)
        except BaseException:
            store.close()
            raise
        _by_url[resolved] = recorder
        return recorder
