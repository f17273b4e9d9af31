"""SQLAlchemy hooks against a real PostgreSQL 15: killed backends, restarts, contention, timeouts."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
import warnings
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

import seawall
from seawall.interceptors import sqlalchemy as sw_sa
from seawall.interceptors._sqlalchemy_state import STATE_ATTR
from tests.postgres import PostgresServer
from tests.sqlalchemy_support import run_threads


def quick_retry(attempts: int = 5) -> seawall.Retry:
    return seawall.Retry(attempts=attempts, backoff=seawall.Backoff.exponential(
        initial=0.005, maximum=0.05, jitter="full"))


def wait_until_gone(server: PostgresServer, pid: int) -> None:
    """Block until the backend ``pid`` has exited (bounded: 10 s)."""
    end = time.monotonic() + 10
    while server.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", pid):
        assert time.monotonic() < end, f"backend {pid} did not exit"
        time.sleep(0.005)


def kill(server: PostgresServer, pid: int) -> None:
    """pg_terminate_backend, then wait for the backend to be gone."""
    assert server.execute("SELECT pg_terminate_backend(%s)", pid) == [(True,)]
    wait_until_gone(server, pid)


def wait_for_query(server: PostgresServer, dbname: str, fragment: str) -> int:
    """The pid of the backend running a query containing ``fragment`` (bounded: 10 s)."""
    end = time.monotonic() + 10
    while True:
        rows = server.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND state = 'active' "
            "AND query LIKE %s AND pid <> pg_backend_pid()", dbname, f"%{fragment}%")
        if rows:
            return int(rows[0][0])
        assert time.monotonic() < end, f"no backend ran {fragment!r}"
        time.sleep(0.005)


@pytest.fixture
def engine(postgres_url: str) -> Iterator[sa.Engine]:
    e = sa.create_engine(postgres_url, pool_size=10, max_overflow=10)
    with e.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE counter (id int PRIMARY KEY, n int NOT NULL)")
        conn.exec_driver_sql("INSERT INTO counter VALUES (1, 0)")
        conn.exec_driver_sql("CREATE TABLE rows (v text)")
    yield e
    sw_sa.uninstrument(e)
    e.dispose()


def dbname_of(engine: sa.Engine | AsyncEngine) -> str:
    name = engine.url.database
    assert name is not None
    return name


def as_ms(setting: str) -> int:
    """PostgreSQL's display of a duration setting ("600ms", "1s") in milliseconds."""
    if setting.endswith("ms"):
        return int(setting[:-2])
    assert setting.endswith("s"), setting
    return int(setting[:-1]) * 1000


def backend_pid(conn: sa.Connection) -> int:
    return int(conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())


# -- killed connections ----------------------------------------------------------------


def test_pooled_connection_killed_by_the_server_never_reaches_the_user(
        engine: sa.Engine, postgres_server: PostgresServer) -> None:
    """A backend terminated while its connection sat in the pool is replaced at checkout."""
    sw_sa.instrument(engine, seawall.IntegrationPoint("pg"))
    with engine.connect() as conn:
        old = backend_pid(conn)
    kill(postgres_server, old)
    with engine.connect() as conn:
        assert backend_pid(conn) != old


def test_backend_killed_between_statements_is_not_replayed_but_the_next_connect_works(
        engine: sa.Engine, postgres_server: PostgresServer) -> None:
    """The statement after a kill fails as a disconnect (never replayed); the engine recovers."""
    point = seawall.IntegrationPoint("pg", retry=quick_retry())
    sw_sa.instrument(engine, point)
    with engine.connect() as conn:
        conn.exec_driver_sql("INSERT INTO rows VALUES ('a')")
        kill(postgres_server, backend_pid(conn))
        with pytest.raises(sa_exc.OperationalError) as info:
            conn.exec_driver_sql("INSERT INTO rows VALUES ('b')")
        assert info.value.connection_invalidated
        conn.rollback()
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM rows").scalar() == 0
    assert point.stats().retries == 0
    assert point.stats().failures_by_category["transient"] == 1


def test_run_transaction_replays_a_unit_killed_between_statements(
        engine: sa.Engine, postgres_server: PostgresServer) -> None:
    """Both writes of the unit land exactly once although the first attempt lost its backend."""
    point = seawall.IntegrationPoint("pg", retry=quick_retry())
    sw_sa.instrument(engine, point)
    attempts = []

    def work(conn: sa.Connection) -> None:
        attempts.append(1)
        conn.exec_driver_sql("INSERT INTO rows VALUES ('a')")
        if len(attempts) == 1:
            kill(postgres_server, backend_pid(conn))
        conn.exec_driver_sql("INSERT INTO rows VALUES ('b')")

    sw_sa.run_transaction(engine, work)
    with engine.connect() as conn:
        assert sorted(conn.exec_driver_sql("SELECT v FROM rows").scalars()) == ["a", "b"]
    assert len(attempts) == 2


def test_run_transaction_replays_a_unit_killed_during_a_statement(
        engine: sa.Engine, postgres_server: PostgresServer) -> None:
    """A backend killed in the middle of pg_sleep: the unit runs again and commits once."""
    point = seawall.IntegrationPoint("pg", retry=quick_retry())
    sw_sa.instrument(engine, point)
    attempts = []

    def work(conn: sa.Connection) -> None:
        attempts.append(1)
        conn.exec_driver_sql("INSERT INTO rows VALUES ('x')")
        if len(attempts) == 1:
            conn.exec_driver_sql("SELECT pg_sleep(30) /* victim */")

    killer = threading.Thread(target=lambda: kill(
        postgres_server, wait_for_query(postgres_server, dbname_of(engine), "victim")))
    killer.start()
    try:
        sw_sa.run_transaction(engine, work)
    finally:
        killer.join(timeout=15)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM rows").scalar() == 1
    assert len(attempts) == 2


# -- server down -------------------------------------------------------------------------


def test_server_stopped_breaker_fails_fast_and_recovers_after_restart(
        engine: sa.Engine, postgres_server: PostgresServer) -> None:
    """Down: connects are retried, then the breaker refuses at once; up again: trial calls pass."""
    point = seawall.IntegrationPoint(
        "pg", retry=quick_retry(3),
        breaker=seawall.CircuitBreaker(failure_rate=0.5, minimum_calls=3, window=10,
                                       open_for=0.2, half_open_calls=1))
    sw_sa.instrument(engine, point)
    with engine.connect() as conn:
        conn.exec_driver_sql("SELECT 1")
    postgres_server.stop()
    try:
        with pytest.raises(sa_exc.OperationalError):
            with engine.connect() as conn:  # pooled connection is dead -> reconnect -> refused
                conn.exec_driver_sql("SELECT 1")
        assert point.breaker_state is seawall.BreakerState.OPEN
        t0 = time.monotonic()
        with pytest.raises(seawall.CircuitOpenError):
            engine.connect()
        assert time.monotonic() - t0 < 0.1
        assert engine.pool.checkedout() == 0
    finally:
        postgres_server.start()
    deadline = time.monotonic() + 5
    while True:  # the breaker lets a trial through once open_for has passed
        try:
            with engine.connect() as conn:
                assert conn.exec_driver_sql("SELECT n FROM counter").scalar() == 0
            break
        except seawall.CircuitOpenError as exc:
            assert time.monotonic() < deadline
            time.sleep(exc.retry_after or 0.01)
    assert point.breaker_state is seawall.BreakerState.CLOSED


def test_connect_errors_are_retried_with_backoff(postgres_server: PostgresServer) -> None:
    """A refused connect is transient: retried with the point's backoff, then re-raised with a note."""
    postgres_server.stop()
    try:
        point = seawall.IntegrationPoint("pg", retry=seawall.Retry(
            attempts=3, backoff=seawall.Backoff.constant(0.01)))
        e = sw_sa.instrument(sa.create_engine(postgres_server.url()), point)
        with pytest.raises(sa_exc.OperationalError) as info:
            e.connect()
        assert point.stats().attempts == 3 and point.stats().retries == 2
        assert "3 attempt(s)" in "".join(getattr(info.value.orig, "__notes__", []))
        e.dispose()
    finally:
        postgres_server.start()


# -- contention and errors ---------------------------------------------------------------


def test_threads_incrementing_one_counter_in_serializable_get_the_exact_count(
        engine: sa.Engine) -> None:
    """Serialization failures (40001) replay the unit; every increment lands exactly once."""
    point = seawall.IntegrationPoint("pg", retry=seawall.Retry(
        attempts=100, backoff=seawall.Backoff.exponential(initial=0.001, maximum=0.02,
                                                          jitter="full")))
    sw_sa.instrument(engine, point)
    threads_n, per_thread = 8, 10

    def increment(conn: sa.Connection) -> None:
        n = conn.exec_driver_sql("SELECT n FROM counter WHERE id = 1").scalar_one()
        conn.exec_driver_sql("UPDATE counter SET n = %(n)s WHERE id = 1", {"n": n + 1})

    def worker() -> None:
        for _ in range(per_thread):
            sw_sa.run_transaction(engine, increment, operation="increment",
                                  isolation_level="SERIALIZABLE")

    run_threads(threads_n, worker)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT n FROM counter").scalar() == threads_n * per_thread
    assert point.stats().retries > 0  # the contention was real


def test_unique_violation_is_not_retried_and_not_counted_by_the_breaker(engine: sa.Engine) -> None:
    """23505 fails the unit once; the breaker window records it as a non-failure."""
    point = seawall.IntegrationPoint("pg", retry=quick_retry(),
                                     breaker=seawall.CircuitBreaker(minimum_calls=1, window=5))
    sw_sa.instrument(engine, point)
    with pytest.raises(sa_exc.IntegrityError):
        sw_sa.run_transaction(engine, lambda c: c.exec_driver_sql("INSERT INTO counter VALUES (1, 1)"))
    assert point.stats().retries == 0
    assert point.circuit is not None and point.circuit.window_counts()[1] == 0


# -- statement timeouts ------------------------------------------------------------------


def test_pg_sleep_is_cancelled_by_the_statement_timeout(engine: sa.Engine) -> None:
    """The attempt timeout is PostgreSQL's statement_timeout: 57014 on the server, connection kept."""
    point = seawall.IntegrationPoint("pg", timeout=seawall.Timeout(attempt=0.2))
    sw_sa.instrument(engine, point)
    engine.dispose()  # new connections get the session default
    with engine.connect() as conn:
        pid = backend_pid(conn)
        t0 = time.monotonic()
        with pytest.raises(sa_exc.OperationalError) as info:
            conn.exec_driver_sql("SELECT pg_sleep(10)")
        assert time.monotonic() - t0 < 3
        assert info.value.orig.sqlstate == "57014"  # type: ignore[union-attr]
        assert not info.value.connection_invalidated
        conn.rollback()
        assert backend_pid(conn) == pid
    assert point.stats().failures_by_category["timeout"] == 1


def test_statement_budget_narrows_with_the_transaction_deadline(engine: sa.Engine) -> None:
    """Inside a unit, each statement's timeout is what is left of the attempt (SET LOCAL)."""
    point = seawall.IntegrationPoint("pg", timeout=seawall.Timeout(attempt=1.0))
    sw_sa.instrument(engine, point)
    engine.dispose()  # new connections get the session default

    def work(conn: sa.Connection) -> tuple[str, str]:
        first = conn.exec_driver_sql("SHOW statement_timeout").scalar_one()
        conn.exec_driver_sql("SELECT pg_sleep(0.4)")
        return first, conn.exec_driver_sql("SHOW statement_timeout").scalar_one()

    first, later = sw_sa.run_transaction(engine, work)
    assert 900 <= as_ms(first) <= 1000
    assert as_ms(later) <= 600
    with engine.connect() as conn:  # SET LOCAL ended with the transaction
        assert conn.exec_driver_sql("SHOW statement_timeout").scalar_one() == "1s"


def raw_setting(conn: sa.Connection, name: str) -> str:
    """SHOW a setting on the DBAPI connection itself, unseen by the hooks."""
    raw = conn.connection.dbapi_connection
    assert raw is not None
    with raw.cursor() as cursor:
        cursor.execute(f"SHOW {name}")
        row = cursor.fetchone()
    assert row is not None
    return str(row[0])


def narrowed_to(seconds: float) -> seawall.IntegrationPoint:
    """An enclosing seawall call whose deadline narrows the statements run inside it."""
    return seawall.IntegrationPoint("caller", timeout=seawall.Timeout(attempt=seconds))


def test_set_local_ends_with_each_transaction_and_is_issued_again(engine: sa.Engine) -> None:
    """A narrowed budget is SET LOCAL; after COMMIT it is gone and the next transaction sets it anew."""
    sw_sa.instrument(engine, seawall.IntegrationPoint("pg", timeout=seawall.Timeout(attempt=1.0)))
    engine.dispose()  # new connections get the session default (1 s)

    with engine.connect() as conn:
        show = narrowed_to(0.3)(lambda: conn.exec_driver_sql("SHOW statement_timeout").scalar_one())
        assert as_ms(show()) <= 300
        conn.commit()
        # a new transaction, opened behind seawall's back, runs with the session default
        assert raw_setting(conn, "statement_timeout") == "1s"
        assert as_ms(show()) <= 300  # seawall saw the transaction end and set it again
        conn.commit()
        assert conn.exec_driver_sql("SHOW statement_timeout").scalar_one() == "1s"


def test_rollback_to_savepoint_makes_the_timeout_in_force_unknown(engine: sa.Engine) -> None:
    """A SET LOCAL made inside a savepoint is undone by its rollback; seawall issues it again."""
    sw_sa.instrument(engine, seawall.IntegrationPoint("pg", timeout=seawall.Timeout(attempt=1.0)))
    engine.dispose()

    with engine.connect() as conn:
        caller = narrowed_to(0.3)
        show = caller(lambda: conn.exec_driver_sql("SHOW statement_timeout").scalar_one())
        conn.exec_driver_sql("SELECT 1")  # the outer transaction, at the session default
        nested = conn.begin_nested()
        assert as_ms(show()) <= 300  # SET LOCAL inside the savepoint
        caller(nested.rollback)()  # ... undone (within the same budget): 1 s is in force again
        assert raw_setting(conn, "statement_timeout") == "1s"
        assert as_ms(show()) <= 300  # so seawall sets it again
        conn.rollback()


def test_every_pooled_connection_starts_with_the_session_default(engine: sa.Engine) -> None:
    """Each new connection gets the attempt timeout at connect time, and seawall knows it.

    A connection whose session default seawall did not know would get a
    SET LOCAL in every transaction; the raw setting read after a COMMIT
    shows the session default.
    """
    sw_sa.instrument(engine, seawall.IntegrationPoint("pg", timeout=seawall.Timeout(attempt=1.0)))
    engine.dispose()
    conns = [engine.connect() for _ in range(3)]  # three connections made one after another
    try:
        for conn in conns:
            conn.exec_driver_sql("SELECT 1")
            conn.commit()
            assert raw_setting(conn, "statement_timeout") == "1s"
            record = conn.connection._connection_record
            assert record is not None
            assert getattr(record, STATE_ATTR).session_ms == 1000
    finally:
        for conn in conns:
            conn.close()


def test_an_engine_instrumented_before_its_first_connect_initializes(postgres_url: str) -> None:
    """The dialect's first-connect queries run through the hooks too (on an ad-hoc connection)."""
    point = seawall.IntegrationPoint("pg", timeout=seawall.Timeout(attempt=1.0))
    e = sw_sa.instrument(sa.create_engine(postgres_url), point)
    try:
        with e.connect() as conn:
            assert conn.exec_driver_sql("SHOW statement_timeout").scalar_one() == "1s"
        assert e.dialect.server_version_info is not None
        assert point.stats().failures == 0
    finally:
        sw_sa.uninstrument(e)
        e.dispose()


# -- AsyncEngine (psycopg async) -----------------------------------------------------------


@pytest.fixture
async def aengine(postgres_async_url: str) -> AsyncIterator[AsyncEngine]:
    e = create_async_engine(postgres_async_url, pool_size=10, max_overflow=10)
    async with e.begin() as conn:
        await conn.exec_driver_sql("CREATE TABLE counter (id int PRIMARY KEY, n int NOT NULL)")
        await conn.exec_driver_sql("INSERT INTO counter VALUES (1, 0)")
        await conn.exec_driver_sql("CREATE TABLE rows (v text)")
    yield e
    sw_sa.uninstrument(e)
    await e.dispose()


async def scalar(e: AsyncEngine, sql: str) -> Any:
    async with e.connect() as conn:
        return (await conn.exec_driver_sql(sql)).scalar()


async def test_async_tasks_incrementing_in_serializable_get_the_exact_count(
        aengine: AsyncEngine) -> None:
    """The same contention test on AsyncEngine with psycopg's async driver."""
    point = seawall.IntegrationPoint("pg", retry=seawall.Retry(
        attempts=100, backoff=seawall.Backoff.exponential(initial=0.001, maximum=0.02,
                                                          jitter="full")))
    sw_sa.instrument(aengine, point)

    async def increment(conn: AsyncConnection) -> None:
        n = (await conn.exec_driver_sql("SELECT n FROM counter WHERE id = 1")).scalar_one()
        await conn.exec_driver_sql("UPDATE counter SET n = %(n)s WHERE id = 1", {"n": n + 1})

    async def worker() -> None:
        for _ in range(8):
            await sw_sa.arun_transaction(aengine, increment, isolation_level="SERIALIZABLE")

    await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(6))), timeout=60)
    assert await scalar(aengine, "SELECT n FROM counter") == 48
    assert point.stats().retries > 0


async def test_async_unit_killed_during_a_statement_is_replayed(
        aengine: AsyncEngine, postgres_server: PostgresServer) -> None:
    """An async unit whose backend dies mid-statement runs again and commits once."""
    point = seawall.IntegrationPoint("pg", retry=quick_retry())
    sw_sa.instrument(aengine, point)
    attempts = []

    async def work(conn: AsyncConnection) -> None:
        attempts.append(1)
        await conn.exec_driver_sql("INSERT INTO rows VALUES ('x')")
        if len(attempts) == 1:
            await conn.exec_driver_sql("SELECT pg_sleep(30) /* avictim */")

    killer = asyncio.create_task(asyncio.to_thread(lambda: kill(
        postgres_server, wait_for_query(postgres_server, dbname_of(aengine), "avictim"))))
    await asyncio.wait_for(sw_sa.arun_transaction(aengine, work), timeout=20)
    await killer
    assert await scalar(aengine, "SELECT count(*) FROM rows") == 1
    assert len(attempts) == 2


async def test_async_pooled_connection_killed_is_replaced(
        aengine: AsyncEngine, postgres_server: PostgresServer) -> None:
    """AsyncEngine: a pooled connection the server closed never reaches the caller."""
    sw_sa.instrument(aengine, seawall.IntegrationPoint("pg"))
    old = await scalar(aengine, "SELECT pg_backend_pid()")
    await asyncio.to_thread(kill, postgres_server, old)
    assert await scalar(aengine, "SELECT pg_backend_pid()") != old


async def test_async_pg_sleep_is_cancelled_by_the_statement_timeout(aengine: AsyncEngine) -> None:
    """AsyncEngine: the server cancels the statement (57014); the connection is not invalidated."""
    point = seawall.IntegrationPoint("pg", timeout=seawall.Timeout(attempt=0.2))
    sw_sa.instrument(aengine, point)
    await aengine.dispose()
    async with aengine.connect() as conn:
        with pytest.raises(sa_exc.OperationalError) as info:
            await asyncio.wait_for(conn.exec_driver_sql("SELECT pg_sleep(10)"), timeout=5)
        assert info.value.orig.sqlstate == "57014"  # type: ignore[union-attr]
        assert not info.value.connection_invalidated
    assert point.stats().failures_by_category["timeout"] == 1


async def test_async_breaker_fails_fast_when_the_server_is_down(
        aengine: AsyncEngine, postgres_server: PostgresServer) -> None:
    """AsyncEngine: once the breaker opened, connects are refused without touching the network."""
    point = seawall.IntegrationPoint(
        "pg", retry=quick_retry(2),
        breaker=seawall.CircuitBreaker(failure_rate=0.5, minimum_calls=2, window=10, open_for=30))
    sw_sa.instrument(aengine, point)
    postgres_server.stop()
    try:
        with pytest.raises(sa_exc.OperationalError):
            await scalar(aengine, "SELECT 1")
        with pytest.raises(seawall.CircuitOpenError):
            await scalar(aengine, "SELECT 1")
    finally:
        postgres_server.start()


# -- issue 16: out of the application's way ---------------------------------------------------


def full_point(**kw: Any) -> seawall.IntegrationPoint:
    """The policy SQLAlchemy's own suites were run under in issue 16."""
    kw.setdefault("retry", quick_retry(3))
    kw.setdefault("bulkhead", seawall.Bulkhead(max_concurrent=64, max_wait=5))
    kw.setdefault("timeout", seawall.Timeout(attempt=30))
    return seawall.IntegrationPoint("pg", **kw)


def test_connection_info_stays_the_users_on_postgres(engine: sa.Engine) -> None:
    """Session timeout, SET LOCAL scope, liveness poll: none of it lands in Connection.info."""
    sw_sa.instrument(engine, full_point())
    engine.dispose()
    for _ in range(2):  # the second checkout polls the pooled connection's socket
        with engine.connect() as conn:
            narrowed_to(0.5)(lambda: conn.exec_driver_sql("SELECT 1"))()  # a SET LOCAL
            assert conn.info == {}
            assert conn.connection.record_info == {}


def sa_warnings_of(fn: Any, *args: Any) -> tuple[Any, list[str]]:
    """``fn(*args)``'s result and the SQLAlchemy warnings it emitted."""
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        result = fn(*args)
    return result, [str(w.message) for w in seen if issubclass(w.category, sa_exc.SAWarning)]


def test_a_unit_that_rolls_back_after_a_kill_is_replayed_without_warnings(
        engine: sa.Engine, postgres_server: PostgresServer) -> None:
    """``work`` rolling back its failed connection itself: replayed once, no SAWarning."""
    point = full_point()
    sw_sa.instrument(engine, point)
    attempts = []

    def work(conn: sa.Connection) -> None:
        attempts.append(1)
        try:
            conn.exec_driver_sql("INSERT INTO rows VALUES ('a')")
            if len(attempts) == 1:
                kill(postgres_server, backend_pid(conn))
            conn.exec_driver_sql("INSERT INTO rows VALUES ('b')")
        except sa_exc.DBAPIError:
            conn.rollback()
            raise

    _, seen = sa_warnings_of(sw_sa.run_transaction, engine, work)
    assert seen == []
    assert len(attempts) == 2
    with engine.connect() as conn:
        assert sorted(conn.exec_driver_sql("SELECT v FROM rows").scalars()) == ["a", "b"]


class PgBase(DeclarativeBase):
    pass


class PgItem(PgBase):
    __tablename__ = "items"
    id: Mapped[int] = mapped_column(primary_key=True)
    v: Mapped[str]


def test_an_orm_unit_killed_before_its_flush_is_replayed_without_warnings(
        engine: sa.Engine, postgres_server: PostgresServer) -> None:
    """Session(bind=conn) whose flush meets a killed backend: the unit runs again, silently."""
    PgBase.metadata.create_all(engine)
    point = full_point()
    sw_sa.instrument(engine, point)
    attempts = []

    def work(conn: sa.Connection) -> None:
        attempts.append(1)
        with Session(bind=conn) as session:
            session.add(PgItem(id=1, v="orm"))
            if len(attempts) == 1:
                kill(postgres_server, backend_pid(conn))
            session.flush()  # the Session rolls the connection's transaction back on failure

    _, seen = sa_warnings_of(sw_sa.run_transaction, engine, work)
    assert seen == []
    assert len(attempts) == 2
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT v FROM items").scalars().all() == ["orm"]


def settings(conn: sa.Connection, *names: str) -> list[str]:
    return [raw_setting(conn, name) for name in names]


def test_connect_args_options_are_merged_with_the_statement_timeout(postgres_url: str) -> None:
    """connect_args options of the user and the URL's own query both stay in force with seawall's."""
    e = sa.create_engine(postgres_url + "?application_name=from-url",
                         connect_args={"options": "-c lock_timeout=1234"})
    sw_sa.instrument(e, full_point())
    try:
        with e.connect() as conn:
            assert settings(conn, "lock_timeout", "statement_timeout", "application_name") == [
                "1234ms", "30s", "from-url"]
    finally:
        sw_sa.uninstrument(e)
        e.dispose()


def test_pgoptions_from_the_environment_are_kept(postgres_url: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """PGOPTIONS is carried into the options keyword, which would otherwise override it."""
    monkeypatch.setenv("PGOPTIONS", "-c lock_timeout=4321")
    e = sw_sa.instrument(sa.create_engine(postgres_url), full_point())
    try:
        with e.connect() as conn:
            assert settings(conn, "lock_timeout", "statement_timeout") == ["4321ms", "30s"]
    finally:
        sw_sa.uninstrument(e)
        e.dispose()


def test_a_statement_timeout_of_the_users_wins(postgres_url: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """One set in options or PGOPTIONS stays in force in transactions; seawall only narrows it."""
    for connect_args, env in (({"options": "-c statement_timeout=7000"}, None),
                              ({}, "-c statement_timeout=7s")):
        if env is not None:
            monkeypatch.setenv("PGOPTIONS", env)
        e = sw_sa.instrument(sa.create_engine(postgres_url, connect_args=connect_args),
                             full_point())
        try:
            with e.connect() as conn:
                assert raw_setting(conn, "statement_timeout") == "7s"
                # through the hooks, in a transaction: the user's 7 s, not seawall's 30 s
                assert conn.exec_driver_sql("SHOW statement_timeout").scalar() == "7s"
                narrowed = narrowed_to(0.3)(
                    lambda: conn.exec_driver_sql("SHOW statement_timeout").scalar_one())()
                assert as_ms(narrowed) <= 300  # a narrower budget still applies
                conn.commit()
                assert conn.exec_driver_sql("SHOW statement_timeout").scalar() == "7s"
        finally:
            sw_sa.uninstrument(e)
            e.dispose()


def connect_timeout_of(conn: sa.Connection) -> str | None:
    driver = conn.connection.driver_connection
    assert driver is not None
    value = driver.info.get_parameters().get("connect_timeout")
    return None if value is None else str(value)


def test_a_connect_timeout_of_the_users_is_kept(postgres_url: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """connect_timeout in connect_args, or PGCONNECT_TIMEOUT, is the one libpq uses."""
    e = sw_sa.instrument(sa.create_engine(postgres_url, connect_args={"connect_timeout": 7}),
                         full_point())
    try:
        with e.connect() as conn:
            assert connect_timeout_of(conn) == "7"
    finally:
        sw_sa.uninstrument(e)
        e.dispose()
    monkeypatch.setenv("PGCONNECT_TIMEOUT", "9")
    e = sw_sa.instrument(sa.create_engine(postgres_url), full_point())
    try:
        with e.connect() as conn:
            assert connect_timeout_of(conn) == "9"
    finally:
        sw_sa.uninstrument(e)
        e.dispose()
    monkeypatch.delenv("PGCONNECT_TIMEOUT")
    e = sw_sa.instrument(sa.create_engine(postgres_url), full_point())
    try:
        with e.connect() as conn:  # none of the user's: the attempt timeout bounds the connect
            assert connect_timeout_of(conn) == "30"
    finally:
        sw_sa.uninstrument(e)
        e.dispose()


def test_a_do_connect_listener_injecting_credentials_still_works(
        postgres_url: str, postgres_server: PostgresServer) -> None:
    """The cloud-token pattern: the listener sees the URL's arguments; what it sets is used."""
    role = f"app_{uuid.uuid4().hex[:8]}"
    postgres_server.execute(f'CREATE ROLE "{role}" LOGIN')
    e = sa.create_engine(postgres_url)
    seen: list[dict[str, Any]] = []

    @event.listens_for(e, "do_connect")
    def inject(dialect: Any, rec: Any, cargs: list[Any], cparams: dict[str, Any]) -> None:
        seen.append(dict(cparams))
        cparams["user"] = role  # e.g. a short-lived IAM identity, fetched per connect
        cparams["password"] = "token"
        cparams["options"] = "-c lock_timeout=1234"

    point = full_point()
    sw_sa.instrument(e, point)
    try:
        with e.connect() as conn:
            assert conn.exec_driver_sql("SELECT current_user").scalar() == role
            assert settings(conn, "lock_timeout", "statement_timeout") == ["1234ms", "30s"]
        assert seen[0]["dbname"] == dbname_of(e) and seen[0]["port"] == postgres_server.port
        assert "options" not in seen[0] and "connect_timeout" not in seen[0]  # nothing of ours
        assert point.stats().failures == 0
    finally:
        sw_sa.uninstrument(e)
        e.dispose()


SLOW_COMMIT = [
    "CREATE FUNCTION slow_commit() RETURNS trigger LANGUAGE plpgsql AS "
    "$$ BEGIN PERFORM pg_sleep(60); RETURN NULL; END $$",
    "CREATE CONSTRAINT TRIGGER slow_commit AFTER INSERT ON rows DEFERRABLE INITIALLY DEFERRED "
    "FOR EACH ROW EXECUTE FUNCTION slow_commit()",
]


def test_a_unit_killed_during_commit_is_not_replayed_and_says_why(
        engine: sa.Engine, postgres_server: PostgresServer) -> None:
    """The backend dies inside COMMIT (a deferred trigger): outcome unknown, no replay, a note."""
    with engine.begin() as conn:
        for sql in SLOW_COMMIT:
            conn.exec_driver_sql(sql)
    point = seawall.IntegrationPoint("pg", retry=quick_retry())
    sw_sa.instrument(engine, point)
    attempts = []

    def work(conn: sa.Connection) -> None:
        attempts.append(1)
        conn.exec_driver_sql("INSERT INTO rows VALUES ('once')")

    killer = threading.Thread(target=lambda: kill(
        postgres_server, wait_for_query(postgres_server, dbname_of(engine), "COMMIT")))
    killer.start()
    try:
        with pytest.raises(sa_exc.OperationalError) as info:
            sw_sa.run_transaction(engine, work, operation="pay")
    finally:
        killer.join(timeout=15)
    assert len(attempts) == 1 and point.stats().retries == 0
    notes = getattr(info.value, "__notes__", [])
    assert any("pg pay: not replayed" in n and "COMMIT" in n for n in notes), notes


async def test_async_unit_killed_during_commit_is_not_replayed_and_says_why(
        aengine: AsyncEngine, postgres_server: PostgresServer) -> None:
    """arun_transaction: the same unknown COMMIT, the same note."""
    async with aengine.begin() as conn:
        for sql in SLOW_COMMIT:
            await conn.exec_driver_sql(sql)
    point = seawall.IntegrationPoint("pg", retry=quick_retry())
    sw_sa.instrument(aengine, point)
    attempts = []

    async def work(conn: AsyncConnection) -> None:
        attempts.append(1)
        await conn.exec_driver_sql("INSERT INTO rows VALUES ('once')")

    killer = asyncio.create_task(asyncio.to_thread(lambda: kill(
        postgres_server, wait_for_query(postgres_server, dbname_of(aengine), "COMMIT"))))
    with pytest.raises(sa_exc.OperationalError) as info:
        await asyncio.wait_for(sw_sa.arun_transaction(aengine, work), timeout=20)
    await killer
    assert len(attempts) == 1 and point.stats().retries == 0
    notes = getattr(info.value, "__notes__", [])
    assert any("not replayed" in n and "COMMIT" in n for n in notes), notes
