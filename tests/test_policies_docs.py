"""Every ```python block of docs/policies.md runs as it is, in a fresh interpreter.

Blocks marked ```python fragment only show a call (names the page defines
elsewhere, a server that does not run here): they are compiled, not run.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parent.parent / "docs" / "policies.md"
TEXT = DOC.read_text(encoding="utf-8")
BLOCKS = re.findall(r"^```python\n(.*?)^```", TEXT, re.S | re.M)
FRAGMENTS = re.findall(r"^```python fragment\n(.*?)^```", TEXT, re.S | re.M)


def test_every_python_block_is_runnable_or_marked_a_fragment() -> None:
    """No other kind of python block: each one is either run or declared a fragment."""
    infos = re.findall(r"^```(python[^\n]*)$", TEXT, re.M)
    assert set(infos) == {"python", "python fragment"}
    assert (len(BLOCKS), len(FRAGMENTS)) == (5, 1)


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_doc_block_runs(index: int, tmp_path: Path) -> None:
    """Block number ``index`` exits 0."""
    script = tmp_path / f"block_{index}.py"
    script.write_text(BLOCKS[index], encoding="utf-8")
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, f"block {index} failed:\n{BLOCKS[index]}\n{done.stderr}"


@pytest.mark.parametrize("index", range(len(FRAGMENTS)))
def test_doc_fragment_compiles(index: int) -> None:
    """Fragment number ``index`` is valid Python."""
    compile(FRAGMENTS[index], f"{DOC}:fragment{index}", "exec")
