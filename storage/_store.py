"""The metrics store: write aggregate batches, read summaries, series and transitions.

SQLAlchemy Core over any URL. SQLite gets WAL, a busy timeout and
``BEGIN IMMEDIATE`` for writes (so concurrent writers queue on the lock
instead of failing); PostgreSQL (``postgresql://`` uses psycopg 3) and
SQLite write with ``INSERT ... ON CONFLICT DO UPDATE``; other databases
fall back to update-then-insert, which is safe because each process
writes only its own rows.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    Connection,
    Engine,
    String,
    Table,
    and_,
    bindparam,
    case,
    create_engine,
    event,
    func,
    insert,
    inspect,
    literal,
    select,
    union_all,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError, NoSuchModuleError
from sqlalchemy.pool import StaticPool

from seawall import BreakerTransition, ConfigurationError

from ._schema import (
    ADDED,
    COUNT_TABLES,
    DAY,
    HOUR,
    MINUTE,
    NAME_LENGTH,
    SCHEMA_VERSION,
    VALUES,
    WIDTH,
    metadata,
    operations,
    schema_version,
    transitions,
)
from ._types import MetricsQueryError, PointInfo, SeriesBucket, Summary, Transition, stats_fields

log = logging.getLogger("seawall.storage")

DEFAULT_URL = "sqlite:///seawall-metrics.db"
DEFAULT_WINDOW = 3600.0
MAX_WINDOW = 366 * 86400.0
# the latest time a query may name: the end of year 9999 (epoch seconds); minute buckets of
# anything later no longer fit the 64-bit columns every database offers
MAX_TIME = 253402300800.0
MAX_SERIES_BUCKETS = 10_000
MAX_PAGE = 1000
DEFAULT_PAGE = 100
_CHUNK = 200  # rows per executemany: keeps bind parameters under every driver's limit

Key = tuple[str, str, int]  # (point, operation, minute since the epoch)


def resolve_url(url: str | None) -> str:
    """``url``, else ``$SEAWALL_METRICS_URL``, else ``sqlite:///seawall-metrics.db``.

    A bare path (no ``://``) is a SQLite file; ``postgresql://`` picks psycopg 3.
    """
    if url is None or url == "":
        url = os.environ.get("SEAWALL_METRICS_URL") or DEFAULT_URL
    if "://" not in url:
        url = f"sqlite:///{url}"
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def _safe_float(name: str, value: float) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise MetricsQueryError(f"{name} must be a number, got {value!r}") from None
    if math.isnan(value) or math.isinf(value):
        raise MetricsQueryError(f"{name} must be finite, got {value!r}")
    return value


def check_time(name: str, value: float) -> float:
    """Validate a point in time: epoch seconds from 0 to :data:`MAX_TIME` (year 9999)."""
    value = _safe_float(name, value)
    if not 0.0 <= value <= MAX_TIME:
        raise MetricsQueryError(f"{name} must be epoch seconds between 0 and {MAX_TIME:.0f} "
                                f"(the end of year 9999), got {value!r}")
    return value


# -- opening a store with errors that say what to do ------------------------------

# the Python module a driver needs -> what to install
_DRIVER_HINTS = {
    "psycopg": "pip install 'seawall[postgresql]' (psycopg 3)",
    "psycopg2": "pip install psycopg2-binary, or write the URL as postgresql+psycopg:// and "
                "pip install 'seawall[postgresql]'",
    "asyncpg": "the metrics store needs a sync driver: write the URL as postgresql+psycopg:// "
               "and pip install 'seawall[postgresql]'",
    "MySQLdb": "pip install mysqlclient, or write the URL as mysql+pymysql:// and "
               "pip install pymysql",
    "pymysql": "pip install pymysql",
    "cx_Oracle": "pip install oracledb and write the URL as oracle+oracledb://",
    "oracledb": "pip install oracledb",
    "pyodbc": "pip install pyodbc",
    "pymssql": "pip install pymssql",
}


def _shown(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def sqlite_path(url: str) -> str | None:
    """The file of a SQLite URL (``None`` for another database or an in-memory one)."""
    parsed = make_url(url)
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or database is None or database in ("", ":memory:"):
        return None
    if database.startswith("file:"):  # a URI filename (uri=true)
        database = database[5:].split("?", 1)[0]
    return os.path.abspath(database)


def describe_store_error(exc: BaseException, url: str, *, writing: bool = True) -> str | None:
    """What a failure to open the store at ``url`` means and what to do, or ``None``.

    ``None`` is for failures that may pass by themselves (a database server that
    is down or unreachable); every other reason names the URL or the file.
    """
    shown = _shown(url)
    if isinstance(exc, NoSuchModuleError):
        scheme = url.split("://", 1)[0]
        return (f"metrics store {shown}: SQLAlchemy knows no database {scheme!r}; write "
                "sqlite:///PATH (or just a path), postgresql://USER@HOST/DB or another "
                "SQLAlchemy URL")
    if isinstance(exc, ArgumentError):
        return (f"{url!r} is not a database URL: write sqlite:///PATH (or just a path), "
                "postgresql://USER@HOST/DB or another SQLAlchemy URL")
    if isinstance(exc, ImportError):
        module = (exc.name or str(exc)).split(".")[0]
        hint = _DRIVER_HINTS.get(module, f"install the Python package that provides {module!r}")
        return f"metrics store {shown} needs the database driver {module!r}, not installed: {hint}"
    path = sqlite_path(url) if "://" in url else None
    if path is None or not isinstance(exc, DBAPIError):
        return None
    # SQLite: every failure is about the file or its folder, never transient
    text = str(exc.orig) if exc.orig is not None else str(exc)
    folder = os.path.dirname(path)
    if "database is locked" in text or "database table is locked" in text:
        return None  # another writer holds the lock: it passes
    if "file is not a database" in text:
        return (f"{path} is not a SQLite database (the file exists and holds something else): "
                "point the metrics store at another file, or move this one away")
    if not os.path.isdir(folder):
        return (f"cannot open the metrics store {path}: the folder {folder} does not exist "
                "(create it, or choose another path)")
    if writing and ("readonly" in text or "read-only" in text or not os.access(folder, os.W_OK)
                    or (os.path.exists(path) and not os.access(path, os.W_OK))):
        return (f"cannot write the metrics store {path}: this user may not write the file or "
                f"its folder {folder} (SQLite also writes {os.path.basename(path)}-wal and "
                "-shm beside it); fix the permissions or choose another path")
    if "unable to open" in text:
        return (f"cannot open the metrics store {path}: this user may not read it or its "
                f"folder {folder}")
    return f"metrics store {path}: {text}"


def check_window(window: float) -> float:
    """Validate a summary window in seconds (``0`` means the default of one hour)."""
    window = _safe_float("window", window)
    if window < 0:
        raise MetricsQueryError(f"window must be >= 0 seconds, got {window!r}")
    if window > MAX_WINDOW:
        raise MetricsQueryError(f"window must be at most {MAX_WINDOW:.0f} seconds (366 days), "
                                f"got {window!r}")
    return window or DEFAULT_WINDOW


def check_name(field: str, value: str | None) -> str | None:
    """Validate an optional point or operation name."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise MetricsQueryError(f"{field} must be a string, got {value!r}")
    if len(value) > NAME_LENGTH:
        raise MetricsQueryError(f"{field} must be at most {NAME_LENGTH} characters, "
                                f"got {len(value)}")
    return value


def _split(a: int, b: int) -> list[tuple[int, int, int]]:
    """Cover minutes ``[a, b)`` with whole days, then whole hours, then minutes.

    Returns ``(width, lo, hi)`` pieces: rows of the table of that width
    with ``lo <= bucket < hi``.
    """
    pieces: list[tuple[int, int, int]] = []
    ha, hb = -(-a // 60), b // 60
    if ha >= hb:
        return [(MINUTE, a, b)] if a < b else []
    if a < ha * 60:
        pieces.append((MINUTE, a, ha * 60))
    if hb * 60 < b:
        pieces.append((MINUTE, hb * 60, b))
    da, db = -(-ha // 24), hb // 24
    if da >= db:
        pieces.append((HOUR, ha, hb))
        return pieces
    if ha < da * 24:
        pieces.append((HOUR, ha, da * 24))
    if db * 24 < hb:
        pieces.append((HOUR, db * 24, hb))
    pieces.append((DAY, da, db))
    return pieces


class Store:
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

    def __init__(self, url: str | None = None, *, busy_timeout: float = 10.0,
                 engine: Engine | None = None, read_only: bool = False) -> None:
        self.url = resolve_url(url) if engine is None else str(engine.url)
        self.read_only = read_only
        self.engine = engine if engine is not None else self._create_engine(
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
        return f"Store({_shown(self.url)!r})"

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
                store.engine = cls._create_engine(url, busy_timeout, True, immutable=True)
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

    @staticmethod
    def _create_engine(url: str, busy_timeout: float, read_only: bool = False, *,
                       immutable: bool = False) -> Engine:
        parsed = make_url(url)
        if parsed.get_backend_name() != "sqlite":
            return create_engine(url, pool_pre_ping=True)
        memory = parsed.database in (None, "", ":memory:")
        if read_only and not memory:
            # a URI filename that SQLite opens without write access
            path = sqlite_path(url)
            mode = "immutable=1" if immutable else "mode=ro"
            parsed = parsed.set(database=f"file:{path}?{mode}", query={"uri": "true"})
        engine = create_engine(
            parsed,
            connect_args={"timeout": busy_timeout, "check_same_thread": False},
            **({"poolclass": StaticPool} if memory else {}),
        )
        busy_ms = int(busy_timeout * 1000)

        @event.listens_for(engine, "connect")
        def _configure(dbapi_connection: Any, _record: Any) -> None:
            # Let SQLAlchemy's "begin" event issue BEGIN itself (pysqlite would defer it).
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            try:
                if not memory and not read_only:
                    cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
                cursor.execute("PRAGMA synchronous=NORMAL")
            finally:
                cursor.close()

        @event.listens_for(engine, "begin")
        def _begin(conn: Connection) -> None:
            # Take the write lock up front: a deferred transaction that later
            # upgrades to a writer fails with SQLITE_BUSY without waiting.
            write = conn.get_execution_options().get("seawall_write", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

        return engine

    def _write_connection(self) -> Connection:
        return self.engine.connect().execution_options(seawall_write=True)

    def close(self) -> None:
        """Release the connections (only when this store created its engine)."""
        if self._owns_engine:
            self.engine.dispose()

    # -- schema --------------------------------------------------------------

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

    def _column(self, table: Table, name: str) -> Any:
        """``table.c[name]``, or a zero for a column a read-only older store lacks."""
        if name in self._absent:
            return literal(0, type_=BigInteger).label(name)
        return table.c[name]

    # -- writing -------------------------------------------------------------

    def write(self, counts: Mapping[Key, Sequence[float]],
              breaker_transitions: Sequence[BreakerTransition] = (), *,
              host: str, pid: int) -> None:
        """Add one batch of a process's aggregates, all in one transaction.

        ``counts`` maps ``(point, operation, minute)`` to an aggregate vector
        (see ``_schema.VALUES``); the same deltas are added to the minute,
        hour and day rollups of that ``host`` and ``pid``.
        """
        if not counts and not breaker_transitions:
            return
        if not self._ready:
            self.ensure_schema()
        rollups: dict[int, dict[Key, list[float]]] = {MINUTE: {}, HOUR: {}, DAY: {}}
        seen: dict[tuple[str, str], tuple[float, float]] = {}
        for (long_point, long_operation, minute), vec in counts.items():
            point, operation = long_point[:NAME_LENGTH], long_operation[:NAME_LENGTH]
            for width, rows in rollups.items():
                key = (point, operation, minute // width)
                row = rows.get(key)
                if row is None:
                    rows[key] = list(vec)
                else:
                    for i in range(WIDTH):
                        row[i] += vec[i]
            t = minute * 60.0
            first, last = seen.get((point, operation), (t, t))
            seen[(point, operation)] = (min(first, t), max(last, t + 59.0))
        with self._write_connection() as conn, conn.begin():
            for width, rows in rollups.items():
                if rows:
                    self._add_counts(conn, COUNT_TABLES[width], rows, host, pid)
            if seen:
                self._touch_operations(conn, seen)
            if breaker_transitions:
                conn.execute(insert(transitions), [
                    {"point": t.point[:NAME_LENGTH], "from_state": t.from_state,
                     "to_state": t.to_state, "reason": t.reason[:NAME_LENGTH], "time": t.time,
                     "host": host, "pid": pid}
                    for t in breaker_transitions
                ])

    def _upsert(self, table: Table, keys: Sequence[str], set_: Any) -> Any:
        from sqlalchemy.dialects import postgresql, sqlite

        stmt: Any = (sqlite.insert(table) if self.dialect == "sqlite"
                     else postgresql.insert(table))
        return stmt.on_conflict_do_update(index_elements=list(keys), set_=set_(table, stmt.excluded))

    def _add_counts(self, conn: Connection, table: Table, rows: Mapping[Key, Sequence[float]],
                    host: str, pid: int) -> None:
        params = [
            {"point": p, "operation": o, "bucket": b, "host": host, "pid": pid,
             **dict(zip(VALUES, vec, strict=True))}
            for (p, o, b), vec in sorted(rows.items())  # one lock order for every writer
        ]
        if self.dialect in ("sqlite", "postgresql"):
            stmt = self._upserts.get(table.name)
            if stmt is None:
                stmt = self._upsert(table, ("point", "bucket", "operation", "host", "pid"),
                                    lambda t, ex: {c: t.c[c] + ex[c] for c in VALUES})
                self._upserts[table.name] = stmt
            for i in range(0, len(params), _CHUNK):
                conn.execute(stmt, params[i:i + _CHUNK])
            return
        # Portable path: each (host, pid) row has a single writer, so update-then-insert is safe.
        for row in params:
            where = and_(*(table.c[k] == row[k]
                           for k in ("point", "bucket", "operation", "host", "pid")))
            done = conn.execute(update(table).where(where).values(
                {c: table.c[c] + row[c] for c in VALUES}))
            if done.rowcount == 0:
                conn.execute(insert(table).values(row))

    def _touch_operations(self, conn: Connection,
                          seen: Mapping[tuple[str, str], tuple[float, float]]) -> None:
        params = [{"point": p, "operation": o, "first_seen": f, "last_seen": la}
                  for (p, o), (f, la) in sorted(seen.items())]
        if self.dialect in ("sqlite", "postgresql"):
            stmt = self._upserts.get("seawall_operations")
            if stmt is None:
                stmt = self._upsert(operations, ("point", "operation"), lambda t, ex: {
                    "first_seen": case((ex.first_seen < t.c.first_seen, ex.first_seen),
                                       else_=t.c.first_seen),
                    "last_seen": case((ex.last_seen > t.c.last_seen, ex.last_seen),
                                      else_=t.c.last_seen),
                })
                self._upserts["seawall_operations"] = stmt
            conn.execute(stmt, params)
            return
        for row in params:
            where = and_(operations.c.point == row["point"],
                         operations.c.operation == row["operation"])
            done = conn.execute(update(operations).where(where).values(last_seen=row["last_seen"]))
            if done.rowcount == 0:
                conn.execute(insert(operations).values(row))

    # -- reading -------------------------------------------------------------

    def points(self) -> list[PointInfo]:
        """Every point seen, sorted by name, with its operations."""
        stmt = select(operations).order_by(operations.c.point, operations.c.operation)
        if not self._ready:
            self.ensure_schema()
        found: dict[str, tuple[list[str], float, float]] = {}
        with self.engine.connect() as conn:
            for row in conn.execute(stmt):
                ops, first, last = found.get(row.point, ([], math.inf, 0.0))
                ops.append(row.operation)
                found[row.point] = (ops, min(first, row.first_seen), max(last, row.last_seen))
        return [PointInfo(name=name, operations=tuple(ops), first_seen=first, last_seen=last)
                for name, (ops, first, last) in found.items()]

    def _compiled(self, key: Any, build: Any) -> Any:
        """A statement compiled once for this dialect (read queries are few shapes, run often)."""
        compiled = self._reads.get(key)
        if compiled is None:
            if not self._ready:
                self.ensure_schema()  # an older read-only store reads some columns as zeros
            compiled = self._reads[key] = build().compile(dialect=self.engine.dialect)
        return compiled

    def _fetch(self, compiled: Any, values: dict[str, Any]) -> list[Any]:
        params = compiled.construct_params(values)
        args: Any = (tuple(params[k] for k in compiled.positiontup) if compiled.positional
                     else params)
        if not self._ready:
            self.ensure_schema()
        with self.engine.connect() as conn:
            return list(conn.exec_driver_sql(compiled.string, args))

    def _sums(self, pieces: Sequence[tuple[int, int, int]], point: str | None,
              operation: str | None, step: tuple[int, int] | None = None,
              ) -> list[tuple[Any, list[float]]]:
        """Sum the value columns over table pieces, by point (or by step: ``(base, ratio)``)."""
        if not pieces:
            return []
        shape = (tuple(w for w, _, _ in pieces), point is not None, operation is not None,
                 step is not None)

        def build() -> Any:
            parts = []
            for i, width in enumerate(shape[0]):
                t = COUNT_TABLES[width]
                cond = [t.c.bucket >= bindparam(f"lo{i}", type_=BigInteger),
                        t.c.bucket < bindparam(f"hi{i}", type_=BigInteger)]
                if point is not None:
                    cond.append(t.c.point == bindparam("point", type_=String))
                if operation is not None:
                    cond.append(t.c.operation == bindparam("operation", type_=String))
                key = t.c.point if step is None else (
                    (t.c.bucket - bindparam("base", type_=BigInteger))
                    // bindparam("ratio", type_=BigInteger))
                parts.append(select(key.label("k"), *(self._column(t, c) for c in VALUES))
                             .where(*cond))
            sub = (parts[0] if len(parts) == 1 else union_all(*parts)).subquery()
            return select(sub.c.k, *(func.sum(sub.c[c]) for c in VALUES)).group_by(sub.c.k)

        values: dict[str, Any] = {"point": point, "operation": operation}
        for i, (_, lo, hi) in enumerate(pieces):
            values[f"lo{i}"], values[f"hi{i}"] = lo, hi
        if step is not None:
            values["base"], values["ratio"] = step
        rows = self._fetch(self._compiled(("sums", *shape), build), values)
        return [(row[0], [v or 0 for v in row[1:]]) for row in rows]

    def breaker_states(self, point: str | None = None) -> dict[str, str]:
        """The state each point's breaker last moved to (any process)."""
        def build() -> Any:
            latest = select(transitions.c.point, func.max(transitions.c.id).label("last_id"))
            if point is not None:
                latest = latest.where(transitions.c.point == bindparam("point", type_=String))
            sub = latest.group_by(transitions.c.point).subquery()
            return select(transitions.c.point, transitions.c.to_state).join(
                sub, transitions.c.id == sub.c.last_id)

        compiled = self._compiled(("states", point is not None), build)
        return {row[0]: row[1] for row in self._fetch(compiled, {"point": point})}

    def summary(self, point: str | None = None, *, operation: str | None = None,
                window: float = DEFAULT_WINDOW, now: float | None = None) -> list[Summary]:
        """Each point's totals over the last ``window`` seconds (0: one hour), by name.

        The window is resolved to whole minutes: it starts at the beginning
        of the minute ``window`` seconds ago and includes the current minute.
        ``point`` / ``operation`` restrict it; a point without calls in the
        window is left out.
        """
        point = check_name("point", point)
        operation = check_name("operation", operation)
        window = check_window(window)
        now = time.time() if now is None else now
        end_minute = int(now // 60)
        start_minute = int((now - window) // 60)
        pieces = _split(start_minute, end_minute + 1)
        rows = self._sums(pieces, point, operation)
        states = self.breaker_states(point) if rows else {}
        return sorted(
            (Summary(point=name, breaker_state=states.get(name, "closed"), **stats_fields(vec))
             for name, vec in rows),
            key=lambda s: s.point,
        )

    def series(self, point: str, *, start: float, end: float, step: float,
               operation: str | None = None) -> list[SeriesBucket]:
        """``point``'s figures per ``step`` seconds (a multiple of 60) from ``start`` to ``end``.

        ``start`` is rounded down to its minute; every step up to ``end`` is
        returned, empty ones included.
        """
        name = check_name("point", point)
        if name is None:
            raise MetricsQueryError("point is required for a series")
        operation = check_name("operation", operation)
        start = check_time("start", start)
        end = check_time("end", end)
        step = _safe_float("step", step)
        if not 0 < step <= MAX_TIME:
            raise MetricsQueryError(f"step must be > 0 seconds and at most {MAX_TIME:.0f}, "
                                    f"got {step!r}")
        if step % 60 != 0:
            raise MetricsQueryError(f"step must be a multiple of 60 seconds, got {step!r}")
        if end <= start:
            raise MetricsQueryError(f"start ({start!r}) must be before end ({end!r})")
        step_minutes = int(step // 60)
        first = int(start // 60)
        count = math.ceil((end - first * 60) / step)
        if count > MAX_SERIES_BUCKETS:
            raise MetricsQueryError(
                f"{count} steps of {step:g} s between start and end; at most "
                f"{MAX_SERIES_BUCKETS} (widen the step or narrow the range)")
        width = next(w for w in (DAY, HOUR, MINUTE)
                     if step_minutes % w == 0 and first % w == 0)
        lo, hi = first // width, (first + count * step_minutes) // width
        ratio = step_minutes // width
        rows = self._sums([(width, lo, hi)], name, operation, step=(lo, ratio))
        found = {int(k): vec for k, vec in rows}
        empty = [0] * WIDTH
        return [SeriesBucket(start=(first + k * step_minutes) * 60.0,
                             **stats_fields(found.get(k, empty)))
                for k in range(count)]

    def transitions(self, point: str | None = None, *, start: float | None = None,
                    end: float | None = None, limit: int = DEFAULT_PAGE,
                    after: int = 0) -> list[Transition]:
        """Breaker transitions in the order they were stored (ids above ``after``), at most ``limit``."""
        point = check_name("point", point)
        if not isinstance(limit, int) or isinstance(limit, bool) or not 0 < limit <= MAX_PAGE:
            raise MetricsQueryError(f"limit must be between 1 and {MAX_PAGE}, got {limit!r}")
        if not isinstance(after, int) or isinstance(after, bool) or not 0 <= after < 2**63:
            raise MetricsQueryError(f"after must be a transition id (an int >= 0), got {after!r}")
        cond = [transitions.c.id > after]
        if point is not None:
            cond.append(transitions.c.point == point)
        if start is not None:
            cond.append(transitions.c.time >= check_time("start", start))
        if end is not None:
            cond.append(transitions.c.time < check_time("end", end))
        if start is not None and end is not None and end < start:
            raise MetricsQueryError(f"start ({start!r}) must not be after end ({end!r})")
        stmt = select(transitions).where(*cond).order_by(transitions.c.id).limit(limit)
        if not self._ready:
            self.ensure_schema()
        with self.engine.connect() as conn:
            return [Transition(point=r.point, from_state=r.from_state, to_state=r.to_state,
                               reason=r.reason, time=r.time, host=r.host, pid=r.pid, id=r.id)
                    for r in conn.execute(stmt)]

    # -- breakdowns by process (dashboard, Prometheus) ------------------------

    BREAKDOWN_COLUMNS = ("point", "operation", "host", "pid")

    def breakdown(self, by: Sequence[str] = ("point",), *, point: str | None = None,
                  host: str | None = None, pid: int | None = None, start: float | None = None,
                  end: float | None = None, step: float | None = None,
                  ) -> list[tuple[tuple[Any, ...], list[float]]]:
        """Aggregate vectors (see ``_schema.VALUES``) summed per distinct value of ``by``.

        ``by`` names columns of :attr:`BREAKDOWN_COLUMNS`; each result is
        ``(key, vector)`` with ``key`` holding their values in that order.
        ``point``, ``host`` and ``pid`` restrict the rows. Without ``start``
        it covers everything stored (the day rollups: totals since the
        oldest row kept). With ``start`` it covers the minutes from the one
        holding ``start`` to the one holding the instant before ``end``
        (default: now). With ``step`` (seconds, a multiple of 60) as well,
        the key ends with the step index ``k``: step ``k`` starts at
        ``start`` rounded down to its minute plus ``k * step``; empty steps
        are left out. Thread-safe; not cached (a few queries per refresh).
        """
        from ._schema import HOST_LENGTH

        columns = tuple(by)
        unknown = [c for c in columns if c not in self.BREAKDOWN_COLUMNS]
        if unknown or len(set(columns)) != len(columns) or (not columns and step is None):
            raise MetricsQueryError(f"by must be distinct names among {self.BREAKDOWN_COLUMNS} "
                                    f"(at least one without a step), got {by!r}")
        point = check_name("point", point)
        if host is not None and (not isinstance(host, str) or len(host) > HOST_LENGTH):
            raise MetricsQueryError(f"host must be a string of at most {HOST_LENGTH} characters, "
                                    f"got {host!r}")
        if pid is not None and (not isinstance(pid, int) or isinstance(pid, bool)):
            raise MetricsQueryError(f"pid must be an int, got {pid!r}")
        ratio = 0
        pieces: list[tuple[int, int | None, int | None]] = [(DAY, None, None)]
        if start is not None or step is not None or end is not None:
            if start is None:
                raise MetricsQueryError("start is required with end or step")
            start = _safe_float("start", start)
            end = time.time() if end is None else _safe_float("end", end)
            if start < 0:
                raise MetricsQueryError(f"start must be >= 0 (epoch seconds), got {start!r}")
            if end <= start:
                raise MetricsQueryError(f"start ({start!r}) must be before end ({end!r})")
            first, last = int(start // 60), math.ceil(end / 60)
            if step is None:
                pieces = list(_split(first, last))
            else:
                step = _safe_float("step", step)
                if step <= 0 or step % 60 != 0:
                    raise MetricsQueryError(f"step must be a multiple of 60 seconds, got {step!r}")
                step_minutes = int(step // 60)
                count = math.ceil((last - first) / step_minutes)
                if count > MAX_SERIES_BUCKETS:
                    raise MetricsQueryError(
                        f"{count} steps of {step:g} s between start and end; at most "
                        f"{MAX_SERIES_BUCKETS} (widen the step or narrow the range)")
                width = next(w for w in (DAY, HOUR, MINUTE)
                             if step_minutes % w == 0 and first % w == 0)
                ratio = step_minutes // width
                pieces = [(width, first // width, (first + count * step_minutes) // width)]
        parts = []
        for width, lo, hi in pieces:
            t = COUNT_TABLES[width]
            cond = []
            if lo is not None and hi is not None:
                cond += [t.c.bucket >= lo, t.c.bucket < hi]
            for name, value in (("point", point), ("host", host), ("pid", pid)):
                if value is not None:
                    cond.append(t.c[name] == value)
            keys = [t.c[c].label(c) for c in columns]
            if ratio:
                keys.append(((t.c.bucket - lo) // ratio).label("step_index"))
            parts.append(select(*keys, *(self._column(t, c) for c in VALUES)).where(*cond))
        if not parts:
            return []
        sub = (parts[0] if len(parts) == 1 else union_all(*parts)).subquery()
        group = [sub.c[c] for c in columns] + ([sub.c.step_index] if ratio else [])
        stmt = select(*group, *(func.sum(sub.c[c]) for c in VALUES)).group_by(*group)
        if not self._ready:
            self.ensure_schema()
        n = len(group)
        with self.engine.connect() as conn:
            return [(tuple(row[:n]), [v or 0 for v in row[n:]]) for row in conn.execute(stmt)]

    def latest_limits(self, by: Sequence[str] = ("point", "host"), *, host: str | None = None,
                      pid: int | None = None) -> list[tuple[tuple[Any, ...], int, float]]:
        """The bulkhead's limit of each distinct ``by`` (names among point, host, pid), latest.

        Each result is ``(key, minute, mean)``: the last minute (since the epoch)
        in which the rows of that key sampled a limit, and the mean of those
        samples (per process; see :class:`Stats.concurrency_limit`). A level for a
        gauge: a process gone quiet keeps its last value until the minute rows
        are pruned. ``host`` and ``pid`` restrict the rows. An older read-only
        store (no limit columns) has none.
        """
        columns = tuple(by)
        if not columns or any(c not in ("point", "host", "pid") for c in columns) \
                or len(set(columns)) != len(columns):
            raise MetricsQueryError(f"by must be distinct names among ('point', 'host', 'pid'), "
                                    f"got {by!r}")
        if not self._ready:
            self.ensure_schema()
        if "limit_samples" in self._absent:
            return []
        t = COUNT_TABLES[MINUTE]
        cond = [t.c.limit_samples > 0]
        if host is not None:
            cond.append(t.c.host == host)
        if pid is not None:
            cond.append(t.c.pid == pid)
        keys = [t.c[c] for c in columns]
        last = (select(*keys, func.max(t.c.bucket).label("last")).where(*cond)
                .group_by(*keys).subquery())
        joined = t.join(last, and_(*(t.c[c] == last.c[c] for c in columns),
                                   t.c.bucket == last.c["last"]))
        stmt = (select(*keys, last.c["last"], func.sum(t.c.limit_sum),
                       func.sum(t.c.limit_samples))
                .select_from(joined).where(*cond).group_by(*keys, last.c["last"]))
        n = len(columns)
        with self.engine.connect() as conn:
            return [(tuple(row[:n]), int(row[n]), float(row[n + 1]) / float(row[n + 2]))
                    for row in conn.execute(stmt)]

    def last_transitions(self, point: str | None = None, *,
                         before: float | None = None) -> list[Transition]:
        """The latest breaker transition of each process (point, host, pid), by those keys.

        ``before`` (epoch seconds) only considers transitions earlier than
        that: the state each process's breaker was in at that moment.
        """
        point = check_name("point", point)
        cond = []
        if point is not None:
            cond.append(transitions.c.point == point)
        if before is not None:
            cond.append(transitions.c.time < _safe_float("before", before))
        latest = (select(func.max(transitions.c.id).label("last_id")).where(*cond)
                  .group_by(transitions.c.point, transitions.c.host, transitions.c.pid)
                  .subquery())
        stmt = (select(transitions).join(latest, transitions.c.id == latest.c.last_id)
                .order_by(transitions.c.point, transitions.c.host, transitions.c.pid))
        if not self._ready:
            self.ensure_schema()
        with self.engine.connect() as conn:
            return [Transition(point=r.point, from_state=r.from_state, to_state=r.to_state,
                               reason=r.reason, time=r.time, host=r.host, pid=r.pid, id=r.id)
                    for r in conn.execute(stmt)]

    # -- retention -----------------------------------------------------------

    def prune(self, older_than: float | timedelta, *, now: float | None = None) -> int:
        """Delete data older than ``older_than`` (seconds or a timedelta); returns rows deleted.

        Minute rows go when their minute is over the line, hour and day
        rollups when their whole hour or day is.
        """
        age = older_than.total_seconds() if isinstance(older_than, timedelta) else older_than
        age = _safe_float("older_than", age)
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
