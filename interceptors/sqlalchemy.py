"""SQLAlchemy engine hooks: one integration point's policy on an ``Engine`` or ``AsyncEngine``.

::

    from seawall.interceptors import sqlalchemy as sw_sa

    engine = sw_sa.instrument(create_engine(url), orders_db)   # same engine, now protected
    total = sw_sa.run_transaction(engine, transfer)            # whole unit retried when safe
    total = await sw_sa.arun_transaction(async_engine, atransfer)
    sw_sa.uninstrument(engine)

What :func:`instrument` attaches, and what each part does. The
statements and connects go through the engine's dialect, whose methods
are wrapped (instance attributes of that engine's dialect, removed again
by :func:`uninstrument`); the pool's events are listened to with
``event.listen`` (on ``sync_engine`` for an ``AsyncEngine``):

* ``dialect.connect``: every new DBAPI connection is a call ``connect``
  through the point: the breaker refuses it at once
  (:class:`seawall.CircuitOpenError`) while the database is known down,
  connect errors are retried with the point's backoff, the attempt
  timeout becomes the driver's connect timeout, and the attempt timeout
  becomes the session's statement timeout (both merged with the user's own
  connect parameters, never replacing them; see ``_sqlalchemy_timeouts``).
  ``do_connect`` listeners of your own run first and see only the URL's and
  ``connect_args``' parameters; one that makes the connection itself takes
  it past seawall.
* ``checkout`` (pool): a pooled connection the server has closed (restart,
  ``pg_terminate_backend``, idle timeout) is detected with one non-blocking
  ``poll`` of its socket and replaced before the caller sees it; the
  point's bulkhead bounds how many connections are checked out at once
  (waiting at most ``max_wait``, then :class:`seawall.BulkheadFullError`).
  ``checkin``/``detach`` give the permit back (listened to only with a
  bulkhead); ``connect`` notes the session's statement timeout.
* ``dialect.do_execute`` / ``do_execute_no_params`` / ``do_executemany``:
  every statement is one call through the point, named by a
  low-cardinality operation (the statement kind and table, e.g.
  ``"select accounts"``, or the user's label in the execution option
  ``seawall_operation``), gated by the breaker, classified from SQLSTATEs
  and driver codes (as the :class:`sqlalchemy.exc.DBAPIError` the caller
  gets), with its timeout enforced by the database (see
  ``_sqlalchemy_timeouts``). ``do_execute`` listeners of your own run
  first; one that runs the statement itself takes it past seawall.

Statements are never replayed by these hooks. Inside a transaction a
failed statement has already aborted the transaction (PostgreSQL) or left
earlier writes whose fate depends on what the caller does next; replaying
just that statement after a reconnect would commit half a unit of work
(the earlier writes died with the old connection). Use
:func:`run_transaction`, which replays the whole unit on a new connection.

Where each part lives: ``_sqlalchemy_hooks`` (attaching and removing),
``_sqlalchemy_connections`` (connect through the point, liveness at
checkout, bulkhead permits), ``_sqlalchemy_statements`` (the statement
hook, observed through ``point.observer()``), ``_sqlalchemy_transactions``
(units of work replayed whole), ``_sqlalchemy_timeouts`` /
``_sqlalchemy_sqlite`` / ``_sqlalchemy_state`` (statement timeouts per
dialect), ``_sqlalchemy_classify`` (SQLSTATEs and driver codes). The
hooks may be used by any number of threads, or tasks of one event loop.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

from sqlalchemy.engine import Connection, Engine

from seawall import ConfigurationError, IntegrationPoint

from ._sqlalchemy_classify import classify
from ._sqlalchemy_hooks import STATE_ATTR, Instrumentation, instrumentation_of, sync_engine
from ._sqlalchemy_statements import OPERATION_OPTION
from ._sqlalchemy_statements import operation_of as operation_of  # tests and tools name it
from ._sqlalchemy_transactions import arun_unit, run_unit

__all__ = [
    "OPERATION_OPTION",
    "arun_transaction",
    "classify",
    "instrument",
    "run_transaction",
    "uninstrument",
]

T = TypeVar("T")
E = TypeVar("E", bound=Any)


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
    if target.__dict__.get(STATE_ATTR) is not None:
        raise ConfigurationError(f"{engine!r} is already instrumented; uninstrument() it first")
    state = Instrumentation(target, point, pool_liveness)
    state.attach()
    target.__dict__[STATE_ATTR] = state
    return engine


def uninstrument(engine: Any) -> None:
    """Remove every hook :func:`instrument` attached (idempotent).

    Connections opened while instrumented keep their session statement
    timeout until they are closed; call ``engine.dispose()`` to drop them.
    """
    target = sync_engine(engine)
    state = target.__dict__.pop(STATE_ATTR, None)
    if state is not None:
        state.detach_all()


def run_transaction(engine: Any, work: Callable[[Connection], T], *,
                    operation: str = "transaction", isolation_level: str | None = None) -> T:
    """Run ``work(connection)`` in one transaction; replay the whole unit on transient failures.

    Each attempt checks out a connection, begins a transaction
    (``isolation_level``, e.g. ``"SERIALIZABLE"``, when given), calls
    ``work`` and commits. A disconnect, serialization failure, deadlock,
    lock not available or SQLite busy rolls the attempt back and runs
    ``work`` again on a fresh connection, with the point's backoff, budget,
    breaker and deadline; the unit is one call named ``operation``. A
    COMMIT whose outcome is unknown (the connection died during it) is not
    replayed. ``work`` must not commit itself and must have no side effects
    outside the database (it may run more than once). The statement timeout
    of each statement is what is left of the attempt's budget.
    """
    state = instrumentation_of(engine)
    return run_unit(state.point, state.dialect_name, engine, work, operation, isolation_level)


async def arun_transaction(engine: Any, work: Callable[[Any], Awaitable[T]], *,
                           operation: str = "transaction",
                           isolation_level: str | None = None) -> T:
    """The :class:`~sqlalchemy.ext.asyncio.AsyncEngine` twin of :func:`run_transaction`.

    ``work`` is ``async def work(conn: AsyncConnection)``. The database
    enforces the attempt's budget (statement timeout), so the attempt is not
    cancelled client-side: cancelling a running asyncio statement costs a
    reconnect. Cancelling the caller cancels the unit and is not a failure.
    """
    state = instrumentation_of(engine)
    return await arun_unit(state.point, state.dialect_name, engine, work, operation,
                           isolation_level)
