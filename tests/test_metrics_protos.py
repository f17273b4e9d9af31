"""The generated gRPC code is reproducible from protos/ and committed up to date."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from seawall import _protos


def test_the_committed_generated_code_matches_the_protos() -> None:
    """Regenerating from protos/ changes nothing (else run `make protos`)."""
    assert _protos.check() == []


def test_a_stale_file_is_detected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An edited generated file is reported by name."""
    copy = tmp_path / "_gen"
    shutil.copytree(_protos.OUT, copy)
    stub = copy / "metrics_pb2_grpc.py"
    stub.write_text(stub.read_text() + "\n# edited by hand\n")
    monkeypatch.setattr(_protos, "OUT", copy)
    assert _protos.check() == ["metrics_pb2_grpc.py"]


def test_generated_modules_live_under_seawall_storage() -> None:
    """Nothing is importable as a top-level `seawall.metrics` package."""
    from seawall.storage._gen import metrics_pb2, metrics_pb2_grpc

    assert metrics_pb2_grpc.seawall_dot_metrics_dot_v1_dot_metrics__pb2 is metrics_pb2
    with pytest.raises(ImportError):
        __import__("seawall.metrics")
