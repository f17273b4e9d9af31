"""The public surface: one sorted, complete __all__."""

from __future__ import annotations

import types

import seawall


def test_all_is_sorted() -> None:
    """seawall.__all__ is sorted."""
    assert list(seawall.__all__) == sorted(seawall.__all__)


def test_all_names_exist() -> None:
    """Every name in __all__ is an attribute of the package, listed once."""
    assert len(set(seawall.__all__)) == len(seawall.__all__)
    for name in seawall.__all__:
        assert hasattr(seawall, name), name


def test_every_public_name_is_in_all() -> None:
    """Every public, non-module attribute of the package is listed in __all__."""
    public = {
        name for name, value in vars(seawall).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public - set(seawall.__all__) == set()


def test_design_names_are_exported() -> None:
    """The names DESIGN.md promises users are all there."""
    for name in ("IntegrationPoint", "Retry", "Backoff", "RetryBudget", "CircuitBreaker",
                 "Bulkhead", "Timeout", "Fallback", "SeawallError", "CircuitOpenError",
                 "BulkheadFullError", "DeadlineExceeded", "persist_metrics", "remaining"):
        assert name in seawall.__all__, name


def test_public_names_have_docstrings() -> None:
    """Every exported class and function has a docstring."""
    for name in seawall.__all__:
        value = getattr(seawall, name)
        if isinstance(value, type) or callable(value):
            assert (value.__doc__ or "").strip(), name


def test_errors_derive_from_one_base() -> None:
    """seawall's own errors all derive from SeawallError; DeadlineExceeded is a TimeoutError."""
    for error in (seawall.CircuitOpenError, seawall.BulkheadFullError, seawall.DeadlineExceeded,
                  seawall.RejectedError, seawall.ConfigurationError, seawall.ResultFailure):
        assert issubclass(error, seawall.SeawallError)
    assert issubclass(seawall.DeadlineExceeded, TimeoutError)
    assert issubclass(seawall.CircuitOpenError, seawall.RejectedError)
    assert issubclass(seawall.BulkheadFullError, seawall.RejectedError)
