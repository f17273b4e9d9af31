"""SQLAlchemy hooks: classification tables, operation names, and behaviour on real SQLite files."""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

import seawall
from seawall import Category
from seawall.interceptors import sqlalchemy as sw_sa
from seawall.interceptors._sqlalchemy_classify import STATEMENT_TIMEOUT_MARK, classify
from seawall.interceptors.sqlalchemy import operation_of
from seawall.testing import FakeClock
from tests.sqlalchemy_support import run_threads, sqlite_counter_engine

# -- classification table ------------------------------------------------------------

T, TO, U, P = Category.TRANSIENT, Category.TIMEOUT, Category.UNAVAILABLE, Category.PERMANENT


def pg_error(state: str) -> sa_exc.DBAPIError:
    """What SQLAlchemy raises for a psycopg error of this SQLSTATE (real psycopg classes)."""
    orig = psycopg.errors.lookup(state)("boom")
    return sa_exc.DBAPIError.instance("SELECT 1", {}, orig, psycopg.Error)


class MySQLError(Exception):
    """Shaped like mysqlclient / PyMySQL errors: ``args = (errno, message)``."""


def mysql_error(code: int) -> sa_exc.DBAPIError:
    return sa_exc.OperationalError("SELECT 1", {}, MySQLError(code, "boom"))


def sqlite_error(code: int, kind: type[sqlite3.Error] = sqlite3.OperationalError) -> sa_exc.DBAPIError:
    orig = kind("boom")
    orig.sqlite_errorcode = code
    return sa_exc.DBAPIError.instance("SELECT 1", {}, orig, sqlite3.Error)


# (exception, dialect, category, retried, counted by the breaker)
TABLE: list[tuple[str, BaseException, str | None, Category, bool, bool]] = [
    ("disconnect flag", sa_exc.OperationalError("SELECT 1", {}, Exception("x"), connection_invalidated=True), None, T, True, True),
    ("serialization failure 40001", pg_error("40001"), "postgresql", T, True, False),
    ("deadlock 40P01", pg_error("40P01"), "postgresql", T, True, False),
    ("lock not available 55P03", pg_error("55P03"), "postgresql", T, True, False),
    ("admin shutdown 57P01", pg_error("57P01"), "postgresql", T, True, True),
    ("crash shutdown 57P02", pg_error("57P02"), "postgresql", T, True, True),
    ("cannot connect now 57P03", pg_error("57P03"), "postgresql", U, True, True),
    ("connection failure 08006", pg_error("08006"), "postgresql", T, True, True),
    ("connection does not exist 08003", pg_error("08003"), "postgresql", T, True, True),
    ("too many connections 53300", pg_error("53300"), "postgresql", U, True, True),
    ("query canceled 57014", pg_error("57014"), "postgresql", TO, True, True),
    ("unique violation 23505", pg_error("23505"), "postgresql", P, False, False),
    ("foreign key violation 23503", pg_error("23503"), "postgresql", P, False, False),
    ("syntax error 42601", pg_error("42601"), "postgresql", P, False, False),
    ("undefined table 42P01", pg_error("42P01"), "postgresql", P, False, False),
    ("division by zero 22012", pg_error("22012"), "postgresql", P, False, False),
    ("raise exception P0001", pg_error("P0001"), "postgresql", P, False, False),
    ("internal error XX000", pg_error("XX000"), "postgresql", P, False, True),
    ("sqlite busy", sqlite_error(5), "sqlite", T, True, False),
    ("sqlite busy snapshot (extended code)", sqlite_error(5 | (2 << 8)), "sqlite", T, True, False),
    ("sqlite locked", sqlite_error(6), "sqlite", T, True, False),
    ("sqlite interrupt", sqlite_error(9), "sqlite", TO, True, True),
    ("sqlite constraint", sqlite_error(19, sqlite3.IntegrityError), "sqlite", P, False, False),
    ("sqlite syntax / no such table", sqlite_error(1), "sqlite", P, False, False),
    ("sqlite disk full", sqlite_error(13), "sqlite", P, False, True),
    ("mysql deadlock 1213", mysql_error(1213), "mysql", T, True, False),
    ("mysql lock wait timeout 1205", mysql_error(1205), "mysql", T, True, False),
    ("mysql server gone 2006", mysql_error(2006), "mysql", T, True, True),
    ("mysql lost connection 2013", mysql_error(2013), "mysql", T, True, True),
    ("mysql max_execution_time 3024", mysql_error(3024), "mysql", TO, True, True),
    ("mysql duplicate entry 1062", mysql_error(1062), "mysql", P, False, False),
    ("mysql syntax 1064", mysql_error(1064), "mysql", P, False, False),
    ("asyncpg command_timeout (unwrapped TimeoutError)", TimeoutError(), "postgresql", TO, True, True),
    ("pool exhausted (QueuePool timeout)", sa_exc.TimeoutError("QueuePool limit"), None, U, False, False),
]


@pytest.mark.parametrize(("exc", "dialect", "category", "retry", "breaker"),
                         [row[1:] for row in TABLE], ids=[row[0] for row in TABLE])
def test_classification_table(exc: BaseException, dialect: str | None, category: Category,
                              retry: bool, breaker: bool) -> None:
    """Each failure is classified from its structured code, never its message."""
    c = classify(exc, dialect)
    assert c is not None
    assert (c.category, c.retry, c.breaker) == (category, retry, breaker)


def test_unknown_exception_is_left_to_the_defaults() -> None:
    """An exception the integration does not know is left to the user's rules and the defaults."""
    assert classify(ValueError("x"), "postgresql") is None


#: sqlite3 exceptions carry their result code (``sqlite_errorcode``) from Python 3.11 on
needs_sqlite_codes = pytest.mark.skipif(
    sys.version_info < (3, 11),
    reason="SQLite busy/locked detection reads sqlite_errorcode, which sqlite3 has from Python 3.11")


def test_sqlite_error_without_a_code_falls_to_the_default() -> None:
    """Without sqlite_errorcode (Python 3.10) a SQLite OperationalError is permanent: not retried, counted."""
    c = classify(sa_exc.DBAPIError.instance("SELECT 1", {}, sqlite3.OperationalError("database is locked"),
                                            sqlite3.Error), "sqlite")
    assert c is not None and (c.category, c.retry, c.breaker) == (P, False, True)


def test_sqlite_error_marked_by_our_statement_timeout_is_a_timeout() -> None:
    """Without a code, an error our own progress handler caused is still classified as a timeout."""
    orig = sqlite3.OperationalError("interrupted")
    setattr(orig, STATEMENT_TIMEOUT_MARK, True)
    c = classify(sa_exc.DBAPIError.instance("SELECT 1", {}, orig, sqlite3.Error), "sqlite")
    assert c is not None and (c.category, c.retry, c.breaker) == (TO, True, True)


@needs_sqlite_codes
def test_real_sqlite_busy_error_is_transient(tmp_path: Path) -> None:
    """A real 'database is locked' from sqlite3 carries SQLITE_BUSY and is classified by code."""
    path = tmp_path / "busy.db"
    holder = sqlite3.connect(path, isolation_level=None)
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        holder.execute("CREATE TABLE t (x)")
        holder.execute("BEGIN IMMEDIATE")
        with pytest.raises(sqlite3.OperationalError) as info:
            other.execute("BEGIN IMMEDIATE")
        c = classify(info.value, "sqlite")
        assert c is not None and c.category is Category.TRANSIENT and c.retry
    finally:
        holder.close()
        other.close()


@pytest.mark.parametrize(("sql", "operation"), [
    ("SELECT accounts.id FROM accounts WHERE accounts.id = %(id)s", "select accounts"),
    ('SELECT 1 FROM "Order Lines" WHERE x = \'secret\'', "select Order Lines"),
    ("SELECT 1", "select"),
    ("/* tag */ INSERT INTO app.orders (id) VALUES (?)", "insert orders"),
    ("UPDATE accounts SET balance=balance + 1 WHERE id = 42", "update accounts"),
    ("DELETE FROM sessions WHERE expires < now()", "delete sessions"),
    ("  select pg_sleep(5)", "select"),
    ("SET LOCAL statement_timeout = 5", "set"),
    ("CREATE TABLE t (x int)", "create"),
])
def test_operation_is_statement_kind_and_table_never_values(sql: str, operation: str) -> None:
    """Operations are low-cardinality: the statement kind and the table, nothing from values."""
    assert operation_of(sql) == operation


# -- SQLite engines --------------------------------------------------------------------


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "app.db"


def make_point(**kw: Any) -> seawall.IntegrationPoint:
    kw.setdefault("retry", seawall.Retry(attempts=5, backoff=seawall.Backoff.constant(0.01)))
    kw.setdefault("clock", FakeClock())
    return seawall.IntegrationPoint("db", **kw)


@pytest.fixture
def engine(db_path: Path) -> Iterator[sa.Engine]:
    with sqlite_counter_engine(db_path, connect_args={"timeout": 0}) as e:
        yield e


def calls(events: list[Any]) -> list[tuple[str, Category | None]]:
    return [(ev.operation, ev.category) for ev in events if isinstance(ev, seawall.CallEvent)]


def test_instrument_returns_the_same_engine_and_statements_become_events(engine: sa.Engine) -> None:
    """Every statement is one call named by kind and table, or by the seawall_operation option."""
    point = make_point()
    events: list[Any] = []
    point.add_hook(events.append)
    assert sw_sa.instrument(engine, point) is engine
    with engine.connect() as conn:
        conn.execute(sa.text("SELECT n FROM counter WHERE id = :id"), {"id": 1}).scalar()
        conn.execution_options(seawall_operation="read counter").exec_driver_sql(
            "SELECT n FROM counter").all()
    assert calls(events) == [("select counter", None), ("read counter", None)]


def test_no_connection_level_listener_is_attached(engine: sa.Engine) -> None:
    """The hooks sit on the dialect and the pool only.

    A Connection-level listener (``before_cursor_execute``, ``commit``, ...)
    makes SQLAlchemy fire its engine events around every checkout and
    statement, which costs more than seawall's own work.
    """
    sw_sa.instrument(engine, make_point(bulkhead=seawall.Bulkhead(max_concurrent=4),
                                        timeout=seawall.Timeout(attempt=1.0)))
    assert not engine._has_events
    with engine.connect() as conn:
        assert not conn._has_events
        assert conn.exec_driver_sql("SELECT n FROM counter").scalar() == 0


def test_do_execute_listeners_of_your_own_run_first(engine: sa.Engine) -> None:
    """do_execute listeners of your own run before the dialect's (wrapped) method.

    One that only looks leaves the statement to seawall; one that runs the
    call itself (returns True) takes it past the dialect, and so past seawall.
    """
    point = make_point()
    events: list[Any] = []
    point.add_hook(events.append)
    sw_sa.instrument(engine, point)
    seen: list[str] = []

    def looks(cursor: Any, statement: str, parameters: Any, context: Any) -> bool:
        seen.append(statement)
        return False

    def runs_it_itself(cursor: Any, statement: str, parameters: Any, context: Any) -> bool:
        seen.append(statement)
        cursor.execute(statement, parameters)
        return True

    for listener in (looks, runs_it_itself):
        event.listen(engine, "do_execute", listener)
        try:
            with engine.connect() as conn:
                assert conn.exec_driver_sql("SELECT n FROM counter WHERE id = ?", (1,)).scalar() == 0
        finally:
            event.remove(engine, "do_execute", listener)
    assert seen == ["SELECT n FROM counter WHERE id = ?"] * 2
    assert calls(events) == [("select counter", None)]  # the one the dialect ran


def test_a_wrapper_left_in_place_by_uninstrument_only_passes_calls_on(engine: sa.Engine) -> None:
    """If someone wrapped seawall's do_execute in turn, uninstrument() leaves it but turns it off."""
    point = make_point()
    sw_sa.instrument(engine, point)
    ours = engine.dialect.do_execute

    def theirs(cursor: Any, statement: str, parameters: Any, context: Any = None) -> None:
        ours(cursor, statement, parameters, context)

    engine.dialect.do_execute = theirs  # type: ignore[method-assign]
    sw_sa.uninstrument(engine)
    assert engine.dialect.do_execute is theirs
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT n FROM counter WHERE id = ?", (1,)).scalar() == 0
    assert point.stats().calls == 0


def test_the_dialect_is_instrumented_once(engine: sa.Engine) -> None:
    """An engine made with execution_options() shares its dialect: instrumenting both is refused."""
    sw_sa.instrument(engine, make_point())
    sibling = engine.execution_options(isolation_level="AUTOCOMMIT")
    with pytest.raises(seawall.ConfigurationError, match="already instrumented"):
        sw_sa.instrument(sibling, make_point())
    sw_sa.uninstrument(engine)
    assert "do_execute" not in engine.dialect.__dict__
    sw_sa.instrument(sibling, make_point())  # free again


def test_a_failed_statement_is_one_failed_call_never_retried(engine: sa.Engine) -> None:
    """A statement outside run_transaction fails once, classified, and feeds the breaker."""
    point = make_point(breaker=seawall.CircuitBreaker(failure_rate=0.5, minimum_calls=100, window=100))
    events: list[Any] = []
    point.add_hook(events.append)
    sw_sa.instrument(engine, point)
    with engine.connect() as conn:
        with pytest.raises(sa_exc.IntegrityError):
            conn.exec_driver_sql("INSERT INTO counter VALUES (1, 5)")
    assert calls(events) == [("insert counter", Category.PERMANENT)]
    assert point.stats().retries == 0 and point.stats().failures == 1
    assert point.circuit is not None and point.circuit.window_counts() == (1, 0, 0)  # client error


def test_uninstrument_removes_every_hook(engine: sa.Engine) -> None:
    """After uninstrument no listener is left and statements are no longer counted."""
    point = make_point(bulkhead=seawall.Bulkhead(max_concurrent=2, max_wait=0.0))
    sw_sa.instrument(engine, point)
    state = engine.__dict__["_seawall_instrumentation"]
    listeners = list(state.listeners)
    held = engine.connect()  # holds a bulkhead permit across uninstrument
    sw_sa.uninstrument(engine)
    assert all(not event.contains(engine, name, fn) for name, fn in listeners)
    assert point.permits is not None and point.permits.active == 0
    held.close()
    with engine.connect() as conn:
        conn.exec_driver_sql("SELECT 1")
    assert point.stats().calls == 0
    with pytest.raises(seawall.ConfigurationError):
        sw_sa.run_transaction(engine, lambda c: None)


def test_instrumenting_twice_is_refused(engine: sa.Engine) -> None:
    """An engine carries one policy: a second instrument() is a configuration error."""
    sw_sa.instrument(engine, make_point())
    with pytest.raises(seawall.ConfigurationError, match="already instrumented"):
        sw_sa.instrument(engine, make_point())


def test_bulkhead_bounds_concurrent_checkouts(engine: sa.Engine) -> None:
    """With every permit checked out, the next connect waits max_wait then is refused; checkin frees it."""
    point = make_point(bulkhead=seawall.Bulkhead(max_concurrent=1, max_wait=0.01))
    sw_sa.instrument(engine, point)
    first = engine.connect()
    first.exec_driver_sql("SELECT 1")
    with pytest.raises(seawall.BulkheadFullError):
        engine.connect()
    assert engine.pool.checkedout() == 1  # the refused checkout leaked nothing
    first.close()
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT 1").scalar() == 1
    assert point.permits is not None and point.permits.active == 0
    assert point.stats().rejections["bulkhead"] == 1


def test_sqlite_statement_timeout_interrupts_a_runaway_query(engine: sa.Engine) -> None:
    """The attempt timeout interrupts SQLite's VM (SQLITE_INTERRUPT); the connection stays usable."""
    point = seawall.IntegrationPoint("db", timeout=seawall.Timeout(attempt=0.1))
    sw_sa.instrument(engine, point)
    engine.dispose()  # the fixture's pooled connection predates instrument(): it gets no timeout
    endless = "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r) SELECT count(*) FROM r"
    with engine.connect() as conn:
        with pytest.raises(sa_exc.OperationalError) as info:
            conn.exec_driver_sql(endless).all()
        if sys.version_info >= (3, 11):  # the code is there; 3.10 relies on the handler's own word
            assert info.value.orig.sqlite_errorname == "SQLITE_INTERRUPT"  # type: ignore[union-attr]
        assert conn.exec_driver_sql("SELECT n FROM counter").scalar() == 0
    assert point.stats().failures_by_category["timeout"] == 1


@needs_sqlite_codes
def test_run_transaction_replays_the_unit_when_sqlite_is_busy(engine: sa.Engine, db_path: Path) -> None:
    """SQLITE_BUSY rolls the attempt back and the whole unit runs again once the lock is gone."""
    point = make_point()
    holder = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")  # another writer holds the lock

    def release_on_retry(ev: Any) -> None:
        if isinstance(ev, seawall.RetryEvent) and ev.operation == "increment":
            holder.execute("COMMIT")

    point.add_hook(release_on_retry)
    sw_sa.instrument(engine, point)
    runs = []

    def increment(conn: sa.Connection) -> int:
        runs.append(1)
        conn.exec_driver_sql("UPDATE counter SET n = n + 1 WHERE id = 1")
        return int(conn.exec_driver_sql("SELECT n FROM counter").scalar_one())

    try:
        assert sw_sa.run_transaction(engine, increment, operation="increment") == 1
    finally:
        holder.close()
    assert len(runs) == 2
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT n FROM counter").scalar() == 1


def test_client_errors_are_not_retried_nor_counted_by_the_breaker(engine: sa.Engine) -> None:
    """A constraint violation fails the unit at once and leaves the breaker's window clean."""
    point = make_point(breaker=seawall.CircuitBreaker(failure_rate=0.5, minimum_calls=2, window=10))
    sw_sa.instrument(engine, point)

    def duplicate(conn: sa.Connection) -> None:
        conn.exec_driver_sql("INSERT INTO counter VALUES (1, 5)")

    for _ in range(3):
        with pytest.raises(sa_exc.IntegrityError):
            sw_sa.run_transaction(engine, duplicate)
    assert point.stats().retries == 0
    assert point.circuit is not None
    assert point.circuit.window_counts()[1] == 0
    assert point.breaker_state is seawall.BreakerState.CLOSED


def test_statements_inside_a_unit_are_events_but_the_unit_is_the_call(engine: sa.Engine) -> None:
    """Inside run_transaction the unit takes the breaker ticket; its statements are recorded only."""
    point = make_point(breaker=seawall.CircuitBreaker(failure_rate=0.5, minimum_calls=100,
                                                      window=100, half_open_calls=1))
    events: list[Any] = []
    point.add_hook(events.append)
    sw_sa.instrument(engine, point)
    assert point.circuit is not None
    point.circuit.force_open()
    point.circuit.reset()
    sw_sa.run_transaction(engine, lambda c: c.exec_driver_sql("SELECT n FROM counter").all(),
                          operation="read")
    assert ("select counter", None) in calls(events)
    assert calls(events)[-1] == ("read", None)
    assert point.circuit.window_counts()[0] == 1  # only the unit reached the breaker


def test_work_is_rolled_back_when_it_raises(engine: sa.Engine) -> None:
    """A failing unit leaves no write behind and the caller gets its own exception."""
    sw_sa.instrument(engine, make_point())

    def fail(conn: sa.Connection) -> None:
        conn.exec_driver_sql("UPDATE counter SET n = 99")
        raise KeyError("mine")

    with pytest.raises(KeyError, match="mine"):
        sw_sa.run_transaction(engine, fail)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT n FROM counter").scalar() == 0


def test_option_engines_share_the_instrumentation(engine: sa.Engine) -> None:
    """engine.execution_options(...) copies are protected by the same point."""
    point = make_point()
    sw_sa.instrument(engine, point)
    serial = engine.execution_options(isolation_level="SERIALIZABLE")
    assert sw_sa.run_transaction(serial, lambda c: c.exec_driver_sql("SELECT 1").scalar()) == 1


@needs_sqlite_codes
def test_threads_incrementing_a_sqlite_counter_get_the_exact_count(engine: sa.Engine) -> None:
    """Concurrent writers hit SQLITE_BUSY; run_transaction replays until every increment landed."""
    point = seawall.IntegrationPoint(
        "db", retry=seawall.Retry(attempts=200, backoff=seawall.Backoff.exponential(
            initial=0.001, maximum=0.02, jitter="full")))
    sw_sa.instrument(engine, point)

    def increment(conn: sa.Connection) -> None:
        conn.exec_driver_sql("UPDATE counter SET n = n + 1 WHERE id = 1")

    def worker() -> None:
        for _ in range(10):
            sw_sa.run_transaction(engine, increment)

    run_threads(4, worker, timeout=30)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT n FROM counter").scalar() == 40


async def test_async_engine_with_aiosqlite(db_path: Path) -> None:
    """AsyncEngine: hooks go on sync_engine; arun_transaction commits; statements are events."""
    aengine = create_async_engine(f"sqlite+aiosqlite:///{db_path}")
    point = make_point()
    events: list[Any] = []
    point.add_hook(events.append)
    assert sw_sa.instrument(aengine, point) is aengine
    try:
        async def setup(conn: AsyncConnection) -> None:
            await conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
            await conn.exec_driver_sql("INSERT INTO t VALUES (7)")

        await sw_sa.arun_transaction(aengine, setup, operation="setup")

        async def read(conn: AsyncConnection) -> int:
            return int((await conn.exec_driver_sql("SELECT x FROM t")).scalar_one())

        assert await sw_sa.arun_transaction(aengine, read) == 7
        assert ("insert t", None) in calls(events) and ("setup", None) in calls(events)
    finally:
        sw_sa.uninstrument(aengine)
        await aengine.dispose()


async def test_async_engine_bulkhead_waits_on_the_event_loop(db_path: Path) -> None:
    """AsyncEngine: a checkout beyond the bulkhead waits max_wait on the loop, then is refused."""
    aengine = create_async_engine(f"sqlite+aiosqlite:///{db_path}")
    point = seawall.IntegrationPoint("db", bulkhead=seawall.Bulkhead(max_concurrent=1, max_wait=0.05))
    sw_sa.instrument(aengine, point)
    try:
        async with aengine.connect() as held:
            await held.exec_driver_sql("SELECT 1")
            with pytest.raises(seawall.BulkheadFullError):
                await aengine.connect()
        async with aengine.connect() as conn:  # the permit came back with the checkin
            assert (await conn.exec_driver_sql("SELECT 1")).scalar() == 1
        assert point.stats().rejections["bulkhead"] == 1
    finally:
        sw_sa.uninstrument(aengine)
        await aengine.dispose()
