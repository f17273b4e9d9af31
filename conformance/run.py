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
lists the options; ``--check-expected`` only reads the list of differences.
See ``conformance/README.md`` for the design. The parts: ``_suites.py``
(the sdists, the sessions, PostgreSQL), ``_runs.py`` (one pytest session
in a subprocess), ``_compare.py`` (instrumented against plain, the list,
the report); this file is the command line and the order of the runs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from collections import Counter
from pathlib import Path

from _compare import EXPECTED, Comparison, read_expected
from _runs import MODES, Outcome, run_session
from _suites import (
    BUILD,
    SQLA_BACKENDS,
    SUITES,
    Postgres,
    Session,
    httpx_session,
    installed_version,
    log,
    maybe_postgres,
    sdist_tree,
    sqlalchemy_session,
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line; ``modes`` and ``backends`` filled in from the defaults."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--suite", action="append", choices=SUITES,
                        help="run only this suite (repeatable; default: every installed one)")
    parser.add_argument("--mode", action="append", choices=MODES,
                        help="seawall configuration (repeatable; default: "
                             "$CONFORMANCE_MODES or breaker-on)")
    parser.add_argument("--backend", action="append", choices=SQLA_BACKENDS,
                        help="SQLAlchemy backend (repeatable; default: all four)")
    parser.add_argument("--full-plain", action="store_true",
                        default=os.environ.get("CONFORMANCE_FULL_PLAIN") == "1",
                        help="run each suite fully plain too, not only what failed instrumented")
    parser.add_argument("--check-expected", action="store_true",
                        help=f"only read {EXPECTED.name} and say how many entries it has")
    opts = parser.parse_args(argv)
    opts.modes = tuple(opts.mode or os.environ.get("CONFORMANCE_MODES", "breaker-on").split(","))
    for mode in opts.modes:
        if mode not in MODES:
            parser.error(f"CONFORMANCE_MODES: unknown mode {mode!r} (choose from {MODES})")
    opts.backends = tuple(opts.backend or SQLA_BACKENDS)
    return opts


def suite_trees(wanted: list[str] | None) -> list[tuple[str, Path]]:
    """``(suite, unpacked sdist)`` of each suite to run: ``wanted``, or every installed one."""
    trees: list[tuple[str, Path]] = []
    for suite in wanted or SUITES:
        version = installed_version(suite)
        if version is None:
            if wanted:
                raise SystemExit(f"conformance: {suite} is not installed")
            log(f"{suite}: not installed, not run")
            continue
        src = sdist_tree(suite, version)
        if suite == "sqlalchemy" or (src / "tests").is_dir():
            trees.append((suite, src))
        else:
            log(f"{suite} {version}: its sdist carries no tests/, nothing to run")
    return trees


def run_instrumented(session: Session, modes: tuple[str, ...],
                     pg: Postgres | None) -> dict[str, Outcome]:
    """``session`` with seawall mounted, once per mode; a session that mounted nothing fails."""
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
    return instrumented


def main(argv: list[str] | None = None) -> int:
    """Run the suites as the command line asks; the exit status (0: no difference)."""
    opts = parse_args(argv)
    expected = read_expected()
    if opts.check_expected:
        log(f"{EXPECTED.name}: {len(expected)} entries, all well formed")
        return 0
    started = time.monotonic()
    shutil.rmtree(BUILD / "logs", ignore_errors=True)  # this run's logs only
    trees = suite_trees(opts.suite)
    need_pg = any(suite == "sqlalchemy" for suite, _ in trees) \
        and bool(set(opts.backends) & {"psycopg", "psycopg_async"})
    comparison = Comparison(expected, opts.full_plain)
    with maybe_postgres(need_pg) as pg:
        sessions: list[Session] = []
        for suite, src in trees:
            if suite != "sqlalchemy":
                sessions.append(httpx_session(suite, src))
                continue
            for backend in opts.backends:
                if pg is None and backend in ("psycopg", "psycopg_async"):
                    continue
                sessions.append(sqlalchemy_session(src, backend, pg))
        for session in sessions:
            instrumented = run_instrumented(session, opts.modes, pg)
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
            comparison.add(session, instrumented, plain)
    return comparison.report(time.monotonic() - started)


if __name__ == "__main__":
    sys.exit(main())
