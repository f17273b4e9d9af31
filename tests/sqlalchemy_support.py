"""Shared pieces of the SQLAlchemy tests: the counter table on a SQLite file, and threads.

:func:`sqlite_counter_engine` is the engine most tests start from: one row
``counter(id=1, n=0)`` in a fresh SQLite file, the engine uninstrumented and
disposed after the test. :func:`run_threads`
runs one worker in several threads at once and fails the test with what any
of them raised.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from seawall.interceptors import sqlalchemy as sw_sa


def create_counter(conn: Any) -> None:
    """The ``counter`` table with its one row ``(1, 0)``, on a sync or driver connection."""
    conn.exec_driver_sql("CREATE TABLE counter (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)")
    conn.exec_driver_sql("INSERT INTO counter VALUES (1, 0)")


@contextmanager
def sqlite_counter_engine(path: Path, *, empty_pool: bool = False,
                          **options: Any) -> Iterator[sa.Engine]:
    """An engine on a new SQLite file at ``path`` holding the counter table.

    ``options`` go to ``create_engine``. The connection that made the table
    stays pooled unless ``empty_pool`` (then the test's first statement opens a
    new one). Afterwards the engine is uninstrumented and disposed.
    """
    e = sa.create_engine(f"sqlite:///{path}", **options)
    with e.begin() as conn:
        create_counter(conn)
    if empty_pool:
        e.dispose()
    try:
        yield e
    finally:
        sw_sa.uninstrument(e)
        e.dispose()


def run_threads(n: int, work: Callable[[], None], *, timeout: float = 60) -> None:
    """Run ``work`` in ``n`` threads at once; assert each ended within ``timeout`` seconds
    (counted per join) and none raised (the exceptions are the message)."""
    errors: list[BaseException] = []

    def guarded() -> None:
        try:
            work()
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=guarded) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    assert not [t for t in threads if t.is_alive()], "a worker thread is still running"
    assert not errors, errors
