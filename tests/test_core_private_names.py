"""No module outside sdk/ touches a point's private names: integrations use the public entry.

The private names are collected from the classes and from live instances
of :class:`IntegrationPoint`, :class:`Execution` and :class:`Observer`
(``_``-prefixed, not dunder). Every ``.py`` under ``interceptors/`` and
``storage/`` (generated protobuf code in ``_gen/`` aside) is parsed, and
any ``X._name`` with such a name, where ``X`` is not ``self`` or ``cls``
(those are the module's own objects), or ``getattr(X, "_name")``, is a
violation.

:data:`ALLOWED` would list violations tolerated while an integration
moves to the public entry; it is empty (issue 12: every integration now
reaches the core through public names) and must stay so. The test fails
on a violation not listed and on an entry that no longer matches anything.

Run: ``.venv/bin/python -m pytest tests/test_core_private_names.py``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import seawall
from seawall import Execution, IntegrationPoint
from seawall._observer import Observer
from seawall.testing import full_pipeline_point

ROOT = Path(__file__).resolve().parent.parent
SCANNED = ("interceptors", "storage")

# (file, name): why it is still there. Empty, and never added to.
ALLOWED: dict[tuple[str, str], str] = {}


def private_names() -> set[str]:
    """Every ``_name`` (not dunder) of a point, an execution or an observer."""
    point = full_pipeline_point("names", fallback=seawall.Fallback(value=None))
    objects: list[object] = [point, point.execution("op"), point.observer()]
    names: set[str] = set()
    for obj in objects:
        for cls in type(obj).__mro__:
            names.update(vars(cls))
            names.update(getattr(cls, "__slots__", ()))
        names.update(getattr(obj, "__dict__", {}))
    return {n for n in names if n.startswith("_") and not n.startswith("__")}


def violations_in(source: str, names: set[str]) -> set[str]:
    """The private ``names`` that ``source`` reads or writes on objects other than its own."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and node.attr in names:
            own = isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")
            if not own:
                found.add(node.attr)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                and node.func.id in ("getattr", "setattr", "hasattr", "delattr") \
                and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant) \
                and node.args[1].value in names:
            found.add(str(node.args[1].value))
    return found


def scanned_files() -> list[Path]:
    files = []
    for folder in SCANNED:
        files += [p for p in sorted((ROOT / folder).rglob("*.py")) if "_gen" not in p.parts]
    return files


def all_violations() -> set[tuple[str, str]]:
    names = private_names()
    return {(path.relative_to(ROOT).as_posix(), name)
            for path in scanned_files()
            for name in violations_in(path.read_text(encoding="utf-8"), names)}


def test_the_collected_names_are_the_cores_private_state() -> None:
    """The rule knows the names it guards: the point's clock, ledger and first timeout, the ticket."""
    names = private_names()
    assert {"_now", "_ledger", "_first_timeout", "_result_rules", "_ticket",
            "_adopt_first", "_point"} <= names
    assert not {n for n in names if n.startswith("__")}
    assert "run" not in names and "permits" not in names


def test_the_detector_flags_foreign_reads_and_spares_an_objects_own() -> None:
    """``point._now`` and ``getattr(p, "_ledger")`` are flagged; ``self._now`` is the module's own."""
    names = {"_now", "_ledger", "_ticket"}
    source = (
        "def f(point, ex, self):\n"
        "    point._now()\n"
        "    self.point._ledger\n"
        "    getattr(point, '_ticket')\n"
        "    self._now\n"
        "    point.now\n"
    )
    assert violations_in(source, names) == {"_now", "_ledger", "_ticket"}
    assert violations_in("class A:\n    def g(self):\n        return self._now\n", names) == set()


def test_the_scan_covers_the_integrations_and_storage() -> None:
    """Every integration and storage module is read (and no generated protobuf module)."""
    scanned = {p.relative_to(ROOT).as_posix() for p in scanned_files()}
    for expected in ("interceptors/httpx.py", "interceptors/httpx2.py",
                     "interceptors/sqlalchemy.py", "interceptors/_sqlalchemy_statements.py",
                     "interceptors/_sqlalchemy_connections.py", "interceptors/_grpc_commit.py",
                     "interceptors/_grpc_sync.py", "interceptors/_grpc_aio.py",
                     "storage/_recorder.py"):
        assert expected in scanned, expected
    assert not [p for p in scanned if "/_gen/" in p]


def test_no_module_outside_sdk_touches_a_points_private_names() -> None:
    """Only the listed, shrinking set of old reads remains; nothing new appears."""
    new = all_violations() - set(ALLOWED)
    assert new == set(), (
        f"private names of a point used outside sdk/: {sorted(new)}; use the public entry "
        "(IntegrationPoint.run/arun/execution/permits/observer, see ARCHITECTURE.md)")


def test_the_allowlist_has_no_stale_entry() -> None:
    """Each allowed violation still exists: one fixed is taken off the list."""
    stale = set(ALLOWED) - all_violations()
    assert stale == set(), f"remove from ALLOWED (no longer used): {sorted(stale)}"


def test_the_public_entry_exists() -> None:
    """What the allowlist's reasons point to is public: permits, observer, run, arun, execution."""
    point = full_pipeline_point("entry")
    observer = point.observer()
    for name in ("now", "first_timeout", "start", "admit", "succeeded", "counted", "failed",
                 "cancelled", "release"):
        assert hasattr(observer, name), name
    assert point.permits is not None
    assert isinstance(point.execution("op"), Execution) and callable(Execution.adopt)
    assert callable(IntegrationPoint.run) and callable(IntegrationPoint.arun)
    assert isinstance(observer, Observer) and point.observer() is observer


def test_architecture_md_is_one_sitting_and_names_the_check() -> None:
    """ARCHITECTURE.md stays within 150 lines and names the command that checks the rule."""
    text = (ROOT / "ARCHITECTURE.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 150
    assert "tests/test_core_private_names.py" in text
