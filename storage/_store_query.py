"""The arguments of store queries: their limits and checks, and rollup pieces.

Every read of :class:`Store` validates what it is asked with these
(:class:`MetricsQueryError` naming the field and the value), and so do the
gRPC and HTTP services before they ask. :func:`split_minutes` covers a
range of minutes with the fewest rows of the day, hour and minute tables.
"""

from __future__ import annotations

import math

from ._schema import DAY, HOUR, MINUTE, NAME_LENGTH
from ._types import MetricsQueryError

DEFAULT_WINDOW = 3600.0
MAX_WINDOW = 366 * 86400.0
# the latest time a query may name: the end of year 9999 (epoch seconds); minute buckets of
# anything later no longer fit the 64-bit columns every database offers
MAX_TIME = 253402300800.0
MAX_SERIES_BUCKETS = 10_000
MAX_PAGE = 1000
DEFAULT_PAGE = 100


def safe_float(name: str, value: float) -> float:
    """``value`` as a finite float, else :class:`MetricsQueryError` naming ``name``."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise MetricsQueryError(f"{name} must be a number, got {value!r}") from None
    if math.isnan(value) or math.isinf(value):
        raise MetricsQueryError(f"{name} must be finite, got {value!r}")
    return value


def check_time(name: str, value: float) -> float:
    """Validate a point in time: epoch seconds from 0 to :data:`MAX_TIME` (year 9999)."""
    value = safe_float(name, value)
    if not 0.0 <= value <= MAX_TIME:
        raise MetricsQueryError(f"{name} must be epoch seconds between 0 and {MAX_TIME:.0f} "
                                f"(the end of year 9999), got {value!r}")
    return value


def check_window(window: float) -> float:
    """Validate a summary window in seconds (``0`` means the default of one hour)."""
    window = safe_float("window", window)
    if window < 0:
        raise MetricsQueryError(f"window must be >= 0 seconds, got {window!r}")
    if window > MAX_WINDOW:
        raise MetricsQueryError(f"window must be at most {MAX_WINDOW:.0f} seconds (366 days), "
                                f"got {window!r}")
    return window or DEFAULT_WINDOW


def check_name(field: str, value: str | None) -> str | None:
    """Validate an optional point or operation name."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise MetricsQueryError(f"{field} must be a string, got {value!r}")
    if len(value) > NAME_LENGTH:
        raise MetricsQueryError(f"{field} must be at most {NAME_LENGTH} characters, "
                                f"got {len(value)}")
    return value


def step_rows(first: int, count: int, step_minutes: int) -> tuple[int, int, int, int]:
    """The rows of ``count`` steps of ``step_minutes`` from minute ``first``: ``(width, lo, hi, ratio)``.

    ``width`` is the widest rollup (day, hour, minute) whose rows both the
    step and its start align to, its rows ``lo <= bucket < hi`` cover the
    steps, ``ratio`` of them to a step. More than :data:`MAX_SERIES_BUCKETS`
    steps raise :class:`MetricsQueryError`.
    """
    if count > MAX_SERIES_BUCKETS:
        raise MetricsQueryError(
            f"{count} steps of {step_minutes * 60:g} s between start and end; at most "
            f"{MAX_SERIES_BUCKETS} (widen the step or narrow the range)")
    width = next(w for w in (DAY, HOUR, MINUTE) if step_minutes % w == 0 and first % w == 0)
    return width, first // width, (first + count * step_minutes) // width, step_minutes // width


def split_minutes(a: int, b: int) -> list[tuple[int, int, int]]:
    """Cover minutes ``[a, b)`` with whole days, then whole hours, then minutes.

    Returns ``(width, lo, hi)`` pieces: rows of the table of that width
    with ``lo <= bucket < hi``.
    """
    pieces: list[tuple[int, int, int]] = []
    ha, hb = -(-a // 60), b // 60
    if ha >= hb:
        return [(MINUTE, a, b)] if a < b else []
    if a < ha * 60:
        pieces.append((MINUTE, a, ha * 60))
    if hb * 60 < b:
        pieces.append((MINUTE, hb * 60, b))
    da, db = -(-ha // 24), hb // 24
    if da >= db:
        pieces.append((HOUR, ha, hb))
        return pieces
    if ha < da * 24:
        pieces.append((HOUR, ha, da * 24))
    if db * 24 < hb:
        pieces.append((HOUR, db * 24, hb))
    pieces.append((DAY, da, db))
    return pieces
