"""The httpx integration's layout: one concept per module, a public face, two honest transports.

``interceptors/httpx.py`` only re-exports; each ``_httpx_*.py`` holds one
concept and says so in its docstring; the sync transport is generated from
the async one (tests/test_core_shells.py checks it is current), so both
take the same options. The behaviour is test_httpx_transport.py's.
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

from seawall.interceptors import _httpx2_gen
from seawall.interceptors import httpx as sw_httpx

HERE = _httpx2_gen.HERE

PUBLIC = [
    "EXCEPTION_TABLE",
    "IDEMPOTENT_EXTENSION",
    "IDEMPOTENT_METHODS",
    "READ_BODY_EXTENSION",
    "RETRY_STATUSES",
    "AsyncResilientTransport",
    "ResilientTransport",
    "Route",
    "classify_exception",
    "parse_retry_after",
    "status_classification",
]


def _modules() -> list[Path]:
    return [HERE / name for name in _httpx2_gen.sources()]


def test_every_httpx_module_is_one_sitting_and_says_what_it_holds() -> None:
    """Each module is at most 400 lines and opens with a docstring."""
    assert len(_modules()) >= 8
    for path in _modules():
        text = path.read_text(encoding="utf-8")
        assert text.count("\n") <= 400, path.name
        assert ast.get_docstring(ast.parse(text)), path.name


def test_the_public_module_only_re_exports_its_names() -> None:
    """httpx.py defines nothing: imports from the private modules and ``__all__``, unchanged."""
    assert sw_httpx.__all__ == PUBLIC
    tree = ast.parse(Path(sw_httpx.__file__).read_text(encoding="utf-8"))
    for node in tree.body[1:]:  # after the docstring
        assert isinstance(node, (ast.ImportFrom, ast.Assign)), ast.dump(node)
        if isinstance(node, ast.Assign):
            assert [t.id for t in node.targets if isinstance(t, ast.Name)] == ["__all__"]
    for name in PUBLIC:
        assert getattr(sw_httpx, name) is not None


def test_the_two_transports_take_the_same_options() -> None:
    """The generated sync transport mirrors the async one: same parameters, same defaults."""
    sync = inspect.signature(sw_httpx.ResilientTransport.__init__).parameters
    async_ = inspect.signature(sw_httpx.AsyncResilientTransport.__init__).parameters
    assert list(sync) == list(async_)
    assert [p.default for p in sync.values()] == [p.default for p in async_.values()]
    assert sw_httpx.ResilientTransport.__module__.endswith("._httpx_sync")
    assert sw_httpx.AsyncResilientTransport.__module__.endswith("._httpx_async")
