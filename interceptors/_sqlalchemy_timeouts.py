"""Per-dialect statement timeouts and a round-trip-free liveness check.

The attempt timeout is handed to the database, which cancels the statement
on the server when it runs out:

* PostgreSQL: the policy's attempt timeout becomes the session default at
  connect time (libpq ``options=-c statement_timeout=N``: no extra round
  trip, ever). A statement whose budget is narrower (a total deadline, a
  transaction attempt running out) gets ``SET LOCAL statement_timeout``,
  which reverts at the end of the transaction; a budget within 10 % of the
  value in force is left alone, so a transaction issues at most a handful
  of extra ``SET LOCAL`` whatever its length. Whether the transaction that
  carried a ``SET LOCAL`` has ended is checked before the next statement,
  and only while a ``SET LOCAL`` may be in force (the common statement
  costs two dictionary reads): it has if SQLAlchemy began another
  transaction since, or if the driver reports none open (psycopg 3,
  psycopg2, asyncpg; no round trip). No Connection-level event is needed,
  which keeps SQLAlchemy's own per-checkout event machinery switched off.
  A ``ROLLBACK TO SAVEPOINT`` makes the value unknown.
* MySQL: ``SET SESSION max_execution_time`` (milliseconds, SELECT only),
  re-issued only when the budget changes by more than 10 %.
* SQLite: a progress handler on the connection that interrupts the VM once
  the statement's deadline has passed (``SQLITE_INTERRUPT``; the
  connection stays usable). Installed once per connection; each statement
  only moves its deadline. The handler remembers that it interrupted, so
  the interruption is recognised on Python 3.10 too, whose sqlite3
  exceptions carry no result code.
"""

from __future__ import annotations

import math
import select
import time
import weakref
from typing import Any

# key in the pool connection record's ``info``: the statement timeout (ms) known
# to be in force on that DBAPI connection; _UNKNOWN after a savepoint rollback
TIMEOUT_KEY = "seawall_statement_timeout_ms"
SESSION_KEY = "seawall_session_timeout_ms"
# weak reference to the SQLAlchemy transaction the last SET LOCAL ran in
SCOPE_KEY = "seawall_statement_timeout_scope"
_UNKNOWN = -1


def to_ms(seconds: float) -> int:
    """Whole milliseconds, rounded up, never 0 (0 means "no timeout" to the databases)."""
    return max(1, math.ceil(seconds * 1000.0))


def _close_enough(current: int, needed: int) -> bool:
    return current > 0 and abs(current - needed) <= max(needed // 10, 1)


class NoTimeouts:
    """Dialects without a server-side statement timeout we know how to set."""

    #: the database enforces timeouts this strategy hands it (else :meth:`apply` does nothing)
    enforces = False
    #: ``info[TIMEOUT_KEY]`` (and ``info[SESSION_KEY]`` when present) once the policy's usual
    #: budget is in force and a statement with that budget needs nothing done; ``None``
    #: when every statement must go through :meth:`apply`
    steady_ms: int | None = None
    #: call :meth:`apply` for every statement, even without a timeout (to reset one)
    always_apply = False
    #: :meth:`savepoint_rolled_back` must hear of every ``ROLLBACK TO SAVEPOINT``
    watches_savepoints = False

    def connect_params(self, cparams: dict[str, Any], attempt_ms: int | None) -> int | None:
        """Add the session default to the driver's connect parameters; return what was set."""
        return None

    def apply(self, context: Any, fairy: Any, info: dict[Any, Any], timeout: float | None) -> None:
        """Make the database enforce ``timeout`` seconds on the statement of ``context``.

        ``fairy`` is the pool's proxied connection (``context._dbapi_connection``)
        and ``info`` its record's ``info`` dict, where per-connection state is kept.
        """

    @staticmethod
    def savepoint_rolled_back(info: dict[Any, Any]) -> None:
        """A ``ROLLBACK TO SAVEPOINT`` ran on the connection owning ``info``."""

    @staticmethod
    def interrupted(info: dict[Any, Any]) -> bool:
        """Did our own timeout interrupt the statement that just failed on ``info``'s connection?

        Asked only of a failed statement; ``True`` at most once per interruption.
        """
        return False


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


class PostgresTimeouts(NoTimeouts):
    """``statement_timeout``: session default at connect, ``SET LOCAL`` for narrower budgets.

    ``info[SESSION_KEY]`` is the session default (ms), ``info[TIMEOUT_KEY]``
    the value a ``SET LOCAL`` put in force, or :data:`_UNKNOWN`; absent or
    equal to the session default in the common case, which then costs two
    dictionary reads and no driver call.
    """

    enforces = True
    always_apply = True
    watches_savepoints = True

    def __init__(self, driver: str, first: float | None = None) -> None:
        self.driver = driver
        self._idle = TRANSACTION_PROBES.get(driver)
        # the policy's first attempt timeout (its milliseconds: steady_ms): the usual budget
        self.first = first
        self.steady_ms = to_ms(first) if first is not None else None

    def connect_params(self, cparams: dict[str, Any], attempt_ms: int | None) -> int | None:
        if attempt_ms is None:
            return None
        if self.driver == "asyncpg":
            settings = dict(cparams.get("server_settings") or {})
            if "statement_timeout" in settings:
                return None  # the user's own choice wins
            settings["statement_timeout"] = str(attempt_ms)
            cparams["server_settings"] = settings
            return attempt_ms
        options = str(cparams.get("options") or "")
        if "statement_timeout" in options:
            return None
        cparams["options"] = f"{options} -c statement_timeout={attempt_ms}".strip()
        return attempt_ms

    def apply(self, context: Any, fairy: Any, info: dict[Any, Any], timeout: float | None) -> None:
        session = info.get(SESSION_KEY)
        current = info.get(TIMEOUT_KEY, session)
        if current != session and self._ended(context, fairy, info):
            current = info[TIMEOUT_KEY] = session  # the session default is back
        if timeout is None:
            if not current:
                return
            needed = 0
        else:
            needed = self.steady_ms if timeout == self.first else to_ms(timeout)  # type: ignore[assignment]
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
        info[TIMEOUT_KEY] = needed
        if autocommit:
            info[SESSION_KEY] = needed
        else:
            txn = context.root_connection._transaction
            info[SCOPE_KEY] = weakref.ref(txn) if txn is not None else None

    def _ended(self, context: Any, fairy: Any, info: dict[Any, Any]) -> bool:
        """Has the transaction that carried the last ``SET LOCAL`` ended?

        Yes when SQLAlchemy has begun another transaction since (commit and
        rollback through SQLAlchemy), or when the driver says no transaction
        is open (a commit on the DBAPI connection itself).
        """
        scope = info.get(SCOPE_KEY)
        then = scope() if scope is not None else None
        if then is not context.root_connection._transaction:
            return True
        return self._idle is not None and bool(self._idle(fairy.driver_connection))

    @staticmethod
    def savepoint_rolled_back(info: dict[Any, Any]) -> None:
        """A ``SET LOCAL`` after the savepoint was undone: the value in force is unknown."""
        info[TIMEOUT_KEY] = _UNKNOWN


class MySQLTimeouts(NoTimeouts):
    """``max_execution_time`` (ms, SELECT only) at session level."""

    enforces = True
    always_apply = True

    def __init__(self, first: float | None = None) -> None:
        self.steady_ms = to_ms(first) if first is not None else None

    def apply(self, context: Any, fairy: Any, info: dict[Any, Any], timeout: float | None) -> None:
        current = info.get(TIMEOUT_KEY)
        needed = 0 if timeout is None else to_ms(timeout)
        if current == needed or (current is not None and needed and _close_enough(current, needed)):
            return
        cursor = fairy.dbapi_connection.cursor()
        try:
            cursor.execute(f"SET SESSION max_execution_time = {int(needed)}")
        finally:
            cursor.close()
        info[TIMEOUT_KEY] = needed


class _SQLiteDeadline:
    """The progress handler of one sqlite3 connection; ``end`` is a ``time.monotonic`` value.

    ``fired`` turns true when it interrupted the statement: the classifier
    can then tell our statement timeout from other failures without the
    ``sqlite_errorcode`` that Python 3.10's sqlite3 exceptions lack.
    """

    __slots__ = ("end", "fired")

    def __init__(self) -> None:
        self.end = math.inf
        self.fired = False

    def __call__(self) -> int:
        if time.monotonic() > self.end:
            self.fired = True
            return 1
        return 0


class SQLiteTimeouts(NoTimeouts):
    """Interrupt the statement from a progress handler once its deadline passed."""

    enforces = True
    always_apply = True
    # VM instructions between two checks: ~tens of microseconds of work
    INSTRUCTIONS = 1000

    def apply(self, context: Any, fairy: Any, info: dict[Any, Any], timeout: float | None) -> None:
        handler = info.get(TIMEOUT_KEY)
        if handler is None:
            if timeout is None:
                return
            raw = fairy.driver_connection
            setter = getattr(raw, "set_progress_handler", None)
            if setter is None or not isinstance(raw, _sqlite3_connection()):
                info[TIMEOUT_KEY] = False  # aiosqlite & co: not supported
                return
            handler = _SQLiteDeadline()
            setter(handler, self.INSTRUCTIONS)
            info[TIMEOUT_KEY] = handler
        elif handler is False:
            return
        handler.end = math.inf if timeout is None else time.monotonic() + timeout
        handler.fired = False

    @staticmethod
    def interrupted(info: dict[Any, Any]) -> bool:
        handler = info.get(TIMEOUT_KEY)
        if isinstance(handler, _SQLiteDeadline) and handler.fired:
            handler.fired = False
            return True
        return False


def _sqlite3_connection() -> type:
    import sqlite3

    return sqlite3.Connection


def timeouts_for(dialect: Any, first: float | None = None) -> NoTimeouts:
    """The statement-timeout strategy of an engine's dialect (``first``: the usual budget, s)."""
    name = dialect.name
    if name == "postgresql":
        return PostgresTimeouts(dialect.driver, first)
    if name in ("mysql", "mariadb"):
        return MySQLTimeouts(first) if name == "mysql" else NoTimeouts()
    if name == "sqlite":
        return SQLiteTimeouts()
    return NoTimeouts()


def connect_timeout_param(dialect: Any, cparams: dict[str, Any], timeout: float) -> None:
    """Bound the driver's connect by ``timeout`` seconds unless the user already did."""
    driver = dialect.driver
    if dialect.name == "postgresql":
        if driver == "asyncpg":
            cparams.setdefault("timeout", timeout)
        elif "connect_timeout" not in cparams:
            cparams["connect_timeout"] = max(2, math.ceil(timeout))  # libpq's minimum is 2 s
    elif dialect.name in ("mysql", "mariadb"):
        cparams.setdefault("connect_timeout", max(1, math.ceil(timeout)))


# -- liveness --------------------------------------------------------------------

_DEAD = select.POLLIN | select.POLLHUP | select.POLLERR | getattr(select, "POLLRDHUP", 0)


def socket_of(dbapi_connection: Any) -> int | None:
    """The file descriptor of a network DBAPI connection, ``None`` when unknown or not a socket."""
    driver = getattr(dbapi_connection, "driver_connection", None) or dbapi_connection
    pgconn = getattr(driver, "pgconn", None)  # psycopg 3, sync and async
    try:
        if pgconn is not None:
            return int(pgconn.socket)
        fileno = getattr(driver, "fileno", None)  # psycopg2, mysqlclient
        if callable(fileno):
            return int(fileno())
    except Exception:
        return -1  # closed: psycopg raises on a closed connection's socket
    return None


# key in the pool connection record's ``info`` (cleared when the DBAPI connection is
# closed or invalidated): (driver connection, poll object on its socket), or False
_POLL_KEY = "seawall_liveness_poll"


def looks_dead(dbapi_connection: Any, info: dict[Any, Any] | None = None) -> bool:
    """True when an idle pooled connection has been closed or spoken to by the server.

    An idle connection has nothing to read; bytes (PostgreSQL's FATAL
    ``57P01`` before it hangs up), EOF or an error on its socket mean the
    server dropped it (restart, ``pg_terminate_backend``, idle timeout).
    One non-blocking ``poll``: no round trip. A pending ``LISTEN``
    notification also reads as dead; the connection is then just replaced.

    ``info`` (the pool record's, whose life is the DBAPI connection's)
    keeps the poll object between checkouts. The driver's ``closed`` flag
    is read first: libpq closes a socket it found broken (and the number
    may then be reused), but marks the connection bad when it does.
    """
    cached = info.get(_POLL_KEY) if info is not None else None
    if cached is not None:
        if cached is False:
            return False
        driver, poller = cached
        return getattr(driver, "closed", False) is True or bool(poller.poll(0))
    driver = getattr(dbapi_connection, "driver_connection", None) or dbapi_connection
    if getattr(dbapi_connection, "closed", False) is True or getattr(driver, "closed", False) is True:
        return True
    fd = socket_of(dbapi_connection)
    if fd is None:
        if info is not None:
            info[_POLL_KEY] = False
        return False
    if fd < 0:
        return True
    poller = select.poll()
    poller.register(fd, _DEAD)
    if info is not None:
        info[_POLL_KEY] = (driver, poller)
    return bool(poller.poll(0))
