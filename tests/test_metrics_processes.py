"""Many writer processes into one store, read back through the metrics service."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from seawall.storage import MetricsClient, Store, serve
from tests.metrics_support import POINT, Totals, expected, start_writer

THREADS, TASKS, CALLS = 3, 3, 150


def _run_three_writers(url: str) -> list[dict[str, int]]:
    # the last process leaves the final flush to its exit hook
    procs = [start_writer("mixed", url, "--threads", str(THREADS), "--tasks", str(TASKS),
                          "--calls", str(CALLS), "--flush", "0.2", *extra)
             for extra in ([], [], ["--atexit"])]
    stats = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        stats.append(json.loads(out.strip().splitlines()[-1]))
    return stats


def _assert_exact(url: str, stats: list[dict[str, int]]) -> None:
    want = expected(CALLS).times(3 * (THREADS + TASKS))
    reported = Totals(
        calls=sum(s["calls"] for s in stats), successes=sum(s["successes"] for s in stats),
        failures=sum(s["failures"] for s in stats), retries=sum(s["retries"] for s in stats),
        transient=sum(s["failures_by_category"]["transient"] for s in stats),
        permanent=sum(s["failures_by_category"]["permanent"] for s in stats),
    )
    assert reported == want  # the workload is deterministic in every process
    with serve(url, "127.0.0.1:0") as server, MetricsClient(server.address) as client:
        [summary] = client.summary(POINT, window=3600)
        by_operation = {op: client.summary(POINT, window=3600, operation=op)[0].calls
                        for op in client.points()[0].operations}
    got = Totals(calls=summary.calls, successes=summary.successes, failures=summary.failures,
                 retries=summary.retries,
                 transient=summary.failures_by_category["transient"],
                 permanent=summary.failures_by_category["permanent"])
    assert got == want
    assert sorted(by_operation.values()) == [want.calls // 2, want.calls // 2]  # sync and async


def test_three_processes_with_threads_and_tasks_add_up_exactly_in_sqlite(tmp_path: Path) -> None:
    """Three processes, each with threads and asyncio tasks, write one SQLite file; totals are exact."""
    url = f"sqlite:///{tmp_path / 'metrics.db'}"
    _assert_exact(url, _run_three_writers(url))


def test_a_killed_writer_loses_at_most_one_flush_interval(tmp_path: Path) -> None:
    """SIGKILL of a writer loses only the calls of its last flush interval."""
    url = f"sqlite:///{tmp_path / 'metrics.db'}"
    interval = 0.5
    proc = start_writer("steady", url, "--flush", str(interval))
    assert proc.stdout is not None
    store = Store(url)
    progress: list[tuple[int, float]] = []
    try:
        # wait (bounded) until a flush has landed, then let it run two more intervals
        limit = time.monotonic() + 30
        while time.monotonic() < limit:
            line = proc.stdout.readline()
            assert line, proc.stderr.read() if proc.stderr else "writer ended"
            count, stamp = line.split()
            progress.append((int(count), float(stamp)))
            if len(progress) % 25 == 0 and store.summary("steady"):
                break
        else:
            pytest.fail("no flush reached the store in 30 s")
        end = time.time() + 2 * interval
        while time.time() < end:
            line = proc.stdout.readline()
            count, stamp = line.split()
            progress.append((int(count), float(stamp)))
        proc.send_signal(signal.SIGKILL)
        killed_at = time.time()
        for line in proc.stdout:  # whatever it printed before dying
            count, stamp = line.split()
            progress.append((int(count), float(stamp)))
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        if proc.stderr is not None:
            proc.stderr.close()
    [summary] = store.summary("steady")
    made = progress[-1][0] + 19  # it prints every 20 calls
    # everything done one interval (plus scheduling slack) before the kill is stored
    safe = max(c for c, t in progress if t <= killed_at - interval - 0.5)
    assert safe <= summary.calls <= made
    assert summary.calls == summary.successes
    store.close()


@pytest.mark.timeout(180)
def test_three_processes_add_up_exactly_in_postgresql(postgres_url: str) -> None:
    """The same workload, the same exact totals, with the store on a real PostgreSQL."""
    _assert_exact(postgres_url, _run_three_writers(postgres_url))
    store = Store(postgres_url)
    assert store.dialect == "postgresql"
    store.close()
