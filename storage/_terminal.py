"""What ``seawall stats`` draws on a terminal: a table that fits, sparklines, a chart.

Pure functions of the data and a width (in terminal cells): the CLI picks
the width from the terminal (``$COLUMNS`` when set, 80 when piped) and
prints what these return with rich.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ._types import SeriesBucket, Summary

ELLIPSIS = "…"
SPARKS = "▁▂▃▄▅▆▇█"
# a bar's top cell in eighths: index 0 is empty, 8 a full block
EIGHTHS = " ▁▂▃▄▅▆▇█"
POINT_BUDGET = 24  # cells a point name keeps before a lower-priority column gets room


@dataclass(frozen=True)
class Column:
    """One column of the stats table; ``priority`` 0 is always shown, then 1, 2, ..."""

    header: str
    justify: str
    priority: int


# display order; priorities say what goes first when the terminal is narrow
COLUMNS: tuple[Column, ...] = (
    Column("point", "left", 0),
    Column("calls", "right", 0),
    Column("ok %", "right", 0),
    Column("failures", "right", 1),
    Column("retries", "right", 2),
    Column("rejected", "right", 3),
    Column("p50 ms", "right", 4),
    Column("p95 ms", "right", 5),
    Column("p99 ms", "right", 0),
    Column("breaker", "left", 0),
)


# shown after "rejected" only when some row has one: waits (paused or rate_limit), hedges
# sent/won, the bulkhead's mean limit
EXTRA_COLUMNS: tuple[Column, ...] = (
    Column("waits", "right", 6),
    Column("hedges/won", "right", 7),
    Column("limit", "right", 8),
)


def with_extras(columns: Sequence[Column], summaries: Sequence[Summary]) -> list[Column]:
    """``columns`` with each of :data:`EXTRA_COLUMNS` that some summary has a figure for."""
    wanted = {
        "waits": any(sum(s.waits_by_reason.values()) for s in summaries),
        "hedges/won": any(s.hedges_sent for s in summaries),
        "limit": any(s.concurrency_limit for s in summaries),
    }
    extras = [c for c in EXTRA_COLUMNS if wanted[c.header]]
    out = list(columns)
    at = next((i + 1 for i, c in enumerate(out) if c.header == "rejected"), len(out))
    out[at:at] = extras
    return out


def table_width(widths: Sequence[int]) -> int:
    """Cells a rich table with these column widths takes: ``│ x `` per column, one ``│``."""
    return sum(w + 3 for w in widths) + 1


def abbreviate(text: str, width: int) -> str:
    """``text`` cut to ``width`` cells, its end replaced by an ellipsis when cut."""
    if len(text) <= width:
        return text
    return text[:max(width - 1, 0)] + ELLIPSIS if width > 0 else ""


def summary_cells(s: Summary) -> dict[str, str]:
    """The cells of one point's row, by column header."""
    rate = s.success_rate
    return {
        "point": s.point, "calls": str(s.calls),
        "ok %": "-" if rate is None else f"{rate * 100:.1f}",
        "failures": str(s.failures), "retries": str(s.retries), "rejected": str(s.rejected),
        "p50 ms": f"{s.p50_ms:.2f}", "p95 ms": f"{s.p95_ms:.2f}", "p99 ms": f"{s.p99_ms:.2f}",
        "breaker": s.breaker_state,
        "waits": str(sum(s.waits_by_reason.values())),
        "hedges/won": f"{s.hedges_sent}/{s.hedges_won}",
        "limit": f"{s.concurrency_limit:.1f}".removesuffix(".0") if s.concurrency_limit else "-",
    }


def fit(columns: Sequence[Column], rows: Sequence[dict[str, str]], width: int | None,
        *, reserved: int = 0) -> tuple[list[Column], int]:
    """The columns to show within ``width`` cells, and the width left for point names.

    Priority-0 columns always show; the others join in priority order, until
    the first that does not fit, while the table still fits with point names of up to :data:`POINT_BUDGET`
    cells. ``width=None`` shows every column at its natural width.
    ``reserved`` cells are taken by columns the caller adds (sparklines).
    """
    natural = {c.header: max([len(c.header), *(len(r[c.header]) for r in rows)])
               for c in columns}
    point_natural = natural.get("point", 0)
    if width is None:
        return list(columns), point_natural

    def needed(chosen: Sequence[Column], point_width: int) -> int:
        return table_width([point_width if c.header == "point" else natural[c.header]
                            for c in chosen]) + reserved

    chosen = [c for c in columns if c.priority == 0]
    budget = min(point_natural, POINT_BUDGET)
    for extra in sorted((c for c in columns if c.priority > 0), key=lambda c: c.priority):
        trial = [c for c in columns if c in chosen or c is extra]
        if needed(trial, budget) > width:
            break  # strictly by priority: a narrower column never jumps the queue
        chosen = trial
    others = needed([c for c in chosen if c.header != "point"], 0) - 1  # less the last "│"
    # the point column's own "│ x " and the closing "│"
    point_width = min(point_natural, max(width - others - 4, len("point")))
    return chosen, point_width


# -- sparklines and charts ----------------------------------------------------------


def sparkline(values: Sequence[float]) -> str:
    """One cell per value, from ``▁`` (the smallest recorded) to ``█`` (the largest).

    A zero (nothing recorded in that step) is a blank; values all alike are ``▄``.
    """
    recorded = [v for v in values if v > 0]
    if not recorded:
        return " " * len(values)
    low, high = min(recorded), max(recorded)
    out = []
    for v in values:
        if v <= 0:
            out.append(" ")
        elif high == low:
            out.append(SPARKS[3])
        else:
            out.append(SPARKS[round((v - low) / (high - low) * (len(SPARKS) - 1))])
    return "".join(out)


def last_value(values: Sequence[float]) -> float | None:
    """The most recent non-zero value, or ``None``."""
    for v in reversed(values):
        if v > 0:
            return v
    return None


def number(value: float) -> str:
    """A short figure: 3 significant digits, no exponent below a million."""
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def calls_per_second(buckets: Sequence[SeriesBucket], step: float) -> list[float]:
    """Calls per second in each bucket."""
    return [b.calls / step for b in buckets]


def p99s(buckets: Sequence[SeriesBucket]) -> list[float]:
    """p99 latency in ms of each bucket (0.0 when nothing ran)."""
    return [b.p99_ms for b in buckets]


@dataclass(frozen=True)
class Chart:
    """A bar chart drawn in text: ``lines`` to print, and where the plot is in them.

    ``rows`` and ``columns`` are the plot's size in cells; ``left`` is the
    column where it starts; ``per_bucket`` cells of width per value.
    """

    lines: list[str]
    rows: int
    columns: int
    left: int
    per_bucket: int


def bar_chart(title: str, values: Sequence[float], *, width: int, height: int,
              first: float, step: float) -> Chart:
    """Bars of ``values`` (one bucket of ``step`` seconds each from epoch ``first``).

    Each bar is ``width // len(values)`` cells wide (at least 1) and up to
    ``height`` rows tall, its top drawn in eighths of a cell; the axis is
    labelled with the largest value and 0, the first and last bucket's
    local time.
    """
    top = max(values, default=0.0)
    top_label, zero_label = number(top), number(0.0)
    label = max(len(top_label), len(zero_label))
    left = label + 2  # the label, a space, the axis
    room = max(width - left, 1)
    if len(values) > room:  # the latest buckets that fit
        first += step * (len(values) - room)
        values = values[-room:]
    per = max(1, (width - left) // max(len(values), 1))
    plot = per * len(values)
    levels = [0 if top <= 0 or v <= 0 else max(1, round(v / top * height * 8)) for v in values]
    lines = [title]
    for row in range(height - 1, -1, -1):
        cells = []
        for level in levels:
            fill = level - row * 8
            cells.append((EIGHTHS[8] if fill >= 8 else EIGHTHS[max(fill, 0)]) * per)
        if row == height - 1:
            name = top_label.rjust(label)
        elif row == 0:
            name = zero_label.rjust(label)
        else:
            name = " " * label
        lines.append(f"{name} ┤{''.join(cells)}".rstrip())
    lines.append(" " * label + " └" + "─" * plot)
    start = time.strftime("%H:%M", time.localtime(first))
    end = time.strftime("%H:%M", time.localtime(first + step * (len(values) - 1)))
    gap = max(1, plot - len(start) - len(end))
    lines.append(" " * left + start + " " * gap + end)
    return Chart(lines=lines, rows=height, columns=plot, left=left, per_bucket=per)


def chart_step(window: float, plot_width: int) -> float:
    """The step (a multiple of 60 s) that puts the window's buckets in ``plot_width`` cells."""
    buckets = max(plot_width - 1, 1)  # the window's start minute adds a bucket
    return max(1, math.ceil(window / 60.0 / buckets)) * 60.0


def series_charts(point: str, buckets: Sequence[SeriesBucket], *, step: float, window: float,
                  width: int, height: int) -> list[Chart]:
    """The three charts of ``seawall stats --series``: calls/s, p50 and p99 in ms."""
    first = buckets[0].start if buckets else time.time()
    span = f"last {window:g} s, {step:g} s per bar"
    charts = []
    for title, values in (
            (f"{point}: calls/s, {span}", calls_per_second(buckets, step)),
            (f"{point}: p50 ms", [b.p50_ms for b in buckets]),
            (f"{point}: p99 ms", p99s(buckets))):
        charts.append(bar_chart(abbreviate(title, width), values, width=width, height=height,
                                first=first, step=step))
    return charts


def chart_height(lines: int) -> int:
    """Rows per chart so that three charts (and their 3 extra lines each) fit ``lines``."""
    return max(3, min(12, (lines - 1) // 3 - 3))


def render_kwargs(column: Column) -> dict[str, Any]:
    """rich ``add_column`` keywords: cells never wrap (widths were fitted)."""
    return {"justify": column.justify, "no_wrap": True, "overflow": "ellipsis"}


# the columns of --watch beside its two trends (p99 is in its trend)
WATCH_COLUMNS: tuple[Column, ...] = (
    Column("point", "left", 0),
    Column("calls", "right", 1),
    Column("ok %", "right", 0),
    Column("failures", "right", 2),
    Column("rejected", "right", 3),
    Column("breaker", "left", 0),
)
TREND_VALUE = 7  # cells after a sparkline: a space and the latest value
CHART_LABEL = 10  # cells the y-axis labels of a chart take at most, for its step
