"""Every ```python block in docs/sqlalchemy.md runs as it is, in a fresh interpreter."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.docs_support import Page

PAGE = Page("docs/sqlalchemy.md")

#: what each block prints (its ``# comments`` say so on the page), in order
EXPECTED = [
    ["[80, 20]"],
    ["IntegrityError", "[100]"],
    ["your handler ran: True", "interrupted"],
]


def test_every_block_is_checked() -> None:
    """A block added to the page needs its expected output here."""
    assert len(PAGE.blocks) == len(EXPECTED)
    assert set(PAGE.infos) == {"python"}


@pytest.mark.parametrize("index", range(len(PAGE.blocks)))
def test_doc_block_runs(index: int, tmp_path: Path) -> None:
    """Block number ``index`` of docs/sqlalchemy.md exits 0 and prints what the page says."""
    done = PAGE.run(index, tmp_path)
    for expected in EXPECTED[index]:
        assert expected in done.stdout, f"block {index} printed:\n{done.stdout}"
