"""Where seawall keeps what it knows: per DBAPI connection, and per instrumented engine.

* Per connection, a :class:`ConnState` (the statement timeout in force,
  the liveness poll) kept on SQLAlchemy's pool record as an attribute,
  never in ``Connection.info``, which is the application's.
* Per engine, its ``Instrumentation`` (``_sqlalchemy_hooks``), kept in the
  engine's ``__dict__`` and found again by :func:`instrumentation_of`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Engine

from seawall import ConfigurationError

if TYPE_CHECKING:
    from ._sqlalchemy_hooks import Instrumentation

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


#: The attribute (in the engine's and the dialect's ``__dict__``) holding the Instrumentation.
ENGINE_ATTR = "_seawall_instrumentation"


def sync_engine(engine: Any) -> Engine:
    """The :class:`~sqlalchemy.engine.Engine` of ``engine`` (an ``AsyncEngine``'s ``sync_engine``)."""
    target = getattr(engine, "sync_engine", engine)
    if not isinstance(target, Engine):
        raise ConfigurationError(
            f"expected a sqlalchemy Engine or AsyncEngine, got {type(engine).__name__}"
        )
    return target


def instrumentation_of(engine: Any) -> Instrumentation:
    """The :class:`Instrumentation` of ``engine`` (or of the engine it was copied from)."""
    target: Any = sync_engine(engine)
    while target is not None:
        state = target.__dict__.get(ENGINE_ATTR)
        if state is not None:
            return state  # type: ignore[no-any-return]
        target = target.__dict__.get("_proxied")  # engine.execution_options(...) copies
    raise ConfigurationError(
        f"{engine!r} is not instrumented: call seawall.interceptors.sqlalchemy.instrument(engine, point)"
    )
