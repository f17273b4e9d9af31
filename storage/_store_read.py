"""Reading the store for the gRPC service and the CLI: points, summaries, series, transitions.

:class:`StoreReads` answers the few query shapes the metrics service runs
often; each is compiled once per dialect and reused. Sums over a time
range read the fewest rows of the day, hour and minute rollups
(:func:`._store_query.split_minutes`). The per-process breakdowns of the
dashboard and Prometheus are in :mod:`._store_breakdown`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import BigInteger, String, bindparam, func, select, union_all

from ._schema import COUNT_TABLES, VALUES, WIDTH, operations, transitions
from ._store_base import StoreBase
from ._store_query import (
    DEFAULT_PAGE,
    DEFAULT_WINDOW,
    MAX_PAGE,
    MAX_TIME,
    check_name,
    check_time,
    check_window,
    safe_float,
    split_minutes,
    step_rows,
)
from ._types import MetricsQueryError, PointInfo, SeriesBucket, Summary, Transition, stats_fields


class StoreReads(StoreBase):
    """The service's reads of :class:`seawall.storage.Store`."""

    def points(self) -> list[PointInfo]:
        """Every point seen, sorted by name, with its operations."""
        stmt = select(operations).order_by(operations.c.point, operations.c.operation)
        if not self._ready:
            self.ensure_schema()
        found: dict[str, tuple[list[str], float, float]] = {}
        with self.engine.connect() as conn:
            for row in conn.execute(stmt):
                ops, first, last = found.get(row.point, ([], math.inf, 0.0))
                ops.append(row.operation)
                found[row.point] = (ops, min(first, row.first_seen), max(last, row.last_seen))
        return [PointInfo(name=name, operations=tuple(ops), first_seen=first, last_seen=last)
                for name, (ops, first, last) in found.items()]

    def _compiled(self, key: Any, build: Any) -> Any:
        """A statement compiled once for this dialect (read queries are few shapes, run often)."""
        compiled = self._reads.get(key)
        if compiled is None:
            if not self._ready:
                self.ensure_schema()  # an older read-only store reads some columns as zeros
            compiled = self._reads[key] = build().compile(dialect=self.engine.dialect)
        return compiled

    def _fetch(self, compiled: Any, values: dict[str, Any]) -> list[Any]:
        params = compiled.construct_params(values)
        args: Any = (tuple(params[k] for k in compiled.positiontup) if compiled.positional
                     else params)
        if not self._ready:
            self.ensure_schema()
        with self.engine.connect() as conn:
            return list(conn.exec_driver_sql(compiled.string, args))

    def _sums(self, pieces: Sequence[tuple[int, int, int]], point: str | None,
              operation: str | None, step: tuple[int, int] | None = None,
              ) -> list[tuple[Any, list[float]]]:
        """Sum the value columns over table pieces, by point (or by step: ``(base, ratio)``)."""
        if not pieces:
            return []
        shape = (tuple(w for w, _, _ in pieces), point is not None, operation is not None,
                 step is not None)

        def build() -> Any:
            parts = []
            for i, width in enumerate(shape[0]):
                t = COUNT_TABLES[width]
                cond = [t.c.bucket >= bindparam(f"lo{i}", type_=BigInteger),
                        t.c.bucket < bindparam(f"hi{i}", type_=BigInteger)]
                if point is not None:
                    cond.append(t.c.point == bindparam("point", type_=String))
                if operation is not None:
                    cond.append(t.c.operation == bindparam("operation", type_=String))
                key = t.c.point if step is None else (
                    (t.c.bucket - bindparam("base", type_=BigInteger))
                    // bindparam("ratio", type_=BigInteger))
                parts.append(select(key.label("k"), *(self._column(t, c) for c in VALUES))
                             .where(*cond))
            sub = (parts[0] if len(parts) == 1 else union_all(*parts)).subquery()
            return select(sub.c.k, *(func.sum(sub.c[c]) for c in VALUES)).group_by(sub.c.k)

        values: dict[str, Any] = {"point": point, "operation": operation}
        for i, (_, lo, hi) in enumerate(pieces):
            values[f"lo{i}"], values[f"hi{i}"] = lo, hi
        if step is not None:
            values["base"], values["ratio"] = step
        rows = self._fetch(self._compiled(("sums", *shape), build), values)
        return [(row[0], [v or 0 for v in row[1:]]) for row in rows]

    def breaker_states(self, point: str | None = None) -> dict[str, str]:
        """The state each point's breaker last moved to (any process)."""
        def build() -> Any:
            latest = select(transitions.c.point, func.max(transitions.c.id).label("last_id"))
            if point is not None:
                latest = latest.where(transitions.c.point == bindparam("point", type_=String))
            sub = latest.group_by(transitions.c.point).subquery()
            return select(transitions.c.point, transitions.c.to_state).join(
                sub, transitions.c.id == sub.c.last_id)

        compiled = self._compiled(("states", point is not None), build)
        return {row[0]: row[1] for row in self._fetch(compiled, {"point": point})}

    def summary(self, point: str | None = None, *, operation: str | None = None,
                window: float = DEFAULT_WINDOW, now: float | None = None) -> list[Summary]:
        """Each point's totals over the last ``window`` seconds (0: one hour), by name.

        The window is resolved to whole minutes: it starts at the beginning
        of the minute ``window`` seconds ago and includes the current minute.
        ``point`` / ``operation`` restrict it; a point without calls in the
        window is left out.
        """
        point = check_name("point", point)
        operation = check_name("operation", operation)
        window = check_window(window)
        now = time.time() if now is None else now
        end_minute = int(now // 60)
        start_minute = int((now - window) // 60)
        pieces = split_minutes(start_minute, end_minute + 1)
        rows = self._sums(pieces, point, operation)
        states = self.breaker_states(point) if rows else {}
        return sorted(
            (Summary(point=name, breaker_state=states.get(name, "closed"), **stats_fields(vec))
             for name, vec in rows),
            key=lambda s: s.point,
        )

    def series(self, point: str, *, start: float, end: float, step: float,
               operation: str | None = None) -> list[SeriesBucket]:
        """``point``'s figures per ``step`` seconds (a multiple of 60) from ``start`` to ``end``.

        ``start`` is rounded down to its minute; every step up to ``end`` is
        returned, empty ones included.
        """
        name = check_name("point", point)
        if name is None:
            raise MetricsQueryError("point is required for a series")
        operation = check_name("operation", operation)
        start = check_time("start", start)
        end = check_time("end", end)
        step = safe_float("step", step)
        if not 0 < step <= MAX_TIME:
            raise MetricsQueryError(f"step must be > 0 seconds and at most {MAX_TIME:.0f}, "
                                    f"got {step!r}")
        if step % 60 != 0:
            raise MetricsQueryError(f"step must be a multiple of 60 seconds, got {step!r}")
        if end <= start:
            raise MetricsQueryError(f"start ({start!r}) must be before end ({end!r})")
        step_minutes = int(step // 60)
        first = int(start // 60)
        count = math.ceil((end - first * 60) / step)
        width, lo, hi, ratio = step_rows(first, count, step_minutes)
        rows = self._sums([(width, lo, hi)], name, operation, step=(lo, ratio))
        found = {int(k): vec for k, vec in rows}
        empty = [0] * WIDTH
        return [SeriesBucket(start=(first + k * step_minutes) * 60.0,
                             **stats_fields(found.get(k, empty)))
                for k in range(count)]

    def transitions(self, point: str | None = None, *, start: float | None = None,
                    end: float | None = None, limit: int = DEFAULT_PAGE,
                    after: int = 0) -> list[Transition]:
        """Breaker transitions in the order they were stored (ids above ``after``), at most ``limit``."""
        point = check_name("point", point)
        if not isinstance(limit, int) or isinstance(limit, bool) or not 0 < limit <= MAX_PAGE:
            raise MetricsQueryError(f"limit must be between 1 and {MAX_PAGE}, got {limit!r}")
        if not isinstance(after, int) or isinstance(after, bool) or not 0 <= after < 2**63:
            raise MetricsQueryError(f"after must be a transition id (an int >= 0), got {after!r}")
        cond = [transitions.c.id > after]
        if point is not None:
            cond.append(transitions.c.point == point)
        if start is not None:
            cond.append(transitions.c.time >= check_time("start", start))
        if end is not None:
            cond.append(transitions.c.time < check_time("end", end))
        if start is not None and end is not None and end < start:
            raise MetricsQueryError(f"start ({start!r}) must not be after end ({end!r})")
        stmt = select(transitions).where(*cond).order_by(transitions.c.id).limit(limit)
        return self._transitions(stmt)
