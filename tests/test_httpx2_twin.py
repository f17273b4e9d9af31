"""seawall.interceptors.httpx2 is generated from the httpx module, committed up to date, and kept apart.

httpx2 continues httpx 0.28.1 with the same transport API but distinct
classes; its module is the httpx one with the package renamed (see
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


def test_a_stale_twin_is_detected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An edit to httpx.py that was not carried over to httpx2.py is reported."""
    for name in ("httpx.py", "_httpx_policy.py", "httpx2.py", "_httpx2_policy.py"):
        shutil.copy(_httpx2_gen.HERE / name, tmp_path / name)
    with (tmp_path / "httpx.py").open("a", encoding="utf-8") as f:
        f.write("\n# a change\n")
    monkeypatch.setattr(_httpx2_gen, "HERE", tmp_path)
    assert _httpx2_gen.check() == ["httpx2.py"]


def test_the_renaming_keeps_issue_references_and_other_projects() -> None:
    """encode/httpx#1122 and httpx-retries stay as they are; the package and its modules move."""
    text = _httpx2_gen.twin(
        "import httpx\nfrom ._httpx_policy import x\n# encode/httpx#1122, httpx-retries,"
        " encode/httpcore#830, httpcore\nsw_httpx.Route, httpx.Client\n", "httpx.py")
    body = text.split("\n", 1)[1]
    assert body == ("import httpx2\nfrom ._httpx2_policy import x\n# encode/httpx#1122, httpx-retries,"
                    " encode/httpcore#830, httpcore2\nsw_httpx2.Route, httpx2.Client\n")


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
