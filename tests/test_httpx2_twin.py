"""seawall.interceptors.httpx2 is generated from the httpx modules, committed up to date, and kept apart.

httpx2 continues httpx 0.28.1 with the same transport API but distinct
classes; each of its modules is an httpx one with the package renamed (see
interceptors/_httpx2_gen.py). The behaviour itself is tested against both
packages by test_httpx_transport.py, test_httpx_classify.py and
test_httpx_trio.py.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

import seawall
from seawall.interceptors import _httpx2_gen
from tests.http_support import PACKAGES

needs_httpx2 = pytest.mark.skipif("httpx2" not in PACKAGES, reason="httpx2 needs Python 3.11+")


def test_the_committed_twin_matches_the_httpx_sources() -> None:
    """Regenerating the httpx2 modules changes nothing (else run python -m seawall.interceptors._httpx2_gen)."""
    assert _httpx2_gen.check() == []


def _copy_the_integration(tmp_path: Path) -> None:
    """The httpx modules and their committed twins, copied where the generator is pointed."""
    for path in _httpx2_gen.HERE.iterdir():
        if path.name in ("httpx.py", "httpx2.py") or \
                (path.name.startswith(("_httpx_", "_httpx2_")) and path.suffix == ".py"):
            shutil.copy(path, tmp_path / path.name)


def test_a_stale_twin_is_detected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An edit to an httpx module that was not carried over to its twin is reported, then fixed."""
    _copy_the_integration(tmp_path)
    for source in ("httpx.py", "_httpx_routes.py"):
        with (tmp_path / source).open("a", encoding="utf-8") as f:
            f.write("\n# a change\n")
    monkeypatch.setattr(_httpx2_gen, "HERE", tmp_path)
    assert _httpx2_gen.check() == ["httpx2.py", "_httpx2_routes.py"]
    assert _httpx2_gen.main(["--check"]) == 1
    assert _httpx2_gen.main([]) == 0
    assert _httpx2_gen.check() == []


def test_every_httpx_module_has_its_twin() -> None:
    """httpx.py and every _httpx_*.py (the generated sync transport too) map to an httpx2 file."""
    names = {p.name for p in _httpx2_gen.HERE.glob("*.py")}
    sources = _httpx2_gen.sources()
    assert sources[0] == "httpx.py"
    assert {"_httpx_async.py", "_httpx_sync.py", "_httpx_classify.py"} <= set(sources)
    assert set(sources) == {n for n in names if n == "httpx.py" or n.startswith("_httpx_")}
    twins = {n for n in names if n == "httpx2.py" or n.startswith("_httpx2_")} - {"_httpx2_gen.py"}
    assert set(_httpx2_gen.expected()) == twins
    assert _httpx2_gen.twin_name("_httpx_sync.py") == "_httpx2_sync.py"


def test_an_orphaned_twin_is_reported_then_removed(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A twin whose httpx module is gone is stale; writing removes it, never a file a person wrote."""
    _copy_the_integration(tmp_path)
    (tmp_path / "_httpx2_policy.py").write_text(
        "# Generated from interceptors/_httpx_policy.py by `python -m seawall.interceptors."
        "_httpx2_gen`: do not edit.\nX = 1\n", encoding="utf-8")
    (tmp_path / "_httpx2_notes.py").write_text("# hand-written\n", encoding="utf-8")
    monkeypatch.setattr(_httpx2_gen, "HERE", tmp_path)
    assert _httpx2_gen.check() == ["_httpx2_notes.py", "_httpx2_policy.py"]
    assert _httpx2_gen.main([]) == 1  # the hand-written one is refused, not deleted
    assert not (tmp_path / "_httpx2_policy.py").exists()
    assert (tmp_path / "_httpx2_notes.py").exists()
    (tmp_path / "_httpx2_notes.py").unlink()
    assert _httpx2_gen.check() == []


def test_the_renaming_keeps_issue_references_and_other_projects() -> None:
    """encode/httpx#1122 and httpx-retries stay as they are; the package and its modules move."""
    text = _httpx2_gen.twin(
        "import httpx\nfrom ._httpx_routes import x\n# encode/httpx#1122, httpx-retries,"
        " encode/httpcore#830, httpcore\nsw_httpx.Route, httpx.Client, test_httpx_docs\n",
        "httpx.py")
    body = text.split("\n", 1)[1]
    assert body == ("import httpx2\nfrom ._httpx2_routes import x\n# encode/httpx#1122, "
                    "httpx-retries, encode/httpcore#830, httpcore2\nsw_httpx2.Route, "
                    "httpx2.Client, test_httpx_docs\n")


def test_a_source_generated_by_unasync_keeps_one_header_naming_both_steps() -> None:
    """The twin of _httpx_sync.py says it comes from it, and that it came from _httpx_async.py."""
    source = ("# Generated from interceptors/_httpx_async.py by `python sdk/_unasync.py`:"
              " do not edit.\nimport httpx\n")
    first, rest = _httpx2_gen.twin(source, "_httpx_sync.py").split("\n", 1)
    assert first.startswith("# Generated from interceptors/_httpx_sync.py (itself generated "
                            "from interceptors/_httpx_async.py) by `python -m ")
    assert rest == "import httpx2\n"


@needs_httpx2
def test_httpx2_transports_subclass_httpx2_and_refuse_httpx_inner_transports() -> None:
    """One code path per package: an httpx inner transport is refused by the httpx2 twin, and back."""
    import httpx
    import httpx2

    from seawall.interceptors import httpx as sw_httpx
    from seawall.interceptors import httpx2 as sw_httpx2

    p = seawall.IntegrationPoint("api")
    assert issubclass(sw_httpx2.ResilientTransport, httpx2.BaseTransport)
    assert issubclass(sw_httpx2.AsyncResilientTransport, httpx2.AsyncBaseTransport)
    assert not issubclass(sw_httpx2.ResilientTransport, httpx.BaseTransport)
    cases: list[tuple[Any, Any]] = [
        (sw_httpx2.ResilientTransport, httpx.MockTransport(lambda r: httpx.Response(200))),
        (sw_httpx.ResilientTransport, httpx2.MockTransport(lambda r: httpx2.Response(200))),
    ]
    for cls, inner in cases:
        with pytest.raises(seawall.ConfigurationError, match=r"transport must be an httpx2?\.BaseTransport"):
            cls(p, inner)


@needs_httpx2
def test_the_public_surfaces_are_the_same() -> None:
    """Both modules export the same names."""
    from seawall.interceptors import httpx as sw_httpx
    from seawall.interceptors import httpx2 as sw_httpx2

    assert sw_httpx.__all__ == sw_httpx2.__all__
