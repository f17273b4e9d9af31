"""A throwaway PostgreSQL 15 cluster for tests and benchmarks.

The cluster is created with ``initdb`` in a fresh temp directory, listens on
a free port on ``127.0.0.1`` only (plus a Unix socket inside the temp dir),
runs with durability switched off (``fsync=off``: it is disposable) and is
stopped and deleted at the end. PostgreSQL refuses to run as root: when the
tests run as root, every server command runs as the ``postgres`` user
(``runuser -u postgres --``) and the temp dir is handed to that user.

Binaries come from ``/usr/lib/postgresql/15/bin`` (override with the env var
``SEAWALL_PG_BIN``). When they are missing the PostgreSQL tests are
*skipped* locally and *fail* in CI (env ``CI=true``, ``tests.conftest.IN_CI``).

Stable interface (other test modules rely on it):

``postgres_server`` (session-scoped fixture) -> :class:`PostgresServer`
    ``host`` ("127.0.0.1"), ``port`` (int), ``user`` (superuser name, no
    password: trust auth on loopback), ``create_database(name=None) -> str``
    (returns the new database's name), ``url(dbname)`` (sync SQLAlchemy URL,
    ``postgresql+psycopg://``), ``async_url(dbname)``
    (``postgresql+psycopg_async://``), ``dsn(dbname)`` (libpq conninfo for
    raw psycopg), ``execute(sql, *params, dbname="postgres")`` (run one
    statement as superuser in autocommit, return all rows or ``[]``),
    ``stop(mode="fast")`` / ``start()`` / ``running`` (stop and restart the
    server on the same port and data directory).

``postgres_url`` (function-scoped fixture) -> ``str``
    A sync ``postgresql+psycopg://`` URL of a fresh, empty database. The
    server is (re)started first if an earlier test left it stopped.

``postgres_async_url`` (function-scoped fixture) -> ``str``
    The same for ``create_async_engine`` (psycopg's async driver).

Outside pytest (benchmarks): ``with running_postgres() as server: ...`` or
``server = start_postgres()`` ... ``server.close()``.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

PG_BIN = Path(os.environ.get("SEAWALL_PG_BIN", "/usr/lib/postgresql/15/bin"))
_START_TIMEOUT_S = 30


class PostgresUnavailable(RuntimeError):
    """The PostgreSQL binaries (or the ``postgres`` user, when root) are missing."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_server_user() -> list[str]:
    """Command prefix that runs a server binary as a non-root user."""
    if os.geteuid() != 0:
        return []
    runuser = shutil.which("runuser")
    if runuser is None:
        raise PostgresUnavailable("running as root and `runuser` is not available")
    try:
        import pwd

        pwd.getpwnam("postgres")
    except KeyError as exc:
        raise PostgresUnavailable("running as root and there is no `postgres` user") from exc
    return [runuser, "-u", "postgres", "--"]


class PostgresServer:
    """One disposable PostgreSQL cluster on ``127.0.0.1:<port>``.

    Not thread-safe to start/stop from several threads; the connection
    helpers (``url``, ``dsn``, ``execute``) are.
    """

    host = "127.0.0.1"
    user = "postgres"

    def __init__(self, bin_dir: Path = PG_BIN) -> None:
        if not (bin_dir / "postgres").exists() or not (bin_dir / "initdb").exists():
            raise PostgresUnavailable(f"no PostgreSQL binaries in {bin_dir}")
        self.bin_dir = bin_dir
        self._prefix = _as_server_user()
        self.tmpdir = Path(tempfile.mkdtemp(prefix="seawall-pg-"))
        self.datadir = self.tmpdir / "data"
        self.logfile = self.tmpdir / "server.log"
        if self._prefix:
            os.chmod(self.tmpdir, 0o700)
            shutil.chown(self.tmpdir, user="postgres", group="postgres")
        self.port = _free_port()
        self.running = False
        self._closed = False
        self._run(
            "initdb", "-D", str(self.datadir), "-U", self.user, "-A", "trust",
            "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions",
        )

    def _run(self, tool: str, *args: str) -> subprocess.CompletedProcess[str]:
        cmd = [*self._prefix, str(self.bin_dir / tool), *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False,
                              cwd=self.tmpdir)
        if proc.returncode != 0:
            raise RuntimeError(
                f"{tool} failed ({proc.returncode}): {proc.stderr.strip()}\n{self._log_tail()}"
            )
        return proc

    def _log_tail(self) -> str:
        try:
            return "server log tail:\n" + "\n".join(self.logfile.read_text().splitlines()[-20:])
        except OSError:
            return ""

    def start(self) -> None:
        """Start (or restart) the server on the same port and data directory; wait until ready."""
        if self.running:
            return
        options = " ".join([
            f"-p {self.port}",
            f"-c listen_addresses={self.host}",
            f"-c unix_socket_directories={self.tmpdir}",
            "-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off",
            "-c max_connections=200", "-c shared_buffers=32MB",
            "-c log_min_messages=warning", "-c log_min_error_statement=panic",
        ])
        self._run("pg_ctl", "start", "-w", "-t", str(_START_TIMEOUT_S), "-D", str(self.datadir),
                  "-l", str(self.logfile), "-o", options)
        self.running = True

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``mode``: ``smart``, ``fast`` or ``immediate``); every client is cut off."""
        if not self.running:
            return
        self._run("pg_ctl", "stop", "-w", "-t", str(_START_TIMEOUT_S), "-D", str(self.datadir),
                  "-m", mode)
        self.running = False

    def close(self) -> None:
        """Stop the server and delete its directory (idempotent)."""
        if self._closed:
            return
        self._closed = True
        try:
            self.stop("immediate")
        finally:
            shutil.rmtree(self.tmpdir, ignore_errors=True)

    # -- connecting ----------------------------------------------------------

    def dsn(self, dbname: str = "postgres") -> str:
        """libpq conninfo for raw ``psycopg.connect``."""
        return f"host={self.host} port={self.port} user={self.user} dbname={dbname}"

    def url(self, dbname: str = "postgres") -> str:
        """Sync SQLAlchemy URL (``postgresql+psycopg://``)."""
        return f"postgresql+psycopg://{self.user}@{self.host}:{self.port}/{dbname}"

    def async_url(self, dbname: str = "postgres") -> str:
        """Async SQLAlchemy URL (``postgresql+psycopg_async://``) for ``create_async_engine``."""
        return f"postgresql+psycopg_async://{self.user}@{self.host}:{self.port}/{dbname}"

    def execute(self, sql: str, *params: Any, dbname: str = "postgres") -> list[tuple[Any, ...]]:
        """Run one statement as superuser in autocommit; return its rows (``[]`` if none)."""
        import psycopg

        with psycopg.connect(self.dsn(dbname), autocommit=True, connect_timeout=10) as conn:
            cur = conn.execute(sql.encode(), params or None)
            return list(cur.fetchall()) if cur.description is not None else []

    def create_database(self, name: str | None = None) -> str:
        """Create an empty database and return its name (a unique one when ``name`` is None)."""
        name = name or f"t_{uuid.uuid4().hex[:12]}"
        self.execute(f'CREATE DATABASE "{name}" TEMPLATE template0 STRATEGY FILE_COPY')
        return name

    def drop_database(self, name: str) -> None:
        """Drop a database, disconnecting its clients."""
        self.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def start_postgres(bin_dir: Path = PG_BIN) -> PostgresServer:
    """Create and start a cluster; it is also closed at interpreter exit.

    Raises :class:`PostgresUnavailable` when the binaries are missing.
    """
    server = PostgresServer(bin_dir)
    atexit.register(server.close)
    try:
        server.start()
    except BaseException:
        server.close()
        raise
    return server


@contextlib.contextmanager
def running_postgres(bin_dir: Path = PG_BIN) -> Iterator[PostgresServer]:
    """``with running_postgres() as server:`` — a cluster for the block's duration."""
    server = start_postgres(bin_dir)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL 15 server shared by the session (skipped without binaries, failed in CI)."""
    from tests.conftest import IN_CI

    try:
        server = start_postgres()
    except PostgresUnavailable as exc:
        if IN_CI:
            pytest.fail(f"PostgreSQL is required in CI: {exc}")
        pytest.skip(f"PostgreSQL not available: {exc}")
    try:
        yield server
    finally:
        server.close()


def _fresh_database(server: PostgresServer) -> Iterator[str]:
    if not server.running:
        server.start()
    name = server.create_database()
    yield name
    if server.running:
        with contextlib.suppress(Exception):
            server.drop_database(name)


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """Sync ``postgresql+psycopg://`` URL of a fresh, empty database (dropped afterwards)."""
    for name in _fresh_database(postgres_server):
        yield postgres_server.url(name)


@pytest.fixture
def postgres_async_url(postgres_server: PostgresServer) -> Iterator[str]:
    """Async ``postgresql+psycopg_async://`` URL of a fresh, empty database (dropped afterwards)."""
    for name in _fresh_database(postgres_server):
        yield postgres_server.async_url(name)
