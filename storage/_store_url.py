"""Opening a metrics store: its URL, its engine, and errors that say what to do.

:func:`resolve_url` turns what a user writes (nothing, a path, a URL) into a
SQLAlchemy URL; :func:`create_store_engine` makes the engine (SQLite gets
WAL, a busy timeout and ``BEGIN IMMEDIATE`` for writers);
:func:`describe_store_error` explains a failure to open one. The
:class:`Store` itself is in :mod:`._store`.
"""

from __future__ import annotations

import os
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError
from sqlalchemy.pool import StaticPool

DEFAULT_URL = "sqlite:///seawall-metrics.db"

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


def shown_url(url: str) -> str:
    """``url`` as messages show it: without its password."""
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
    shown = shown_url(url)
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


def create_store_engine(url: str, busy_timeout: float, read_only: bool = False, *,
                        immutable: bool = False) -> Engine:
    """The engine of a store at ``url``; ``busy_timeout`` in seconds (SQLite only).

    SQLite: WAL (unless ``read_only``), ``PRAGMA busy_timeout``, and
    ``BEGIN IMMEDIATE`` for connections with the ``seawall_write``
    execution option; ``read_only`` opens the file as a ``mode=ro`` URI
    (``immutable``: as an immutable snapshot). Other databases get a
    pre-pinging pool.
    """
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
