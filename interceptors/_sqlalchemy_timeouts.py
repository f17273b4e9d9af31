"""Statement timeouts handed to PostgreSQL and MySQL, and the driver's connect timeout.

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
* SQLite: a progress handler (``_sqlalchemy_sqlite``).

Each strategy is a :class:`NoTimeouts` (itself the strategy of a dialect
whose server-side timeout seawall does not know how to set) working on
the connection's :class:`ConnState` (``_sqlalchemy_state``);
``_sqlalchemy_hooks.timeouts_for`` picks the one of an engine's dialect.
"""

from __future__ import annotations

import math
import os
import weakref
from typing import Any

from ._sqlalchemy_state import UNKNOWN, ConnState


def to_ms(seconds: float) -> int:
    """Whole milliseconds, rounded up, never 0 (0 means "no timeout" to the databases)."""
    return max(1, math.ceil(seconds * 1000.0))



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


def _close_enough(current: int, needed: int) -> bool:
    return current > 0 and abs(current - needed) <= max(needed // 10, 1)


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
    :data:`UNKNOWN`. The session default is set at connect only for the
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
        st.session_ms = st.timeout = ms if ms is not None else UNKNOWN
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
        st.timeout = UNKNOWN


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



def dbapi_of(dialect: Any) -> Any:
    """The dialect's DBAPI module, or ``None`` when none is loaded (mock engines)."""
    try:
        return dialect.loaded_dbapi
    except Exception:  # no DBAPI loaded (mock engines), or a dialect without the attribute
        return None


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

