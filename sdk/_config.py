"""Points described in a TOML file: ``seawall.load_points("resilience.toml")``.

One table per point, named by its key; each policy a sub-table whose keys
are the policy's fields; ``preset = "http_api"`` starts from a preset
(:mod:`seawall.presets`) and the tables change only the fields they name;
``retry = false`` (any policy) turns one off; ``server_pacing`` is
``true`` or ``false``; ``bulkhead = { kind = "adaptive" }`` is an
:class:`AdaptiveBulkhead`::

    [payments]
    preset = "http_api"
    retry = { attempts = 4 }
    timeout = { attempt = 2.0, total = 8.0 }
    rate_limit = { rate = 50.0, burst = 5 }

    [payments.breaker]
    failure_rate = 0.3

Every mistake is a :class:`ConfigurationError` naming the file, the key
path and the value (``resilience.toml: payments.retry.attempts: must be
an integer, got "3"``); unknown keys are errors, never ignored. The reader
checks what only it can see (keys, TOML types, names to import); the
values themselves pass the same validation as points made in code (each
policy's own, reworded under the key path, then the cross-option checks
of ``_validation.py``).
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import sys
from collections.abc import Callable
from typing import Any

from . import presets
from ._config_fields import FAULT_FIELDS, FIELDS, POLICIES, Check
from ._errors import ConfigurationError
from ._point import IntegrationPoint
from ._policies import (
    AdaptiveBulkhead,
    Backoff,
    Bulkhead,
    Chaos,
    Fallback,
    Retry,
    RetryBudget,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


__all__ = ["FIELDS", "load_points", "points_from_toml"]


def _show(value: Any) -> str:
    """A value as it is written in TOML (strings in double quotes, true/false, [..], {..})."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return f"[{', '.join(_show(v) for v in value)}]"
    if isinstance(value, dict):
        return f"{{ {', '.join(f'{k} = {_show(v)}' for k, v in value.items())} }}"
    return repr(value)


def _a(kind: type) -> str:
    name = kind.__name__
    return f"{'an' if name[0] in 'AEIOU' else 'a'} {name}"


class _Reader:
    """Turns one file's tables into points; every complaint names the file and the key path."""

    def __init__(self, source: str) -> None:
        self.source = source
        # the policies whose tables need more than their fields checked (names to import...)
        self.readers: dict[type, Callable[[str, Any, dict[str, Any]], Any]] = {
            Retry: self.retry, Fallback: self.fallback, Bulkhead: self.bulkhead,
            Chaos: self.chaos}

    def fail(self, path: str, message: str, value: Any = dataclasses.MISSING) -> ConfigurationError:
        got = "" if value is dataclasses.MISSING else f", got {_show(value)}"
        return ConfigurationError(f"{self.source}: {path}: {message}{got}")

    def table(self, path: str, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(path, "must be a table", value)
        return value

    def fields(self, kind: type, path: str, table: dict[str, Any], hint: str = "") -> dict[str, Any]:
        """The table's keys checked against the policy's fields: known, each of its TOML type."""
        return self.keys(_a(kind), FIELDS[kind], path, table, hint)

    def keys(self, what: str, allowed: dict[str, Check], path: str, table: dict[str, Any],
             hint: str = "") -> dict[str, Any]:
        """The table's keys checked against ``allowed``; ``what`` names the table in errors."""
        for key, value in table.items():
            check = allowed.get(key)
            if check is None:
                raise self.fail(f"{path}.{key}", f"unknown key ({what} takes "
                                f"{', '.join(allowed)}{hint})")
            complaint = check(value)
            if complaint is not None:
                raise self.fail(f"{path}.{key}", complaint, value)
        return dict(table)

    def build(self, kind: type, path: str, base: Any, values: dict[str, Any],
              written: dict[str, Any], origin: str = "") -> Any:
        """``kind(**values)`` (or ``base`` with ``values`` replaced); its own errors get the path.

        ``written`` is the table as the file has it (for the values its errors show);
        ``origin`` says where the other fields come from (default: the preset, with a base).
        """
        if base is None:  # a field without a default must be written, not left to a TypeError
            for f in dataclasses.fields(kind):
                if f.name not in values and f.default is dataclasses.MISSING \
                        and f.default_factory is dataclasses.MISSING:
                    raise self.fail(f"{path}.{f.name}", f"must be given ({_a(kind)} has no "
                                    f"default for it)")
        try:
            return dataclasses.replace(base, **values) if base is not None else kind(**values)
        except ConfigurationError as exc:
            origin = origin or ("kept from the preset" if base is not None else "the default")
            raise self.reworded(path, exc, written, origin) from None

    def reworded(self, path: str, exc: ConfigurationError, written: dict[str, Any],
                 origin: str) -> ConfigurationError:
        """A policy's own refusal under the key path of its field, with the value as written."""
        if not exc.field:  # about the table as a whole
            return ConfigurationError(f"{self.source}: {path}: {exc}")
        where = f"{path}.{exc.field}"
        if exc.field in written:
            error = self.fail(where, exc.complaint, written[exc.field])
        elif exc.value is None:  # a field left out that the others need
            error = self.fail(where, exc.complaint)
        else:
            error = ConfigurationError(f"{self.source}: {where}: {exc.complaint}, got "
                                       f"{_show(exc.value)} (not written: {origin})")
        error.field, error.value, error.complaint = exc.field, exc.value, exc.complaint
        return error

    def imported(self, path: str, spec: str) -> Any:
        """The object named ``module:attribute`` (``module:Class.attribute``, ``module.attribute``)."""
        if ":" in spec:
            module, _, attribute = spec.partition(":")
            parts = attribute.split(".")
        else:
            module, _, attribute = spec.rpartition(".")
            parts = [attribute]
        try:
            found: Any = importlib.import_module(module or "builtins")
            for part in parts:
                found = getattr(found, part)
        except (ImportError, AttributeError, ValueError):
            raise self.fail(path, "names nothing importable (write module:attribute)",
                            spec) from None
        return found

    # -- the policies ------------------------------------------------------------

    def backoff(self, path: str, base: Backoff | None, raw: Any) -> Backoff:
        written = self.table(path, raw)
        values = self.fields(Backoff, path, written)
        if "function" in values:
            values["function"] = self.imported(f"{path}.function", values["function"])
        origin = "kept from the preset"
        if "kind" in values:  # a new kind starts from that kind's defaults, not the base's
            base, origin = None, "the default"
        elif base is None:
            base, origin = Backoff.exponential(), "the default"
        return self.build(Backoff, path, base, values, written, origin)  # type: ignore[no-any-return]

    def retry(self, path: str, base: Retry | None, table: dict[str, Any]) -> Retry:
        values = self.fields(Retry, path, table)
        if "on" in values:
            values["on"] = tuple(self.imported(f"{path}.on", n) for n in values["on"])
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
                told = self.table(sub, raw) if raw is not True else {}
                budget = self.fields(RetryBudget, sub, told)
                old = base.budget if base is not None else None
                values["budget"] = self.build(RetryBudget, sub, old, budget, told)
        return self.build(Retry, path, base, values, table)  # type: ignore[no-any-return]

    def fallback(self, path: str, base: Fallback | None, table: dict[str, Any]) -> Fallback:
        values = self.fields(Fallback, path, table)
        if "handler" in values:
            values["handler"] = self.imported(f"{path}.handler", values["handler"])
        if base is not None and ("value" in values or "handler" in values):
            base = None  # a new answer replaces the preset's, whichever kind it was
        return self.build(Fallback, path, base, values, table)  # type: ignore[no-any-return]

    def bulkhead(self, path: str, base: Bulkhead | AdaptiveBulkhead | None,
                 table: dict[str, Any]) -> Bulkhead | AdaptiveBulkhead:
        """``kind = "fixed"`` (a :class:`Bulkhead`, the default) or ``"adaptive"``."""
        had = "adaptive" if isinstance(base, AdaptiveBulkhead) else "fixed"
        chosen = table.get("kind", had)
        if chosen not in ("fixed", "adaptive"):
            raise self.fail(f"{path}.kind", "must be one of fixed, adaptive", chosen)
        if chosen != had:  # the other kind starts from its own defaults
            base = None
        kind, other, other_name = ((AdaptiveBulkhead, Bulkhead, "fixed") if chosen == "adaptive"
                                   else (Bulkhead, AdaptiveBulkhead, "adaptive"))
        hint = f'; kind = "{other_name}" takes {", ".join(k for k in FIELDS[other] if k != "kind")}'
        values = self.fields(kind, path, table, hint)
        values.pop("kind", None)
        return self.build(kind, path, base, values, table)  # type: ignore[no-any-return]

    def fault(self, path: str, raw: Any) -> Any:
        """The exception class, exception or factory a fault names, or the exception a table makes."""
        if isinstance(raw, str):  # what it names, Chaos checks
            return self.imported(path, raw)
        spec = self.keys("a fault table", FAULT_FIELDS, path, raw)
        if "class" not in spec:
            raise self.fail(f"{path}.class", "must be given (the exception class to raise)")
        cls = self.imported(f"{path}.class", spec["class"])
        if not (isinstance(cls, type) and issubclass(cls, Exception)):
            raise self.fail(f"{path}.class", "must name an Exception subclass", spec["class"])
        if "message" not in spec:
            return cls
        try:
            return cls(spec["message"])
        except Exception:  # a class whose constructor wants more than a message
            raise self.fail(f"{path}.message", f"cannot make a {cls.__name__} from it",
                            spec["message"]) from None

    def chaos(self, path: str, base: Chaos | None, table: dict[str, Any]) -> Chaos:
        values = self.fields(Chaos, path, table)
        if "fault" in values:
            values["fault"] = self.fault(f"{path}.fault", values["fault"])
        if "result_name" in values:
            written = values.pop("result_name")
            if "result" in values:
                raise self.fail(f"{path}.result_name", "cannot be given with result (one is "
                                "the result: a TOML value, or a named object)", written)
            values["result"] = self.imported(f"{path}.result_name", written)
        return self.build(Chaos, path, base, values, table)  # type: ignore[no-any-return]

    def point(self, name: str, raw: Any) -> IntegrationPoint:
        table = self.table(name, raw)
        options: dict[str, Any] = {}
        if "preset" in table:
            try:
                options = presets.options(table["preset"])
            except ConfigurationError as exc:
                raise self.reworded(name, exc, table, "") from None
        for key, value in table.items():
            if key == "preset":
                continue
            kind = POLICIES.get(key)
            path = f"{name}.{key}"
            if key == "server_pacing":
                if not isinstance(value, bool):
                    raise self.fail(path, "must be true or false", value)
                options[key] = value
                continue
            if kind is None:
                raise self.fail(path, f"unknown key (a point takes preset, server_pacing, "
                                f"{', '.join(POLICIES)})")
            if value is False:
                options[key] = None
                continue
            sub = self.table(path, value)
            base = options.get(key)
            reader = self.readers.get(kind)
            options[key] = reader(path, base, sub) if reader is not None \
                else self.build(kind, path, base, self.fields(kind, path, sub), sub)
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
    ``on`` lists categories), ``rate_limit``, ``hedge`` (``on`` lists
    categories), ``chaos`` (``fault`` names an exception class, an exception
    or a factory, or is a table ``{ class = "...", message = "..." }``;
    ``result`` is a TOML value, ``result_name`` a named object), and the key
    ``server_pacing = true | false``; ``bulkhead`` takes ``kind = "fixed"``
    (the default) or ``"adaptive"`` (the fields of :class:`AdaptiveBulkhead`).
    Each table's keys are the policy's fields, and ``false`` instead of a
    table turns the policy off. Over a preset,
    a table changes only the fields it names. Raises
    :class:`ConfigurationError` naming the file, the key path and the value
    for anything invalid or unknown; a missing file raises ``OSError``.
    """
    with open(path, encoding="utf-8") as file:
        text = file.read()
    return points_from_toml(text, os.fspath(path))
