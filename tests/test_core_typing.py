"""A user's code type-checks against seawall as installed (``make`` installs it editable).

``mypy --strict`` runs on a small program in a folder of its own, so it
finds seawall only the way a user's checker does: through the install.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

USER_CODE = '''\
import seawall
from seawall.storage import Recorder


def start() -> Recorder:
    return seawall.persist_metrics("sqlite:///m.db", flush_interval=0.5, flush_on_signal=False)


seawall.persist_metrics("sqlite:///m.db", flush_intervl=0.5)
fallback = seawall.Fallback(value=1, on=("transient", seawall.Category.TIMEOUT))
timeouts: int = seawall.IntegrationPoint("p").stats().timeouts
'''
TYPO_LINE = USER_CODE.splitlines().index(
    'seawall.persist_metrics("sqlite:///m.db", flush_intervl=0.5)') + 1


@pytest.mark.timeout(300)
def test_mypy_strict_checks_user_code_against_the_installed_package(
        tmp_path: Path, pytestconfig: pytest.Config) -> None:
    """seawall is found and typed: the one mistake reported is the misspelt keyword."""
    program = tmp_path / "app.py"
    program.write_text(USER_CODE, encoding="utf-8")
    cache = pytestconfig.cache.mkdir("mypy") if pytestconfig.cache is not None else tmp_path
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-color-output", "--cache-dir",
         str(cache), "--config-file", "", "app.py"],
        cwd=tmp_path, capture_output=True, text=True, timeout=280)
    errors = [line for line in done.stdout.splitlines() if ": error:" in line]
    assert errors == [
        f'app.py:{TYPO_LINE}: error: Unexpected keyword argument "flush_intervl" for '
        '"persist_metrics"; did you mean "flush_interval"?  [call-arg]'
    ], done.stdout + done.stderr
