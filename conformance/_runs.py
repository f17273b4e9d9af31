"""One pytest session of a host suite, run in a subprocess with seawall mounted (or plain).

The plugin ``seawall_mount.py`` (``-p seawall_mount``, this folder on
``PYTHONPATH``) mounts seawall in the mode asked for and writes each test's
outcome to a JSON file; :func:`run_session` runs a :class:`Session`'s
parts and merges what they wrote into one :class:`Outcome`. Logs go to
``build/conformance/logs``.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from _suites import BUILD, HERE, Postgres, Session

MODES = ("breaker-off", "breaker-on")
# one test, setup and teardown included; a hang in a pool or bulkhead wait
# shows up as a failure of that test, not as a stuck run
TEST_TIMEOUT_S = 120
# one pytest session; far above the measured times (README), a bound only
SESSION_TIMEOUT_S = 1800


@dataclass
class Outcome:
    """What a session's runs recorded: outcome per node id, what was mounted, time, logs."""

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
