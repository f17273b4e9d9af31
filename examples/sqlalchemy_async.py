"""Protect an AsyncEngine: concurrent units of work with ``arun_transaction``.

Ten concurrent tasks each move one unit of stock into an order on a SQLite
database (aiosqlite) in a temporary folder, while another connection
holds an exclusive lock for a moment. Tasks that meet ``database is
locked`` have their whole unit rolled back and replayed; every order is
written exactly once.

Python 3.10: sqlite3 errors carry no result code there (``sqlite_errorcode``
is new in 3.11) and seawall classifies by code, never by message text, so
``database is locked`` is not replayed. The example then lets SQLite's own
busy timeout wait for the lock instead, and says so.

Run: python examples/sqlalchemy_async.py
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
import tempfile
import threading
from collections.abc import Awaitable, Callable

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

import seawall
from seawall.interceptors import sqlalchemy as sw_sa

# sqlite3 errors carry their result code from Python 3.11 on: SQLITE_BUSY is then
# recognised and the unit replayed; before, the driver's busy timeout must wait instead
SQLITE_CODES = sys.version_info >= (3, 11)
BUSY_TIMEOUT = 0.1 if SQLITE_CODES else 3.0  # seconds sqlite3 itself waits for a lock

orders_db = seawall.IntegrationPoint(
    "orders-db",
    retry=seawall.Retry(attempts=10, backoff=seawall.Backoff.exponential(initial=0.02, maximum=0.2),
                        budget=None),
    timeout=seawall.Timeout(attempt=1.0, total=5.0),
)


def place(order_id: int) -> Callable[[AsyncConnection], Awaitable[None]]:
    """The unit of work for one order: it may run more than once, so it only touches the database."""

    async def work(conn: AsyncConnection) -> None:
        await conn.execute(sa.text("UPDATE stock SET qty = qty - 1 WHERE sku = 'A-1'"))
        await conn.execute(sa.text("INSERT INTO orders (id, sku) VALUES (:id, 'A-1')"),
                           {"id": order_id})
    return work


def hold_lock(path: str, locked: threading.Event, release: threading.Event) -> None:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("BEGIN EXCLUSIVE")
    locked.set()
    release.wait(5.0)
    db.execute("COMMIT")
    db.close()


async def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "orders.db")
        with sqlite3.connect(path) as db:
            db.execute("CREATE TABLE stock (sku TEXT PRIMARY KEY, qty INTEGER NOT NULL)")
            db.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, sku TEXT NOT NULL)")
            db.execute("INSERT INTO stock VALUES ('A-1', 100)")
        db.close()
        engine = sw_sa.instrument(
            create_async_engine(f"sqlite+aiosqlite:///{path}", connect_args={"timeout": BUSY_TIMEOUT}),
            orders_db)
        locked, release = threading.Event(), threading.Event()
        locker = threading.Thread(target=hold_lock, args=(path, locked, release))
        locker.start()
        try:
            locked.wait(5.0)
            asyncio.get_running_loop().call_later(0.3, release.set)  # the other writer finishes
            results = await asyncio.gather(
                *(sw_sa.arun_transaction(engine, place(i), operation="place order")
                  for i in range(1, 11)),
                return_exceptions=True)
            async with engine.connect() as conn:
                qty = (await conn.execute(sa.text("SELECT qty FROM stock"))).scalar_one()
                orders = (await conn.execute(sa.text("SELECT count(*) FROM orders"))).scalar_one()
        finally:
            release.set()
            locker.join()
            sw_sa.uninstrument(engine)
            await engine.dispose()
    s = orders_db.stats()
    print(f"10 orders placed while the database was locked for 0.3 s: {orders} orders written, "
          f"stock {qty} (was 100)")
    failed = [r for r in results if isinstance(r, BaseException)]
    if SQLITE_CODES:
        print(f"orders-db: {s.retries} replays after 'database is locked', "
              f"{len(failed)} of the 10 tasks saw an error")
    else:
        print(f"orders-db: sqlite3's busy timeout waited for the lock ({s.retries} replays), "
              f"{len(failed)} of the 10 tasks saw an error. Python 3.10: sqlite3 errors carry "
              f"no result code, so seawall does not replay 'database is locked' (Python 3.11+ does)")
    assert not failed and orders == 10 and qty == 90 and (s.retries >= 1 or not SQLITE_CODES)


if __name__ == "__main__":
    asyncio.run(main())
