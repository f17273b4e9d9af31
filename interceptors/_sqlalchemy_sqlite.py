"""SQLite's statement timeout: a progress handler that interrupts the VM past the deadline.

A progress handler on the connection interrupts the VM once the
statement's deadline has passed (``SQLITE_INTERRUPT``; the connection
stays usable). Installed once per connection; each statement only moves
its deadline. The application's own progress handler keeps running:
connections are made with a ``factory=`` subclass that records it, and
seawall's handler calls it. The handler remembers that it interrupted, so
the interruption is recognised on Python 3.10 too, whose sqlite3
exceptions carry no result code.
"""

from __future__ import annotations

import logging
import math
import sqlite3
import threading
import time
import weakref
from typing import Any

from ._sqlalchemy_state import ConnState
from ._sqlalchemy_timeouts import NoTimeouts

log = logging.getLogger("seawall.sqlalchemy")

# VM instructions between two checks of seawall's deadline: ~tens of microseconds of work
_SQLITE_INSTRUCTIONS = 1000


class _SQLiteDeadline:
    """The progress handler of one sqlite3 connection; ``end`` is a ``time.monotonic`` value.

    ``fired`` turns true when it interrupted the statement: the classifier
    can then tell our statement timeout from other failures without the
    ``sqlite_errorcode`` that Python 3.10's sqlite3 exceptions lack.
    ``app`` is the application's own progress handler, called about every
    ``app_every`` calls of this one (so about as often as it asked); its
    non-zero answer aborts the statement as it would have without seawall.
    ``owner`` is the :class:`SQLiteTimeouts` that last moved ``end``.
    """

    __slots__ = ("__weakref__", "app", "app_every", "end", "fired", "owner", "ticks")

    def __init__(self) -> None:
        self.end = math.inf
        self.fired = False
        self.app: Any = None
        self.app_every = 1
        self.ticks = 0
        self.owner: Any = None

    def __call__(self) -> int:
        app = self.app
        if app is not None:
            ticks = self.ticks + 1
            if ticks >= self.app_every:
                self.ticks = 0
                if app():  # the application's decision (an exception of its own aborts too)
                    return 1
            else:
                self.ticks = ticks
        if time.monotonic() > self.end:
            self.fired = True
            return 1
        return 0


def _install_handler(conn: sqlite3.Connection, deadline: _SQLiteDeadline,
                     app: tuple[Any, int] | None) -> None:
    """Make ``deadline`` the one progress handler of ``conn``, calling ``app`` (handler, n) too."""
    n = _SQLITE_INSTRUCTIONS
    if app is None:
        deadline.app = None
    else:
        handler, app_n = app
        n = min(n, app_n)
        deadline.app, deadline.app_every, deadline.ticks = handler, max(1, round(app_n / n)), 0
    sqlite3.Connection.set_progress_handler(conn, deadline, n)


def _chaining_class(base: type[sqlite3.Connection]) -> type[sqlite3.Connection]:
    """``base`` (sqlite3.Connection or the user's ``factory=``) remembering its progress handler.

    sqlite3 cannot tell which progress handler a connection has, and a
    connection has only one: installing seawall's would silently drop the
    application's. A connection of this class records the handler the
    application sets (before or after seawall's), and seawall's handler
    calls it, so both run.
    """

    class ChainingConnection(base):  # type: ignore[valid-type,misc]
        __slots__ = ("_seawall_app", "_seawall_deadline")

        def set_progress_handler(self, progress_handler: Any, n: int) -> None:
            """As :meth:`sqlite3.Connection.set_progress_handler`, kept alongside seawall's own."""
            base.set_progress_handler(self, progress_handler, n)
            app = (progress_handler, n) if progress_handler is not None and n > 0 else None
            self._seawall_app = app
            deadline = getattr(self, "_seawall_deadline", None)
            if deadline is not None:
                _install_handler(self, deadline, app)

        def _seawall_install(self) -> _SQLiteDeadline:
            deadline: _SQLiteDeadline | None = getattr(self, "_seawall_deadline", None)
            if deadline is None:
                deadline = self._seawall_deadline = _SQLiteDeadline()
                _install_handler(self, deadline, getattr(self, "_seawall_app", None))
            return deadline

    ChainingConnection.__qualname__ = ChainingConnection.__name__ = f"Seawall{base.__name__}"
    return ChainingConnection


class SQLiteTimeouts(NoTimeouts):
    """Interrupt the statement from a progress handler once its deadline passed.

    With sqlite3 as the DBAPI (``chains``), connections are made with a
    ``factory=`` subclass of the user's (or sqlite3's) connection class
    that keeps the application's own progress handler running beside
    seawall's. A connection made otherwise (``creator=``, a ``do_connect``
    listener that connects, one pooled before :func:`instrument`) may carry
    a handler seawall cannot see: it gets no statement timeout, and a
    warning is logged once.
    """

    enforces = True
    always_apply = True

    def __init__(self, chains: bool = True) -> None:
        self.chains = chains
        self._classes: dict[type, type] = {}
        # handlers this instrumentation moved, switched off by close(); the lock orders
        # adds (once per connection, from any thread) against close()'s walk
        self._deadlines: weakref.WeakSet[_SQLiteDeadline] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._refused = False

    def connect_params(self, cargs: Any, cparams: dict[str, Any],
                       attempt_ms: int | None) -> int | None:
        if self.chains:
            base = cparams.get("factory", sqlite3.Connection)
            if isinstance(base, type) and issubclass(base, sqlite3.Connection):
                chaining = self._classes.get(base)
                if chaining is None:
                    chaining = self._classes[base] = _chaining_class(base)
                cparams["factory"] = chaining
        return None

    def apply(self, context: Any, fairy: Any, st: ConnState, timeout: float | None) -> None:
        handler = st.timeout
        if handler is None:
            if timeout is None:
                return
            raw = fairy.driver_connection
            install = getattr(raw, "_seawall_install", None)
            if install is None:
                st.timeout = False  # aiosqlite & co, or a connection seawall did not make
                if self.chains and isinstance(raw, sqlite3.Connection):
                    self._refuse(raw)
                return
            handler = st.timeout = install()
        elif handler is False:
            return
        if handler.owner is not self:  # first use by this instrumentation (closed on uninstrument)
            with self._lock:
                handler.owner = self
                self._deadlines.add(handler)
        handler.end = math.inf if timeout is None else time.monotonic() + timeout
        handler.fired = False

    def _refuse(self, raw: Any) -> None:
        if not self._refused:
            self._refused = True
            log.warning(
                "seawall: no statement timeout on SQLite connection %r: it was not made by the "
                "dialect's connect while instrumented (creator=, a do_connect listener that "
                "connects, or pooled before instrument()), so seawall cannot see a progress "
                "handler of yours on it and will not replace one; engine.dispose() after "
                "instrument() replaces pooled connections", raw)

    @staticmethod
    def interrupted(st: ConnState) -> bool:
        handler = st.timeout
        if isinstance(handler, _SQLiteDeadline) and handler.fired:
            handler.fired = False
            return True
        return False

    def close(self) -> None:
        with self._lock:
            for handler in list(self._deadlines):
                handler.end = math.inf  # the application's handler, if any, keeps running
                handler.owner = None
            self._deadlines.clear()

