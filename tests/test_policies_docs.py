"""Every ```python block of docs/policies.md runs as it is, in a fresh interpreter.

Blocks marked ```python fragment only show a call (names the page defines
elsewhere, a server that does not run here): they are compiled, not run.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.docs_support import Page

PAGE = Page("docs/policies.md")


def test_every_python_block_is_runnable_or_marked_a_fragment() -> None:
    """No other kind of python block: each one is either run or declared a fragment."""
    assert set(PAGE.infos) == {"python", "python fragment"}
    assert (len(PAGE.blocks), len(PAGE.fragments)) == (5, 1)


@pytest.mark.parametrize("index", range(len(PAGE.blocks)))
def test_doc_block_runs(index: int, tmp_path: Path) -> None:
    """Block number ``index`` exits 0."""
    PAGE.run(index, tmp_path)


@pytest.mark.parametrize("index", range(len(PAGE.fragments)))
def test_doc_fragment_compiles(index: int) -> None:
    """Fragment number ``index`` is valid Python."""
    PAGE.compile_fragment(index)
