"""Units of work replayed whole: :func:`run_transaction` and :func:`arun_transaction`.

A statement is never replayed on its own (see ``sqlalchemy.py``): a unit
is. Each attempt checks out a connection, begins a transaction, runs the
caller's ``work`` and commits, through ``point.run`` / ``point.arun``, so
the unit is the breaker's, the retry's and the bulkhead's one call. While
it runs, :data:`IN_UNIT` is true: the statement and connect hooks then
record their work as events only (no breaker ticket, no retry, no second
bulkhead permit). A COMMIT whose outcome is unknown (the connection died
during it) is marked by :func:`commit_failed`, and :func:`unit_rule`
never replays it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any, TypeVar

from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection

from seawall import Classification
from seawall._execution import add_note

from ._sqlalchemy_classify import classify, no_retry, sqlstate
from ._sqlalchemy_state import instrumentation_of

T = TypeVar("T")

#: True while a unit of work runs: the unit is then the breaker's and the
#: retry's unit, and the statements and connects inside it are recorded as
#: events only (no breaker ticket, no retry, no second bulkhead permit).
IN_UNIT: ContextVar[bool] = ContextVar("seawall_sqlalchemy_unit", default=False)

# attribute of a COMMIT failure whose outcome is unknown: the note to add (True once added)
_COMMIT_UNKNOWN = "_seawall_commit_unknown"


def unit_rule(dialect_name: str) -> Callable[[BaseException], Classification | None]:
    """The exception rule of a unit: as the statements', but an unknown COMMIT is never replayed.

    The exception then says why it was not (a note), as every other give-up does.
    """

    def rule(exc: BaseException) -> Classification | None:
        c = classify(exc, dialect_name)
        unknown = getattr(exc, _COMMIT_UNKNOWN, None)
        if c is not None and unknown is not None:
            if c.retry and isinstance(unknown, str):
                add_note(exc, unknown)
                setattr(exc, _COMMIT_UNKNOWN, True)  # noted once
            return no_retry(c)
        return c

    return rule


def commit_failed(exc: BaseException, point: str, operation: str) -> None:
    """Mark a COMMIT failure whose outcome is unknown (connection lost): never replay it."""
    definite = False
    if isinstance(exc, sa_exc.DBAPIError) and not exc.connection_invalidated:
        orig = exc.orig
        state = sqlstate(orig)
        if state is not None:
            definite = state[:2] not in ("08", "57")  # the server answered: rolled back
        elif getattr(orig, "sqlite_errorcode", None) is not None:
            definite = True  # SQLite: COMMIT failed locally (busy), nothing was written
    if not definite:
        note = (f"seawall: {point} {operation}: not replayed: the connection was lost during "
                "COMMIT, so whether the unit was committed is unknown (a replay could apply it "
                "twice)")
        try:
            setattr(exc, _COMMIT_UNKNOWN, note)
        except AttributeError:  # pragma: no cover - exotic exception types
            pass


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
    point = state.point

    def attempt(_timeout: float | None) -> T:
        token = IN_UNIT.set(True)
        try:
            with engine.connect() as conn:
                if isolation_level is not None:
                    conn.execution_options(isolation_level=isolation_level)
                trans = conn.begin()
                try:
                    result = work(conn)
                except BaseException:
                    # roll back only a transaction still the connection's, as engine.begin()
                    # does: work's own conn.rollback(), or an ORM Session(bind=conn) whose
                    # flush failed, may have ended it already (a second rollback would warn
                    # "transaction already deassociated from connection")
                    if trans.is_active or conn.get_transaction() is trans:
                        try:
                            trans.rollback()
                        except Exception:  # the original failure is what matters
                            pass
                    raise
                if trans.is_active:
                    try:
                        trans.commit()
                    except Exception as exc:
                        commit_failed(exc, point.name, operation)
                        try:  # never hand a half-finished transaction back to the pool
                            conn.invalidate()
                        except Exception:
                            pass
                        raise
                return result
        finally:
            IN_UNIT.reset(token)

    return point.run(attempt, operation=operation,
                     classify_exception=unit_rule(state.dialect_name))


def still_current(conn: Any, trans: Any) -> bool:
    """Is the AsyncTransaction ``trans`` still the transaction of the AsyncConnection ``conn``?"""
    sync = conn.sync_connection
    return sync is not None and sync.get_transaction() is trans.sync_transaction


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
    point = state.point

    async def attempt(_timeout: float | None) -> T:
        token = IN_UNIT.set(True)
        try:
            async with engine.connect() as conn:
                if isolation_level is not None:
                    await conn.execution_options(isolation_level=isolation_level)
                trans = conn.begin()
                await trans.start()
                try:
                    result = await work(conn)
                except BaseException:
                    # only a transaction still the connection's (see run_transaction)
                    if trans.is_active or still_current(conn, trans):
                        try:
                            await trans.rollback()
                        except Exception:
                            pass
                    raise
                if trans.is_active:
                    try:
                        await trans.commit()
                    except Exception as exc:
                        commit_failed(exc, point.name, operation)
                        try:  # never hand a half-finished transaction back to the pool
                            await conn.invalidate()
                        except Exception:
                            pass
                        raise
                return result
        finally:
            IN_UNIT.reset(token)

    return await point.arun(attempt, operation=operation,
                            classify_exception=unit_rule(state.dialect_name),
                            enforce_timeout=False)
