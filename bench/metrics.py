"""Benchmark of metrics recording, flushing and querying.

Run: ``.venv/bin/python bench/metrics.py`` (about 30 s; writes only to a temp dir).
Instructions per call, counted by callgrind: ``bench/metrics.py --instructions``
(see ``bench/metrics_instructions.py``).

1. Added cost per call of event recording: a decorated no-op function
   called through a point with no hooks, with a do-nothing hook (the
   core's cost of building and delivering the event records) and with the
   recorder running (its own hook plus its background aggregation).
2. Flush throughput: events per second from the recorder's queue into
   SQLite (aggregation and the write transaction).
3. Summary latency with 100 points and 30 days of data: one point and all
   points, p50/p99 over repeated queries. The day and hour rollups hold
   the full 30 days; minute rows are filled for the last 3 days (a
   30-day summary reads whole days, whole hours and at most ~2 hours of
   minute rows per point, by index, however many minute rows exist).
4. OpenTelemetry export (``seawall.otel_metrics`` into the SDK with an
   in-memory reader): the cost on the caller's thread over a do-nothing
   hook (its hook only queues the two events), and the cost of recording
   them into the SDK (what its background thread does), per call, with
   and without the duration histograms.
"""

from __future__ import annotations

import gc
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

# bench/ holds grpc.py and httpx.py: keep this folder off the import path
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import seawall  # noqa: E402
from seawall import CallEvent  # noqa: E402
from seawall._events import AttemptEvent  # noqa: E402
from seawall.storage import Recorder, Store  # noqa: E402

CALLS = 20_000
ROUNDS = 9


def _per_call_ns(fn: Callable[[], object], calls: int = CALLS) -> float:
    gc.collect()
    start = time.perf_counter_ns()
    for _ in range(calls):
        fn()
    return (time.perf_counter_ns() - start) / calls


def bench_recording(tmp: Path) -> dict[str, float]:
    """Interleaved rounds (the machine may be shared): best of each configuration."""
    point = seawall.IntegrationPoint("bench")

    @point
    def work() -> int:
        return 1

    def noop(_event: object) -> None:
        pass

    store = Store(f"sqlite:///{tmp / 'recording.db'}")
    recorder = Recorder(store, flush_interval=60.0)
    seawall.remove_hook(recorder.hook)
    best = {"baseline": float("inf"), "noop": float("inf"), "recorder": float("inf")}
    try:
        for _ in range(ROUNDS):
            best["baseline"] = min(best["baseline"], _per_call_ns(work))
            seawall.add_hook(noop)
            best["noop"] = min(best["noop"], _per_call_ns(work))
            seawall.remove_hook(noop)
            recorder.flush()  # start each round with an empty queue
            seawall.add_hook(recorder.hook)
            best["recorder"] = min(best["recorder"], _per_call_ns(work))
            seawall.remove_hook(recorder.hook)
        # the recorder's hook alone, on the two events of a successful call
        now = time.time()
        attempt = AttemptEvent("bench", "work", 1, None, 1e-6, now)
        call = CallEvent("bench", "work", None, 1, 1e-6, now, False, None)
        hook = recorder.hook
        hook_ns = float("inf")
        for _ in range(ROUNDS):
            recorder.flush()
            start = time.perf_counter_ns()
            for _ in range(CALLS):
                hook(attempt)
                hook(call)
            hook_ns = min(hook_ns, (time.perf_counter_ns() - start) / CALLS)
        dropped = recorder.dropped
        seawall.add_hook(recorder.hook)  # close() takes it off again
    finally:
        recorder.close()
        store.close()
    return {"baseline_ns": best["baseline"], "noop_hook_ns": best["noop"],
            "recorder_ns": best["recorder"], "added_ns": best["recorder"] - best["baseline"],
            "core_events_ns": best["noop"] - best["baseline"], "hook_ns": hook_ns,
            "dropped": dropped}


def bench_otel() -> dict[str, float] | None:
    """Interleaved rounds: best of each; the drain is timed apart, after the calls."""
    try:
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    except ImportError:
        return None
    point = seawall.IntegrationPoint("bench-otel")

    @point
    def work() -> int:
        return 1

    def noop(_event: object) -> None:
        pass

    best = {"noop": float("inf"), "otel": float("inf"), "drain": float("inf"),
            "drain_counters": float("inf")}
    for durations, drain in ((True, "drain"), (False, "drain_counters")):
        reader = InMemoryMetricReader()
        provider = MeterProvider(metric_readers=[reader])
        # the thread stays idle (an hour between drains): the calls pay only the hook, and
        # the drain is timed by itself right after them
        handle = seawall.otel_metrics(provider, durations=durations, drain_interval=3600.0)
        hook = handle._hook
        seawall.remove_hook(hook)
        try:
            for _ in range(ROUNDS):
                seawall.add_hook(noop)
                best["noop"] = min(best["noop"], _per_call_ns(work))
                seawall.remove_hook(noop)
                seawall.add_hook(hook)
                best["otel"] = min(best["otel"], _per_call_ns(work))
                seawall.remove_hook(hook)
                start = time.perf_counter_ns()
                handle.flush()
                best[drain] = min(best[drain], (time.perf_counter_ns() - start) / CALLS)
            reader.collect()
            assert handle.dropped == 0
        finally:
            seawall.add_hook(hook)  # close() takes it off again
            handle.close()
            provider.shutdown()
    return {"noop_hook_ns": best["noop"], "otel_ns": best["otel"],
            "added_ns": best["otel"] - best["noop"], "drain_ns": best["drain"],
            "drain_counters_ns": best["drain_counters"]}


def bench_flush(tmp: Path) -> dict[str, float]:
    store = Store(f"sqlite:///{tmp / 'flush.db'}")
    store.ensure_schema()
    recorder = Recorder(store, flush_interval=3600.0, drain_interval=3600.0,
                        max_pending=1_000_000)
    seawall.remove_hook(recorder.hook)  # fed directly below, no point calls
    now = time.time()
    events: list[object] = []
    for i in range(200_000):
        name, op, t = f"point-{i % 100}", f"op-{i % 5}", now - (i % 180)
        if i % 2:
            events.append(AttemptEvent(name, op, 1, None, 0.001 + (i % 97) * 1e-4, t))
        else:
            events.append(CallEvent(name, op, None, 1, 0.001 + (i % 89) * 1e-4, t, False, None))
    # a successful attempt's record never reaches the queue (the recorder reads only
    # timed-out attempts): the rate is of the records the thread aggregates and writes
    calls = [e for e in events if type(e) is CallEvent]
    queued = len(calls)
    rates = []
    for _ in range(3):
        for e in events:
            recorder.hook(e)
        start = time.perf_counter()
        assert recorder.flush()
        rates.append(queued / (time.perf_counter() - start))
    # the rows the calls fill (the attempts' keys, of other points, make none)
    rows = len({(e.point, e.operation, int(e.time // 60)) for e in calls})
    recorder.close()
    store.close()
    return {"events_per_s": statistics.median(rates), "events": queued,
            "minute_rows": rows}


def bench_summary(tmp: Path) -> dict[str, float]:
    path = tmp / "summary.db"
    store = Store(f"sqlite:///{path}")
    store.ensure_schema()
    store.close()
    now_minute = int(time.time() // 60)
    days, minute_days, points = 30, 3, 100
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA synchronous=OFF")
    started = time.perf_counter()

    def fill(table: str, first: int, last: int) -> None:
        conn.execute(f"""
            INSERT INTO {table} (point, bucket, operation, host, pid, calls, successes,
                                 failures, failed_transient, retries, latency_sum, h40, h60)
            WITH RECURSIVE p(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM p WHERE i < {points - 1}),
                 b(n) AS (SELECT {first} UNION ALL SELECT n + 1 FROM b WHERE n < {last})
            SELECT 'point-' || i, n, 'call', 'bench-host', 1, 100, 98, 2, 2, 3,
                   0.4, 99, 1 FROM p, b""")

    fill("seawall_minute", now_minute - minute_days * 1440, now_minute)
    fill("seawall_hour", (now_minute - days * 1440) // 60, now_minute // 60)
    fill("seawall_day", (now_minute - days * 1440) // 1440, now_minute // 1440)
    conn.commit()
    conn.execute("ANALYZE")
    conn.close()
    build_s = time.perf_counter() - started
    store = Store(f"sqlite:///{path}")
    window = days * 86400.0

    def measure(point: str | None, n: int) -> tuple[float, float]:
        samples = []
        for i in range(n):
            start = time.perf_counter()
            found = store.summary(point if point is None else f"point-{i % points}",
                                  window=window)
            samples.append((time.perf_counter() - start) * 1000)
            assert found and found[0].calls > 0
        samples.sort()
        return samples[len(samples) // 2], samples[min(len(samples) - 1, int(len(samples) * 0.99))]

    measure("one", 20)  # warm the cache and the statement cache
    one = measure("one", 300)
    every = measure(None, 30)
    store.close()
    return {"one_p50_ms": one[0], "one_p99_ms": one[1], "all_p50_ms": every[0],
            "all_p99_ms": every[1], "build_s": build_s,
            "minute_rows": points * (minute_days * 1440 + 1)}


def main() -> int:
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="seawall-bench-metrics-") as tmp_name:
        tmp = Path(tmp_name)
        rec = bench_recording(tmp)
        flush = bench_flush(tmp)
        summary = bench_summary(tmp)
    otel = bench_otel()
    print("seawall metrics benchmark (bench/metrics.py)")
    print(f"  python {sys.version.split()[0]} on {os.cpu_count()} cpu(s)")
    print("recording, per call of a decorated no-op (best of "
          f"{ROUNDS} interleaved rounds of {CALLS} calls):")
    print(f"  no hooks                       {rec['baseline_ns']:8.0f} ns")
    print(f"  do-nothing hook                {rec['noop_hook_ns']:8.0f} ns"
          f"   (+{rec['core_events_ns']:.0f} ns: the core building and emitting 2 events)")
    print(f"  recorder running               {rec['recorder_ns']:8.0f} ns"
          f"   (+{rec['added_ns']:.0f} ns added in all)   target: added < 1000 ns")
    print(f"  the recorder's hook alone      {rec['hook_ns']:8.0f} ns"
          "   (its two calls per successful call)")
    print(f"  events dropped                 {rec['dropped']:8.0f}")
    print(f"flush into SQLite: {flush['events_per_s']:,.0f} events/s "
          f"({flush['events']:,} call events -> {flush['minute_rows']:,} minute rows per batch;"
          " as many successful attempts, never queued)")
    print(f"summary over 30 days, 100 points ({summary['minute_rows']:,} minute rows, full hour "
          f"and day rollups; built in {summary['build_s']:.1f} s):")
    print(f"  one point   p50 {summary['one_p50_ms']:6.2f} ms   p99 {summary['one_p99_ms']:6.2f} ms"
          "   target: p99 < 20 ms")
    print(f"  all points  p50 {summary['all_p50_ms']:6.2f} ms   p99 {summary['all_p99_ms']:6.2f} ms")
    if otel is None:
        print("OpenTelemetry export: skipped (pip install opentelemetry-sdk)")
    else:
        print("OpenTelemetry export (seawall.otel_metrics into the SDK), per call of a "
              "decorated no-op:")
        print(f"  do-nothing hook                {otel['noop_hook_ns']:8.0f} ns")
        print(f"  otel_metrics, caller's thread  {otel['otel_ns']:8.0f} ns"
              f"   (+{otel['added_ns']:.0f} ns over the do-nothing hook)   target: < 500 ns")
        print(f"  recording into the SDK         {otel['drain_ns']:8.0f} ns"
              "   (background thread: 2 counters batched, 2 histogram records per call)")
        print(f"  ... with durations=False       {otel['drain_counters_ns']:8.0f} ns"
              "   (counters only, batched per series)")
    print(f"total {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--instructions"]:
        sys.path.append(str(_HERE))  # after site-packages: bench/grpc.py shadows nothing
        from metrics_instructions import report
        raise SystemExit(report())
    if sys.argv[1:2] == ["--instructions-driver"]:
        sys.path.append(str(_HERE))  # after site-packages: bench/grpc.py shadows nothing
        from metrics_instructions import drive
        raise SystemExit(drive(sys.argv[2:]))
    raise SystemExit(main())
