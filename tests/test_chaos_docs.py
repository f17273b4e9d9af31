"""Every ```python block of docs/chaos.md runs as it is, in a fresh interpreter."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.docs_support import Page

PAGE = Page("docs/chaos.md")


def test_the_doc_has_examples() -> None:
    """docs/chaos.md shows code, and this test finds it."""
    assert len(PAGE.blocks) >= 2
    assert set(PAGE.infos) == {"python"}


@pytest.mark.parametrize("index", range(len(PAGE.blocks)))
def test_doc_example_runs(index: int, tmp_path: Path) -> None:
    """Example number ``index`` of docs/chaos.md exits 0 (its asserts hold)."""
    PAGE.run(index, tmp_path)
