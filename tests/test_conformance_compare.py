"""The conformance runner's judgement (conformance/_compare.py), without running a host suite.

A test that passes plain and fails (or is skipped) with seawall mounted is
a regression unless expected-differences.txt lists it; a listed test that
ran and no longer fails is a stale entry. Both fail the run.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

import pytest

CONFORMANCE = Path(__file__).resolve().parent.parent / "conformance"


@pytest.fixture
def compare(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """conformance/_compare.py, imported as the runner imports it (its folder on sys.path)."""
    monkeypatch.syspath_prepend(str(CONFORMANCE))
    for name in ("_compare", "_runs", "_suites"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    return importlib.import_module("_compare")


def session(compare: ModuleType) -> object:
    """An httpx session (what the comparison reads of it: suite and backend)."""
    return compare.Session("httpx", "httpx", CONFORMANCE, [], [["tests"]])


def outcome(compare: ModuleType, **results: str) -> object:
    """A session's outcome: ``test_x="failed"`` for ``tests/test_a.py::test_x``."""
    return compare.Outcome(
        {f"tests/test_a.py::{name}": result for name, result in results.items()}, None, 0.0, [])


def test_the_committed_list_is_well_formed(compare: ModuleType) -> None:
    """Every entry of expected-differences.txt names a suite, a node id and a reason."""
    entries = compare.read_expected()
    assert entries and all(e.suite in ("sqlalchemy", "httpx", "httpx2") and e.reason
                           for e in entries)


def test_a_line_without_a_reason_is_refused(compare: ModuleType, tmp_path: Path) -> None:
    """A malformed line stops the run, naming the file and line number."""
    listed = tmp_path / "expected.txt"
    listed.write_text("# a comment\n\nhttpx:tests/test_a.py::test_x\n")
    with pytest.raises(SystemExit, match=r"expected\.txt:3: expected 'suite:node id -- reason'"):
        compare.read_expected(listed)


def test_a_pattern_matches_any_run_of_characters(compare: ModuleType) -> None:
    """``*`` in an entry matches any characters; without it the node id must be equal."""
    e = compare.Expected("httpx", "tests/test_a.py::test_p[*", "why")
    assert e.matches("httpx", "tests/test_a.py::test_p[http://x]")
    assert not e.matches("httpx2", "tests/test_a.py::test_p[http://x]")
    assert not e.matches("httpx", "tests/test_a.py::test_q[x]")


def test_passing_plain_and_failing_mounted_is_a_regression(
        compare: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    """Failed or skipped mounted and passed plain: reported and the run fails; failing plain
    too is the environment's, not a regression."""
    c = compare.Comparison([])
    mounted = outcome(compare, test_x="failed", test_y="skipped", test_z="failed",
                      test_ok="passed")
    plain = outcome(compare, test_x="passed", test_y="passed", test_z="failed")
    c.add(session(compare), {"breaker-on": mounted}, plain)
    assert sorted(n for _, _, _, n, _ in c.regressions) == [
        "tests/test_a.py::test_x", "tests/test_a.py::test_y"]
    assert c.report(1.0) == 1
    assert capsys.readouterr().out.splitlines()[-1] == "conformance: 1 passed, 2 failed"


def test_a_listed_difference_passes_and_a_stale_entry_fails(compare: ModuleType) -> None:
    """A listed test failing as listed is intended; a listed test that ran and passed is
    stale; an entry matching nothing that ran is only mentioned."""
    listed = compare.Expected("httpx", "tests/test_a.py::test_x", "why")
    stale = compare.Expected("httpx", "tests/test_a.py::test_ok", "why")
    other = compare.Expected("httpx", "tests/test_b.py::*", "another file's")
    c = compare.Comparison([listed, stale, other])
    c.add(session(compare), {"breaker-on": outcome(compare, test_x="failed", test_ok="passed")},
          outcome(compare, test_x="passed"))
    assert c.regressions == [] and c.intended == {listed}
    assert c.stale() == ([stale], [other])
    assert c.report(1.0) == 1
    fixed = compare.Comparison([listed])
    fixed.add(session(compare), {"breaker-on": outcome(compare, test_x="failed")},
              outcome(compare, test_x="passed"))
    assert fixed.report(1.0) == 0
