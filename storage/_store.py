"""The metrics store: write aggregate batches, read summaries, series and transitions.

SQLAlchemy Core over any URL. SQLite gets WAL, a busy timeout and
``BEGIN IMMEDIATE`` for writes (so concurrent writers queue on the lock
instead of failing); PostgreSQL (``postgresql://`` uses psycopg 3) and
SQLite write with ``INSERT ... ON CONFLICT DO UPDATE``; other databases
fall back to update-then-insert, which is safe because each process
writes only its own rows.

:class:`Store` is assembled from one module per concept; this one opens a
store (:meth:`Store.open`) and prunes it, and re-exports the names other
modules import from here:

* :mod:`._store_url`: URLs, engines, errors that say what to do;
* :mod:`._store_query`: query limits and argument checks, rollup pieces;
* :mod:`._store_base`: the engine and the schema (create, check, upgrade);
* :mod:`._store_write`: writing flushed counters and transitions;
* :mod:`._store_read`: points, summaries, series, transitions;
* :mod:`._store_breakdown`: per-process sums, live limits, breaker states.
"""

from __future__ import annotations

import logging
import os
import time
from datetime import timedelta

from sqlalchemy import inspect
from sqlalchemy.exc import ArgumentError, DBAPIError

from seawall import ConfigurationError

from ._schema import COUNT_TABLES, DAY, HOUR, MINUTE, operations, schema_version, transitions
from ._store_breakdown import StoreBreakdowns
from ._store_query import (
    DEFAULT_PAGE,
    MAX_PAGE,
    MAX_WINDOW,
    check_name,
    check_time,
    check_window,
    safe_float,
)
from ._store_read import StoreReads
from ._store_url import (
    DEFAULT_URL,
    create_store_engine,
    describe_store_error,
    resolve_url,
    sqlite_path,
)
from ._store_write import Key, StoreWrites
from ._types import MetricsQueryError

__all__ = [
    "DAY", "DEFAULT_PAGE", "DEFAULT_URL", "HOUR", "MAX_PAGE", "MAX_WINDOW", "MINUTE", "Key",
    "Store", "check_name", "check_time", "check_window", "describe_store_error",
    "resolve_url", "sqlite_path",
]

log = logging.getLogger("seawall.storage")


class Store(StoreWrites, StoreReads, StoreBreakdowns):
    """A metrics store at a SQLAlchemy URL (see :func:`resolve_url`).

    ``Store(url)`` connects lazily: it creates its tables and checks the
    schema version on first use (or an explicit :meth:`ensure_schema`);
    :meth:`open` connects at once and turns every configuration mistake
    (a bad URL, a missing driver, a file that is not a database or cannot
    be written) into a :class:`seawall.ConfigurationError` that says what to
    do. Every method is thread-safe (each uses its own pooled connection).
    Writers call :meth:`write`; readers :meth:`points`, :meth:`summary`,
    :meth:`series` and :meth:`transitions`; :meth:`prune` deletes old data.
    ``busy_timeout`` (seconds) is how long a SQLite writer waits for the lock.
    ``read_only`` opens a SQLite file without ever writing it (no WAL switch,
    no table creation): what :func:`seawall.storage.serve` does with a file
    this user may not write.
    """

    @classmethod
    def open(cls, url: str | None = None, *, create: bool = True, busy_timeout: float = 10.0,
             create_hint: str = "create=True") -> Store:
        """Open the store at ``url`` now: connect, then create or check its tables.

        With ``create`` (what the recorder does) missing tables, and a
        missing SQLite file, are created. Without it (what ``serve`` does) the
        store must exist: a missing SQLite file, or a database without
        seawall's tables, raises :class:`seawall.ConfigurationError` naming
        it and suggesting ``create_hint``; a SQLite file this user may not
        write is opened read-only. A bad URL, a missing driver (naming what
        to install), a file that is not a database, a folder that does not
        exist or cannot be written raise :class:`seawall.ConfigurationError`
        too. A database server that does not answer is not a configuration
        mistake: the store is returned and connects later.
        """
        resolved = resolve_url(url)
        try:
            path = sqlite_path(resolved)
        except ArgumentError as exc:
            raise ConfigurationError(describe_store_error(exc, resolved) or str(exc)) from None
        read_only = False
        if path is not None and create and os.path.exists(path) \
                and not os.access(path, os.W_OK):
            raise ConfigurationError(
                f"cannot write the metrics store {path}: this user may not write the file; fix "
                "its permissions or choose another path")
        if path is not None and not create:
            if not os.path.exists(path):
                raise ConfigurationError(
                    f"no metrics store at {path}: the file does not exist. Check the path "
                    "(persist_metrics() writes seawall-metrics.db in its working directory "
                    f"unless given a URL), or pass {create_hint} to start an empty store")
            read_only = not (os.access(path, os.W_OK)
                             and os.access(os.path.dirname(path), os.W_OK))
        store = cls._connect(resolved, busy_timeout, read_only, create, create_hint)
        if store is None and read_only:
            # a WAL file whose -shm this user cannot create: read it as an immutable snapshot
            log.warning("seawall.storage: %s is read-only and in WAL mode; serving it as an "
                        "immutable snapshot (writes made meanwhile may not be seen)", path)
            store = cls._connect(resolved, busy_timeout, "immutable", create, create_hint)
        assert store is not None
        return store

    @classmethod
    def _connect(cls, url: str, busy_timeout: float, read_only: bool | str,
                 create: bool, create_hint: str) -> Store | None:
        try:
            store = cls(url, busy_timeout=busy_timeout, read_only=bool(read_only))
            if read_only == "immutable":
                store.engine.dispose()
                store.engine = create_store_engine(url, busy_timeout, True, immutable=True)
        except Exception as exc:
            message = describe_store_error(exc, url)
            if message is None:
                raise
            raise ConfigurationError(message) from exc
        try:
            if not create:
                with store.engine.connect() as conn:
                    if not inspect(conn).has_table(schema_version.name):
                        raise ConfigurationError(
                            f"{store!r} holds no seawall metrics (no {schema_version.name} "
                            "table): point it at the store that persist_metrics() writes, or "
                            f"pass {create_hint} to start an empty one")
            store.ensure_schema(create=create)
        except ConfigurationError:
            store.close()
            raise
        except Exception as exc:
            if read_only is True and isinstance(exc, DBAPIError):
                store.close()
                return None
            message = describe_store_error(exc, url, writing=not read_only)
            if message is None:  # a server that is down or unreachable: it may come back
                log.warning("seawall.storage: the metrics store %s cannot be reached now (%s: "
                            "%s); it is retried on every use", store, type(exc).__name__,
                            str(exc).splitlines()[0] if str(exc) else "")
                return store
            store.close()
            raise ConfigurationError(message) from exc
        return store

    # -- retention -----------------------------------------------------------

    def prune(self, older_than: float | timedelta, *, now: float | None = None) -> int:
        """Delete data older than ``older_than`` (seconds or a timedelta); returns rows deleted.

        Minute rows go when their minute is over the line, hour and day
        rollups when their whole hour or day is.
        """
        age = older_than.total_seconds() if isinstance(older_than, timedelta) else older_than
        age = safe_float("older_than", age)
        if age <= 0:
            raise MetricsQueryError(f"older_than must be > 0 seconds, got {older_than!r}")
        cutoff = (time.time() if now is None else now) - age
        minute = int(cutoff // 60)
        deleted = 0
        if not self._ready:
            self.ensure_schema()
        with self._write_connection() as conn, conn.begin():
            for width, table in COUNT_TABLES.items():
                result = conn.execute(table.delete().where(table.c.bucket < minute // width))
                deleted += max(result.rowcount, 0)
            for table, column in ((transitions, transitions.c.time),
                                  (operations, operations.c.last_seen)):
                result = conn.execute(table.delete().where(column < cutoff))
                deleted += max(result.rowcount, 0)
        return deleted
