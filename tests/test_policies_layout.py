"""Issue 12, one concept per file: the policy values by family, OpenTelemetry's export apart from
its instruments, the ledger apart from its snapshot; every name still imported from where it was."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import seawall
from seawall import _ledger, _otel, _policies

SDK = Path(seawall.__file__).resolve().parent

SPLIT = ["_policies.py", "_policy_checks.py", "_policy_retry.py", "_policy_limits.py",
         "_policy_time.py", "_policy_failures.py", "_otel.py", "_otel_instruments.py",
         "_ledger.py", "_point_stats.py"]

POLICIES = ["AdaptiveBulkhead", "Backoff", "Bulkhead", "Chaos", "CircuitBreaker", "Fallback",
            "Hedge", "RateLimit", "Retry", "RetryBudget", "Timeout"]


def test_each_module_is_one_sitting_and_says_what_it_holds() -> None:
    """Each module of the split is at most 400 lines and opens with a docstring."""
    for name in SPLIT:
        text = (SDK / name).read_text(encoding="utf-8")
        assert text.count("\n") <= 400, name
        assert ast.get_docstring(ast.parse(text)), name


def test_policies_only_re_exports_its_names() -> None:
    """_policies.py defines nothing: imports from the family modules and ``__all__``."""
    tree = ast.parse((SDK / "_policies.py").read_text(encoding="utf-8"))
    for node in tree.body[1:]:  # after the docstring
        assert isinstance(node, (ast.ImportFrom, ast.Assign)), ast.dump(node)
    assert sorted(_policies.__all__) == sorted([*POLICIES, "JITTERS", "Jitter"])


def test_every_policy_is_the_same_object_from_every_old_place() -> None:
    """seawall.X and seawall._policies.X are one class, a frozen dataclass of its family module."""
    for name in POLICIES:
        cls = getattr(_policies, name)
        assert getattr(seawall, name) is cls
        assert cls.__module__.startswith("seawall._policy_"), name
        assert dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen, name  # type: ignore[attr-defined]


def test_otel_and_ledger_names_are_still_importable() -> None:
    """What the tests, the pytest plugin and the point import from _otel and _ledger."""
    assert _otel.DURATION_BOUNDARIES[0] == 0.0001 and _otel.OtelMetrics and _otel.otel_metrics
    assert _ledger.PointStats is seawall.PointStats and _ledger.Ledger
    assert "breaker" in _ledger.REJECTION_REASONS

