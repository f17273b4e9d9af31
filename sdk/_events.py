"""Event records and the hooks that receive them.

Every decision a point takes is described by a small immutable record
(a ``NamedTuple``: cheap to build on the hot path). Records are built only
when at least one hook listens. A hook that raises is logged and never
breaks the protected call.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import NamedTuple

from ._classify import Category

log = logging.getLogger("seawall")


class AttemptEvent(NamedTuple):
    """One attempt finished. ``category`` is ``None`` on success.

    ``duration`` is in seconds; ``time`` is wall-clock seconds since the epoch.
    ``injected`` is true when fault injection (:class:`seawall.Chaos`) shaped
    the attempt (a fault, a result or a latency put in, not the dependency's).
    """

    point: str
    operation: str
    attempt: int
    category: Category | None
    duration: float
    time: float
    injected: bool = False


class CallEvent(NamedTuple):
    """One call finished, after all its attempts.

    ``category`` is ``None`` when the caller got a success (including one
    supplied by a fallback: then ``fallback`` is true and ``category`` the
    failure that triggered it). ``attempts`` counts attempts that reached
    the dependency; ``duration`` covers every attempt and wait.
    ``injected`` is true when the call's last attempt was shaped by fault
    injection (:class:`seawall.Chaos`): a rehearsal, counted apart from real
    outcomes by the metrics store and exporters.
    """

    point: str
    operation: str
    category: Category | None
    attempts: int
    duration: float
    time: float
    fallback: bool
    rejected: str | None
    injected: bool = False


class RetryEvent(NamedTuple):
    """A retry was scheduled: attempt number ``attempt`` will run after ``delay`` seconds."""

    point: str
    operation: str
    attempt: int
    delay: float
    category: Category
    time: float


class RejectionEvent(NamedTuple):
    """A call or retry was refused locally; ``reason`` is ``breaker``, ``bulkhead``, ``budget``,
    ``deadline``, ``rate_limit`` or ``paused``."""

    point: str
    operation: str
    reason: str
    time: float


class WaitEvent(NamedTuple):
    """An admitted attempt waits ``delay`` seconds before it starts.

    ``reason`` is ``paused`` (a server asked the point to slow down: server
    pacing) or ``rate_limit`` (its :class:`seawall.RateLimit` token).
    """

    point: str
    operation: str
    reason: str
    delay: float
    time: float


class HedgeEvent(NamedTuple):
    """A :class:`seawall.Hedge` started attempt number ``attempt`` (``won`` false), or that
    attempt answered the call (``won`` true)."""

    point: str
    operation: str
    attempt: int
    won: bool
    time: float


class BreakerTransition(NamedTuple):
    """The breaker moved between states (``closed``, ``open``, ``half_open``, ``forced_open``, ``disabled``)."""

    point: str
    from_state: str
    to_state: str
    reason: str
    time: float


Event = (AttemptEvent | CallEvent | RetryEvent | RejectionEvent | BreakerTransition
         | WaitEvent | HedgeEvent)
Hook = Callable[[Event], None]


class HookSet:
    """A copy-on-write list of hooks; iteration needs no lock."""

    __slots__ = ("_lock", "hooks")

    def __init__(self) -> None:
        self.hooks: tuple[Hook, ...] = ()
        self._lock = threading.Lock()

    def add(self, hook: Hook) -> None:
        if not callable(hook):
            raise TypeError(f"hook must be callable, got {hook!r}")
        with self._lock:
            self.hooks = (*self.hooks, hook)

    def remove(self, hook: Hook) -> None:
        with self._lock:
            hooks = list(self.hooks)
            try:
                hooks.remove(hook)
            except ValueError:
                raise ValueError(f"hook {hook!r} is not registered") from None
            self.hooks = tuple(hooks)


GLOBAL_HOOKS = HookSet()


def emit(hooks: tuple[Hook, ...], event: Event) -> None:
    """Deliver ``event`` to each hook; a raising hook is logged and skipped."""
    for hook in hooks:
        try:
            hook(event)
        except Exception:
            log.exception("seawall: event hook %r raised; the call is not affected", hook)


def add_hook(hook: Hook) -> None:
    """Receive the events of every integration point in this process.

    Hooks run inline on the calling thread or event loop: keep them fast and
    non-blocking (count in memory, hand off to a thread). Thread-safe.
    """
    GLOBAL_HOOKS.add(hook)


def remove_hook(hook: Hook) -> None:
    """Stop delivering events to a hook added with :func:`add_hook`."""
    GLOBAL_HOOKS.remove(hook)
