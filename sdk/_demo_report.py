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
    p50_ms: float
    p99_ms: float
    reached: int
    reached_during_outage: int
    retries: int | None
    breaker_openings: int | None
    rejected: int | None

    @property
    def success_rate(self) -> float:
        """Share of calls answered by the dependency itself."""
        return self.ok / self.calls if self.calls else 0.0

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["success_rate"] = round(self.success_rate, 4)
        return data


def summarize(dependency: str, point: str, log: CallLog, reached: int, during: int,
              stats: Any | None, openings: int | None) -> DependencyResult:
    """Fold a run's call log, the server counts and seawall's counters into one row set."""
    outcomes, latencies = log.snapshot()
    return DependencyResult(
        dependency=dependency, point=point, calls=sum(outcomes.values()), ok=outcomes[OK],
        fallbacks=outcomes[FALLBACK], errors=outcomes[ERROR],
        p50_ms=round(percentile(latencies, 0.50) * 1000, 1),
        p99_ms=round(percentile(latencies, 0.99) * 1000, 1),
        reached=reached, reached_during_outage=during,
        retries=None if stats is None else int(stats.retries),
        breaker_openings=openings,
        rejected=None if stats is None else int(stats.rejected),
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
    ("answered by a fallback", "fallbacks"),
    ("errors seen by the caller", "errors"),
    ("latency p50", "p50_ms"),
    ("latency p99", "p99_ms"),
    ("requests that reached it", "reached"),
    ("  ...during the outage", "reached_during_outage"),
    ("retries", "retries"),
    ("breaker openings", "breaker_openings"),
    ("calls refused by the breaker", "rejected"),
)


def _cell(result: DependencyResult, key: str) -> str:
    if key == "success":
        return _pct(result.ok, result.calls)
    if key in ("p50_ms", "p99_ms"):
        return _num(float(getattr(result, key)), " ms")
    return _num(getattr(result, key))


def comparison_table(title: str, bare: DependencyResult, guarded: DependencyResult,
                     *, plain: bool) -> Table:
    """The side-by-side table of one dependency: bare clients against seawall."""
    table = Table(title=title, title_justify="left", box=box.ASCII if plain else box.ROUNDED,
                  show_edge=True, pad_edge=True, expand=False)
    table.add_column("", no_wrap=True)
    table.add_column("bare", justify="right", no_wrap=True)
    table.add_column("seawall", justify="right", no_wrap=True,
                     style=None if plain else "bold green")
    for label, key in ROWS:
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
    bar.append(f"{phase:<18}", style="bold")
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


def service_table(rows: Sequence[Mapping[str, Any]], memory: Mapping[str, Mapping[str, int]],
                  *, plain: bool) -> Table:
    """The metrics read back through the service, next to the in-process counters."""
    table = Table(title="seawall's metrics, read back through the metrics service",
                  title_justify="left", box=box.ASCII if plain else box.ROUNDED)
    for name in ("point", "calls", "successes", "failures", "retries", "rejected",
                 "p50", "p99", "breaker", "matches in-process"):
        table.add_column(name, justify="left" if name in ("point", "breaker") else "right")
    for row in rows:
        mem = memory.get(str(row["point"]), {})
        same = all(int(row.get(k, -1)) == mem.get(k) for k in ("calls", "retries", "rejected"))
        table.add_row(
            str(row["point"]), f"{int(row['calls']):,}", f"{int(row['successes']):,}",
            f"{int(row['failures']):,}", f"{int(row['retries']):,}", f"{int(row['rejected']):,}",
            f"{float(row['p50_ms']):.1f} ms", f"{float(row['p99_ms']):.1f} ms",
            str(row.get("breaker_state", "")), "yes" if same else "NO",
        )
    return table


def make_console(*, plain: bool | None = None) -> Console:
    """A console on stdout; plain (no colour, no live view) when stdout is not a terminal."""
    console = Console(highlight=False)
    if plain is None:
        plain = not console.is_terminal
    if plain:
        console = Console(highlight=False, no_color=True, force_terminal=False, width=100,
                          emoji=False)
    return console
