"""The field checks every policy value shares: seconds, integers, rates.

Each raises :class:`ConfigurationError` naming ``Owner.field`` and the value,
with the parts (``field``, ``value``, ``complaint``) the config file reader
rewords under its key path.
"""

from __future__ import annotations

import math

from ._errors import ConfigurationError

refuse = ConfigurationError.of_field


def _check_seconds(owner: str, name: str, value: object, *, allow_none: bool = False,
                   positive: bool = False) -> None:
    if value is None:
        if allow_none:
            return
        raise refuse(owner, name, "must be a number of seconds", None)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise refuse(owner, name, "must be a number of seconds", value)
    if math.isnan(value) or math.isinf(value):
        raise refuse(owner, name, "must be finite", value)
    if positive and value <= 0:
        raise refuse(owner, name, "must be > 0 seconds", value)
    if value < 0:
        raise refuse(owner, name, "must be >= 0 seconds", value)


def _check_int(owner: str, name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise refuse(owner, name, "must be an integer", value)
    if value < minimum:
        raise refuse(owner, name, f"must be >= {minimum}", value)


def _check_rate(owner: str, name: str, value: object, *, allow_zero: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise refuse(owner, name, "must be a number in (0, 1]", value)
    low_ok = value >= 0 if allow_zero else value > 0
    if not (low_ok and value <= 1):
        bounds = "[0, 1]" if allow_zero else "(0, 1]"
        raise refuse(owner, name, f"must be in {bounds}", value)


def _check_factor(owner: str, name: str, value: object, minimum: float) -> None:
    """A finite number ``>= minimum`` (a multiplier, a tolerance, a rate of calls)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not (minimum <= value < math.inf):
        raise refuse(owner, name, f"must be a finite number >= {minimum:g}", value)
