"""The engine and the schema under every :class:`Store`: connect, create, check, upgrade.

:class:`StoreBase` holds what the writing and reading halves of the store
share: the engine, its dialect, the write connection (``BEGIN IMMEDIATE``
on SQLite), and :meth:`StoreBase.ensure_schema`, which creates missing
tables, refuses a newer schema and upgrades an older one in place (or,
read-only, reads the columns it lacks as zeros).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from sqlalchemy import (
    BigInteger,
    Connection,
    Engine,
    Select,
    Table,
    func,
    insert,
    inspect,
    literal,
    select,
)
from sqlalchemy.exc import DBAPIError, IntegrityError

from seawall import ConfigurationError

from ._schema import ADDED, COUNT_TABLES, SCHEMA_VERSION, metadata, schema_version
from ._store_url import create_store_engine, resolve_url, shown_url
from ._types import Transition


class StoreBase:
    """A store's engine and schema; :class:`seawall.storage.Store` adds writes and reads."""

    def __init__(self, url: str | None = None, *, busy_timeout: float = 10.0,
                 engine: Engine | None = None, read_only: bool = False) -> None:
        self.url = resolve_url(url) if engine is None else str(engine.url)
        self.read_only = read_only
        self.engine = engine if engine is not None else create_store_engine(
            self.url, busy_timeout, read_only)
        self.dialect = self.engine.dialect.name
        self._owns_engine = engine is None
        self._upserts: dict[str, Any] = {}
        self._reads: dict[Any, Any] = {}
        self._create_lock = threading.Lock()
        self._ready = False
        # columns of a newer schema that a read-only, older store lacks: read as zeros
        self._absent: frozenset[str] = frozenset()

    def __repr__(self) -> str:
        return f"Store({shown_url(self.url)!r})"

    def _write_connection(self) -> Connection:
        return self.engine.connect().execution_options(seawall_write=True)

    def close(self) -> None:
        """Release the connections (only when this store created its engine)."""
        if self._owns_engine:
            self.engine.dispose()

    def ensure_schema(self, *, create: bool = True) -> None:
        """Create missing tables and record the schema version; refuse a newer schema.

        Without ``create`` nothing is created: a database without seawall's
        tables raises :class:`seawall.ConfigurationError`. A store of an older
        schema version (1: before fault injection's ``injected_*`` counters;
        2: before the waits, hedges, pacing refusals and bulkhead limit)
        is upgraded in place, unless opened read-only: then the columns it
        lacks read as zeros.
        """
        with self._create_lock:
            if self._ready:
                return
            # read first: an existing store needs no write lock (which another writer may hold)
            with self.engine.connect() as conn:
                names = set(inspect(conn).get_table_names())
                found = (conn.execute(select(func.max(schema_version.c.version))).scalar()
                         if schema_version.name in names else None)
            missing = [t for t in metadata.sorted_tables if t.name not in names]
            if not create and schema_version.name not in names:
                raise ConfigurationError(
                    f"{self!r} holds no seawall metrics (no {schema_version.name} table)")
            if create and not self.read_only and (missing or found is None):
                for attempt in range(3):
                    try:
                        with self._write_connection() as conn, conn.begin():
                            metadata.create_all(conn, checkfirst=True)
                        break
                    except DBAPIError:
                        # Another process created the same tables at the same moment.
                        if attempt == 2:
                            raise
                with self.engine.connect() as conn:
                    found = conn.execute(select(func.max(schema_version.c.version))).scalar()
                if found is None:
                    try:
                        with self._write_connection() as conn, conn.begin():
                            conn.execute(insert(schema_version).values(
                                version=SCHEMA_VERSION, applied_at=time.time()))
                    except IntegrityError:
                        pass  # a concurrent writer recorded it first
            if found is not None and found > SCHEMA_VERSION:
                raise ConfigurationError(
                    f"metrics store {self!r} has schema version {found}, newer than this "
                    f"seawall understands ({SCHEMA_VERSION}); upgrade seawall"
                )
            if found is not None and found < SCHEMA_VERSION:
                if self.read_only:
                    self._absent = frozenset(name for version, names in ADDED.items()
                                             if version > found for name in names)
                else:
                    self._upgrade()
            self._ready = True

    def _upgrade(self) -> None:
        """Add the columns later schema versions added (:data:`._schema.ADDED`) to an older store.

        Safe against a concurrent upgrade by another process: a column or a
        version row that appeared meanwhile is taken as done.
        """
        for attempt in range(3):
            try:
                with self._write_connection() as conn, conn.begin():
                    for table in COUNT_TABLES.values():
                        have = {c["name"] for c in inspect(conn).get_columns(table.name)}
                        for name in (n for names in ADDED.values() for n in names):
                            if name not in have:
                                conn.exec_driver_sql(
                                    f"ALTER TABLE {table.name} ADD COLUMN {name} "
                                    "BIGINT NOT NULL DEFAULT 0")
                    done = conn.execute(select(func.max(schema_version.c.version))).scalar()
                    if done is None or done < SCHEMA_VERSION:
                        conn.execute(insert(schema_version).values(
                            version=SCHEMA_VERSION, applied_at=time.time()))
                return
            except DBAPIError:  # another process upgraded at the same moment: look again
                if attempt == 2:
                    raise

    def _transitions(self, stmt: Select[Any]) -> list[Transition]:
        """The breaker transitions ``stmt`` selects (whole rows of the transitions table)."""
        if not self._ready:
            self.ensure_schema()
        with self.engine.connect() as conn:
            return [Transition(point=r.point, from_state=r.from_state, to_state=r.to_state,
                               reason=r.reason, time=r.time, host=r.host, pid=r.pid, id=r.id)
                    for r in conn.execute(stmt)]

    def _column(self, table: Table, name: str) -> Any:
        """``table.c[name]``, or a zero for a column a read-only older store lacks."""
        if name in self._absent:
            return literal(0, type_=BigInteger).label(name)
        return table.c[name]
