"""What seawall knows of one DBAPI connection, and the shape of a statement-timeout strategy.

:class:`ConnState` is kept on SQLAlchemy's pool record as an attribute,
never in ``Connection.info``, which is the application's. Each dialect's
strategy (``_sqlalchemy_timeouts`` for PostgreSQL and MySQL,
``_sqlalchemy_sqlite`` for SQLite) is a :class:`NoTimeouts` that reads
and updates that state; :class:`NoTimeouts` itself is the strategy of a
dialect whose server-side timeout seawall does not know how to set.
"""

from __future__ import annotations

import math
from typing import Any

#: ``ConnState.timeout`` after a ``ROLLBACK TO SAVEPOINT``: the value in force is unknown
UNKNOWN = -1

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
        #: the strategy's own: the statement timeout in force (ms, or UNKNOWN) on
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

