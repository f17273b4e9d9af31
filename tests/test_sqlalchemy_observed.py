"""Statements as observed work: counted by the core through ``point.observer()``, exactly.

Each statement outside a unit of work is one call: admitted by the breaker
(refused while it is open, counted as rejected), its outcome counted once
by the ledger, whichever way it is told (``counted`` for a quiet success,
``succeeded`` / ``failed`` when the breaker or a hook must hear of it),
from any number of threads or tasks. Real SQLite files, no mocks.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import create_async_engine

import seawall
from seawall.interceptors import sqlalchemy as sw_sa
from seawall.testing import FakeClock
from tests.sqlalchemy_support import create_counter, run_threads, sqlite_counter_engine

FAIL = "INSERT INTO counter VALUES (1, 5)"  # a duplicate key: fails, writes nothing
READ = "SELECT n FROM counter WHERE id = 1"


def breaker_point() -> seawall.IntegrationPoint:
    """A breaker that never opens here (failure_rate 1.0; client errors are no failures to it)."""
    return seawall.IntegrationPoint("db", breaker=seawall.CircuitBreaker(
        failure_rate=1.0, minimum_calls=20, window=20))


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[sa.Engine]:
    with sqlite_counter_engine(tmp_path / "app.db", empty_pool=True, pool_size=10) as e:
        yield e


def count_connects(engine: Any) -> list[int]:
    """Our own pool listener: one entry per new DBAPI connection (each a ``connect`` call)."""
    made: list[int] = []
    event.listen(getattr(engine, "sync_engine", engine), "connect", lambda *_: made.append(1))
    return made


def test_threads_running_statements_at_once_count_exactly(engine: sa.Engine) -> None:
    """8 threads x 200 statements, every tenth failing: successes, failures and calls are exact."""
    point = breaker_point()
    sw_sa.instrument(engine, point)
    made = count_connects(engine)
    threads_n, per_thread = 8, 200
    start = threading.Barrier(threads_n)

    def worker() -> None:
        with engine.connect() as conn:
            start.wait(30)
            for i in range(per_thread):
                if i % 10 == 9:
                    with pytest.raises(sa_exc.IntegrityError):
                        conn.exec_driver_sql(FAIL)
                    conn.rollback()
                else:
                    assert conn.exec_driver_sql(READ).scalar() == 0

    run_threads(threads_n, worker)
    s = point.stats()
    failures = threads_n * per_thread // 10
    assert s.failures == failures == s.failures_by_category["permanent"]
    assert s.successes == threads_n * per_thread - failures + len(made)
    assert s.calls == s.successes + s.failures == s.attempts and s.rejected == 0
    assert point.breaker_state is seawall.BreakerState.CLOSED


async def test_tasks_running_statements_at_once_count_exactly(tmp_path: Path) -> None:
    """8 asyncio tasks x 100 statements on an AsyncEngine, every tenth failing: exact totals."""
    aengine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'app.db'}")
    async with aengine.begin() as conn:
        await conn.run_sync(create_counter)
    await aengine.dispose()
    point = breaker_point()
    sw_sa.instrument(aengine, point)
    made = count_connects(aengine)
    tasks_n, per_task = 8, 100
    try:
        async def worker() -> None:
            async with aengine.connect() as conn:
                for i in range(per_task):
                    await asyncio.sleep(0)  # let the other tasks interleave
                    if i % 10 == 9:
                        with pytest.raises(sa_exc.IntegrityError):
                            await conn.exec_driver_sql(FAIL)
                        await conn.rollback()
                    else:
                        assert (await conn.exec_driver_sql(READ)).scalar() == 0

        await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(tasks_n))), timeout=60)
        s = point.stats()
        failures = tasks_n * per_task // 10
        assert s.failures == failures
        assert s.successes == tasks_n * per_task - failures + len(made)
        assert s.calls == s.successes + s.failures and s.rejected == 0
    finally:
        sw_sa.uninstrument(aengine)
        await aengine.dispose()


def test_an_open_breaker_refuses_statements_and_counts_them_rejected(engine: sa.Engine) -> None:
    """With the breaker forced open a statement never runs: CircuitOpenError, one rejected call."""
    point = breaker_point()
    events: list[Any] = []
    point.add_hook(events.append)
    sw_sa.instrument(engine, point)
    with engine.connect() as conn:
        conn.exec_driver_sql(READ)
        assert point.circuit is not None
        point.circuit.force_open()
        with pytest.raises(seawall.CircuitOpenError) as refused:
            conn.execution_options(seawall_operation="read counter").exec_driver_sql(READ)
    assert refused.value.operation == "read counter"
    s = point.stats()
    assert (s.rejected, s.rejections["breaker"], s.failures) == (1, 1, 0)
    rejected = [e for e in events if isinstance(e, seawall.CallEvent) and e.rejected]
    assert [(e.operation, e.rejected) for e in rejected] == [("read counter", "breaker")]


def test_a_statement_inside_a_unit_is_never_refused_by_the_breaker(engine: sa.Engine) -> None:
    """The breaker opening mid-unit refuses the next call, not the unit's next statement."""
    point = breaker_point()
    sw_sa.instrument(engine, point)
    assert point.circuit is not None
    circuit = point.circuit

    def work(conn: sa.Connection) -> int:
        first: int = conn.exec_driver_sql(READ).scalar_one()
        circuit.force_open()
        second: int = conn.exec_driver_sql(READ).scalar_one()  # the unit holds the ticket
        return first + second

    assert sw_sa.run_transaction(engine, work, operation="read twice") == 0
    with pytest.raises(seawall.CircuitOpenError):
        sw_sa.run_transaction(engine, work)
    assert point.stats().rejected == 1


def test_a_statement_past_its_enclosing_deadline_is_refused_before_it_runs(
        engine: sa.Engine) -> None:
    """Inside a call whose deadline has passed, a statement raises DeadlineExceeded and never runs."""
    clock = FakeClock()
    outer = seawall.IntegrationPoint("db", clock=clock, timeout=seawall.Timeout(attempt=1.0))
    sw_sa.instrument(engine, outer)
    ran: list[str] = []
    with engine.connect() as conn:
        conn.exec_driver_sql(READ)  # connected before the call: only the statement is late
        raw = conn.connection.dbapi_connection
        assert raw is not None
        raw.set_trace_callback(ran.append)  # what SQLite itself runs

        def late() -> None:
            clock.advance(2.0)
            conn.exec_driver_sql(READ)

        with pytest.raises(seawall.DeadlineExceeded) as late_error:
            outer.call(late)
    assert READ not in ran
    assert late_error.value.operation == "select counter"
    assert outer.stats().rejections["deadline"] == 1
