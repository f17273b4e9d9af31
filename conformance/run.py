"""``make conformance``: the host libraries' own test suites, with seawall mounted.

For each suite (SQLAlchemy, httpx; httpx2 when installed) this downloads
the sdist of the *installed* version (cached under ``build/conformance``),
runs the suite with seawall mounted on every engine/client (the pytest
plugin ``seawall_mount.py`` beside this file), re-runs plain whatever
failed that way, and fails on any test that passes plain and fails
instrumented unless ``expected-differences.txt`` lists it with a reason.
Entries of that list that no longer fail are reported as stale (and fail
the run too: a stale entry would hide the next regression of that test).

Run it through ``make conformance``; ``python conformance/run.py --help``
lists the options. See ``conformance/README.md`` for the design.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BUILD = ROOT / "build" / "conformance"
EXPECTED = HERE / "expected-differences.txt"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

MODES = ("breaker-off", "breaker-on")
# one test, setup and teardown included; a hang in a pool or bulkhead wait
# shows up as a failure of that test, not as a stuck run
TEST_TIMEOUT_S = 120
# one pytest session; far above the measured times (README), a bound only
SESSION_TIMEOUT_S = 1800

SQLA_CANCELLATION = "test/ext/asyncio/test_cancellation.py"
SQLA_BACKENDS = ("sqlite", "aiosqlite", "psycopg", "psycopg_async")


def log(message: str) -> None:
    print(f"conformance: {message}", flush=True)


# -- the suites -------------------------------------------------------------------------


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
        return str(self.server.url(db))

    def async_url(self, db: str) -> str:
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


# -- running one session ----------------------------------------------------------------


@dataclass
class Outcome:
    results: dict[str, str]
    mounted: dict[str, int] | None
    seconds: float
    logs: list[Path]


def run_session(session: Session, mode: str, pg: Postgres | None, *,
                only: set[str] | None = None) -> Outcome:
    """``session``'s pytest runs, merged: ``mode`` ``off`` (plain) or a seawall mode;
    ``only``: just those node ids, in one run of the files they are in."""
    parts = session.parts
    if only is not None:
        # collect only the files those tests are in (collecting test/orm alone
        # takes longer than re-running a few dozen tests)
        parts = [sorted({nodeid.split("::", 1)[0] for nodeid in only})]
    merged = Outcome({}, None, 0.0, [])
    for number, part in enumerate(parts, 1):
        stem = f"{session.label}-{mode}" + ("-rerun" if only is not None else "") \
            + (f"-{number}" if len(parts) > 1 else "")
        out = _run_part(session, mode, pg, part, stem, only)
        merged.results.update(out.results)
        merged.seconds += out.seconds
        merged.logs += out.logs
        if out.mounted is not None:
            total = merged.mounted or {}
            merged.mounted = {k: total.get(k, 0) + v for k, v in out.mounted.items()}
    return merged


def _run_part(session: Session, mode: str, pg: Postgres | None, part: list[str], stem: str,
              only: set[str] | None) -> Outcome:
    logs = BUILD / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    results = logs / f"{stem}.json"
    log_file = logs / f"{stem}.log"
    results.unlink(missing_ok=True)
    cmd = [
        sys.executable, "-m", "pytest",
        "-p", "seawall_mount", f"--seawall={mode}", f"--seawall-results={results}",
        # the repository's pytest plugins that the host suites do not expect
        "-p", "no:asyncio", "-p", "no:cacheprovider",
        # the host's addopts (-v, --maxfail, ...) are for a person at a terminal
        "-o", "addopts=", "-q", "--tb=short", "-rfE",
        "-p", "timeout", f"--timeout={TEST_TIMEOUT_S}",
    ]
    if only is not None:
        only_file = logs / f"{stem}.only"
        only_file.write_text("".join(f"{nodeid}\n" for nodeid in sorted(only)))
        cmd.append(f"--seawall-only={only_file}")
    env = {**os.environ, **session.env,
           "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))}
    env.pop("CI", None)  # the host suites read CI themselves; their skips are theirs
    args = list(session.args)
    with contextlib.ExitStack() as stack:
        if any("{db}" in a for a in args):
            assert pg is not None
            db = stack.enter_context(pg.database(f"conf_{mode.replace('-', '_')}"))
            args = [a.replace("{db}", db) for a in args]
        started = time.monotonic()
        with log_file.open("w") as out:
            proc = subprocess.run([*cmd, *args, *part], cwd=session.cwd, env=env, stdout=out,
                                  stderr=subprocess.STDOUT, timeout=SESSION_TIMEOUT_S, check=False)
        seconds = time.monotonic() - started
    if proc.returncode not in (0, 1, 5) or not results.exists():
        tail = "\n".join(log_file.read_text(errors="replace").splitlines()[-30:])
        raise SystemExit(f"conformance: {session.label} ({mode}) did not run "
                         f"(pytest exit {proc.returncode}); {log_file}:\n{tail}")
    payload = json.loads(results.read_text())
    return Outcome(payload["results"], payload.get("mounted"), seconds, [log_file])


# -- expected differences ---------------------------------------------------------------


@dataclass(frozen=True)
class Expected:
    """One entry of expected-differences.txt: a node id, ``*`` matching any run of characters."""

    suite: str
    pattern: str
    reason: str

    def matches(self, suite: str, nodeid: str) -> bool:
        if suite != self.suite:
            return False
        if "*" not in self.pattern:
            return nodeid == self.pattern
        regex = ".*".join(re.escape(part) for part in self.pattern.split("*"))
        return re.fullmatch(regex, nodeid) is not None


def read_expected(path: Path = EXPECTED) -> list[Expected]:
    """``suite:node id -- reason`` lines; ``#`` starts a comment line."""
    expected: list[Expected] = []
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        entry, sep, reason = line.partition(" -- ")
        suite, colon, nodeid = entry.strip().partition(":")
        if not sep or not colon or not reason.strip() or not nodeid \
                or suite not in ("sqlalchemy", "httpx", "httpx2"):
            raise SystemExit(f"{path}:{number}: expected 'suite:node id -- reason' "
                             f"(suite sqlalchemy, httpx or httpx2), got {raw!r}")
        expected.append(Expected(suite, nodeid, reason.strip()))
    return expected


def expected_for(expected: list[Expected], suite: str, nodeid: str) -> Expected | None:
    return next((e for e in expected if e.matches(suite, nodeid)), None)


# -- reporting --------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", action="append", choices=("sqlalchemy", "httpx", "httpx2"),
                        help="run only this suite (repeatable; default: every installed one)")
    parser.add_argument("--mode", action="append", choices=MODES,
                        help="seawall configuration (repeatable; default: "
                             "$CONFORMANCE_MODES or breaker-on)")
    parser.add_argument("--backend", action="append", choices=SQLA_BACKENDS,
                        help="SQLAlchemy backend (repeatable; default: all four)")
    parser.add_argument("--full-plain", action="store_true",
                        default=os.environ.get("CONFORMANCE_FULL_PLAIN") == "1",
                        help="run each suite fully plain too, not only what failed instrumented")
    opts = parser.parse_args(argv)
    modes = tuple(opts.mode or os.environ.get("CONFORMANCE_MODES", "breaker-on").split(","))
    for mode in modes:
        if mode not in MODES:
            parser.error(f"CONFORMANCE_MODES: unknown mode {mode!r} (choose from {MODES})")
    backends = tuple(opts.backend or SQLA_BACKENDS)
    wanted = opts.suite or ["sqlalchemy", "httpx", "httpx2"]
    started = time.monotonic()
    expected = read_expected()
    shutil.rmtree(BUILD / "logs", ignore_errors=True)  # this run's logs only

    trees: list[tuple[str, Path]] = []
    for suite in wanted:
        version = installed_version(suite)
        if version is None:
            if opts.suite:
                raise SystemExit(f"conformance: {suite} is not installed")
            log(f"{suite}: not installed, not run")
            continue
        src = sdist_tree(suite, version)
        if suite == "sqlalchemy" or (src / "tests").is_dir():
            trees.append((suite, src))
        else:
            log(f"{suite} {version}: its sdist carries no tests/, nothing to run")

    need_pg = any(suite == "sqlalchemy" for suite, _ in trees) \
        and bool(set(backends) & {"psycopg", "psycopg_async"})
    # suite, mode, backend, node id, instrumented outcome (failed or skipped)
    regressions: list[tuple[str, str, str, str, str]] = []
    intended: set[Expected] = set()  # entries of the list seen failing as intended
    ran: dict[str, set[str]] = {}  # suite -> node ids that ran
    summary: list[str] = []
    total_passed = 0
    with maybe_postgres(need_pg) as pg:
        sessions: list[Session] = []
        for suite, src in trees:
            if suite != "sqlalchemy":
                sessions.append(httpx_session(suite, src))
                continue
            for backend in backends:
                if pg is None and backend in ("psycopg", "psycopg_async"):
                    continue
                sessions.append(sqlalchemy_session(src, backend, pg))
        for session in sessions:
            instrumented: dict[str, Outcome] = {}
            for mode in modes:
                out = run_session(session, mode, pg)
                instrumented[mode] = out
                mounted = out.mounted or {}
                if not (mounted.get("engines", 0) + mounted.get("async_engines", 0)
                        + mounted.get("clients", 0) + mounted.get("async_clients", 0)) \
                        or not mounted.get("calls"):
                    raise SystemExit(f"conformance: {session.label} ({mode}) mounted nothing "
                                     f"({mounted}): the plugin did not reach the suite")
                log(f"{session.label} [{mode}]: {dict(Counter(out.results.values()))} "
                    f"in {out.seconds:.0f} s; mounted {mounted}")
            # a test skipped instrumented and passing plain lost its coverage: re-run those too
            failed = {n for out in instrumented.values()
                      for n, o in out.results.items() if o in ("failed", "skipped")}
            if opts.full_plain:
                plain = run_session(session, "off", pg)
            elif failed:
                plain = run_session(session, "off", pg, only=failed)
            else:
                plain = Outcome({}, None, 0.0, [])
            log(f"{session.label} [plain{'' if opts.full_plain else ', re-run of the rest'}]: "
                f"{dict(Counter(plain.results.values()))} in {plain.seconds:.0f} s")
            for mode, out in instrumented.items():
                c = Counter(out.results.values())
                total = sum(c.values())
                if opts.full_plain:
                    p = Counter(plain.results.values())
                    plain_col = f"{p['passed']}/{sum(p.values())}"
                else:  # what passed instrumented is not re-run plain
                    rerun_passed = sum(1 for o in plain.results.values() if o == "passed")
                    plain_col = f"{c['passed'] + rerun_passed}/{total}*"
                summary.append(f"  {session.suite:<10} {session.backend or '-':<14} {mode:<11} "
                               f"plain {plain_col:>12}  instrumented {c['passed']:>5}/{total:<5}"
                               f"  (failed {c['failed']}, skipped {c['skipped']}, "
                               f"xfailed {c['xfailed']})")
                ran.setdefault(session.suite, set()).update(out.results)
                for nodeid, outcome in out.results.items():
                    if outcome not in ("failed", "skipped"):
                        continue
                    if plain.results.get(nodeid) != "passed":
                        continue  # fails plain too: the environment's, not ours
                    entry = expected_for(expected, session.suite, nodeid)
                    if entry is not None:
                        intended.add(entry)
                    else:
                        regressions.append((session.suite, mode, session.backend or "-",
                                            nodeid, outcome))
                total_passed += sum(1 for o in out.results.values() if o == "passed")

    # stale: an entry matching tests that ran, none of which failed as listed; an entry
    # matching nothing that ran (another backend's, say) is only mentioned
    stale, unmatched = [], []
    for e in expected:
        if e in intended:
            continue
        if any(e.matches(e.suite, n) for n in ran.get(e.suite, ())):
            stale.append(e)
        elif e.suite in ran:
            unmatched.append(e)
    log("pass counts (a '*' plain column counts what passed instrumented as passing plain, "
        "unmeasured; --full-plain measures it):")
    for line in summary:
        print(line)
    if intended:
        log(f"{len(intended)} entr(y/ies) of {EXPECTED.name} failed as listed")
    for e in unmatched:
        log(f"note: {EXPECTED.name} entry {e.suite}:{e.pattern} matched no test of this run")
    grouped: dict[tuple[str, str, str, str], list[str]] = {}
    for suite, mode, backend, nodeid, outcome in regressions:
        grouped.setdefault((suite, nodeid, backend, outcome), []).append(mode)
    if grouped:
        log(f"{len(grouped)} test(s) pass plain and fail (or are skipped) with seawall mounted:")
        for (suite, nodeid, backend, outcome), in_modes in sorted(grouped.items()):
            how = ", skipped" if outcome == "skipped" else ""
            print(f"  {suite}:{nodeid}  [{backend}{how}; {', '.join(in_modes)}]")
        log(f"tracebacks are in {BUILD / 'logs'}")
    if stale:
        log(f"{len(stale)} entr(y/ies) of {EXPECTED.name} no longer fail: remove them")
        for e in stale:
            print(f"  {e.suite}:{e.pattern}")
    log(f"run time {time.monotonic() - started:.0f} s")
    # the closing line CI reads: tests passing instrumented, and the differences that fail us
    print(f"conformance: {total_passed} passed, {len(grouped) + len(stale)} failed")
    return 1 if grouped or stale else 0


if __name__ == "__main__":
    sys.exit(main())
