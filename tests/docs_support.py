"""Running the Python examples of a Markdown page, for the docs tests.

A page shows code in fenced blocks. A block opened with ```python is an
example that runs as it is: :func:`run_block` runs it in a fresh interpreter
(the one running the tests), in a scratch folder, and fails the test with the
block and its stderr when it exits non-zero. A block opened with
```python fragment only shows a call (names defined elsewhere on the page, a
server that does not run here): it is compiled, not run. Any other info
string that starts with ``python`` is a mistake the tests catch through
:attr:`Page.infos`.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: a fenced block whose info string starts with ``python``: (info, code)
_PYTHON_FENCE = re.compile(r"^```(python[^\n]*)\n(.*?)^```", re.S | re.M)
#: an opening fence line whose info string starts with ``python``
_PYTHON_INFO = re.compile(r"^```(python[^\n]*)$", re.M)


class Page:
    """The Python blocks of one Markdown page, read once.

    ``path`` is absolute or relative to the repository root. ``blocks`` are the
    runnable ```python blocks, ``fragments`` the ```python fragment ones, both in
    page order; ``infos`` is the info string of every fence that starts with
    ``python``, so a test can check each one is of a kind it handles.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path) if Path(path).is_absolute() else ROOT / path
        self.text = self.path.read_text(encoding="utf-8")
        found = _PYTHON_FENCE.findall(self.text)
        self.blocks: list[str] = [code for info, code in found if info == "python"]
        self.fragments: list[str] = [code for info, code in found if info == "python fragment"]
        self.infos: list[str] = _PYTHON_INFO.findall(self.text)

    @property
    def name(self) -> str:
        """The page's path from the repository root, for messages."""
        try:
            return str(self.path.relative_to(ROOT))
        except ValueError:
            return str(self.path)

    def run(self, index: int, tmp_path: Path, *, timeout: float = 120,
            env: Mapping[str, str] | None = None,
            cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        """Run runnable block number ``index`` through :func:`run_block`."""
        return run_block(self.blocks[index], tmp_path, timeout=timeout, env=env, cwd=cwd,
                         label=f"{self.name} block {index}")

    def compile_fragment(self, index: int) -> None:
        """Compile fragment number ``index``: a SyntaxError names the page and fragment."""
        compile(self.fragments[index], f"{self.path}:fragment{index}", "exec")


def run_block(code: str, tmp_path: Path, *, timeout: float = 120,
              env: Mapping[str, str] | None = None, cwd: Path | None = None,
              label: str = "block") -> subprocess.CompletedProcess[str]:
    """Run ``code`` as a script in a fresh interpreter and assert it exits 0.

    The script is written to a new file in ``tmp_path``, which is also the
    working directory unless ``cwd`` is given. ``env`` adds variables to the
    test's environment (None: the environment as it is). The failure message
    shows ``label``, the exit code, the block and its stderr. Returns the
    finished process, its stdout and stderr as text, for further checks.
    """
    script = _new_script(tmp_path)
    script.write_text(code, encoding="utf-8")
    environment = None if env is None else {**os.environ, **env}
    done = subprocess.run([sys.executable, str(script)], cwd=cwd or tmp_path,
                          capture_output=True, text=True, timeout=timeout,
                          env=environment, check=False)
    assert done.returncode == 0, (
        f"{label} exited {done.returncode}:\n{code}\n--- stderr ---\n{done.stderr}")
    return done


def _new_script(folder: Path) -> Path:
    """A path ``block_<n>.py`` in ``folder`` that does not exist yet."""
    n = 0
    while (folder / f"block_{n}.py").exists():
        n += 1
    return folder / f"block_{n}.py"
