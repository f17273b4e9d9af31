"""Instrumented against plain, and the intended differences of ``expected-differences.txt``.

A test is a regression when it passes plain and fails (or is skipped) with
seawall mounted, unless the list names it with a reason. An entry of the
list matching tests that ran, none of which failed as listed, is stale: it
would hide the next regression of that test, so it fails the run too.
:class:`Comparison` gathers the sessions' outcomes and prints the report.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from _runs import Outcome
from _suites import BUILD, HERE, SUITES, Session, log

EXPECTED = HERE / "expected-differences.txt"
_LOST = ("failed", "skipped")  # instrumented outcomes that lose a test's coverage


@dataclass(frozen=True)
class Expected:
    """One entry of expected-differences.txt: a node id, ``*`` matching any run of characters."""

    suite: str
    pattern: str
    reason: str

    def matches(self, suite: str, nodeid: str) -> bool:
        """Whether this entry names test ``nodeid`` of ``suite``."""
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
                or suite not in SUITES:
            raise SystemExit(f"{path}:{number}: expected 'suite:node id -- reason' "
                             f"(suite sqlalchemy, httpx or httpx2), got {raw!r}")
        expected.append(Expected(suite, nodeid, reason.strip()))
    return expected


def expected_for(expected: list[Expected], suite: str, nodeid: str) -> Expected | None:
    """The first entry of ``expected`` naming ``nodeid`` of ``suite``, or ``None``."""
    return next((e for e in expected if e.matches(suite, nodeid)), None)



@dataclass
class Comparison:
    """The sessions' outcomes, instrumented and plain, gathered for the report.

    ``full_plain``: the plain runs ran in full (otherwise only what did not
    pass instrumented was re-run plain, and passing plain is assumed for the
    rest). Not thread-safe; one per run.
    """

    expected: list[Expected]
    full_plain: bool = False
    # suite, mode, backend, node id, instrumented outcome (failed or skipped)
    regressions: list[tuple[str, str, str, str, str]] = field(default_factory=list)
    intended: set[Expected] = field(default_factory=set)  # entries seen failing as listed
    ran: dict[str, set[str]] = field(default_factory=dict)  # suite -> node ids that ran
    summary: list[str] = field(default_factory=list)
    total_passed: int = 0

    def add(self, session: Session, instrumented: dict[str, Outcome], plain: Outcome) -> None:
        """One session: its instrumented outcome per mode, and its plain one."""
        for mode, out in instrumented.items():
            c = Counter(out.results.values())
            total = sum(c.values())
            if self.full_plain:
                p = Counter(plain.results.values())
                plain_col = f"{p['passed']}/{sum(p.values())}"
            else:  # what passed instrumented is not re-run plain
                rerun_passed = sum(1 for o in plain.results.values() if o == "passed")
                plain_col = f"{c['passed'] + rerun_passed}/{total}*"
            self.summary.append(
                f"  {session.suite:<10} {session.backend or '-':<14} {mode:<11} "
                f"plain {plain_col:>12}  instrumented {c['passed']:>5}/{total:<5}"
                f"  (failed {c['failed']}, skipped {c['skipped']}, xfailed {c['xfailed']})")
            self.ran.setdefault(session.suite, set()).update(out.results)
            for nodeid, outcome in out.results.items():
                if outcome not in _LOST:
                    continue
                if plain.results.get(nodeid) != "passed":
                    continue  # fails plain too: the environment's, not ours
                entry = expected_for(self.expected, session.suite, nodeid)
                if entry is not None:
                    self.intended.add(entry)
                else:
                    self.regressions.append((session.suite, mode, session.backend or "-",
                                             nodeid, outcome))
            self.total_passed += c["passed"]

    def stale(self) -> tuple[list[Expected], list[Expected]]:
        """``(stale, unmatched)``: entries matching tests that ran, none of which failed as
        listed; and entries matching nothing that ran (another backend's, say)."""
        stale: list[Expected] = []
        unmatched: list[Expected] = []
        for e in self.expected:
            if e in self.intended:
                continue
            if any(e.matches(e.suite, n) for n in self.ran.get(e.suite, ())):
                stale.append(e)
            elif e.suite in self.ran:
                unmatched.append(e)
        return stale, unmatched

    def regressed(self) -> dict[tuple[str, str, str, str], list[str]]:
        """The regressions by ``(suite, node id, backend, outcome)``: the modes each lost in."""
        grouped: dict[tuple[str, str, str, str], list[str]] = {}
        for suite, mode, backend, nodeid, outcome in self.regressions:
            grouped.setdefault((suite, nodeid, backend, outcome), []).append(mode)
        return grouped

    def report(self, seconds: float) -> int:
        """Print the pass counts, the regressions and stale entries; the exit status (0: none)."""
        stale, unmatched = self.stale()
        log("pass counts (a '*' plain column counts what passed instrumented as passing plain, "
            "unmeasured; --full-plain measures it):")
        for line in self.summary:
            print(line)
        if self.intended:
            log(f"{len(self.intended)} entr(y/ies) of {EXPECTED.name} failed as listed")
        for e in unmatched:
            log(f"note: {EXPECTED.name} entry {e.suite}:{e.pattern} matched no test of this run")
        grouped = self.regressed()
        if grouped:
            log(f"{len(grouped)} test(s) pass plain and fail (or are skipped) with seawall "
                "mounted:")
            for (suite, nodeid, backend, outcome), in_modes in sorted(grouped.items()):
                how = ", skipped" if outcome == "skipped" else ""
                print(f"  {suite}:{nodeid}  [{backend}{how}; {', '.join(in_modes)}]")
            log(f"tracebacks are in {BUILD / 'logs'}")
        if stale:
            log(f"{len(stale)} entr(y/ies) of {EXPECTED.name} no longer fail: remove them")
            for e in stale:
                print(f"  {e.suite}:{e.pattern}")
        log(f"run time {seconds:.0f} s")
        # the closing line CI reads: tests passing instrumented, and the differences that fail us
        print(f"conformance: {self.total_passed} passed, {len(grouped) + len(stale)} failed")
        return 1 if grouped or stale else 0
