"""What the demo shows: the live view while it runs and the side-by-side tables."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from rich import box
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from ._demo_workload import ERROR, FALLBACK, OK, CallLog, percentile


@dataclass(frozen=True, slots=True)
class DependencyResult:
    """One dependency in one run, as the caller and the dependency saw it."""

    dependency: str
    point: str
    calls: int
    ok: int
    fallbacks: int
    errors: int
    calls_outside_outage: int
    ok_outside_outage: int
    p50_ms: float
    p99_ms: float
    reached: int
    reached_during_outage: int
    retries: int | None
    breaker_openings: int | None
    rejected: int | None
    hedges: int | None = None
    hedges_won: int | None = None
    paused_waits: int | None = None
    paused_refusals: int | None = None

    @property
    def success_rate(self) -> float:
        """Share of calls answered by the dependency itself."""
        return self.ok / self.calls if self.calls else 0.0

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["success_rate"] = round(self.success_rate, 4)
        return data


def summarize(dependency: str, point: str, log: CallLog, reached: int, during: int,
              stats: Any | None, openings: int | None, *, hedged: bool = False) -> DependencyResult:
    """Fold a run's call log, the server counts and seawall's counters into one row set.

    ``hedged``: the point has a :class:`seawall.Hedge`; its hedges are counted.
    """
    outcomes, latencies = log.snapshot()
    outside = log.outside()
    return DependencyResult(
        dependency=dependency, point=point, calls=sum(outcomes.values()), ok=outcomes[OK],
        fallbacks=outcomes[FALLBACK], errors=outcomes[ERROR],
        calls_outside_outage=sum(outside.values()), ok_outside_outage=outside[OK],
        p50_ms=round(percentile(latencies, 0.50) * 1000, 1),
        p99_ms=round(percentile(latencies, 0.99) * 1000, 1),
        reached=reached, reached_during_outage=during,
        retries=None if stats is None else int(stats.retries),
        breaker_openings=openings,
        rejected=None if stats is None else int(stats.rejected),
        hedges=int(stats.hedges) if hedged and stats is not None else None,
        hedges_won=int(stats.hedges_won) if hedged and stats is not None else None,
        paused_waits=None if stats is None else int(stats.paused_waits),
        paused_refusals=None if stats is None else int(stats.rejections.get("paused", 0)),
    )


def _pct(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:.1f}%" if whole else "-"


def _num(value: float | int | None, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.1f}{unit}"
    return f"{value:,}{unit}"


ROWS: tuple[tuple[str, str], ...] = (
    ("calls made", "calls"),
    ("success seen by the caller", "success"),
    ("  ...outside the outage", "success_outside"),
    ("answered by a fallback", "fallbacks"),
    ("answered at all", "answered"),
    ("errors seen by the caller", "errors"),
    ("latency p50", "p50_ms"),
    ("latency p99", "p99_ms"),
    ("requests that reached it", "reached"),
    ("  ...during the outage", "reached_during_outage"),
    ("retries", "retries"),
    ("hedges sent / won", "hedges"),
    ("breaker openings", "breaker_openings"),
    ("calls refused before an attempt", "rejected"),
    ("attempts that waited out a pause", "paused_waits"),
    ("refused: the pause outlasts the deadline", "paused_refusals"),
)
# rows shown only when some run has a figure for them (hedging, server pacing)
OPTIONAL = ("hedges", "paused_waits", "paused_refusals")


def _cell(result: DependencyResult, key: str) -> str:
    if key == "success":
        return _pct(result.ok, result.calls)
    if key == "success_outside":
        return _pct(result.ok_outside_outage, result.calls_outside_outage)
    if key == "answered":
        return _pct(result.ok + result.fallbacks, result.calls)
    if key == "hedges":
        if result.hedges is None or result.hedges_won is None:
            return "-"
        return f"{result.hedges:,} / {result.hedges_won:,}"
    if key in ("p50_ms", "p99_ms"):
        return _num(float(getattr(result, key)), " ms")
    return _num(getattr(result, key))


# in a rehearsal (seawall demo --chaos) the outage is injected: what met it, not what reached it
INJECTED_LABELS = {"reached_during_outage": "  ...met the injected outage"}


def comparison_table(title: str, bare: DependencyResult, guarded: DependencyResult,
                     *, plain: bool, injected: bool = False) -> Table:
    """The side-by-side table of one dependency: bare clients against seawall.

    ``injected``: the outage was rehearsed with :class:`seawall.Chaos`; the
    outage row then counts the attempts that met the injected outage.
    """
    table = Table(title=title, title_justify="left", box=box.ASCII if plain else box.ROUNDED,
                  show_edge=True, pad_edge=True, expand=False)
    table.add_column("", no_wrap=True)
    table.add_column("bare", justify="right", no_wrap=True)
    table.add_column("seawall", justify="right", no_wrap=True,
                     style=None if plain else "bold green")
    for label, key in ROWS:
        if key in OPTIONAL and not (getattr(bare, key) or getattr(guarded, key)):
            continue  # e.g. only the hedged dependency's table has the hedges row
        if injected:
            label = INJECTED_LABELS.get(key, label)
        table.add_row(label, _cell(bare, key), _cell(guarded, key))
    return table


def live_view(phase: str, started: float, duration: float, outage: tuple[float, float],
              logs: Sequence[tuple[str, CallLog]], reached: Sequence[tuple[int, int]]) -> RenderableType:
    """The view refreshed while a run is going: a progress line and running counts."""
    elapsed = min(duration, max(0.0, time.monotonic() - started))
    width = 30
    filled = int(width * elapsed / duration) if duration else width
    in_outage = outage[0] <= elapsed < outage[1]
    bar = Text()
    bar.append(f"{phase:<20} ", style="bold")
    bar.append("#" * filled, style="red" if in_outage else "cyan")
    bar.append("." * (width - filled), style="dim")
    bar.append(f" {elapsed:4.1f}/{duration:.0f} s")
    if in_outage:
        bar.append("  OUTAGE", style="bold red")
    table = Table(box=box.SIMPLE, expand=False)
    for name, justify in (("dependency", "left"), ("calls", "right"), ("ok", "right"),
                          ("fallback", "right"), ("errors", "right"), ("p99", "right"),
                          ("reached", "right"), ("in outage", "right")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for (name, log), (total, during) in zip(logs, reached, strict=True):
        outcomes, latencies = log.snapshot()
        calls = sum(outcomes.values())
        table.add_row(name, f"{calls:,}", _pct(outcomes[OK], calls), f"{outcomes[FALLBACK]:,}",
                      f"{outcomes[ERROR]:,}", f"{percentile(latencies, 0.99) * 1000:.0f} ms",
                      f"{total:,}", f"{during:,}")
    return Group(bar, table)


SERVED = ("calls", "successes", "failures", "retries", "rejected", "fallbacks", "hedges_sent",
          "hedges_won")
HEADERS = {"injected_calls": "injected", "hedges_sent": "hedges", "hedges_won": "won"}


def service_table(rows: Sequence[Mapping[str, Any]], memory: Mapping[str, Mapping[str, int]],
                  *, plain: bool, injected: bool = False) -> Table:
    """The counters read back through the metrics service, checked against the process's own.

    ``injected``: a rehearsal; the calls injected are shown in their own column.
    """
    served = (*SERVED, "injected_calls") if injected else SERVED
    table = Table(title="read back through the metrics service vs counted in this process",
                  title_justify="left", box=box.ASCII if plain else box.ROUNDED)
    table.add_column("point")
    for name in served:
        table.add_column(HEADERS.get(name, name), justify="right")
    table.add_column("same?", justify="center")
    for row in rows:
        mem = memory.get(str(row["point"]), {})
        same = bool(mem) and all(int(row.get(k, -1)) == v for k, v in mem.items())
        table.add_row(str(row["point"]), *(f"{int(row[k]):,}" for k in served),
                      "yes" if same else "NO")
    return table


def make_console(*, plain: bool | None = None) -> Console:
    """A console on stdout; plain (no colour, no live view) when stdout is not a terminal."""
    console = Console(highlight=False)
    if plain is None:
        plain = not console.is_terminal
    if plain:
        console = Console(highlight=False, no_color=True, force_terminal=False, width=110,
                          emoji=False)
    return console
