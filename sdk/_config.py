"""Points described in a TOML file: ``seawall.load_points("resilience.toml")``.

One table per point, named by its key; each policy a sub-table whose keys
are the policy's fields; ``preset = "http_api"`` starts from a preset
(:mod:`seawall.presets`) and the tables change only the fields they name;
``retry = false`` (any policy) turns one off::

    [payments]
    preset = "http_api"
    retry = { attempts = 4 }
    timeout = { attempt = 2.0, total = 8.0 }

    [payments.breaker]
    failure_rate = 0.3

Every mistake is a :class:`ConfigurationError` naming the file, the key
path and the value (``resilience.toml: payments.retry.attempts: must be
an integer ≥ 1, got "3"``); unknown keys are errors, never ignored. The
points pass the same validation as points made in code (each policy's
own, then the cross-option checks of ``_validation.py``).
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import math
import os
import sys
from collections.abc import Callable
from typing import Any

from . import presets
from ._classify import Category
from ._errors import ConfigurationError
from ._point import IntegrationPoint
from ._policies import (
    JITTERS,
    Backoff,
    Bulkhead,
    CircuitBreaker,
    Fallback,
    Retry,
    RetryBudget,
    Timeout,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

Check = Callable[[Any], str | None]  # the complaint about a value, or None when it is fine


def _show(value: Any) -> str:
    """A value as it is written in TOML (strings in double quotes, true/false)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return repr(value)


def _number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) \
        and not math.isnan(value) and not math.isinf(value)


def integer(minimum: int) -> Check:
    def check(v: Any) -> str | None:
        ok = not isinstance(v, bool) and isinstance(v, int) and v >= minimum
        return None if ok else f"must be an integer ≥ {minimum}"
    return check


def seconds(*, positive: bool) -> Check:
    def check(v: Any) -> str | None:
        if _number(v) and (v > 0 if positive else v >= 0):
            return None
        return f"must be a number of seconds {'> 0' if positive else '≥ 0'}"
    return check


def at_least(low: float) -> Check:
    def check(v: Any) -> str | None:
        return None if _number(v) and v >= low else f"must be a number ≥ {low:g}"
    return check


def positive(v: Any) -> str | None:
    return None if _number(v) and v > 0 else "must be a number > 0"


def rate(*, zero: bool) -> Check:
    def check(v: Any) -> str | None:
        if _number(v) and (v >= 0 if zero else v > 0) and v <= 1:
            return None
        return f"must be a number in {'[0, 1]' if zero else '(0, 1]'}"
    return check


def one_of(*choices: str) -> Check:
    def check(v: Any) -> str | None:
        return None if v in choices else f"must be one of {', '.join(choices)}"
    return check


def boolean(v: Any) -> str | None:
    return None if isinstance(v, bool) else "must be true or false"


def anything(v: Any) -> str | None:
    return None


def names(v: Any) -> str | None:
    if isinstance(v, list) and all(isinstance(x, str) for x in v):
        return None
    return "must be a list of strings"


def text(v: Any) -> str | None:
    return None if isinstance(v, str) and v else "must be a non-empty string"


# the fields each policy table takes, and what each value must be
FIELDS: dict[type, dict[str, Check]] = {
    Retry: {"attempts": integer(1), "on": names, "max_server_delay": seconds(positive=False),
            "backoff": anything, "budget": anything},
    Backoff: {"kind": one_of("constant", "linear", "exponential", "custom"),
              "initial": seconds(positive=False), "step": seconds(positive=False),
              "multiplier": at_least(1), "maximum": seconds(positive=False),
              "jitter": one_of(*JITTERS), "function": text},
    RetryBudget: {"ratio": rate(zero=True), "minimum_per_second": at_least(0),
                  "period": seconds(positive=True)},
    CircuitBreaker: {"failure_rate": rate(zero=False), "minimum_calls": integer(1),
                     "window": positive, "window_kind": one_of("count", "time"),
                     "buckets": integer(1), "slow_call_duration": seconds(positive=True),
                     "slow_call_rate": rate(zero=False), "open_for": seconds(positive=True),
                     "open_for_multiplier": at_least(1), "open_for_max": seconds(positive=True),
                     "half_open_calls": integer(1)},
    Bulkhead: {"max_concurrent": integer(1), "max_wait": seconds(positive=False)},
    Timeout: {"attempt": seconds(positive=True), "total": seconds(positive=True)},
    Fallback: {"value": anything, "handler": text, "on": names, "on_rejection": boolean},
}
POLICIES: dict[str, type] = {"retry": Retry, "breaker": CircuitBreaker, "bulkhead": Bulkhead,
                             "timeout": Timeout, "fallback": Fallback}


class _Reader:
    """Turns one file's tables into points; every complaint names the file and the key path."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, path: str, message: str, value: Any = dataclasses.MISSING) -> ConfigurationError:
        got = "" if value is dataclasses.MISSING else f", got {_show(value)}"
        return ConfigurationError(f"{self.source}: {path}: {message}{got}")

    def table(self, path: str, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(path, "must be a table", value)
        return value

    def fields(self, kind: type, path: str, table: dict[str, Any]) -> dict[str, Any]:
        """The table's keys checked against the policy's fields (known, and each value valid)."""
        allowed = FIELDS[kind]
        for key, value in table.items():
            check = allowed.get(key)
            if check is None:
                raise self.fail(f"{path}.{key}", f"unknown key (a {kind.__name__} takes "
                                f"{', '.join(allowed)})")
            complaint = check(value)
            if complaint is not None:
                raise self.fail(f"{path}.{key}", complaint, value)
        return dict(table)

    def build(self, kind: type, path: str, base: Any, values: dict[str, Any]) -> Any:
        """``kind(**values)`` (or ``base`` with ``values`` replaced); its own errors get the path."""
        try:
            return dataclasses.replace(base, **values) if base is not None else kind(**values)
        except ConfigurationError as exc:
            raise ConfigurationError(f"{self.source}: {path}: {exc}") from None

    def imported(self, path: str, spec: str) -> Any:
        """The object named ``module:attribute`` (or ``module.attribute``)."""
        module, _, attribute = spec.rpartition(":") if ":" in spec else spec.rpartition(".")
        try:
            return getattr(importlib.import_module(module or "builtins"), attribute)
        except (ImportError, AttributeError, ValueError):
            raise self.fail(path, "names nothing importable (write module:attribute)",
                            spec) from None

    # -- the policies ------------------------------------------------------------

    def backoff(self, path: str, base: Backoff | None, raw: Any) -> Backoff:
        values = self.fields(Backoff, path, self.table(path, raw))
        if "function" in values:
            values["function"] = self.imported(f"{path}.function", values["function"])
        if "kind" in values:  # a new kind starts from that kind's defaults, not the base's
            base = None
        elif base is None:
            base = Backoff.exponential()
        return self.build(Backoff, path, base, values)  # type: ignore[no-any-return]

    def retry(self, path: str, base: Retry | None, table: dict[str, Any]) -> Retry:
        values = self.fields(Retry, path, table)
        if "on" in values:
            classes = [self.imported(f"{path}.on", n) for n in values["on"]]
            for name, cls in zip(values["on"], classes, strict=True):
                if not (isinstance(cls, type) and issubclass(cls, Exception)):
                    raise self.fail(f"{path}.on", "must name Exception subclasses", name)
            values["on"] = tuple(classes)
        if "backoff" in values:
            values["backoff"] = self.backoff(f"{path}.backoff",
                                             base.backoff if base is not None else None,
                                             values["backoff"])
        if "budget" in values:
            raw = values["budget"]
            if raw is False:
                values["budget"] = None
            else:
                sub = f"{path}.budget"
                budget = self.fields(RetryBudget, sub, self.table(sub, raw) if raw is not True
                                     else {})
                old = base.budget if base is not None else None
                values["budget"] = self.build(RetryBudget, sub, old, budget)
        return self.build(Retry, path, base, values)  # type: ignore[no-any-return]

    def fallback(self, path: str, base: Fallback | None, table: dict[str, Any]) -> Fallback:
        values = self.fields(Fallback, path, table)
        if "handler" in values:
            values["handler"] = self.imported(f"{path}.handler", values["handler"])
        if "on" in values:
            known = [c.value for c in Category]
            for name in values["on"]:
                if name not in known:
                    raise self.fail(f"{path}.on", f"must hold categories ({', '.join(known)})",
                                    name)
        if base is not None and ("value" in values or "handler" in values):
            base = None  # a new answer replaces the preset's, whichever kind it was
        return self.build(Fallback, path, base, values)  # type: ignore[no-any-return]

    def point(self, name: str, raw: Any) -> IntegrationPoint:
        table = self.table(name, raw)
        options: dict[str, Any] = {}
        if "preset" in table:
            preset = table["preset"]
            if preset not in presets.NAMES:
                raise self.fail(f"{name}.preset", f"must be one of {', '.join(presets.NAMES)}",
                                preset)
            options = presets.options(preset)
        for key, value in table.items():
            if key == "preset":
                continue
            kind = POLICIES.get(key)
            path = f"{name}.{key}"
            if kind is None:
                raise self.fail(path, f"unknown key (a point takes preset, {', '.join(POLICIES)})")
            if value is False:
                options[key] = None
                continue
            sub = self.table(path, value)
            base = options.get(key)
            if kind is Retry:
                options[key] = self.retry(path, base, sub)
            elif kind is Fallback:
                options[key] = self.fallback(path, base, sub)
            else:
                options[key] = self.build(kind, path, base, self.fields(kind, path, sub))
        try:
            return IntegrationPoint(name, **options)
        except ConfigurationError as exc:
            raise ConfigurationError(f"{self.source}: {name}: {exc}") from None


def points_from_toml(text: str, source: str = "<string>") -> dict[str, IntegrationPoint]:
    """The points described by TOML ``text``; ``source`` names it in errors."""
    reader = _Reader(source)
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{source}: not valid TOML: {exc}") from None
    return {name: reader.point(name, raw) for name, raw in document.items()}


def load_points(path: str | os.PathLike[str]) -> dict[str, IntegrationPoint]:
    """Read the integration points described in the TOML file at ``path``, by name.

    One table per point (its key is the point's name): ``preset = "..."``
    (optional, one of :data:`seawall.presets.NAMES`) and the policy tables
    ``retry`` (with ``backoff`` and ``budget`` inside; ``on`` names
    exception classes as ``module:Class``), ``breaker``, ``bulkhead``,
    ``timeout``, ``fallback`` (``value``, or ``handler = "module:function"``;
    ``on`` lists categories); each table's keys are the policy's fields,
    and ``false`` instead of a table turns the policy off. Over a preset,
    a table changes only the fields it names. Raises
    :class:`ConfigurationError` naming the file, the key path and the value
    for anything invalid or unknown; a missing file raises ``OSError``.
    """
    with open(path, encoding="utf-8") as file:
        text = file.read()
    return points_from_toml(text, os.fspath(path))
