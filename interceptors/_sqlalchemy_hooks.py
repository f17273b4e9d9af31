"""Attaching seawall to one engine (:func:`instrument`) and removing it (:func:`uninstrument`).

The dialect's methods are wrapped and the pool's events listened to.
:class:`Instrumentation` is what :func:`instrument` makes per engine: the
settings its hooks share (the point, the dialect's statement-timeout
strategy from :func:`timeouts_for`, the DBAPI's error class), the
connection hooks (``_sqlalchemy_connections``) and the statement hooks
(``_sqlalchemy_statements``), and the bookkeeping that removes them again.
It is kept in the engine's and the dialect's ``__dict__``.

Why wrap methods rather than listen to the dialect's events: any
dialect-level listener makes SQLAlchemy walk its listener collections
around every statement, and a Connection-level one (``before_cursor_execute``,
``commit``, ...) makes it fire engine events around every checkout and
statement too. Counted with callgrind on a PostgreSQL ``SELECT 1``, the
event route cost 4.7k CPU instructions per statement before seawall did
any work; the wrapper costs 1.9k. The wrappers are instance attributes of
the engine's dialect (found before the class's methods), removed by
:meth:`Instrumentation.detach_all`; one that someone else wrapped in turn
stays, and only passes calls on.

Thread and task safety: the hooks keep per-connection state only on the
pool record (an attribute of its own, never the record's ``info``, which
is the application's ``Connection.info``), and hand a new connection's
session timeout from the connect wrapper to the pool's ``connect`` event
through a context variable; one instrumented engine may be used by any
number of threads, or tasks of one event loop.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any, TypeVar, overload

from sqlalchemy import event
from sqlalchemy.engine import Engine

from seawall import ConfigurationError, IntegrationPoint

from ._sqlalchemy_connections import Connections
from ._sqlalchemy_sqlite import SQLiteTimeouts
from ._sqlalchemy_state import ENGINE_ATTR, sync_engine
from ._sqlalchemy_statements import Statements
from ._sqlalchemy_timeouts import MySQLTimeouts, NoTimeouts, PostgresTimeouts, dbapi_of, to_ms

E = TypeVar("E", bound=Any)

class Instrumentation:
    """The hooks of one engine and the state they share.

    Statements and connects are observed by wrapping the dialect's own
    methods (see the module docstring for why not its events); the pool's
    events are listened to. Nothing is attached at the Connection level.
    """

    def __init__(self, engine: Engine, point: IntegrationPoint, pool_liveness: bool) -> None:
        self.engine = engine
        self.point = point
        dialect = engine.dialect
        self.dialect = dialect
        self.dialect_name: str = dialect.name
        self.is_async = bool(getattr(dialect, "is_async", False))
        self.timeouts = timeouts_for(dialect, point.observer().first_timeout)
        attempt = point.timeout.attempt if point.timeout is not None else None
        self.attempt_ms = to_ms(attempt) if attempt is not None else None
        self.pool_liveness = pool_liveness
        error = getattr(dbapi_of(dialect), "Error", None)
        # a mock DBAPI's Error may be no exception class at all: then nothing is a DBAPI error
        self.dbapi_error: type[Exception] | tuple[()] = (
            error if isinstance(error, type) and issubclass(error, Exception) else ())
        self.listeners: list[tuple[str, Callable[..., Any]]] = []  # pool events
        self.wrapped: list[tuple[str, Callable[..., Any]]] = []  # the dialect's methods
        # turn the wrappers off: one left in place (wrapped in turn by someone else)
        # then only passes calls on
        self.stoppers: list[Callable[[], None]] = []
        self.connections = Connections(self)
        self.statements = Statements(self)

    def attach(self) -> None:
        """Wrap the dialect's methods and listen to the pool's events this policy needs."""
        dialect = self.dialect
        if dialect.__dict__.get(ENGINE_ATTR) is not None:
            raise ConfigurationError(
                f"the dialect of {self.engine!r} is already instrumented (an engine made with "
                "execution_options() shares its dialect with the engine it came from)"
            )
        conns = self.connections
        # every pool listener has a price even when it does nothing (SQLAlchemy's
        # dispatch): checkout / checkin only when something needs them
        hooks: list[tuple[str, Callable[..., Any]]] = [("connect", conns.on_pool_connect)]
        if self.pool_liveness or conns.permits is not None:
            hooks.append(("checkout", conns.on_checkout))
        if conns.permits is not None:
            hooks += [("checkin", conns.on_checkin), ("detach", conns.on_detach)]
        for name, fn in hooks:
            event.listen(self.engine, name, fn)
            self.listeners.append((name, fn))
        wrap = self.statements.wrap
        observe = wrap(dialect.do_execute)
        many = wrap(dialect.do_executemany)
        no_params_call = dialect.do_execute_no_params

        def with_params(cursor: Any, statement: str, _parameters: Any, context: Any) -> None:
            no_params_call(cursor, statement, context)

        observe_no_params = wrap(with_params)

        def no_params(cursor: Any, statement: str, context: Any = None) -> None:
            observe_no_params(cursor, statement, None, context)

        wrappers = {"connect": conns.wrap_connect(dialect.connect), "do_execute": observe,
                    "do_executemany": many, "do_execute_no_params": no_params}
        for name, fn in wrappers.items():
            setattr(dialect, name, fn)  # an instance attribute: found before the class's method
            self.wrapped.append((name, fn))
        dialect.__dict__[ENGINE_ATTR] = self

    def detach_all(self) -> None:
        """Remove the listeners and the wrappers, switch the strategy off, give permits back."""
        for name, fn in self.listeners:
            event.remove(self.engine, name, fn)
        self.listeners.clear()
        for stop in self.stoppers:
            stop()
        self.timeouts.close()
        dialect_dict = self.dialect.__dict__
        for name, fn in self.wrapped:
            if dialect_dict.get(name) is fn:
                del dialect_dict[name]
        self.wrapped.clear()
        dialect_dict.pop(ENGINE_ATTR, None)
        self.connections.release_all()


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


@overload
def instrument(engine: Engine, point: IntegrationPoint, *, pool_liveness: bool = True) -> Engine: ...


@overload
def instrument(engine: E, point: IntegrationPoint, *, pool_liveness: bool = True) -> E: ...


def instrument(engine: Any, point: IntegrationPoint, *, pool_liveness: bool = True) -> Any:
    """Apply ``point``'s policy to every connect, checkout and statement of ``engine``.

    ``engine`` is a sync :class:`~sqlalchemy.engine.Engine` or an
    :class:`~sqlalchemy.ext.asyncio.AsyncEngine` (hooks go on its
    ``sync_engine``); the same object is returned, usable exactly as
    before. ``pool_liveness`` (default on) checks each pooled connection's
    socket at checkout, without a round trip, and replaces one the server
    closed; turn it off if you use ``LISTEN`` on pooled connections, and
    prefer ``pool_pre_ping=True`` for drivers whose socket is not
    reachable (asyncpg): a connection whose socket cannot be found is
    trusted, never declared dead. Raises :class:`seawall.ConfigurationError`
    if the engine is already instrumented.
    """
    if not isinstance(point, IntegrationPoint):
        raise ConfigurationError(f"instrument() needs an IntegrationPoint, got {point!r}")
    target = sync_engine(engine)
    if target.__dict__.get(ENGINE_ATTR) is not None:
        raise ConfigurationError(f"{engine!r} is already instrumented; uninstrument() it first")
    state = Instrumentation(target, point, pool_liveness)
    state.attach()
    target.__dict__[ENGINE_ATTR] = state
    return engine


def uninstrument(engine: Any) -> None:
    """Remove every hook :func:`instrument` attached (idempotent).

    Connections opened while instrumented keep their session statement
    timeout until they are closed; call ``engine.dispose()`` to drop them.
    """
    target = sync_engine(engine)
    state = target.__dict__.pop(ENGINE_ATTR, None)
    if state is not None:
        state.detach_all()
