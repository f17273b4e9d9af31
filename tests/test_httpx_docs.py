"""Every ```python block of docs/httpx.md runs as it is, in a fresh interpreter.

Blocks marked ```python fragment only show a call (names the page defines
elsewhere, files that do not exist here): they are compiled, not run.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.docs_support import Page
from tests.http_support import PACKAGES

PAGE = Page("docs/httpx.md")


def test_every_python_block_is_runnable_or_marked_a_fragment() -> None:
    """No other kind of python block: each one is either run or declared a fragment."""
    assert set(PAGE.infos) == {"python", "python fragment"}
    assert (len(PAGE.blocks), len(PAGE.fragments)) == (4, 1)


@pytest.mark.parametrize("index", range(len(PAGE.blocks)))
def test_doc_block_runs(index: int, tmp_path: Path) -> None:
    """Block number ``index`` exits 0 (the httpx2 one where httpx2 can be installed)."""
    if "import httpx2" in PAGE.blocks[index] and "httpx2" not in PACKAGES:
        pytest.skip("httpx2 needs Python 3.11+")
    PAGE.run(index, tmp_path)


@pytest.mark.parametrize("index", range(len(PAGE.fragments)))
def test_doc_fragment_compiles(index: int) -> None:
    """Fragment number ``index`` is valid Python."""
    PAGE.compile_fragment(index)
