"""Writing a process's flushed counters: one transaction per batch, rollups included.

:class:`StoreWrites` adds each ``(point, operation, minute)`` vector to the
minute, hour and day rows of its host and pid (an upsert on SQLite and
PostgreSQL, update-then-insert elsewhere, safe because each process writes
only its own rows), widens the operations' first/last seen, and appends
breaker transitions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, Table, and_, case, insert, update

from seawall import BreakerTransition

from ._schema import (
    COUNT_TABLES,
    DAY,
    HOUR,
    MINUTE,
    NAME_LENGTH,
    VALUES,
    WIDTH,
    operations,
    transitions,
)
from ._store_base import StoreBase

_CHUNK = 200  # rows per executemany: keeps bind parameters under every driver's limit

Key = tuple[str, str, int]  # (point, operation, minute since the epoch)


class StoreWrites(StoreBase):
    """The writing half of :class:`seawall.storage.Store`."""

    def write(self, counts: Mapping[Key, Sequence[float]],
              breaker_transitions: Sequence[BreakerTransition] = (), *,
              host: str, pid: int) -> None:
        """Add one batch of a process's aggregates, all in one transaction.

        ``counts`` maps ``(point, operation, minute)`` to an aggregate vector
        (see ``_schema.VALUES``); the same deltas are added to the minute,
        hour and day rollups of that ``host`` and ``pid``.
        """
        if not counts and not breaker_transitions:
            return
        if not self._ready:
            self.ensure_schema()
        rollups: dict[int, dict[Key, list[float]]] = {MINUTE: {}, HOUR: {}, DAY: {}}
        seen: dict[tuple[str, str], tuple[float, float]] = {}
        for (long_point, long_operation, minute), vec in counts.items():
            point, operation = long_point[:NAME_LENGTH], long_operation[:NAME_LENGTH]
            for width, rows in rollups.items():
                key = (point, operation, minute // width)
                row = rows.get(key)
                if row is None:
                    rows[key] = list(vec)
                else:
                    for i in range(WIDTH):
                        row[i] += vec[i]
            t = minute * 60.0
            first, last = seen.get((point, operation), (t, t))
            seen[(point, operation)] = (min(first, t), max(last, t + 59.0))
        with self._write_connection() as conn, conn.begin():
            for width, rows in rollups.items():
                if rows:
                    self._add_counts(conn, COUNT_TABLES[width], rows, host, pid)
            if seen:
                self._touch_operations(conn, seen)
            if breaker_transitions:
                conn.execute(insert(transitions), [
                    {"point": t.point[:NAME_LENGTH], "from_state": t.from_state,
                     "to_state": t.to_state, "reason": t.reason[:NAME_LENGTH], "time": t.time,
                     "host": host, "pid": pid}
                    for t in breaker_transitions
                ])

    def _upsert(self, table: Table, keys: Sequence[str], set_: Any) -> Any:
        from sqlalchemy.dialects import postgresql, sqlite

        stmt: Any = (sqlite.insert(table) if self.dialect == "sqlite"
                     else postgresql.insert(table))
        return stmt.on_conflict_do_update(index_elements=list(keys), set_=set_(table, stmt.excluded))

    def _add_counts(self, conn: Connection, table: Table, rows: Mapping[Key, Sequence[float]],
                    host: str, pid: int) -> None:
        params = [
            {"point": p, "operation": o, "bucket": b, "host": host, "pid": pid,
             **dict(zip(VALUES, vec, strict=True))}
            for (p, o, b), vec in sorted(rows.items())  # one lock order for every writer
        ]
        if self.dialect in ("sqlite", "postgresql"):
            stmt = self._upserts.get(table.name)
            if stmt is None:
                stmt = self._upsert(table, ("point", "bucket", "operation", "host", "pid"),
                                    lambda t, ex: {c: t.c[c] + ex[c] for c in VALUES})
                self._upserts[table.name] = stmt
            for i in range(0, len(params), _CHUNK):
                conn.execute(stmt, params[i:i + _CHUNK])
            return
        # Portable path: each (host, pid) row has a single writer, so update-then-insert is safe.
        for row in params:
            where = and_(*(table.c[k] == row[k]
                           for k in ("point", "bucket", "operation", "host", "pid")))
            done = conn.execute(update(table).where(where).values(
                {c: table.c[c] + row[c] for c in VALUES}))
            if done.rowcount == 0:
                conn.execute(insert(table).values(row))

    def _touch_operations(self, conn: Connection,
                          seen: Mapping[tuple[str, str], tuple[float, float]]) -> None:
        params = [{"point": p, "operation": o, "first_seen": f, "last_seen": la}
                  for (p, o), (f, la) in sorted(seen.items())]
        if self.dialect in ("sqlite", "postgresql"):
            stmt = self._upserts.get("seawall_operations")
            if stmt is None:
                stmt = self._upsert(operations, ("point", "operation"), lambda t, ex: {
                    "first_seen": case((ex.first_seen < t.c.first_seen, ex.first_seen),
                                       else_=t.c.first_seen),
                    "last_seen": case((ex.last_seen > t.c.last_seen, ex.last_seen),
                                      else_=t.c.last_seen),
                })
                self._upserts["seawall_operations"] = stmt
            conn.execute(stmt, params)
            return
        for row in params:
            where = and_(operations.c.point == row["point"],
                         operations.c.operation == row["operation"])
            done = conn.execute(update(operations).where(where).values(last_seen=row["last_seen"]))
            if done.rowcount == 0:
                conn.execute(insert(operations).values(row))
