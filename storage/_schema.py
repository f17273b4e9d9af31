"""The store's tables (SQLAlchemy Core) and the layout of one aggregate row.

Counts live in three tables of the same shape, one row per (point,
bucket, operation, host, pid): ``seawall_minute`` (bucket = minutes since
the epoch), ``seawall_hour`` and ``seawall_day``. A writer adds the same
deltas to all three in one transaction, so a summary over 30 days reads
a few dozen day and hour rows instead of 43,200 minute rows. Each process
writes only its own rows (host and pid are part of the key): writers never
contend for a row, and the totals of many processes are plain sums.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    text,
)

from seawall import Category

from ._histogram import BUCKETS

NAME_LENGTH = 200
HOST_LENGTH = 255

# The counters of schema version 1, in the order of the aggregate vector.
COUNTERS_1 = (
    "calls", "successes", "failures", "retries", "rejected", "cancelled", "fallbacks", "timeouts",
    "failed_transient", "failed_timeout", "failed_rate_limited", "failed_unavailable",
    "failed_permanent",
    "refused_breaker", "refused_bulkhead", "refused_budget", "refused_deadline",
)
# what schema version 2 added to each counts table
ADDED_IN_2 = ("injected_calls", "injected_failures")
# what schema version 3 added: refusals by a RateLimit and by a server's pause, attempts that
# waited for either, hedges started and hedges that answered, and the bulkhead's limit as a
# level: ``limit_sum`` / ``limit_samples`` is the mean of the limit sampled at each flush
ADDED_IN_3 = ("refused_rate_limit", "refused_paused", "waits_paused", "waits_rate_limit",
              "hedges_sent", "hedges_won", "limit_sum", "limit_samples")
#: the columns each schema version added, for the in-place upgrade of an older store
ADDED = {2: ADDED_IN_2, 3: ADDED_IN_3}
SCHEMA_VERSION = max(ADDED)
"""1: the first layout; 2: adds ``injected_calls`` and ``injected_failures`` (fault injection,
counted apart from real calls); 3: adds the refusals of rate limiting and server pacing, the
waits, the hedges and the bulkhead's limit (see :data:`ADDED`). What a version added is
added in place to an older store (``Store.ensure_schema``)."""
# The aggregate vector: these counters (each version's appended), the latency sum, the histogram.
COUNTERS = (*COUNTERS_1, *(name for names in ADDED.values() for name in names))
#: counters that are a :class:`Stats` field of the same name, as they are (a new plain
#: counter is one column added to its version's tuple and one name here)
PLAIN = ("calls", "successes", "failures", "retries", "rejected", "cancelled", "fallbacks",
         "timeouts", "injected_calls", "injected_failures", "hedges_sent", "hedges_won")
FAILURE_CATEGORIES = ("transient", "timeout", "rate_limited", "unavailable", "permanent")
REFUSAL_REASONS = ("breaker", "bulkhead", "budget", "deadline", "rate_limit", "paused")
WAIT_REASONS = ("paused", "rate_limit")
HISTOGRAM = tuple(f"h{i:02d}" for i in range(BUCKETS))
VALUES = (*COUNTERS, "latency_sum", *HISTOGRAM)
WIDTH = len(VALUES)

CALLS, SUCCESSES, FAILURES, RETRIES, REJECTED, CANCELLED, FALLBACKS, TIMEOUTS = range(8)
FAILED = {Category(name): COUNTERS.index(f"failed_{name}") for name in FAILURE_CATEGORIES}
REFUSED = {name: COUNTERS.index(f"refused_{name}") for name in REFUSAL_REASONS}
INJECTED_CALLS = COUNTERS.index("injected_calls")
INJECTED_FAILURES = COUNTERS.index("injected_failures")
WAITED = {name: COUNTERS.index(f"waits_{name}") for name in WAIT_REASONS}
HEDGES_SENT = COUNTERS.index("hedges_sent")
HEDGES_WON = COUNTERS.index("hedges_won")
LIMIT_SUM = COUNTERS.index("limit_sum")
LIMIT_SAMPLES = COUNTERS.index("limit_samples")
LATENCY_SUM = len(COUNTERS)
H0 = LATENCY_SUM + 1

MINUTE, HOUR, DAY = 1, 60, 1440  # bucket widths in minutes

metadata = MetaData()

schema_version = Table(
    "seawall_schema_version", metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("applied_at", Float, nullable=False),
)


def _counts_table(name: str) -> Table:
    return Table(
        name, metadata,
        Column("point", String(NAME_LENGTH), nullable=False),
        Column("bucket", BigInteger, nullable=False),
        Column("operation", String(NAME_LENGTH), nullable=False),
        Column("host", String(HOST_LENGTH), nullable=False),
        Column("pid", BigInteger, nullable=False),
        *(Column(c, BigInteger, nullable=False, server_default=text("0")) for c in COUNTERS),
        Column("latency_sum", Float, nullable=False, server_default=text("0")),
        *(Column(c, BigInteger, nullable=False, server_default=text("0")) for c in HISTOGRAM),
        PrimaryKeyConstraint("point", "bucket", "operation", "host", "pid"),
        Index(f"ix_{name}_bucket", "bucket"),
    )


minute_counts = _counts_table("seawall_minute")
hour_counts = _counts_table("seawall_hour")
day_counts = _counts_table("seawall_day")
COUNT_TABLES = {MINUTE: minute_counts, HOUR: hour_counts, DAY: day_counts}

operations = Table(
    "seawall_operations", metadata,
    Column("point", String(NAME_LENGTH), nullable=False),
    Column("operation", String(NAME_LENGTH), nullable=False),
    Column("first_seen", Float, nullable=False),
    Column("last_seen", Float, nullable=False),
    PrimaryKeyConstraint("point", "operation"),
)

transitions = Table(
    "seawall_transitions", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("point", String(NAME_LENGTH), nullable=False),
    Column("from_state", String(32), nullable=False),
    Column("to_state", String(32), nullable=False),
    Column("reason", String(NAME_LENGTH), nullable=False),
    Column("time", Float, nullable=False),
    Column("host", String(HOST_LENGTH), nullable=False),
    Column("pid", BigInteger, nullable=False),
    Index("ix_seawall_transitions_point_time", "point", "time"),
    Index("ix_seawall_transitions_time", "time"),
)
