"""Per-process breakdowns for the dashboard and Prometheus: sums, live limits, breaker states.

:class:`StoreBreakdowns` sums the counters by any of point, operation,
host and pid (optionally per time step), reads the bulkhead's latest
concurrency limit of each key, and the latest breaker transition of each
process. Not compiled ahead: these run a few times per refresh.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, func, select, union_all

from ._schema import COUNT_TABLES, DAY, HOST_LENGTH, MINUTE, VALUES, transitions
from ._store_base import StoreBase
from ._store_query import (
    check_name,
    safe_float,
    split_minutes,
    step_rows,
)
from ._types import MetricsQueryError, Transition


class StoreBreakdowns(StoreBase):
    """The dashboard's and the Prometheus collector's reads of :class:`seawall.storage.Store`."""

    BREAKDOWN_COLUMNS = ("point", "operation", "host", "pid")

    def breakdown(self, by: Sequence[str] = ("point",), *, point: str | None = None,
                  host: str | None = None, pid: int | None = None, start: float | None = None,
                  end: float | None = None, step: float | None = None,
                  ) -> list[tuple[tuple[Any, ...], list[float]]]:
        """Aggregate vectors (see ``_schema.VALUES``) summed per distinct value of ``by``.

        ``by`` names columns of :attr:`BREAKDOWN_COLUMNS`; each result is
        ``(key, vector)`` with ``key`` holding their values in that order.
        ``point``, ``host`` and ``pid`` restrict the rows. Without ``start``
        it covers everything stored (the day rollups: totals since the
        oldest row kept). With ``start`` it covers the minutes from the one
        holding ``start`` to the one holding the instant before ``end``
        (default: now). With ``step`` (seconds, a multiple of 60) as well,
        the key ends with the step index ``k``: step ``k`` starts at
        ``start`` rounded down to its minute plus ``k * step``; empty steps
        are left out. Thread-safe; not cached (a few queries per refresh).
        """
        columns = tuple(by)
        unknown = [c for c in columns if c not in self.BREAKDOWN_COLUMNS]
        if unknown or len(set(columns)) != len(columns) or (not columns and step is None):
            raise MetricsQueryError(f"by must be distinct names among {self.BREAKDOWN_COLUMNS} "
                                    f"(at least one without a step), got {by!r}")
        point = check_name("point", point)
        _check_process(host, pid)
        ratio = 0
        pieces: list[tuple[int, int | None, int | None]] = [(DAY, None, None)]
        if start is not None or step is not None or end is not None:
            if start is None:
                raise MetricsQueryError("start is required with end or step")
            start = safe_float("start", start)
            end = time.time() if end is None else safe_float("end", end)
            if start < 0:
                raise MetricsQueryError(f"start must be >= 0 (epoch seconds), got {start!r}")
            if end <= start:
                raise MetricsQueryError(f"start ({start!r}) must be before end ({end!r})")
            first, last = int(start // 60), math.ceil(end / 60)
            if step is None:
                pieces = list(split_minutes(first, last))
            else:
                step = safe_float("step", step)
                if step <= 0 or step % 60 != 0:
                    raise MetricsQueryError(f"step must be a multiple of 60 seconds, got {step!r}")
                step_minutes = int(step // 60)
                count = math.ceil((last - first) / step_minutes)
                rows_width, rows_lo, rows_hi, ratio = step_rows(first, count, step_minutes)
                pieces = [(rows_width, rows_lo, rows_hi)]
        parts = []
        for width, lo, hi in pieces:
            t = COUNT_TABLES[width]
            cond = []
            if lo is not None and hi is not None:
                cond += [t.c.bucket >= lo, t.c.bucket < hi]
            for name, value in (("point", point), ("host", host), ("pid", pid)):
                if value is not None:
                    cond.append(t.c[name] == value)
            keys = [t.c[c].label(c) for c in columns]
            if ratio:
                keys.append(((t.c.bucket - lo) // ratio).label("step_index"))
            parts.append(select(*keys, *(self._column(t, c) for c in VALUES)).where(*cond))
        if not parts:
            return []
        sub = (parts[0] if len(parts) == 1 else union_all(*parts)).subquery()
        group = [sub.c[c] for c in columns] + ([sub.c.step_index] if ratio else [])
        stmt = select(*group, *(func.sum(sub.c[c]) for c in VALUES)).group_by(*group)
        if not self._ready:
            self.ensure_schema()
        n = len(group)
        with self.engine.connect() as conn:
            return [(tuple(row[:n]), [v or 0 for v in row[n:]]) for row in conn.execute(stmt)]

    def latest_limits(self, by: Sequence[str] = ("point", "host"), *, host: str | None = None,
                      pid: int | None = None) -> list[tuple[tuple[Any, ...], int, float]]:
        """The bulkhead's limit of each distinct ``by`` (names among point, host, pid), latest.

        Each result is ``(key, minute, mean)``: the last minute (since the epoch)
        in which the rows of that key sampled a limit, and the mean of those
        samples (per process; see :class:`Stats.concurrency_limit`). A level for a
        gauge, so only the processes that sampled in that latest minute count:
        without ``pid`` in ``by``, a process whose samples stopped earlier (it
        ended, or went quiet) is not averaged in with the live ones; with
        ``pid``, each process keeps its last value until the minute rows are
        pruned. ``host`` and ``pid`` restrict the rows and are checked as
        :meth:`breakdown` checks them. An older read-only store (no limit
        columns) has none.
        """
        columns = tuple(by)
        if not columns or any(c not in ("point", "host", "pid") for c in columns) \
                or len(set(columns)) != len(columns):
            raise MetricsQueryError(f"by must be distinct names among ('point', 'host', 'pid'), "
                                    f"got {by!r}")
        _check_process(host, pid)
        if not self._ready:
            self.ensure_schema()
        if "limit_samples" in self._absent:
            return []
        t = COUNT_TABLES[MINUTE]
        cond = [t.c.limit_samples > 0]
        if host is not None:
            cond.append(t.c.host == host)
        if pid is not None:
            cond.append(t.c.pid == pid)
        keys = [t.c[c] for c in columns]
        last = (select(*keys, func.max(t.c.bucket).label("last")).where(*cond)
                .group_by(*keys).subquery())
        joined = t.join(last, and_(*(t.c[c] == last.c[c] for c in columns),
                                   t.c.bucket == last.c["last"]))
        stmt = (select(*keys, last.c["last"], func.sum(t.c.limit_sum),
                       func.sum(t.c.limit_samples))
                .select_from(joined).where(*cond).group_by(*keys, last.c["last"]))
        n = len(columns)
        with self.engine.connect() as conn:
            return [(tuple(row[:n]), int(row[n]), float(row[n + 1]) / float(row[n + 2]))
                    for row in conn.execute(stmt)]

    def last_transitions(self, point: str | None = None, *,
                         before: float | None = None) -> list[Transition]:
        """The latest breaker transition of each process (point, host, pid), by those keys.

        ``before`` (epoch seconds) only considers transitions earlier than
        that: the state each process's breaker was in at that moment.
        """
        point = check_name("point", point)
        cond = []
        if point is not None:
            cond.append(transitions.c.point == point)
        if before is not None:
            cond.append(transitions.c.time < safe_float("before", before))
        latest = (select(func.max(transitions.c.id).label("last_id")).where(*cond)
                  .group_by(transitions.c.point, transitions.c.host, transitions.c.pid)
                  .subquery())
        stmt = (select(transitions).join(latest, transitions.c.id == latest.c.last_id)
                .order_by(transitions.c.point, transitions.c.host, transitions.c.pid))
        return self._transitions(stmt)


def _check_process(host: str | None, pid: int | None) -> None:
    """Validate the optional ``host`` and ``pid`` a breakdown is restricted to."""
    if host is not None and (not isinstance(host, str) or len(host) > HOST_LENGTH):
        raise MetricsQueryError(f"host must be a string of at most {HOST_LENGTH} characters, "
                                f"got {host!r}")
    if pid is not None and (not isinstance(pid, int) or isinstance(pid, bool)):
        raise MetricsQueryError(f"pid must be an int, got {pid!r}")
