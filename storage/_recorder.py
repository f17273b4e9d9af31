"""The recorder: count every point's events in memory, flush batches from one thread.

The hook that runs on the caller's thread only appends the event record to
a list (one C call; no lock, no dict, no clock). A background thread
drains that list every ``drain_interval`` seconds into aggregates per
(point, operation, minute) and writes them to the store every
``flush_interval`` seconds in one transaction. So the hot path never
touches the database, a crash loses at most the last interval, and a
failing store only delays the write: the aggregates are kept (within
bounds) and retried at the next interval. Every write, the last ones at
close and on a signal included, runs on that thread, so the caller waits
for it at most ``close_timeout`` seconds whatever the store does.
"""

from __future__ import annotations

import atexit
import logging
import math
import os
import signal
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
    HedgeEvent,
    RejectionEvent,
    RetryEvent,
    WaitEvent,
    add_hook,
    remove_hook,
)
from seawall._registry import concurrency_limits
from seawall._tally import Tally, queue_hook

from ._histogram import BASE as _BASE
from ._histogram import BUCKETS, PER_DOUBLING
from ._schema import (
    CALLS,
    CANCELLED,
    FAILED,
    FAILURES,
    FALLBACKS,
    H0,
    HEDGES_SENT,
    HEDGES_WON,
    HOST_LENGTH,
    INJECTED_CALLS,
    INJECTED_FAILURES,
    LATENCY_SUM,
    LIMIT_SAMPLES,
    LIMIT_SUM,
    REFUSED,
    REJECTED,
    RETRIES,
    SUCCESSES,
    TIMEOUTS,
    WAITED,
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
    caller. :meth:`close` (also run at interpreter exit) flushes everything,
    waiting at most ``close_timeout`` seconds for the store; what it could
    not write is counted in :attr:`dropped` too. With ``flush_on_signal``
    a SIGTERM or SIGINT flushes first, then goes to the handler that was
    there before (see :func:`persist_metrics`).
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
        close_timeout: float = 2.0,
        flush_on_signal: bool = False,
        owns_store: bool = False,
    ) -> None:
        for name, value in (("flush_interval", flush_interval), ("drain_interval", drain_interval),
                            ("close_timeout", close_timeout)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not 0 < value < math.inf:
                raise ConfigurationError(f"persist_metrics: {name} must be > 0 seconds, "
                                         f"got {value!r}")
        if not isinstance(flush_on_signal, bool):
            raise ConfigurationError(f"persist_metrics: flush_on_signal must be True or False, "
                                     f"got {flush_on_signal!r}")
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
        self.flush_on_signal = flush_on_signal
        self.host = socket.gethostname()[:HOST_LENGTH]
        self.pid = os.getpid()
        self._owns_store = owns_store

        self._pending: list[Any] = []
        self._overflow = Tally()  # events a full queue turned away; a step takes no lock
        self._overflow_seen = 0
        self._lock = threading.Lock()  # guards everything below; never taken by the hook
        self._counts: dict[Key, list[float]] = {}
        self._transitions: list[BreakerTransition] = []
        self._dropped = 0
        self._flushes = 0
        self._failures = 0
        self._last_error_log = 0.0
        # the batch being written, for the accounting of a close() that cannot wait for it
        self._inflight: dict[Key, list[float]] = {}
        self._inflight_transitions: list[BreakerTransition] = []
        self._abandoned = False
        self._stop = threading.Event()
        self._wake = threading.Event()  # the thread's sleep, cut short by close() and signals
        self._requests: list[threading.Event] = []  # flushes asked of the thread, set when done
        self._close_deadline = math.inf
        self._closed = False
        self.hook = self._make_hook()
        self._thread = self._start_thread()
        add_hook(self.hook)
        atexit.register(self.close)
        _live.add(self)
        if flush_on_signal:
            _install_signal_flush()

    def __repr__(self) -> str:
        return f"<Recorder {self.store!r} every {self.flush_interval:g} s>"

    def _make_hook(self) -> Callable[[Any], None]:
        return queue_hook(self._pending, self.max_pending, self._overflow,
                          "seawall.storage: queue one event for the metrics store.")

    def _start_thread(self) -> threading.Thread:
        thread = threading.Thread(target=self._run, name="seawall-metrics", daemon=True)
        thread.start()
        return thread

    # -- state ----------------------------------------------------------------

    @property
    def dropped(self) -> int:
        """What was lost: counted once per lost event or transition, or per call of a lost aggregate.

        An event that found the queue full counts one; an aggregate that found
        no room, or that the store had not taken when :meth:`close` gave up,
        counts its calls (at least one); a breaker transition counts one.
        """
        with self._lock:
            return self._dropped + self._overflow.value()

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

    # -- the background thread ---------------------------------------------------

    def _run(self) -> None:
        next_flush = time.monotonic() + self.flush_interval
        wake = self._wake
        while not self._stop.is_set():
            wait = min(self.drain_interval, max(0.0, next_flush - time.monotonic()))
            if wait > 0 and not self._requests:
                wake.wait(wait)
            wake.clear()  # before taking the requests: one asked after this wakes the next wait
            if self._stop.is_set():
                break
            requests, self._requests = self._requests, []
            try:
                if requests or time.monotonic() >= next_flush:
                    self.flush()
                    if not requests:
                        next_flush = max(next_flush + self.flush_interval, time.monotonic())
                else:
                    with self._lock:
                        self._drain()
            except Exception:  # the thread must outlive any surprise
                log.exception("seawall.storage: the metrics thread hit an error; continuing")
            finally:
                for done in requests:
                    done.set()
        self._final_flush()

    def _final_flush(self) -> None:
        """The last writes, retried until ``close_timeout`` runs out; counts what is lost."""
        try:
            while not self.flush() and not self._abandoned:
                left = self._close_deadline - time.monotonic()
                if left <= 0:
                    with self._lock:
                        self._give_up()
                    break
                self._wake.wait(min(0.2, left))
                self._wake.clear()
        except Exception:
            log.exception("seawall.storage: the last flush of metrics failed")
        finally:
            for done in self._requests:
                done.set()

    def _give_up(self, *, unlocked: bool = False) -> None:
        """Count everything not written as dropped, and say so.

        The lock is held, unless ``unlocked``: then the thread is stuck in a
        write (holding it), whose batch is counted too; should that write
        succeed after all, :meth:`flush` takes its calls back out of
        :attr:`dropped`.
        """
        calls = _size(self._counts, self._transitions)
        if unlocked:
            self._abandoned = True
            calls += _size(self._inflight, self._inflight_transitions)
        # events not aggregated yet (only when the thread could not drain them)
        calls += sum(1 for ev in list(self._pending) if ev.__class__ is CallEvent)
        self._dropped += calls
        self._counts = {}
        self._transitions = []
        del self._pending[:]
        log.error("seawall.storage: could not write metrics to %r within close_timeout "
                  "(%g s); %d calls and transitions not recorded (counted in "
                  "recorder.dropped)", self.store, self.close_timeout, calls)

    def _flush_within(self, timeout: float) -> bool:
        """Have the thread write what is counted; wait at most ``timeout`` seconds for it."""
        thread = self._thread
        if not thread.is_alive() or thread is threading.current_thread():
            return self.flush()
        done = threading.Event()
        self._requests.append(done)
        self._wake.set()
        return done.wait(timeout)

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
                point, operation, category, _, duration, stamp, fallback, rejected, injected = ev
                key = (point, operation, int(stamp // 60))
                vec = get(key)
                if vec is None:
                    vec = self._new_vector(key)
                    if vec is None:
                        continue
                if injected:  # a rehearsal (seawall.Chaos): apart from the real calls
                    vec[INJECTED_CALLS] += 1
                    if category is not None and category is not _CANCELLED:
                        vec[INJECTED_FAILURES] += 1
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
                if ev.category is _TIMEOUT and not ev.injected:
                    self._bump(ev, TIMEOUTS)
            elif kind is RetryEvent:
                self._bump(ev, RETRIES)
            elif kind is RejectionEvent:
                refused = REFUSED.get(ev.reason)
                if refused is not None:
                    self._bump(ev, refused)
            elif kind is WaitEvent:
                waited = WAITED.get(ev.reason)
                if waited is not None:
                    self._bump(ev, waited)
            elif kind is HedgeEvent:
                self._bump(ev, HEDGES_WON if ev.won else HEDGES_SENT)
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

    def _sample_limits(self) -> None:
        """Add each counted point's bulkhead limit, once, to its newest minute (lock held).

        The limit is a level, stored as a sum and a count of samples (their
        ratio is the mean limit over any span): one sample per flush for each
        point that had events since the last one, the limits of live points
        sharing a name added up (as :func:`seawall.otel_metrics` does).
        """
        newest: dict[str, int] = {}
        for point, _, minute in self._counts:
            if newest.get(point, -1) < minute:
                newest[point] = minute
        if not newest:
            return
        limits = concurrency_limits(newest)
        if not limits:
            return
        for (point, _, minute), vec in self._counts.items():
            limit = limits.get(point)
            if limit is not None and minute == newest[point]:
                vec[LIMIT_SUM] += limit
                vec[LIMIT_SAMPLES] += 1

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
            self._sample_limits()
            overflow = self._overflow.value()
            if overflow > self._overflow_seen:
                log.warning("seawall.storage: %d events dropped so far: the recorder's queue "
                            "of %d was full", overflow, self.max_pending)
                self._overflow_seen = overflow
            counts, self._counts = self._counts, {}
            moved, self._transitions = self._transitions, []
            if not counts and not moved:
                return True
            self._inflight, self._inflight_transitions = counts, moved
            try:
                self.store.write(counts, moved, host=self.host, pid=self.pid)
            except Exception as exc:
                self._inflight, self._inflight_transitions = {}, []
                if self._abandoned:  # already counted as dropped by close()
                    return False
                self._failures += 1
                self._keep(counts, moved)
                now = time.monotonic()
                if now - self._last_error_log >= 60.0 or self._failures == 1:
                    self._last_error_log = now
                    log.warning("seawall.storage: writing metrics to %r failed (%s: %s); "
                                "keeping them for the next attempt", self.store,
                                type(exc).__name__, exc)
                return False
            self._inflight, self._inflight_transitions = {}, []
            if self._abandoned:  # close() counted this batch as lost, but it got through
                self._dropped -= _size(counts, moved)
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
        """Stop recording and write everything, waiting at most ``close_timeout`` seconds.

        The writes happen on the recorder's thread: a store that hangs (a
        lock held elsewhere, a server that does not answer) delays the caller
        by ``close_timeout`` at most. What could not be written by then is
        logged and counted in :attr:`dropped`. Idempotent; registered with
        :mod:`atexit`.
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
        if self.flush_on_signal:
            _restore_signal_handlers()
        self._close_deadline = time.monotonic() + self.close_timeout
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread.is_alive() and thread is not threading.current_thread():
            thread.join(self.close_timeout + 0.1)
            if thread.is_alive():  # stuck in a write the store has not answered
                self._give_up(unlocked=True)
                return  # the store stays open: the thread may still be using it
        else:  # no thread to do it (closed from the thread itself): one try here
            if not self.flush():
                with self._lock:
                    self._give_up()
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
        self._overflow = Tally()
        self._overflow_seen = 0
        self._inflight = {}
        self._inflight_transitions = []
        self._abandoned = False
        self._close_deadline = math.inf
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._requests = []
        self.store.engine.dispose(close=False)
        remove_hook(self.hook)
        self.hook = self._make_hook()
        add_hook(self.hook)
        self._thread = self._start_thread()


def _size(counts: dict[Key, list[float]], moved: list[BreakerTransition]) -> int:
    """What a batch counts for in :attr:`Recorder.dropped`: its calls and transitions."""
    return sum(int(v[CALLS]) or 1 for v in counts.values()) + len(moved)


_live: weakref.WeakSet[Recorder] = weakref.WeakSet()
_registry_lock = threading.Lock()
_by_url: dict[str, Recorder] = {}


def _reinit_after_fork() -> None:
    for recorder in list(_live):
        if not recorder.closed:
            recorder._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reinit_after_fork)


# -- flushing on SIGTERM and SIGINT ---------------------------------------------------

_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_signal_lock = threading.Lock()
_previous: dict[int, Any] = {}  # the handler each signal had before ours


def _flush_then_hand_over(signum: int, frame: Any) -> None:
    """The signal handler: flush every recorder that asked for it, then do what was there before."""
    for recorder in list(_live):
        if recorder.flush_on_signal and not recorder.closed:
            try:
                recorder._flush_within(recorder.close_timeout)
            except Exception:  # a handler must reach the hand-over whatever happens
                log.exception("seawall.storage: flushing metrics on signal %d failed", signum)
    previous = _previous.get(signum, signal.SIG_DFL)
    if callable(previous):
        previous(signum, frame)
    elif previous == signal.SIG_DFL:
        # the default action (for SIGTERM: the process ends, killed by this very signal),
        # as if this handler had never been installed
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
    # SIG_IGN: ignored, as before


def _install_signal_flush() -> bool:
    """Put the flushing handler in front of SIGTERM's and SIGINT's; only from the main thread.

    A signal that is ignored, or whose handler was not installed from Python,
    is left alone. Returns False when nothing could be installed.
    """
    if threading.current_thread() is not threading.main_thread():
        log.warning("seawall.storage: persist_metrics(flush_on_signal=True) was called off "
                    "the main thread, where signal handlers cannot be installed; metrics are "
                    "flushed at exit, not on SIGTERM")
        return False
    installed = False
    with _signal_lock:
        for signum in _SIGNALS:
            current = signal.getsignal(signum)
            if current is _flush_then_hand_over:
                installed = True
                continue
            if current is None or current == signal.SIG_IGN:
                continue
            try:
                signal.signal(signum, _flush_then_hand_over)
            except ValueError:  # not the main interpreter
                return installed
            _previous[signum] = current
            installed = True
    return installed


def _restore_signal_handlers() -> None:
    """Give the signals back their earlier handlers once no recorder wants the flush."""
    if threading.current_thread() is not threading.main_thread():
        return  # the handler stays; with no recorder left it only hands over
    if any(r.flush_on_signal and not r.closed for r in list(_live)):
        return
    with _signal_lock:
        for signum in _SIGNALS:
            if signum in _previous and signal.getsignal(signum) is _flush_then_hand_over:
                signal.signal(signum, _previous.pop(signum))


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
    """Record the events of every integration point into the store at ``url``.

    See :func:`seawall.persist_metrics` for the parameters. The store is
    opened now: a mistake in ``url`` raises :class:`seawall.ConfigurationError`.
    """
    from ._store import resolve_url

    if isinstance(busy_timeout, bool) or not isinstance(busy_timeout, (int, float)) \
            or not 0 < busy_timeout < math.inf:
        raise ConfigurationError(f"persist_metrics: busy_timeout must be > 0 seconds, "
                                 f"got {busy_timeout!r}")
    if url is not None and not isinstance(url, str):
        raise ConfigurationError(f"persist_metrics: url must be a string, got {url!r}")
    resolved = resolve_url(url)
    with _registry_lock:
        running = _by_url.get(resolved)
        if running is not None and not running.closed:
            return running
        store = Store.open(resolved, create=True, busy_timeout=busy_timeout)
        try:
            recorder = Recorder(store, flush_interval=flush_interval, owns_store=True,
                                flush_on_signal=flush_on_signal, close_timeout=close_timeout,
                                drain_interval=drain_interval, max_pending=max_pending,
                                max_keys=max_keys, max_transitions=max_transitions)
        except BaseException:
            store.close()
            raise
        _by_url[resolved] = recorder
        return recorder
