"""The JSON the dashboard reads (``/api/points``, ``/api/dashboard``), built from a :class:`Store`.

Plain functions from query parameters to JSON-ready dicts; the HTTP
layer (``_http``) only routes and encodes. Bad parameters raise
:class:`MetricsQueryError` with a message naming the parameter (the server
answers 400 with it). See docs/dashboard.md for the format.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

from ._schema import HOST_LENGTH, WIDTH
from ._store import Store, check_name
from ._types import MetricsQueryError, Transition, stats_fields

MIN_WINDOW = 60.0
MAX_WINDOW = 7 * 86400.0
DEFAULT_WINDOW = 3600.0
MAX_POINTS_PER_CHART = 300
STEPS = (60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)
MAX_LANES = 8  # breaker timelines drawn per point; the rest are counted
MAX_TRANSITIONS = 5000  # per point and window; a flapping breaker beyond is cut (and said so)
_PAGE = 1000


def _one(params: Mapping[str, Sequence[str]], name: str) -> str | None:
    values = params.get(name)
    if not values:
        return None
    if len(values) > 1:
        raise MetricsQueryError(f"{name} given {len(values)} times; give it once")
    return values[0]


def _seconds(params: Mapping[str, Sequence[str]], name: str) -> float | None:
    text = _one(params, name)
    if text is None or text == "":
        return None
    try:
        value = float(text)
    except ValueError:
        raise MetricsQueryError(f"{name} must be a number of seconds, got {text!r}") from None
    if not math.isfinite(value):
        raise MetricsQueryError(f"{name} must be finite, got {text!r}")
    return value


def _host(params: Mapping[str, Sequence[str]]) -> str | None:
    host = _one(params, "host") or None
    if host is not None and len(host) > HOST_LENGTH:
        raise MetricsQueryError(f"host must be at most {HOST_LENGTH} characters, got {len(host)}")
    return host


def auto_step(window: float) -> int:
    """The smallest step of :data:`STEPS` that draws ``window`` in at most 300 points."""
    return next((s for s in STEPS if window / s <= MAX_POINTS_PER_CHART), STEPS[-1])


def points(store: Store) -> dict[str, Any]:
    """``/api/points``: every point the store knows, its operations, and every host."""
    hosts = sorted({str(key[0]) for key, _ in store.breakdown(("host",))})
    return {
        "points": [{"name": p.name, "operations": list(p.operations),
                    "first_seen": p.first_seen, "last_seen": p.last_seen}
                   for p in store.points()],
        "hosts": hosts,
    }


def dashboard(store: Store, params: Mapping[str, Sequence[str]],
              now: float | None = None) -> dict[str, Any]:
    """``/api/dashboard``: each point's series, totals and breaker timelines over a window.

    Parameters (each optional): ``window`` seconds (60 .. 7 days, default
    3600), ``step`` seconds (a multiple of 60 giving at most 1440 points;
    default: see :func:`auto_step`), ``end`` epoch seconds (default now:
    live), ``point`` and ``host`` filters.
    """
    for name in params:
        if name not in ("window", "step", "end", "point", "host"):
            raise MetricsQueryError(f"unknown parameter {name!r}; known: window, step, end, "
                                    "point, host")
    window = _seconds(params, "window")
    window = DEFAULT_WINDOW if window is None else window
    if not MIN_WINDOW <= window <= MAX_WINDOW:
        raise MetricsQueryError(f"window must be between {MIN_WINDOW:.0f} and {MAX_WINDOW:.0f} "
                                f"seconds, got {window:g}")
    given_step = _seconds(params, "step")
    step = auto_step(window) if given_step is None else given_step
    if step <= 0 or step % 60 != 0:
        raise MetricsQueryError(f"step must be a positive multiple of 60 seconds, got {step:g}")
    count = math.ceil(window / step)
    if count > 1440:
        raise MetricsQueryError(f"window / step gives {count} points; at most 1440 "
                                "(widen the step)")
    clock = time.time() if now is None else now
    end = _seconds(params, "end")
    live = end is None
    end = clock if end is None else end
    point = check_name("point", _one(params, "point"))
    host = _host(params)

    # Steps are aligned on multiples of the step; the last one holds the instant before end.
    last_start = (math.ceil(end / step) - 1) * step
    first = last_start - (count - 1) * step
    stop = last_start + step
    if first < 0:
        raise MetricsQueryError(f"end must be epoch seconds after the window's start, got {end:g}")
    times = [first + k * step for k in range(count)]
    elapsed = min(step, max(1.0, end - last_start))

    rows = store.breakdown(("point",), point=point, host=host, start=first, end=stop, step=step)
    by_point: dict[str, dict[int, list[float]]] = {}
    for (name, k), vec in rows:
        if 0 <= int(k) < count:
            by_point.setdefault(str(name), {})[int(k)] = vec
    window_transitions = _transitions(store, point, host, times[0], min(stop, end))
    names = sorted(set(by_point) | set(window_transitions))
    processes = _processes(store, point, host, first, stop)
    before = {(t.point, t.host, t.pid): t.to_state
              for t in store.last_transitions(point, before=first)}
    out_points = []
    for name in names:
        steps = by_point.get(name, {})
        series = _series(steps, count, step, elapsed)
        total = [0.0] * WIDTH
        for vec in steps.values():
            for i in range(WIDTH):
                total[i] += vec[i]
        out_points.append({
            "name": name,
            "totals": _totals(total),
            "series": series,
            "breaker": _breaker(processes.get(name, set()),
                                window_transitions.get(name, ([], False)),
                                {(h, pid): state for (p, h, pid), state in before.items()
                                 if p == name}),
        })
    return {
        "window": window, "step": step, "start": first, "end": stop, "now": clock,
        "live": live, "point": point, "host": host, "t": times,
        "points": out_points,
    }


#: one step of a series without calls (also the names of the series, in their order)
_EMPTY_STEP: Mapping[str, Any] = {
    "calls_per_second": 0.0, "success_rate": None, "p50_ms": None, "p99_ms": None,
    "retries": 0, "rejections": 0, "waits": 0, "hedges": 0, "concurrency_limit": None,
}


def _step(vec: Sequence[float], span: float) -> dict[str, Any]:
    """One step of a series: its aggregate vector over ``span`` seconds."""
    f = stats_fields(vec)
    ran = f["successes"] + f["failures"]
    return {
        "calls_per_second": round(f["calls"] / span, 4),
        "success_rate": round(f["successes"] / f["calls"], 5) if f["calls"] else None,
        "p50_ms": round(f["p50_ms"], 4) if ran else None,
        "p99_ms": round(f["p99_ms"], 4) if ran else None,
        "retries": f["retries"],
        "rejections": sum(f["rejections_by_reason"].values()),
        "waits": sum(f["waits_by_reason"].values()),
        "hedges": f["hedges_sent"],
        # a level, not a count: null where no process sampled a limit (no bulkhead)
        "concurrency_limit": round(f["concurrency_limit"], 4) or None,
    }


def _series(steps: Mapping[int, Sequence[float]], count: int, step: float,
            elapsed: float) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {name: [] for name in _EMPTY_STEP}
    for k in range(count):
        vec = steps.get(k)
        row = _EMPTY_STEP if vec is None else _step(vec, elapsed if k == count - 1 else step)
        for name, value in row.items():
            out[name].append(value)
    return out


def _totals(vec: Sequence[float]) -> dict[str, Any]:
    f = stats_fields(vec)
    return {
        "calls": f["calls"], "successes": f["successes"], "failures": f["failures"],
        "success_rate": f["successes"] / f["calls"] if f["calls"] else None,
        "retries": f["retries"], "rejected": f["rejected"],
        "rejections": sum(f["rejections_by_reason"].values()),
        "rejections_by_reason": f["rejections_by_reason"],
        "failures_by_category": f["failures_by_category"],
        "p50_ms": f["p50_ms"], "p95_ms": f["p95_ms"], "p99_ms": f["p99_ms"],
        "mean_ms": f["mean_ms"],
        "waits_by_reason": f["waits_by_reason"], "hedges_sent": f["hedges_sent"],
        "hedges_won": f["hedges_won"], "concurrency_limit": f["concurrency_limit"],
    }


def _transitions(store: Store, point: str | None, host: str | None, start: float,
                 end: float) -> dict[str, tuple[list[Transition], bool]]:
    """Transitions in ``[start, end)`` per point, in order; True when cut at the bound."""
    found: dict[str, tuple[list[Transition], bool]] = {}
    after = 0
    seen = 0
    while True:
        page = store.transitions(point, start=start, end=end, limit=_PAGE, after=after)
        for t in page:
            if host is None or t.host == host:
                found.setdefault(t.point, ([], False))[0].append(t)
        seen += len(page)
        if len(page) < _PAGE:
            return found
        after = page[-1].id
        if seen >= MAX_TRANSITIONS:
            return {name: (ts, True) for name, (ts, _) in found.items()}


def _processes(store: Store, point: str | None, host: str | None, start: float,
               end: float) -> dict[str, set[tuple[str, int]]]:
    """The processes (host, pid) that recorded calls of each point in the window."""
    out: dict[str, set[tuple[str, int]]] = {}
    for (name, h, pid), _ in store.breakdown(("point", "host", "pid"), point=point, host=host,
                                             start=start, end=end):
        out.setdefault(str(name), set()).add((str(h), int(pid)))
    return out


def _breaker(callers: set[tuple[str, int]], moved: tuple[list[Transition], bool],
             before: Mapping[tuple[str, int], str]) -> dict[str, Any]:
    """One timeline (lane) per process: its state at the window's start, then its moves."""
    transitions, cut = moved
    lanes: dict[tuple[str, int], dict[str, Any]] = {}
    for t in transitions:
        lane = lanes.get((t.host, t.pid))
        if lane is None:
            lane = lanes[(t.host, t.pid)] = {"host": t.host, "pid": t.pid,
                                             "initial": t.from_state, "transitions": []}
        lane["transitions"].append({"time": t.time, "from": t.from_state, "to": t.to_state,
                                    "reason": t.reason})
    for key in callers:
        if key not in lanes:
            lanes[key] = {"host": key[0], "pid": key[1],
                          "initial": before.get(key, "closed"), "transitions": []}
    ordered = sorted(lanes.values(), key=lambda ln: (-len(ln["transitions"]), ln["host"],
                                                     ln["pid"]))
    for lane in ordered:
        moves = lane["transitions"]
        lane["state"] = moves[-1]["to"] if moves else lane["initial"]
    states: dict[str, int] = {}
    for lane in ordered:
        states[lane["state"]] = states.get(lane["state"], 0) + 1
    shown = sorted(ordered[:MAX_LANES], key=lambda ln: (ln["host"], ln["pid"]))
    return {"lanes": shown, "hidden_lanes": max(0, len(ordered) - MAX_LANES),
            "states": states, "truncated": cut}
