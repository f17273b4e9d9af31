"""Every ```python block in docs/sqlalchemy.md runs as it is, in a fresh interpreter."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parent.parent / "docs" / "sqlalchemy.md"
BLOCKS = re.findall(r"^```python\n(.*?)^```", DOC.read_text(encoding="utf-8"), re.S | re.M)

#: what each block prints (its ``# comments`` say so on the page), in order
EXPECTED = [
    ["[80, 20]"],
    ["IntegrityError", "[100]"],
    ["your handler ran: True", "interrupted"],
]


def test_every_block_is_checked() -> None:
    """A block added to the page needs its expected output here."""
    assert len(BLOCKS) == len(EXPECTED)


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_doc_block_runs(index: int, tmp_path: Path) -> None:
    """Block number ``index`` of docs/sqlalchemy.md exits 0 and prints what the page says."""
    script = tmp_path / f"block_{index}.py"
    script.write_text(BLOCKS[index], encoding="utf-8")
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, f"block {index} failed:\n{BLOCKS[index]}\n{done.stderr}"
    for expected in EXPECTED[index]:
        assert expected in done.stdout, f"block {index} printed:\n{done.stdout}"
