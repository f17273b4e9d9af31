"""Classification of database failures from structured data only.

Keys are, in order: SQLAlchemy's disconnect flag (``connection_invalidated``,
set from the dialect's ``is_disconnect``), the PostgreSQL SQLSTATE
(``orig.sqlstate`` for psycopg 3 and SQLAlchemy's asyncpg adapter,
``orig.pgcode`` for psycopg2), the SQLite primary result code
(``orig.sqlite_errorcode``, Python >= 3.11) and the MySQL error number
(``orig.args[0]`` for mysqlclient, PyMySQL, aiomysql, asyncmy). Never the
message text.

Python 3.10's sqlite3 exceptions carry no result code, so there busy,
locked and interrupted cannot be told from other ``OperationalError`` s:
they get the default (permanent: not retried, counted by the breaker),
except an interruption by our own statement timeout, which the progress
handler records (:data:`STATEMENT_TIMEOUT_MARK`) and which stays a timeout.

Contention (serialization failure, deadlock, lock not available, SQLite
busy) is retried as a whole transaction but does not count against the
circuit breaker: it says the workload collides, not that the database is
sick. Client errors (constraint violations, syntax, privileges, data
errors) are permanent and do not count against the breaker either.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from sqlalchemy import exc as sa_exc

from seawall import Category, Classification, RejectedError
from seawall._classify import CLIENT_ERROR, PERMANENT, TIMEOUT, TRANSIENT, UNAVAILABLE

# Retried (as a whole transaction), not counted by the breaker: the workload collides.
CONTENTION = Classification(Category.TRANSIENT, retry=True, breaker=False)
# The connection was lost or could not be made: retried, counted by the breaker.
DISCONNECT = TRANSIENT
# Local saturation (pool exhausted, our own bulkhead): neither retried nor counted.
SATURATED = Classification(Category.UNAVAILABLE, retry=False, breaker=False)

# -- PostgreSQL -------------------------------------------------------------------

#: Exact SQLSTATEs, consulted before the class table below.
PG_SQLSTATES: dict[str, Classification] = {
    "40001": CONTENTION,   # serialization_failure: the transaction was rolled back
    "40P01": CONTENTION,   # deadlock_detected: the transaction was rolled back
    "55P03": CONTENTION,   # lock_not_available (NOWAIT, lock_timeout)
    "57014": TIMEOUT,      # query_canceled: statement_timeout (or a cancel request)
    "25P04": TIMEOUT,      # transaction_timeout (PostgreSQL 17)
    "25P03": DISCONNECT,   # idle_in_transaction_session_timeout: the session is gone
    "57P01": DISCONNECT,   # admin_shutdown (server stop, pg_terminate_backend)
    "57P02": DISCONNECT,   # crash_shutdown
    "57P03": UNAVAILABLE,  # cannot_connect_now (starting up, recovering)
    "57P05": DISCONNECT,   # idle_session_timeout
    "57P04": PERMANENT,    # database_dropped
    "53300": UNAVAILABLE,  # too_many_connections
    "40003": PERMANENT,    # statement_completion_unknown: never replay
}

#: Two-character SQLSTATE classes.
PG_CLASSES: dict[str, Classification] = {
    "08": DISCONNECT,      # connection exception
    "53": UNAVAILABLE,     # insufficient resources (disk full, out of memory)
    # the caller's mistakes: permanent, never counted against the breaker
    "0A": CLIENT_ERROR,    # feature not supported
    "21": CLIENT_ERROR,    # cardinality violation
    "22": CLIENT_ERROR,    # data exception
    "23": CLIENT_ERROR,    # integrity constraint violation
    "24": CLIENT_ERROR,    # invalid cursor state
    "25": CLIENT_ERROR,    # invalid transaction state (25P03 and 25P04 above)
    "26": CLIENT_ERROR,    # invalid SQL statement name
    "27": CLIENT_ERROR,    # triggered data change violation
    "28": CLIENT_ERROR,    # invalid authorization specification
    "2B": CLIENT_ERROR,    # dependent privilege descriptors still exist
    "2D": CLIENT_ERROR,    # invalid transaction termination
    "2F": CLIENT_ERROR,    # SQL routine exception
    "34": CLIENT_ERROR,    # invalid cursor name
    "38": CLIENT_ERROR,    # external routine exception
    "39": CLIENT_ERROR,    # external routine invocation exception
    "3B": CLIENT_ERROR,    # savepoint exception
    "3D": CLIENT_ERROR,    # invalid catalog name (no such database)
    "3F": CLIENT_ERROR,    # invalid schema name
    "42": CLIENT_ERROR,    # syntax error or access rule violation
    "44": CLIENT_ERROR,    # WITH CHECK OPTION violation
    "P0": CLIENT_ERROR,    # PL/pgSQL raise / assert
}

# -- SQLite (primary result codes) ---------------------------------------------------

SQLITE_CODES: dict[int, Classification] = {
    5: CONTENTION,     # SQLITE_BUSY: another connection holds the lock ("database is locked")
    6: CONTENTION,     # SQLITE_LOCKED: a conflict inside the same connection / shared cache
    9: TIMEOUT,        # SQLITE_INTERRUPT: our statement timeout (progress handler / interrupt())
    1: CLIENT_ERROR,   # SQLITE_ERROR: syntax error, no such table, ...
    19: CLIENT_ERROR,  # SQLITE_CONSTRAINT
    20: CLIENT_ERROR,  # SQLITE_MISMATCH
    25: CLIENT_ERROR,  # SQLITE_RANGE: bad parameter index
    8: PERMANENT,      # SQLITE_READONLY
    10: PERMANENT,     # SQLITE_IOERR
    11: PERMANENT,     # SQLITE_CORRUPT
    13: PERMANENT,     # SQLITE_FULL
    14: PERMANENT,     # SQLITE_CANTOPEN
}

# -- MySQL / MariaDB (server and client error numbers) --------------------------------

MYSQL_CODES: dict[int, Classification] = {
    1213: CONTENTION,   # ER_LOCK_DEADLOCK: the transaction was rolled back
    1205: CONTENTION,   # ER_LOCK_WAIT_TIMEOUT
    3572: CONTENTION,   # ER_LOCK_NOWAIT
    3024: TIMEOUT,      # ER_QUERY_TIMEOUT: max_execution_time exceeded
    1969: TIMEOUT,      # MariaDB ER_STATEMENT_TIMEOUT: max_statement_time exceeded
    1317: TIMEOUT,      # ER_QUERY_INTERRUPTED
    1040: UNAVAILABLE,  # ER_CON_COUNT_ERROR: too many connections
    1053: DISCONNECT,   # ER_SERVER_SHUTDOWN
    1927: DISCONNECT,   # ER_CONNECTION_KILLED
    2002: DISCONNECT,   # CR_CONNECTION_ERROR
    2003: DISCONNECT,   # CR_CONN_HOST_ERROR
    2006: DISCONNECT,   # CR_SERVER_GONE_ERROR
    2013: DISCONNECT,   # CR_SERVER_LOST
    2014: DISCONNECT,   # CR_COMMANDS_OUT_OF_SYNC
    2045: DISCONNECT,   # CR_CONN_UNKNOW_PROTOCOL
    2055: DISCONNECT,   # CR_SERVER_LOST_EXTENDED
    4031: DISCONNECT,   # ER_CLIENT_INTERACTION_TIMEOUT
    1044: CLIENT_ERROR,  # ER_DBACCESS_DENIED_ERROR
    1045: CLIENT_ERROR,  # ER_ACCESS_DENIED_ERROR
    1048: CLIENT_ERROR,  # ER_BAD_NULL_ERROR
    1049: CLIENT_ERROR,  # ER_BAD_DB_ERROR
    1054: CLIENT_ERROR,  # ER_BAD_FIELD_ERROR
    1062: CLIENT_ERROR,  # ER_DUP_ENTRY
    1064: CLIENT_ERROR,  # ER_PARSE_ERROR
    1146: CLIENT_ERROR,  # ER_NO_SUCH_TABLE
    1264: CLIENT_ERROR,  # ER_WARN_DATA_OUT_OF_RANGE
    1364: CLIENT_ERROR,  # ER_NO_DEFAULT_FOR_FIELD
    1406: CLIENT_ERROR,  # ER_DATA_TOO_LONG
    1451: CLIENT_ERROR,  # ER_ROW_IS_REFERENCED_2
    1452: CLIENT_ERROR,  # ER_NO_REFERENCED_ROW_2
}

#: Attribute set on a DBAPI exception that our own statement timeout caused,
#: when the driver's error does not say so by code (SQLite on Python 3.10:
#: the progress handler that interrupted the statement knows it did).
STATEMENT_TIMEOUT_MARK = "_seawall_statement_timeout"

# DBAPI exception class names (PEP 249) that mean the caller's statement is wrong.
_CLIENT_DBAPI_CLASSES = ("IntegrityError", "ProgrammingError", "DataError", "NotSupportedError")


def sqlstate(orig: Any) -> str | None:
    """The SQLSTATE of a DBAPI exception (psycopg 3 / asyncpg adapter / psycopg2), if any."""
    code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    return code if isinstance(code, str) and len(code) == 5 else None


def _mysql_code(orig: Any) -> int | None:
    args = getattr(orig, "args", ())
    if args and isinstance(args[0], int) and not isinstance(args[0], bool):
        return args[0]
    return None


def _dbapi_class_rule(orig: BaseException) -> Classification | None:
    for klass in type(orig).__mro__:
        if klass.__name__ in _CLIENT_DBAPI_CLASSES:
            return CLIENT_ERROR
    return None


def classify_dbapi(orig: BaseException, dialect: str | None) -> Classification | None:
    """Classify a raw DBAPI exception (``orig``) of the named dialect family."""
    if isinstance(orig, sqlite3.Error) or dialect == "sqlite":
        code = getattr(orig, "sqlite_errorcode", None)
        if isinstance(code, int):
            found = SQLITE_CODES.get(code & 0xFF)
            if found is not None:
                return found
        elif getattr(orig, STATEMENT_TIMEOUT_MARK, False):
            return TIMEOUT  # Python 3.10: no code, but our progress handler interrupted it
        return _dbapi_class_rule(orig)
    state = sqlstate(orig)
    if state is not None:
        found = PG_SQLSTATES.get(state)
        if found is None:
            found = PG_CLASSES.get(state[:2])
        return found if found is not None else PERMANENT
    if dialect in ("mysql", "mariadb"):
        code = _mysql_code(orig)
        if code is not None:
            found = MYSQL_CODES.get(code)
            if found is not None:
                return found
    return _dbapi_class_rule(orig)


def classify(exc: BaseException, dialect: str | None = None) -> Classification | None:
    """The SQLAlchemy integration's rule: a classification, or ``None`` to use the defaults.

    ``exc`` is what the caller sees: usually a :class:`sqlalchemy.exc.DBAPIError`
    wrapping the driver's exception in ``orig``; ``dialect`` is the engine's
    ``dialect.name`` (needed for MySQL, whose driver errors carry only a number).
    """
    if isinstance(exc, sa_exc.DBAPIError):
        if exc.connection_invalidated:
            return DISCONNECT
        orig = exc.orig
        found = classify_dbapi(orig, dialect) if isinstance(orig, BaseException) else None
        if found is not None:
            return found
        if isinstance(exc, (sa_exc.OperationalError, sa_exc.InterfaceError)):
            return PERMANENT
        if isinstance(exc, (sa_exc.IntegrityError, sa_exc.ProgrammingError, sa_exc.DataError,
                            sa_exc.NotSupportedError)):
            return CLIENT_ERROR
        return PERMANENT
    if isinstance(exc, sa_exc.TimeoutError):  # the pool's own wait (QueuePool limit reached)
        return SATURATED
    if isinstance(exc, RejectedError):
        return SATURATED
    if isinstance(exc, sa_exc.PendingRollbackError):
        return CLIENT_ERROR  # the caller kept using a failed transaction
    if isinstance(exc, sqlite3.Error) or sqlstate(exc) is not None:
        return classify_dbapi(exc, dialect)
    if isinstance(exc, TimeoutError):  # asyncpg command_timeout escapes unwrapped
        return TIMEOUT
    if dialect in ("mysql", "mariadb") and _mysql_code(exc) is not None:
        return classify_dbapi(exc, dialect)
    return None


def no_retry(c: Classification) -> Classification:
    """``c``, never retried: a statement (or an unknown COMMIT) is not replayed on its own."""
    return c.with_retry(False) if c.retry else c
