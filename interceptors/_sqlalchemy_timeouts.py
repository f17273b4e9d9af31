"""Per-dialect statement timeouts and a round-trip-free liveness check.

The attempt timeout is handed to the database, which cancels the statement
on the server when it runs out:

* PostgreSQL: the policy's attempt timeout becomes the session default at
  connect time (libpq ``options=-c statement_timeout=N``, merged into the
  user's own ``options`` / ``PGOPTIONS``: no extra round trip, ever). A
  statement whose budget is narrower (a total deadline, a transaction
  attempt running out) gets ``SET LOCAL statement_timeout``, which reverts
  at the end of the transaction; a budget within 10 % of the value in
  force is left alone, so a transaction issues at most a handful of extra
  ``SET LOCAL`` whatever its length. Whether the transaction that carried a
  ``SET LOCAL`` has ended is checked before the next statement, and only
  while a ``SET LOCAL`` may be in force (the common statement costs a few
  attribute reads): it has if SQLAlchemy began another transaction since,
  or if the driver reports none open (psycopg 3, psycopg2, asyncpg; no
  round trip). No Connection-level event is needed, which keeps
  SQLAlchemy's own per-checkout event machinery switched off. A
  ``ROLLBACK TO SAVEPOINT`` makes the value unknown.
* MySQL: ``SET SESSION max_execution_time`` (milliseconds, SELECT only),
  re-issued only when the budget changes by more than 10 %.
* SQLite: a progress handler on the connection that interrupts the VM once
  the statement's deadline has passed (``SQLITE_INTERRUPT``; the
  connection stays usable). Installed once per connection; each statement
  only moves its deadline. The application's own progress handler keeps
  running: connections are made with a ``factory=`` subclass that records
  it, and seawall's handler calls it. The handler remembers that it
  interrupted, so the interruption is recognised on Python 3.10 too, whose
  sqlite3 exceptions carry no result code.

What seawall knows of each DBAPI connection (:class:`ConnState`) is kept on
SQLAlchemy's pool record as an attribute, never in ``Connection.info``,
which is the application's.
"""

from __future__ import annotations

import logging
import math
import os
import select
import sqlite3
import stat
import threading
import time
import weakref
from typing import Any

log = logging.getLogger("seawall.sqlalchemy")

#: ``ConnState.timeout`` after a ``ROLLBACK TO SAVEPOINT``: the value in force is unknown
_UNKNOWN = -1

#: Name of the attribute holding a :class:`ConnState` on SQLAlchemy's pool record
#: (``_ConnectionRecord``), or on the fairy of a connection detached from its pool.
#: The statement hot path reads it under this literal name.
STATE_ATTR = "_seawall_state"


class ConnState:
    """What seawall knows of one DBAPI connection, kept out of the application's way.

    It lives as an attribute of SQLAlchemy's pool record, never in the
    record's ``info`` dict: that dict *is* ``Connection.info``, which
    belongs to the application (SQLAlchemy's own ``test_connection_info``
    checks it holds exactly what was put there). A record reconnects in
    place, so a state whose ``dbapi`` is not the record's current DBAPI
    connection is stale and replaced (:func:`state_of`). Touched only by
    the thread or task holding the connection.
    """

    __slots__ = ("cap", "dbapi", "poll", "scope", "session_ms", "timeout")

    def __init__(self, dbapi: Any, session_ms: int | None = None) -> None:
        #: the DBAPI connection described
        self.dbapi = dbapi
        #: PostgreSQL: the session's statement timeout (ms) set at connect; None: unknown
        self.session_ms = session_ms
        #: PostgreSQL: a statement timeout (ms) of the user's own in force on the session,
        #: which seawall narrows but never raises; None: none
        self.cap: int | None = None
        #: the strategy's own: the statement timeout in force (ms, or _UNKNOWN) on
        #: PostgreSQL and MySQL; seawall's progress handler (or False: none) on SQLite
        self.timeout: Any = session_ms
        #: PostgreSQL: weak reference to the SQLAlchemy transaction of the last SET LOCAL
        self.scope: Any = None
        #: liveness: (driver connection, poll object on its socket); False: no socket known
        self.poll: Any = None


def state_of(holder: Any, dbapi: Any) -> ConnState:
    """The :class:`ConnState` of ``dbapi``, kept on ``holder`` (its pool record or fairy)."""
    st: ConnState | None = getattr(holder, STATE_ATTR, None)
    if st is None or st.dbapi is not dbapi:
        st = ConnState(dbapi)
        try:
            setattr(holder, STATE_ATTR, st)
        except AttributeError:  # a holder without a __dict__: nothing is remembered, all still works
            pass
    return st


def set_state(holder: Any, dbapi: Any, session_ms: int | None) -> None:
    """A new DBAPI connection on ``holder``: what seawall knows of it starts afresh."""
    try:
        setattr(holder, STATE_ATTR, ConnState(dbapi, session_ms))
    except AttributeError:
        pass


def to_ms(seconds: float) -> int:
    """Whole milliseconds, rounded up, never 0 (0 means "no timeout" to the databases)."""
    return max(1, math.ceil(seconds * 1000.0))


def _close_enough(current: int, needed: int) -> bool:
    return current > 0 and abs(current - needed) <= max(needed // 10, 1)


class NoTimeouts:
    """Dialects without a server-side statement timeout we know how to set."""

    #: the database enforces timeouts this strategy hands it (else :meth:`apply` does nothing)
    enforces = False
    #: ``ConnState.timeout`` (and ``session_ms`` when known) once the policy's usual
    #: budget is in force and a statement with that budget needs nothing done; ``None``
    #: when every statement must go through :meth:`apply`
    steady_ms: int | None = None
    #: call :meth:`apply` for every statement, even without a timeout (to reset one)
    always_apply = False
    #: :meth:`savepoint_rolled_back` must hear of every ``ROLLBACK TO SAVEPOINT``
    watches_savepoints = False

    def connect_params(self, cargs: Any, cparams: dict[str, Any],
                       attempt_ms: int | None) -> int | None:
        """Add the session default to the driver's connect parameters; return what was set.

        ``cparams`` is this connect's own copy; settings the user gave are merged
        with, never replaced.
        """
        return None

    def apply(self, context: Any, fairy: Any, st: ConnState, timeout: float | None) -> None:
        """Make the database enforce ``timeout`` seconds on the statement of ``context``.

        ``fairy`` is the pool's proxied connection (``context._dbapi_connection``)
        and ``st`` what seawall knows of its DBAPI connection.
        """

    @staticmethod
    def savepoint_rolled_back(st: ConnState) -> None:
        """A ``ROLLBACK TO SAVEPOINT`` ran on the connection ``st`` describes."""

    @staticmethod
    def interrupted(st: ConnState) -> bool:
        """Did our own timeout interrupt the statement that just failed on ``st``'s connection?

        Asked only of a failed statement; ``True`` at most once per interruption.
        """
        return False

    def close(self) -> None:
        """The engine was uninstrumented: leave nothing behind that still acts."""


def _psycopg_idle(driver_connection: Any) -> bool:
    return bool(driver_connection.pgconn.transaction_status == 0)  # pq.TransactionStatus.IDLE


def _psycopg2_idle(driver_connection: Any) -> bool:
    return bool(driver_connection.get_transaction_status() == 0)  # TRANSACTION_STATUS_IDLE


def _asyncpg_idle(driver_connection: Any) -> bool:
    return not driver_connection.is_in_transaction()


#: How to tell, without a round trip, that no transaction is open on a driver's connection.
TRANSACTION_PROBES: dict[str, Any] = {
    "psycopg": _psycopg_idle,
    "psycopg_async": _psycopg_idle,
    "psycopg2": _psycopg2_idle,
    "psycopg2cffi": _psycopg2_idle,
    "asyncpg": _asyncpg_idle,
}


#: Drivers built on libpq, whose connect takes libpq's keywords (``options``, ``connect_timeout``).
LIBPQ_DRIVERS = frozenset({"psycopg", "psycopg_async", "psycopg2", "psycopg2cffi"})

#: MySQL drivers whose connect takes ``connect_timeout`` (seconds).
MYSQL_CONNECT_TIMEOUT_DRIVERS = frozenset({"mysqldb", "pymysql", "aiomysql", "asyncmy",
                                           "mariadbconnector"})


def _libpq_setting_elsewhere(name: str, cargs: Any, cparams: dict[str, Any]) -> bool:
    """May the user have set libpq's ``name`` where a keyword of ours would override it?

    A keyword parameter overrides the same setting in a connection string
    (positional, ``dsn=`` or ``conninfo=``) and in a service file
    (``service=``, ``PGSERVICE``). The string test is deliberately coarse:
    any mention keeps seawall's hands off (the cost is a ``SET LOCAL`` per
    transaction instead of a session default), never the other way round.
    """
    if "service" in cparams or os.environ.get("PGSERVICE"):
        return True
    strings = [a for a in (cargs or ()) if isinstance(a, str)]
    strings += [v for k in ("dsn", "conninfo") if isinstance(v := cparams.get(k), str)]
    return any(name in text or "service" in text for text in strings)


def _merge_libpq_options(cargs: Any, cparams: dict[str, Any], attempt_ms: int) -> int | None:
    """Add ``-c statement_timeout`` to libpq's ``options``, keeping whatever the user set there.

    The user's own ``options`` come from ``connect_args`` or the URL query
    (both land in ``cparams``), else from ``PGOPTIONS``, which an explicit
    ``options`` keyword would silently override: its settings are carried
    over. A ``statement_timeout`` of the user's wins (nothing is added).
    """
    user = cparams.get("options")
    if user is None:
        if _libpq_setting_elsewhere("options", cargs, cparams):
            return None
        user = os.environ.get("PGOPTIONS", "")
    user = str(user)
    if "statement_timeout" in user:
        return None  # the user's own choice wins
    cparams["options"] = f"{user} -c statement_timeout={attempt_ms}".strip()
    return attempt_ms


class PostgresTimeouts(NoTimeouts):
    """``statement_timeout``: session default at connect, ``SET LOCAL`` for narrower budgets.

    ``ConnState.session_ms`` is the session default (ms), ``ConnState.timeout``
    the value in force (equal to the session default in the common case,
    which then costs two attribute reads and no driver call), or
    :data:`_UNKNOWN`. The session default is set at connect only for the
    drivers known to take it (libpq's ``options``, asyncpg's
    ``server_settings``); on others every transaction gets a ``SET LOCAL``.
    """

    enforces = True
    always_apply = True
    watches_savepoints = True

    def __init__(self, driver: str | None, first: float | None = None) -> None:
        self.driver = driver
        self._idle = TRANSACTION_PROBES.get(driver) if driver is not None else None
        # the policy's first attempt timeout (its milliseconds: steady_ms): the usual budget
        self.first = first
        self.steady_ms = to_ms(first) if first is not None else None

    def connect_params(self, cargs: Any, cparams: dict[str, Any],
                       attempt_ms: int | None) -> int | None:
        if attempt_ms is None:
            return None
        if self.driver == "asyncpg":
            settings = dict(cparams.get("server_settings") or {})
            if "statement_timeout" in settings:
                return None  # the user's own choice wins
            settings["statement_timeout"] = str(attempt_ms)
            cparams["server_settings"] = settings
            return attempt_ms
        if self.driver not in LIBPQ_DRIVERS:
            return None  # a driver whose connect keywords we do not know: SET LOCAL instead
        return _merge_libpq_options(cargs, cparams, attempt_ms)

    def apply(self, context: Any, fairy: Any, st: ConnState, timeout: float | None) -> None:
        session = st.session_ms
        if session is None and not self._learn(fairy, st):
            return  # the connection cannot answer (an aborted transaction): nor run a statement
        session = st.session_ms
        current = st.timeout
        if current != session and self._ended(context, fairy, st):
            current = st.timeout = session  # the session default is back
        cap = st.cap
        if timeout is None:
            if not current:
                return
            needed = cap or 0
            if current == needed:
                return
        else:
            needed = self.steady_ms if timeout == self.first else to_ms(timeout)  # type: ignore[assignment]
            if cap is not None and needed > cap:
                needed = cap  # the user's own statement_timeout is never raised
            if current == needed or (current is not None and _close_enough(current, needed)):
                return
        raw = fairy.dbapi_connection
        autocommit = bool(getattr(raw, "autocommit", False))
        scope = "" if autocommit else "LOCAL "
        cursor = raw.cursor()
        try:
            cursor.execute(f"SET {scope}statement_timeout = {int(needed)}")
        finally:
            cursor.close()
        st.timeout = needed
        if autocommit:
            st.session_ms = needed
        else:
            txn = context.root_connection._transaction
            st.scope = weakref.ref(txn) if txn is not None else None

    @staticmethod
    def _learn(fairy: Any, st: ConnState) -> bool:
        """Ask the session's statement timeout, once per connection seawall did not set it on.

        That is a connection whose statement_timeout the user set (connect
        options, ``PGOPTIONS``, a service file, ``server_settings``), one made
        by a ``do_connect`` listener or before :func:`instrument`: what is in
        force there is the user's, a cap seawall narrows but never raises.
        One ``SHOW`` round trip per such connection; ``False`` if it failed.
        """
        try:
            cursor = fairy.dbapi_connection.cursor()
            try:
                cursor.execute("SHOW statement_timeout")
                row = cursor.fetchone()
            finally:
                cursor.close()
            ms = _pg_duration_ms(str(row[0]))
        except Exception:  # an aborted transaction; a DBAPI object that is no real connection
            return False
        st.session_ms = st.timeout = ms if ms is not None else _UNKNOWN
        st.cap = ms if ms else None
        return True

    def _ended(self, context: Any, fairy: Any, st: ConnState) -> bool:
        """Has the transaction that carried the last ``SET LOCAL`` ended?

        Yes when SQLAlchemy has begun another transaction since (commit and
        rollback through SQLAlchemy), or when the driver says no transaction
        is open (a commit on the DBAPI connection itself).
        """
        scope = st.scope
        then = scope() if scope is not None else None
        if then is not context.root_connection._transaction:
            return True
        return self._idle is not None and bool(self._idle(fairy.driver_connection))

    @staticmethod
    def savepoint_rolled_back(st: ConnState) -> None:
        """A ``SET LOCAL`` after the savepoint was undone: the value in force is unknown."""
        st.timeout = _UNKNOWN


_PG_UNITS_MS = {"us": 0.001, "ms": 1, "s": 1000, "min": 60_000, "h": 3_600_000, "d": 86_400_000}


def _pg_duration_ms(text: str) -> int | None:
    """``SHOW statement_timeout``'s answer ("0", "500ms", "7s", "2min") in ms; None if unreadable."""
    text = text.strip()
    digits = len(text) - len(text.lstrip("0123456789"))
    if digits == 0:
        return None
    unit = _PG_UNITS_MS.get(text[digits:].strip() or "ms")
    if unit is None:
        return None
    return math.ceil(int(text[:digits]) * unit)


class MySQLTimeouts(NoTimeouts):
    """``max_execution_time`` (ms, SELECT only) at session level."""

    enforces = True
    always_apply = True

    def __init__(self, first: float | None = None) -> None:
        self.steady_ms = to_ms(first) if first is not None else None

    def apply(self, context: Any, fairy: Any, st: ConnState, timeout: float | None) -> None:
        current = st.timeout
        needed = 0 if timeout is None else to_ms(timeout)
        if current == needed or (current is not None and needed and _close_enough(current, needed)):
            return
        cursor = fairy.dbapi_connection.cursor()
        try:
            cursor.execute(f"SET SESSION max_execution_time = {int(needed)}")
        finally:
            cursor.close()
        st.timeout = needed


# -- SQLite ----------------------------------------------------------------------------

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


def dbapi_of(dialect: Any) -> Any:
    """The dialect's DBAPI module, or ``None`` when none is loaded (mock engines)."""
    try:
        return dialect.loaded_dbapi
    except Exception:  # no DBAPI loaded (mock engines), or a dialect without the attribute
        return None


def timeouts_for(dialect: Any, first: float | None = None) -> NoTimeouts:
    """The statement-timeout strategy of an engine's dialect (``first``: the usual budget, s)."""
    name = dialect.name
    if name == "postgresql":
        return PostgresTimeouts(getattr(dialect, "driver", None), first)
    if name in ("mysql", "mariadb"):
        return MySQLTimeouts(first) if name == "mysql" else NoTimeouts()
    if name == "sqlite":
        # pysqlite's DBAPI is sqlite3.dbapi2, whose Connection is sqlite3's
        return SQLiteTimeouts(chains=getattr(dbapi_of(dialect), "Connection", None)
                              is sqlite3.Connection)
    return NoTimeouts()


def connect_timeout_param(dialect: Any, cargs: Any, cparams: dict[str, Any],
                          timeout: float) -> None:
    """Bound the driver's connect by ``timeout`` seconds unless the user already did.

    Only drivers whose connect keyword is known get one (a third-party
    dialect may have no ``driver`` at all); a connect timeout the user set
    anywhere libpq reads one (keyword, connection string, service file,
    ``PGCONNECT_TIMEOUT``) is left as it is.
    """
    name = dialect.name
    driver = getattr(dialect, "driver", None)
    if name == "postgresql":
        if driver == "asyncpg":
            cparams.setdefault("timeout", timeout)
        elif (driver in LIBPQ_DRIVERS and "connect_timeout" not in cparams
              and not os.environ.get("PGCONNECT_TIMEOUT")
              and not _libpq_setting_elsewhere("connect_timeout", cargs, cparams)):
            cparams["connect_timeout"] = max(2, math.ceil(timeout))  # libpq's minimum is 2 s
    elif name in ("mysql", "mariadb") and driver in MYSQL_CONNECT_TIMEOUT_DRIVERS:
        cparams.setdefault("connect_timeout", max(1, math.ceil(timeout)))


# -- liveness --------------------------------------------------------------------

_DEAD = select.POLLIN | select.POLLHUP | select.POLLERR | getattr(select, "POLLRDHUP", 0)


def _closed(obj: Any) -> bool:
    """The driver's own word that the connection is closed (psycopg 3: bool, psycopg2: int)."""
    flag = getattr(obj, "closed", False)
    return flag is True or (type(flag) is int and flag != 0)


def socket_of(dbapi_connection: Any) -> int | None:
    """The descriptor of the socket under a network DBAPI connection, or ``None``.

    ``None`` when there is no descriptor to find, when what is found is not
    an ``int`` (a mock DBAPI, a proxy) or not a socket (a pipe, a file), or
    when asking raises: unknown, and unknown means "trust the pool".
    """
    driver = getattr(dbapi_connection, "driver_connection", None) or dbapi_connection
    try:
        pgconn = getattr(driver, "pgconn", None)  # psycopg 3, sync and async
        if pgconn is not None:
            fd = pgconn.socket
        else:
            fileno = getattr(driver, "fileno", None)  # psycopg2, mysqlclient
            if not callable(fileno):
                return None
            fd = fileno()
        if type(fd) is not int or fd < 0 or not stat.S_ISSOCK(os.fstat(fd).st_mode):
            return None
    except Exception:
        return None
    return fd


def looks_dead(dbapi_connection: Any, st: ConnState | None = None) -> bool:
    """True when an idle pooled connection has been closed or spoken to by the server.

    An idle connection has nothing to read; bytes (PostgreSQL's FATAL
    ``57P01`` before it hangs up), EOF or an error on its socket mean the
    server dropped it (restart, ``pg_terminate_backend``, idle timeout).
    One non-blocking ``poll``: no round trip. A pending ``LISTEN``
    notification also reads as dead; the connection is then just replaced.
    Only evidence says dead: the driver's ``closed`` flag, or the socket.
    A connection whose socket cannot be found (asyncpg, SQLite, a mock
    DBAPI) is never declared dead: the pool's own checks apply.

    ``st`` keeps the poll object between checkouts. The driver's ``closed``
    flag is read first: libpq closes a socket it found broken (and the
    number may then be reused), but marks the connection bad when it does.
    """
    cached = st.poll if st is not None else None
    if cached is not None:
        if cached is False:
            return False
        driver, poller = cached
        return _closed(driver) or bool(poller.poll(0))
    driver = getattr(dbapi_connection, "driver_connection", None) or dbapi_connection
    if _closed(dbapi_connection) or _closed(driver):
        return True
    fd = socket_of(dbapi_connection)
    if fd is None:
        if st is not None:
            st.poll = False
        return False
    poller = select.poll()
    poller.register(fd, _DEAD)
    if st is not None:
        st.poll = (driver, poller)
    return bool(poller.poll(0))
