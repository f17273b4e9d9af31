"""Every ```python snippet in README.md runs as it is, in a fresh interpreter."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.docs_support import Page

README = Page("README.md")


def test_readme_has_snippets() -> None:
    """The README shows code, and this test finds it."""
    assert len(README.blocks) >= 3
    assert set(README.infos) == {"python"}


@pytest.mark.parametrize("index", range(len(README.blocks)))
def test_readme_snippet_runs(index: int, tmp_path: Path) -> None:
    """README snippet number ``index`` exits 0."""
    README.run(index, tmp_path)
