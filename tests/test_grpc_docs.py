"""The usage snippet in docs/grpc.md runs as written."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs" / "grpc.md"


def test_usage_snippet_runs() -> None:
    """The first python block of docs/grpc.md calls a loopback server through seawall."""
    block = re.search(r"```python\n(.*?)```", DOC.read_text(), re.S)
    assert block is not None
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(block.group(1), str(DOC), "exec"), {"__name__": "snippet"})
    assert "status: SERVING" in out.getvalue()
    assert "calls: 1" in out.getvalue()
