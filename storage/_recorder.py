"""The recorder: count every point's events in memory, flush batches from one thread.

The hook that runs on the caller's thread only puts the event record on a
list (one C call; no lock, no dict, no clock), and only the records the
aggregates use (of attempts, the timed-out ones). A background thread
drains that list every ``drain_interval`` seconds into aggregates per
(point, operation, minute) and writes them to the store every
``flush_interval`` seconds in one transaction. So the hot path never
touches the database, a crash loses at most the last interval, and a
failing store only delays the write: the aggregates are kept (within
bounds) and retried at the next interval. Every write, the last ones at
close and on a signal included, runs on that thread, so the caller waits
for it at most ``close_timeout`` seconds whatever the store does.

Here: the thread, flushes and closing. The hook and its queue are
:mod:`._recorder_queue`, the fold of events into rows :mod:`._aggregates`,
the live recorders, ``fork`` and the signal handler :mod:`._recorder_process`.
"""

from __future__ import annotations

import atexit
import logging
import math
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from seawall import (
    BreakerTransition,
    ConfigurationError,
    add_hook,
    remove_hook,
)
from seawall._tally import Tally

from ._aggregates import Aggregates, Rows, size
from ._recorder_process import install_signal_flush, live, restore_signal_handlers
from ._recorder_queue import EventQueue
from ._schema import HOST_LENGTH
from ._store import Store

log = logging.getLogger("seawall.storage")

class Recorder:
    """Persists the events of every integration point to a :class:`Store`.

    Start it with :func:`seawall.persist_metrics`. Memory is bounded:
    at most ``max_pending`` call records (and as many others: retries,
    refusals, timed-out attempts, ...) wait for the aggregating thread,
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

        self._overflow = Tally()  # events a full queue turned away; a step takes no lock
        self._overflow_seen = 0
        self._lock = threading.Lock()  # guards everything below; never taken by the hook
        self._rows = Aggregates(max_keys, max_transitions)
        self._flushes = 0
        self._failures = 0
        self._last_error_log = 0.0
        # the batch being written, for the accounting of a close() that cannot wait for it
        self._inflight: Rows = {}
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
        live.add(self)
        if flush_on_signal:
            install_signal_flush()

    def __repr__(self) -> str:
        return f"<Recorder {self.store!r} every {self.flush_interval:g} s>"

    def _make_hook(self) -> Callable[[Any], None]:
        self._queue = EventQueue(self.max_pending, self._overflow)
        return self._queue.hook("seawall.storage: queue one event for the metrics store.")

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
            return self._rows.dropped + self._overflow.value()

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
                        self._fold_pending()
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
        calls = size(*self._rows.take())
        if unlocked:
            self._abandoned = True
            calls += size(self._inflight, self._inflight_transitions)
        # events not aggregated yet (only when the thread could not drain them)
        calls += self._queue.queued_size()
        self._rows.dropped += calls
        self._queue.clear()
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

    def _fold_pending(self) -> None:
        """Fold the queued events into the aggregates (caller holds ``_lock``)."""
        calls, others = self._queue.take()
        if calls:
            self._rows.fold_calls(calls)
        if others:
            self._rows.fold(others)

    def flush(self) -> bool:
        """Write everything recorded so far, now, from the calling thread.

        Returns True when the store took it (or there was nothing to write);
        on failure the data is kept for the next attempt and the error is
        logged, never raised.
        """
        with self._lock:
            self._fold_pending()
            self._rows.sample_limits()
            overflow = self._overflow.value()
            if overflow > self._overflow_seen:
                log.warning("seawall.storage: %d events dropped so far: the recorder's queue "
                            "of %d was full", overflow, self.max_pending)
                self._overflow_seen = overflow
            counts, moved = self._rows.take()
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
                self._rows.keep(counts, moved)
                now = time.monotonic()
                if now - self._last_error_log >= 60.0 or self._failures == 1:
                    self._last_error_log = now
                    log.warning("seawall.storage: writing metrics to %r failed (%s: %s); "
                                "keeping them for the next attempt", self.store,
                                type(exc).__name__, exc)
                return False
            self._inflight, self._inflight_transitions = {}, []
            if self._abandoned:  # close() counted this batch as lost, but it got through
                self._rows.dropped -= size(counts, moved)
            self._flushes += 1
            return True

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
        live.discard(self)
        if self.flush_on_signal:
            restore_signal_handlers()
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
        self._rows = Aggregates(self.max_keys, self.max_transitions)
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


_registry_lock = threading.Lock()
_by_url: dict[str, Recorder] = {}


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
