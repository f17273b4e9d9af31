"""Fault injection through SQLAlchemy: an injected disconnect, on SQLite files and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

import seawall
from seawall import Category
from seawall.interceptors import sqlalchemy as sw_sa
from seawall.testing import FakeClock
from tests.sqlalchemy_support import sqlite_counter_engine


def point(chaos: seawall.Chaos, **kw: Any) -> seawall.IntegrationPoint:
    kw.setdefault("retry", seawall.Retry(attempts=3, backoff=seawall.Backoff.constant(0.01),
                                         budget=None))
    return seawall.IntegrationPoint("db", chaos=chaos, clock=FakeClock(), **kw)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[sa.Engine]:
    with sqlite_counter_engine(tmp_path / "app.db") as e:
        yield e


def bump(conn: sa.Connection) -> int:
    conn.exec_driver_sql("UPDATE counter SET n = n + 1 WHERE id = 1")
    return int(conn.exec_driver_sql("SELECT n FROM counter WHERE id = 1").scalar_one())


def test_injected_disconnect_is_a_disconnect_for_the_classifier() -> None:
    """The factory's error is a DBAPI-shaped OperationalError flagged as a lost connection."""
    err = sw_sa.injected_disconnect()
    assert isinstance(err, sa_exc.OperationalError) and err.connection_invalidated
    assert isinstance(err.orig, sw_sa.InjectedDisconnect)
    c = sw_sa.classify(err, "sqlite")
    assert c is not None and c.category is Category.TRANSIENT and c.retry and c.breaker
    assert sw_sa.injected_disconnect() is not err  # a fresh one each time


def test_unit_of_work_is_retried_through_injected_disconnects(engine: sa.Engine) -> None:
    """Injected disconnects are retried as whole units; the work runs once it gets through."""
    db = point(seawall.Chaos(fault_rate=0.5, fault=sw_sa.injected_disconnect, seed=2),
               retry=seawall.Retry(attempts=10, backoff=seawall.Backoff.constant(0.01),
                                   budget=None))
    sw_sa.instrument(engine, db)
    results = [sw_sa.run_transaction(engine, bump) for _ in range(10)]
    assert results == list(range(1, 11))  # each unit committed exactly once
    stats = db.stats()
    assert stats.injected_attempts > 0 and stats.injected_failures == 0


def test_exhausted_retries_raise_the_injected_error(engine: sa.Engine) -> None:
    """Every attempt injected: the caller gets the OperationalError, the data is untouched."""
    db = point(seawall.Chaos(fault_rate=1.0, fault=sw_sa.injected_disconnect))
    sw_sa.instrument(engine, db)
    with pytest.raises(sa_exc.OperationalError) as info:
        sw_sa.run_transaction(engine, bump)
    assert isinstance(info.value.orig, sw_sa.InjectedDisconnect)
    assert db.stats().attempts == 3 and db.stats().injected_failures == 1
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT n FROM counter").scalar_one() == 0


def test_injected_disconnects_open_the_breaker(engine: sa.Engine) -> None:
    """The breaker counts injected disconnects and refuses the next unit."""
    db = point(seawall.Chaos(fault_rate=1.0, fault=sw_sa.injected_disconnect), retry=None,
               breaker=seawall.CircuitBreaker(failure_rate=0.5, minimum_calls=3, window=3))
    sw_sa.instrument(engine, db)
    for _ in range(3):
        with pytest.raises(sa_exc.OperationalError):
            sw_sa.run_transaction(engine, bump)
    with pytest.raises(seawall.CircuitOpenError):
        sw_sa.run_transaction(engine, bump)


async def test_async_engine_units_get_injected_disconnects(tmp_path: Path) -> None:
    """arun_transaction on an AsyncEngine (aiosqlite) retries injected disconnects too."""
    aengine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'a.db'}")
    try:
        async with aengine.begin() as conn:
            await conn.exec_driver_sql("CREATE TABLE t (n INTEGER)")
        db = point(seawall.Chaos(fault_rate=1.0, fault=sw_sa.injected_disconnect))
        sw_sa.instrument(aengine, db)

        async def work(conn: AsyncConnection) -> None:
            await conn.exec_driver_sql("INSERT INTO t VALUES (1)")

        with pytest.raises(sa_exc.OperationalError):
            await sw_sa.arun_transaction(aengine, work)
        assert db.stats().injected_attempts == 3
        assert db.chaos is not None
        db.chaos.disable()
        await sw_sa.arun_transaction(aengine, work)
        async with aengine.connect() as conn:
            assert (await conn.exec_driver_sql("SELECT count(*) FROM t")).scalar_one() == 1
    finally:
        sw_sa.uninstrument(aengine)
        await aengine.dispose()


def test_postgres_unit_is_retried_through_an_injected_disconnect(postgres_url: str) -> None:
    """On a real PostgreSQL, the first unit attempt is injected, the retry commits once."""
    e = sa.create_engine(postgres_url)
    try:
        with e.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE counter (id INTEGER PRIMARY KEY, n INTEGER)")
            conn.exec_driver_sql("INSERT INTO counter VALUES (1, 0)")
        # seed 3's first draw injects, its second does not (checked below)
        db = point(seawall.Chaos(fault_rate=0.5, fault=sw_sa.injected_disconnect, seed=3))
        sw_sa.instrument(e, db)
        assert sw_sa.run_transaction(e, bump) == 1
        stats = db.stats()  # the statements inside the unit are counted as calls too
        assert (stats.injected_attempts, stats.retries, stats.failures) == (1, 1, 0)
        with e.connect() as conn:
            assert conn.exec_driver_sql("SELECT n FROM counter").scalar_one() == 1
    finally:
        sw_sa.uninstrument(e)
        e.dispose()
