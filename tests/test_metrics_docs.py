"""The ```python blocks of docs/metrics.md's section on waits and hedges run as they are."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.docs_support import ROOT, run_block

DOC = ROOT / "docs" / "metrics.md"
TEXT = DOC.read_text(encoding="utf-8")
SECTION = TEXT.split("### Waits, hedges, pacing refusals and the bulkhead's limit", 1)[1]
SECTION = SECTION.split("\n### ", 1)[0]
BLOCKS = re.findall(r"^```python\n(.*?)^```", SECTION, re.S | re.M)


def test_the_section_has_its_example() -> None:
    """One runnable block, and the table names every new figure."""
    assert len(BLOCKS) == 1
    for name in ("seawall_hedges_total", "seawall_waits_total", "seawall_concurrency_limit",
                 "waits_by_reason", "hedges_sent", "hedges_won", "concurrency_limit"):
        assert name in SECTION


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_doc_block_runs(index: int, tmp_path: Path) -> None:
    """Block number ``index`` exits 0 and prints what its comments say."""
    done = run_block(BLOCKS[index], tmp_path, label=f"docs/metrics.md section block {index}")
    assert done.stdout.splitlines() == ["results", "1 1 12.0"]
