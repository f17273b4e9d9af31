"""SQLAlchemy hooks stay out of the application's way (issue 16): what SQLAlchemy's own tests caught.

Real SQLite files wherever the case allows; a mock DBAPI only where the case
is exactly about DBAPI connections that are not real sockets (as in
SQLAlchemy's own ``test_reconnect`` / ``test_pool`` / ``DialectEventTest``).
"""

from __future__ import annotations

import logging
import os
import socket
import sqlite3
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import registry
from sqlalchemy.dialects.sqlite.base import SQLiteDialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

import seawall
from seawall.interceptors import sqlalchemy as sw_sa
from seawall.interceptors._sqlalchemy_classify import STATEMENT_TIMEOUT_MARK
from seawall.interceptors._sqlalchemy_connections import looks_dead
from seawall.interceptors._sqlalchemy_timeouts import _pg_duration_ms
from tests.sqlalchemy_support import run_threads


def full_point(name: str = "db", **kw: Any) -> seawall.IntegrationPoint:
    """The policy SQLAlchemy's suites were run under in issue 16."""
    kw.setdefault("retry", seawall.Retry(attempts=3, backoff=seawall.Backoff.constant(0.001)))
    kw.setdefault("bulkhead", seawall.Bulkhead(max_concurrent=64, max_wait=5))
    kw.setdefault("timeout", seawall.Timeout(attempt=30))
    return seawall.IntegrationPoint(name, **kw)


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'app.db'}"


def sa_warnings(fn: Any, *args: Any) -> list[str]:
    """Call ``fn(*args)``, swallowing its exception; the SQLAlchemy warnings it emitted."""
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        try:
            fn(*args)
        except Exception:
            pass
    return [str(w.message) for w in seen if issubclass(w.category, sa_exc.SAWarning)]


# -- 4: the liveness check never invents a disconnect -------------------------------------


def mock_dbapi() -> mock.Mock:
    """A DBAPI module whose connections are Mocks, as in SQLAlchemy's test_reconnect."""

    class MockError(Exception):
        pass

    connections: list[mock.Mock] = []

    def connect(*args: Any, **kwargs: Any) -> mock.Mock:
        conn = mock.Mock()  # every attribute exists: pgconn.socket, fileno(), closed ...
        connections.append(conn)
        return conn

    return mock.Mock(connect=mock.Mock(side_effect=connect), paramstyle="named", Error=MockError,
                     connections=connections)


def test_a_mock_dbapi_connection_is_trusted_not_declared_dead() -> None:
    """A DBAPI connection whose socket cannot be found is handed out again, never discarded."""
    dbapi = mock_dbapi()
    e = sa.create_engine("postgresql+psycopg2://u:p@localhost/db", module=dbapi, _initialize=False)
    sw_sa.instrument(e, full_point())
    try:
        for _ in range(3):
            with e.connect() as conn:
                assert conn.connection.dbapi_connection is dbapi.connections[0]
        assert len(dbapi.connections) == 1  # the pooled connection was reused each time
    finally:
        sw_sa.uninstrument(e)
        e.dispose()


class FdConnection:
    """A DBAPI-shaped object reporting ``fd`` as its ``fileno()`` (psycopg2 / mysqlclient style)."""

    closed = 0

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def fileno(self) -> int:
        return self.fd


def test_a_descriptor_that_is_not_a_socket_is_not_polled() -> None:
    """A readable pipe behind fileno() says nothing about a database server: not dead."""
    r, w = os.pipe()
    try:
        os.write(w, b"x")  # readable: polled as a socket, it would read as "the server spoke"
        assert looks_dead(FdConnection(r), None) is False
    finally:
        os.close(r)
        os.close(w)


def test_a_socket_the_peer_closed_is_dead() -> None:
    """The check still does its job on a real socket: EOF from the peer means dead."""
    a, b = socket.socketpair()
    try:
        alive = FdConnection(a.fileno())
        assert looks_dead(alive, None) is False
        b.close()
        assert looks_dead(alive, None) is True
    finally:
        a.close()


# -- 5: dialects without a ``driver`` attribute ------------------------------------------------


class DriverlessSQLite(SQLiteDialect):
    """A third-party dialect: SQLite through sqlite3, with no ``driver`` attribute of its own."""

    supports_statement_cache = True

    @classmethod
    def import_dbapi(cls) -> Any:
        return sqlite3

    def create_connect_args(self, url: sa.URL) -> Any:
        return ([url.database], {})


registry.register("seawalldriverless", __name__, "DriverlessSQLite")


def test_a_dialect_without_driver_connects(tmp_path: Path) -> None:
    """connect and statements work on a dialect that never defines ``driver``."""
    e = sa.create_engine(f"seawalldriverless:///{tmp_path / 'third.db'}")
    assert not hasattr(e.dialect, "driver")
    point = full_point()
    sw_sa.instrument(e, point)
    try:
        with e.connect() as conn:
            assert conn.exec_driver_sql("SELECT 41 + 1").scalar() == 42
        assert point.stats().failures == 0
    finally:
        sw_sa.uninstrument(e)
        e.dispose()


# -- 8: a statement timeout of the user's is read back, never raised ----------------------------


@pytest.mark.parametrize(("shown", "ms"), [
    ("0", 0), ("250us", 1), ("500ms", 500), ("7s", 7000), ("2min", 120000), ("1h", 3600000),
    ("1d", 86400000), ("", None), ("7 parsecs", None), ("-1", None)])
def test_show_statement_timeout_is_read_in_milliseconds(shown: str, ms: int | None) -> None:
    """PostgreSQL's display of a duration, in whole milliseconds (None when unreadable)."""
    assert _pg_duration_ms(shown) == ms


# -- 6: no seawall state in the user's dicts ----------------------------------------------


def test_connection_info_stays_the_users(db_url: str) -> None:
    """Connection.info and record_info hold only what the application put there."""
    e = sw_sa.instrument(sa.create_engine(db_url), full_point())
    try:
        for _ in range(2):  # the second checkout runs the liveness check on a pooled connection
            with e.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
                assert conn.info == {}
                assert conn.connection.record_info == {}
                conn.info["mine"] = 1
                assert conn.info == {"mine": 1}
                del conn.info["mine"]
    finally:
        sw_sa.uninstrument(e)
        e.dispose()


async def test_async_connection_info_stays_the_users(tmp_path: Path) -> None:
    """SQLAlchemy's test_connection_info, on aiosqlite: info is exactly what was set."""
    e = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'a.db'}")
    sw_sa.instrument(e, full_point())
    try:
        async with e.connect() as conn:
            await conn.exec_driver_sql("SELECT 1")
            conn.info["foo"] = "bar"
            assert conn.sync_connection.info == {"foo": "bar"}
    finally:
        sw_sa.uninstrument(e)
        await e.dispose()


# -- 7: run_transaction emits no warning on replays and failures ------------------------------


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "items"
    id: Mapped[int] = mapped_column(primary_key=True)
    n: Mapped[int] = mapped_column(sa.CheckConstraint("n >= 0", name="n_not_negative"))


def test_orm_flush_failing_in_a_unit_warns_nothing(db_url: str) -> None:
    """Session(bind=conn) rolls the unit's transaction back on a CHECK violation: no SAWarning."""
    e = sa.create_engine(db_url)
    Base.metadata.create_all(e)
    point = full_point()
    sw_sa.instrument(e, point)

    def work(conn: sa.Connection) -> None:
        with Session(bind=conn) as session:
            session.add(Item(id=1, n=-1))
            session.flush()

    try:
        with pytest.raises(sa_exc.IntegrityError):
            sw_sa.run_transaction(e, work)
        assert sa_warnings(sw_sa.run_transaction, e, work) == []
        with e.connect() as conn:  # the pool got a clean connection back
            assert conn.exec_driver_sql("SELECT count(*) FROM items").scalar() == 0
        assert point.stats().retries == 0
    finally:
        sw_sa.uninstrument(e)
        e.dispose()


def test_work_rolling_back_itself_warns_nothing(db_url: str) -> None:
    """``work`` that rolls back its own failure (a common pattern) leaves nothing to warn about."""
    e = sw_sa.instrument(sa.create_engine(db_url), full_point())

    def work(conn: sa.Connection) -> None:
        try:
            conn.exec_driver_sql("SELECT * FROM no_such_table")
        except sa_exc.DBAPIError:
            conn.rollback()
            raise

    try:
        assert sa_warnings(sw_sa.run_transaction, e, work) == []
    finally:
        sw_sa.uninstrument(e)
        e.dispose()


async def test_async_orm_flush_failing_in_a_unit_warns_nothing(tmp_path: Path) -> None:
    """AsyncSession(bind=conn) in arun_transaction: a CHECK violation raises, and warns nothing."""
    e = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'a.db'}")
    async with e.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    sw_sa.instrument(e, full_point())

    async def work(conn: AsyncConnection) -> None:
        async with AsyncSession(bind=conn) as session:
            session.add(Item(id=1, n=-1))
            await session.flush()

    try:
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            with pytest.raises(sa_exc.IntegrityError):
                await sw_sa.arun_transaction(e, work)
        assert [str(w.message) for w in seen if issubclass(w.category, sa_exc.SAWarning)] == []
    finally:
        sw_sa.uninstrument(e)
        await e.dispose()


# -- 9: do_connect listeners of the application ----------------------------------------------


def test_a_do_connect_listener_that_connects_itself_is_used(db_url: str) -> None:
    """SQLAlchemy's test_connect_do_connect: the listener's own connection object is handed out."""
    e = sa.create_engine(db_url, _initialize=False)
    made = mock.Mock()
    seen: list[dict[str, Any]] = []

    @event.listens_for(e, "do_connect")
    def connect(dialect: Any, rec: Any, cargs: list[Any], cparams: dict[str, Any]) -> Any:
        seen.append(dict(cparams))
        rec.info["token"] = "t1"
        return made.our_connect(cargs, cparams)

    sw_sa.instrument(e, full_point())
    try:
        with e.connect() as conn:
            assert conn.connection.dbapi_connection is made.our_connect()
            assert conn.info == {"token": "t1"}
        with e.connect() as conn:  # checked out again from the pool, not discarded
            assert conn.connection.dbapi_connection is made.our_connect()
        assert len(seen) == 1
    finally:
        sw_sa.uninstrument(e)
        e.dispose()


def test_a_do_connect_listener_sees_the_real_arguments_and_its_changes_reach_the_driver(
        tmp_path: Path) -> None:
    """The listener gets the URL's own arguments, unmixed with seawall's; what it sets is used."""
    e = sa.create_engine(f"sqlite:///{tmp_path / 'url.db'}")
    seen: list[tuple[list[Any], dict[str, Any]]] = []
    other = str(tmp_path / "from-listener.db")

    @event.listens_for(e, "do_connect")
    def redirect(dialect: Any, rec: Any, cargs: list[Any], cparams: dict[str, Any]) -> None:
        seen.append((list(cargs), dict(cparams)))
        cargs[:] = [other]  # e.g. a path (or a host, a token) known only at connect time

    sw_sa.instrument(e, full_point())
    try:
        with e.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE here (x INTEGER)")
        cargs, cparams = e.dialect.create_connect_args(e.url)  # the URL's own, nothing of seawall's
        assert seen == [(list(cargs), cparams)]
        assert Path(other).exists() and not (tmp_path / "url.db").exists()
    finally:
        sw_sa.uninstrument(e)
        e.dispose()


# -- 12: the application's own SQLite progress handler ------------------------------------------

COUNT_TO = "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r WHERE i < 200000) " \
           "SELECT count(*) FROM r"
# ~10 s of work unloaded (COUNT_TO: 0.06 s): a 1 s timeout stops it; without one the test still ends
LONG = "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r WHERE i < 30000000) " \
       "SELECT count(*) FROM r"


class Ticks:
    """An application's progress handler: counts its calls (returns 0: never aborts)."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(self) -> int:
        self.n += 1
        return 0


def install_on_connect(e: sa.Engine, handler: Any, n: int = 100) -> None:
    @event.listens_for(e, "connect")
    def progress(dbapi_connection: Any, rec: Any) -> None:
        dbapi_connection.set_progress_handler(handler, n)


@pytest.mark.parametrize("listener_first", [True, False], ids=["listener-before", "listener-after"])
def test_the_applications_progress_handler_keeps_running(db_url: str, listener_first: bool) -> None:
    """A handler set in a connect listener (before or after instrument) still runs, and so does ours."""
    e = sa.create_engine(db_url)
    app = Ticks()
    if listener_first:
        install_on_connect(e, app)
    point = full_point(timeout=seawall.Timeout(attempt=1.0))
    sw_sa.instrument(e, point)
    if not listener_first:
        install_on_connect(e, app)
    try:
        with e.connect() as conn:
            assert conn.exec_driver_sql(COUNT_TO).scalar() == 200000
            ran = app.n
            assert ran > 100  # about 2000: one call per 100 VM instructions
            with pytest.raises(sa_exc.OperationalError):
                conn.exec_driver_sql(LONG).all()  # seawall's statement timeout still applies
            assert app.n > ran
        assert point.stats().failures_by_category["timeout"] == 1
    finally:
        sw_sa.uninstrument(e)
        e.dispose()


def test_the_application_can_replace_or_remove_its_handler(db_url: str) -> None:
    """Once seawall chained to it, the application still owns its handler: replaced, removed."""
    e = sw_sa.instrument(sa.create_engine(db_url), full_point(timeout=seawall.Timeout(attempt=1.0)))
    first, second = Ticks(), Ticks()
    try:
        with e.connect() as conn:
            conn.exec_driver_sql("SELECT 1")  # seawall's handler is in place from here on
            raw = conn.connection.driver_connection
            assert raw is not None
            raw.set_progress_handler(first, 100)
            conn.exec_driver_sql(COUNT_TO).scalar()
            raw.set_progress_handler(second, 100)
            conn.exec_driver_sql(COUNT_TO).scalar()
            assert first.n > 100 and second.n > 100
            calls = (first.n, second.n)
            raw.set_progress_handler(None, 0)
            conn.exec_driver_sql(COUNT_TO).scalar()
            assert (first.n, second.n) == calls
            with pytest.raises(sa_exc.OperationalError):
                conn.exec_driver_sql(LONG).all()  # seawall's own survives the removal
    finally:
        sw_sa.uninstrument(e)
        e.dispose()


def test_an_application_handler_that_aborts_is_not_our_timeout(db_url: str) -> None:
    """The application's handler stopping a statement is its own decision, not seawall's timeout."""
    e = sa.create_engine(db_url)
    install_on_connect(e, lambda: 1, 100)
    sw_sa.instrument(e, full_point())
    try:
        with e.connect() as conn:
            with pytest.raises(sa_exc.OperationalError) as info:
                conn.exec_driver_sql(COUNT_TO).scalar()
            # seawall's handler did not fire (its deadline is 30 s away): no mark of ours
            assert not getattr(info.value.orig, STATEMENT_TIMEOUT_MARK, False)
    finally:
        sw_sa.uninstrument(e)
        e.dispose()


def test_a_connection_seawall_did_not_make_keeps_its_handler(db_path_factory: Any, caplog: Any) -> None:
    """creator= connections may carry a handler seawall cannot see: it installs none, and says so."""
    path = db_path_factory()
    app = Ticks()

    def creator() -> sqlite3.Connection:
        raw = sqlite3.connect(path, check_same_thread=False)
        raw.set_progress_handler(app, 100)
        return raw

    e = sa.create_engine("sqlite://", creator=creator)
    sw_sa.instrument(e, full_point(timeout=seawall.Timeout(attempt=5)))
    try:
        with caplog.at_level(logging.WARNING, logger="seawall.sqlalchemy"):
            with e.connect() as conn:
                assert conn.exec_driver_sql(COUNT_TO).scalar() == 200000
                assert conn.exec_driver_sql(COUNT_TO).scalar() == 200000
        assert app.n > 2000
        refusals = [r for r in caplog.records if "progress handler" in r.getMessage()]
        assert len(refusals) == 1  # once per engine, not per statement
    finally:
        sw_sa.uninstrument(e)
        e.dispose()


def test_a_connection_pooled_before_instrument_keeps_its_handler(db_url: str, caplog: Any) -> None:
    """A connection made before instrument() is not seawall's: no handler over the app's, a warning."""
    e = sa.create_engine(db_url)
    app = Ticks()
    install_on_connect(e, app)
    with e.connect() as conn:
        conn.exec_driver_sql("SELECT 1")  # pooled now, with the application's handler
    sw_sa.instrument(e, full_point(timeout=seawall.Timeout(attempt=1.0)))
    try:
        with caplog.at_level(logging.WARNING, logger="seawall.sqlalchemy"):
            with e.connect() as conn:
                assert conn.exec_driver_sql(COUNT_TO).scalar() == 200000
        assert app.n > 1000
        assert any("engine.dispose()" in r.getMessage() for r in caplog.records)
        e.dispose()  # the remedy the warning names: new connections are seawall's, chained
        with e.connect() as conn:
            assert conn.exec_driver_sql(COUNT_TO).scalar() == 200000
            with pytest.raises(sa_exc.OperationalError):
                conn.execution_options(seawall_operation="long").exec_driver_sql(LONG).all()
        assert app.n > 3000
    finally:
        sw_sa.uninstrument(e)
        e.dispose()


def test_threads_with_their_own_handlers_count_exactly(db_url: str) -> None:
    """Eight threads, a handler of the application's on every connection: exact count, both ran."""
    e = sa.create_engine(db_url, pool_size=8, connect_args={"timeout": 30})
    with e.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE counter (n INTEGER NOT NULL)")
        conn.exec_driver_sql("INSERT INTO counter VALUES (0)")
    e.dispose()
    app = Ticks()
    lock = threading.Lock()

    def counted() -> int:
        with lock:
            app.n += 1
        return 0

    install_on_connect(e, counted, 50)
    point = full_point(retry=seawall.Retry(attempts=50, backoff=seawall.Backoff.constant(0.001)),
                       timeout=seawall.Timeout(attempt=10))
    sw_sa.instrument(e, point)
    def increment(conn: sa.Connection) -> None:
        conn.exec_driver_sql(COUNT_TO).scalar()  # enough VM work for both handlers to run
        conn.exec_driver_sql("UPDATE counter SET n = n + 1")

    def worker() -> None:
        for _ in range(5):
            sw_sa.run_transaction(e, increment)

    try:
        run_threads(8, worker, timeout=120)
        with e.connect() as conn:
            assert conn.exec_driver_sql("SELECT n FROM counter").scalar() == 40
        assert app.n > 40 * 1000  # ~8000 calls per COUNT_TO at n=50
        assert point.stats().failures_by_category.get("timeout", 0) == 0
    finally:
        sw_sa.uninstrument(e)
        e.dispose()


@pytest.fixture
def db_path_factory(tmp_path: Path) -> Iterator[Any]:
    names = iter(range(100))
    yield lambda: str(tmp_path / f"db{next(names)}.db")


def test_uninstrument_leaves_no_deadline_behind(db_url: str) -> None:
    """After uninstrument() the last statement's deadline interrupts nothing any more."""
    e = sw_sa.instrument(sa.create_engine(db_url), full_point(timeout=seawall.Timeout(attempt=0.05)))
    try:
        with e.connect() as conn:
            conn.exec_driver_sql("SELECT 1")  # its deadline: 50 ms from now
        sw_sa.uninstrument(e)
        time.sleep(0.1)  # the monotonic clock is now past that deadline, whatever the load
        with e.connect() as conn:  # the same pooled connection, uninstrumented
            assert conn.exec_driver_sql(COUNT_TO).scalar() == 200000
    finally:
        sw_sa.uninstrument(e)
        e.dispose()
