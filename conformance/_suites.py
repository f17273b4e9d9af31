"""The host suites of ``make conformance``: where they come from and how each is run.

The sdist of the *installed* SQLAlchemy or httpx (cached under
``build/conformance``), the pytest sessions each suite is split into
(:class:`Session`: paths, options, SQLAlchemy's backend), and the throwaway
PostgreSQL cluster the psycopg backends run on. Nothing here runs a suite
(``_runs.py``) or judges its outcomes (``_compare.py``).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BUILD = ROOT / "build" / "conformance"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

SUITES = ("sqlalchemy", "httpx", "httpx2")
SQLA_CANCELLATION = "test/ext/asyncio/test_cancellation.py"
SQLA_BACKENDS = ("sqlite", "aiosqlite", "psycopg", "psycopg_async")


def log(message: str) -> None:
    """One line of the run's progress, flushed at once (CI shows it live)."""
    print(f"conformance: {message}", flush=True)


# -- the sessions -----------------------------------------------------------------------


@dataclass
class Session:
    """A host suite's run: where, with which options, in one or more pytest sessions."""

    suite: str
    label: str  # e.g. "sqlalchemy", "httpx"
    cwd: Path
    args: list[str]  # options
    parts: list[list[str]]  # one pytest run each: what to collect (and options of its own)
    env: dict[str, str] = field(default_factory=dict)
    backend: str = ""  # SQLAlchemy's: sqlite, aiosqlite, psycopg or psycopg_async


def sqlalchemy_session(src: Path, backend: str, pg: Any) -> Session:
    """SQLAlchemy's own ``test/engine``, ``test/ext/asyncio``, ``test/orm`` and
    ``test/sql`` on one backend (the only ``--dburi``, so every test class runs on
    it: with several, SQLAlchemy picks the backend of a class that is not per-backend
    from a set, and a plain re-run could pick another).

    What runs on each is what SQLAlchemy's own CI runs when it is handed all four
    at once: the tests that are not per-backend on the default (SQLite) only, and
    ``test/ext/asyncio`` on the async drivers (on a sync one its tests skip, or
    are the few that run on both async drivers anyway); the tests marked ``backend`` on
    each, except that those marked ``sparse_backend`` / ``sparse_driver_backend``
    run on one driver per database (pysqlite, psycopg). ``test/orm`` and
    ``test/sql`` contribute their ``backend`` tests only: the others compile SQL or
    exercise the ORM in memory, the same on every backend, and take minutes.
    SQLAlchemy's CI leaves the ``memory_intensive`` and ``mypy`` tests out of a
    plain run; so does this.
    """
    uri = {"sqlite": "sqlite:///:memory:", "aiosqlite": "sqlite+aiosqlite:///:memory:",
           "psycopg": pg.url("{db}") if pg else "", "psycopg_async": pg.async_url("{db}") if pg
           else ""}[backend]
    paths = ["test/engine", "test/ext/asyncio", "test/orm", "test/sql"]
    if backend in ("sqlite", "psycopg"):  # test/ext/asyncio's tests need an async driver
        paths.remove("test/ext/asyncio")
    if backend == "sqlite":  # the default: test/engine whole
        marked = ["backend=test/orm,test/sql"]
    elif backend == "psycopg":  # PostgreSQL's preferred driver
        marked = ["backend=test/engine,test/orm,test/sql"]
    else:  # the async drivers: test/ext/asyncio whole, and what is not sparse elsewhere
        marked = ["backend,!sparse_backend,!sparse_driver_backend=test/engine,test/orm,test/sql"]
    args = [
        "-m", "not memory_intensive and not mypy",
        *(f"--seawall-marked-only={spec}" for spec in marked),
        "--strict-markers",
        f"--dburi={uri}",
    ]
    parts = [[f"--ignore={SQLA_CANCELLATION}", *paths]]
    if backend in ("aiosqlite", "psycopg_async"):
        # alone: its sweeps call gc.collect() at every cancellation point, which the
        # modules collected from test/orm and test/sql make ten times slower (measured:
        # 570 s of an 826 s session; 20-40 s on its own)
        parts.append([SQLA_CANCELLATION])
    # PYTHONNOUSERSITE: test/conftest.py then leaves ./lib off sys.path, so the
    # suite tests the installed SQLAlchemy (the one seawall runs with), as its nox does
    return Session("sqlalchemy", f"sqlalchemy-{backend}", src, args, parts,
                   {"PYTHONNOUSERSITE": "1"}, backend)


def httpx_session(name: str, src: Path) -> Session:
    """httpx's own ``tests/``, less the tests marked ``network`` (they reach the internet)."""
    return Session(name, name, src, ["-m", "not network"], [["tests"]])


# -- sdists -----------------------------------------------------------------------------


def installed_version(dist: str) -> str | None:
    """The installed version of ``dist``, ``None`` when it is not installed."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def sdist_tree(dist: str, version: str) -> Path:
    """The unpacked sdist of ``dist==version``, downloaded once into ``build/conformance``."""
    src = BUILD / "src" / f"{dist}-{version}"
    if src.is_dir():
        return src
    sdists = BUILD / "sdists"
    sdists.mkdir(parents=True, exist_ok=True)
    pattern = re.compile(rf"^{re.escape(dist).replace('_', '[-_]')}-{re.escape(version)}\.tar\.gz$",
                         re.IGNORECASE)
    found = [p for p in sdists.iterdir() if pattern.match(p.name)]
    if not found:
        log(f"downloading the sdist of {dist}=={version}")
        # --no-binary for this package only: ":all:" would also build the sdist's
        # build requirements (Cython for SQLAlchemy) from source, minutes for nothing
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
             "--no-binary", dist, "--dest", str(sdists), f"{dist}=={version}"],
            check=True, timeout=600,
        )
        found = [p for p in sdists.iterdir() if pattern.match(p.name)]
        if not found:
            raise SystemExit(f"pip download left no {dist}-{version}.tar.gz in {sdists}")
    tmp = Path(tempfile.mkdtemp(prefix=f"{dist}-", dir=BUILD))
    try:
        with tarfile.open(found[0]) as tar:
            if hasattr(tarfile, "data_filter"):
                tar.extractall(tmp, filter="data")
            else:  # pragma: no cover - Pythons without extraction filters
                tar.extractall(tmp)
        (top,) = tmp.iterdir()
        src.parent.mkdir(parents=True, exist_ok=True)
        top.rename(src)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return src


# -- PostgreSQL -------------------------------------------------------------------------


class Postgres:
    """A throwaway cluster (tests/postgres.py) with a template database set up as
    SQLAlchemy's README.unittests asks: UTF8, schemas test_schema and test_schema_2,
    hstore and citext, English text search, prepared transactions allowed."""

    TEMPLATE = "sqla_template"

    def __init__(self, server: Any) -> None:
        self.server = server
        server.execute("ALTER SYSTEM SET max_prepared_transactions = 10")
        server.stop()
        server.start()
        server.create_database(self.TEMPLATE)
        for sql in ("CREATE SCHEMA test_schema", "CREATE SCHEMA test_schema_2",
                    "CREATE EXTENSION IF NOT EXISTS hstore",
                    "CREATE EXTENSION IF NOT EXISTS citext"):
            server.execute(sql, dbname=self.TEMPLATE)
        server.execute(f"ALTER DATABASE {self.TEMPLATE} "
                       "SET default_text_search_config = 'pg_catalog.english'")

    def url(self, db: str) -> str:
        """The sync (psycopg) URL of database ``db``."""
        return str(self.server.url(db))

    def async_url(self, db: str) -> str:
        """The asyncio (psycopg_async) URL of database ``db``."""
        return str(self.server.async_url(db))

    @contextlib.contextmanager
    def database(self, name: str) -> Iterator[str]:
        """A fresh copy of the template, dropped afterwards."""
        self.server.drop_database(name)
        self.server.execute(f'CREATE DATABASE "{name}" TEMPLATE {self.TEMPLATE}')
        try:
            yield name
        finally:
            with contextlib.suppress(Exception):
                self.server.drop_database(name)


@contextlib.contextmanager
def maybe_postgres(wanted: bool) -> Iterator[Postgres | None]:
    """A :class:`Postgres` when ``wanted`` and one can be started; else ``None`` (an error in CI)."""
    if not wanted:
        yield None
        return
    sys.path.insert(0, str(ROOT))
    from tests.postgres import PostgresUnavailable, running_postgres

    try:
        with running_postgres() as server:
            yield Postgres(server)
    except PostgresUnavailable as exc:
        if IN_CI:
            raise SystemExit(f"conformance: PostgreSQL is required in CI: {exc}") from exc
        log(f"PostgreSQL not available ({exc}): SQLAlchemy runs on SQLite only")
        yield None
