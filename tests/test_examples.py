"""Every script in examples/ runs on its own and exits 0."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SCRIPTS = sorted(p.name for p in EXAMPLES.glob("*.py") if not p.name.startswith("_"))


def test_there_is_an_example_per_use() -> None:
    """The examples cover every integration, the decorator and the metrics service."""
    assert set(SCRIPTS) >= {
        "grpc_sync.py", "grpc_aio.py", "httpx_sync.py", "httpx_async.py",
        "sqlalchemy_engine.py", "sqlalchemy_async.py", "decorated_function.py",
        "metrics_service.py",
    }


@pytest.mark.parametrize("script", SCRIPTS)
def test_example_runs_and_exits_0(script: str, tmp_path: Path) -> None:
    """The example finishes within its time limit, exits 0 and says what happened."""
    env = {k: v for k, v in os.environ.items() if k != "SEAWALL_METRICS_URL"}
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / script)], cwd=tmp_path, env=env,
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, f"{script} exited {done.returncode}\n{done.stdout}\n{done.stderr}"
    assert done.stdout.strip(), f"{script} printed nothing"
    assert list(tmp_path.iterdir()) == [], f"{script} left files in its working directory"
