"""Protect a SQLAlchemy Engine: whole units of work replayed, client errors left alone.

A SQLite ledger in a temporary folder. Another connection holds an
exclusive lock for a moment, so a transfer meets ``database is locked``:
``run_transaction`` rolls the unit back and replays all of it. A transfer
that breaks a CHECK constraint is the caller's mistake: not retried, not
held against the database. Then the database file disappears, and the
breaker stops the engine from trying to open it.

Python 3.10: sqlite3 errors carry no result code there (``sqlite_errorcode``
is new in 3.11) and seawall classifies by code, never by message text, so
``database is locked`` cannot be told from other failures and is not
replayed. The example then lets SQLite's own busy timeout wait for the lock
instead, and says so.

Run: python examples/sqlalchemy_engine.py
"""

from __future__ import annotations

import os
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Callable

import sqlalchemy as sa

import seawall
from seawall.interceptors import sqlalchemy as sw_sa

# sqlite3 errors carry their result code from Python 3.11 on: SQLITE_BUSY is then
# recognised and the unit replayed; before, the driver's busy timeout must wait instead
SQLITE_CODES = sys.version_info >= (3, 11)
BUSY_TIMEOUT = 0.1 if SQLITE_CODES else 2.0  # seconds sqlite3 itself waits for a lock

ledger = seawall.IntegrationPoint(
    "ledger-db",
    retry=seawall.Retry(attempts=6, backoff=seawall.Backoff.constant(0.05)),
    breaker=seawall.CircuitBreaker(failure_rate=0.5, minimum_calls=4, window=10, open_for=30.0),
    timeout=seawall.Timeout(attempt=1.0, total=3.0),
)


def transfer(amount: int) -> Callable[[sa.Connection], int]:
    """A unit of work: it may run more than once, so it only touches the database."""

    def work(conn: sa.Connection) -> int:
        conn.execute(sa.text("UPDATE accounts SET balance = balance - :a WHERE id = 'alice'"),
                     {"a": amount})
        conn.execute(sa.text("UPDATE accounts SET balance = balance + :a WHERE id = 'bob'"),
                     {"a": amount})
        return int(conn.execute(sa.text("SELECT balance FROM accounts WHERE id = 'bob'")).scalar_one())
    return work


def hold_lock(path: str, locked: threading.Event, seconds: float) -> None:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("BEGIN EXCLUSIVE")
    locked.set()
    time.sleep(seconds)  # a long-running writer elsewhere
    db.execute("COMMIT")
    db.close()


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "ledger.db")
        with sqlite3.connect(path) as db:
            db.execute("CREATE TABLE accounts (id TEXT PRIMARY KEY, "
                       "balance INTEGER NOT NULL CHECK (balance >= 0))")
            db.execute("INSERT INTO accounts VALUES ('alice', 100), ('bob', 0)")
        db.close()
        # mode=rw: a missing file is an error, not a new empty database
        engine = sw_sa.instrument(
            sa.create_engine(f"sqlite:///file:{path}?mode=rw&uri=true",
                             poolclass=sa.pool.NullPool, connect_args={"timeout": BUSY_TIMEOUT}),
            ledger)
        try:
            locked = threading.Event()
            locker = threading.Thread(target=hold_lock, args=(path, locked, 0.3))
            locker.start()
            locked.wait(5.0)
            t0 = time.monotonic()
            bob = sw_sa.run_transaction(engine, transfer(30), operation="transfer")
            locker.join()
            if SQLITE_CODES:
                print(f"transfer 30 -> bob has {bob}; the database was locked, the unit was replayed "
                      f"({ledger.stats().retries} retries, {time.monotonic() - t0:.2f} s)")
            else:
                print(f"transfer 30 -> bob has {bob}; the database was locked and sqlite3's busy "
                      f"timeout waited ({time.monotonic() - t0:.2f} s). Python 3.10: sqlite3 errors "
                      f"carry no result code, so seawall does not replay 'database is locked' "
                      f"(Python 3.11+ does)")

            try:
                sw_sa.run_transaction(engine, transfer(500), operation="transfer")
            except sa.exc.IntegrityError as exc:
                print(f"transfer 500 -> {type(exc.orig).__name__}: {exc.orig} "
                      f"(not retried; breaker still {ledger.breaker_state.value})")

            os.replace(path, path + ".gone")  # the disk holding the database went away
            outcomes = []
            for _ in range(5):
                try:
                    sw_sa.run_transaction(engine, transfer(1), operation="transfer")
                    outcomes.append("ok")
                except seawall.CircuitOpenError:
                    outcomes.append("circuit open")
                except sa.exc.OperationalError:
                    outcomes.append("unable to open")
            print(f"database gone -> {', '.join(outcomes)}")
        finally:
            sw_sa.uninstrument(engine)
            engine.dispose()
    s = ledger.stats()
    print(f"ledger-db: {s.calls} calls (units, connects and statements), {s.retries} retries, "
          f"failures {dict((k, v) for k, v in s.failures_by_category.items() if v)}, "
          f"{s.rejections['breaker']} refused by the breaker")
    assert bob == 30 and outcomes[-1] == "circuit open"


if __name__ == "__main__":
    main()
