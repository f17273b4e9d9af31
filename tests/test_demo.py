"""``seawall demo``: runs end to end, shows the comparison, and tells the truth about it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from seawall._cli import main

DEPENDENCIES = ("inventory", "pricing", "orders-db", "inventory-hedged")


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], dict[str, Any], Path]:
    """One short demo run as a subprocess, with its JSON report."""
    folder = tmp_path_factory.mktemp("demo")
    report = folder / "report.json"
    done = subprocess.run(
        [sys.executable, "-m", "seawall", "demo", "--duration", "9", "--seed", "7",
         "--report", str(report)],
        cwd=folder, capture_output=True, text=True, timeout=110,
    )
    data = json.loads(report.read_text()) if report.exists() else {}
    return done, data, folder


def test_demo_exits_0_and_prints_a_table_per_dependency(demo_run: Any) -> None:
    """The demo finishes with exit code 0 and shows the side-by-side tables and the stats."""
    done, _, _ = demo_run
    assert done.returncode == 0, done.stdout + done.stderr
    for title in ("inventory (gRPC)", "pricing (HTTP)", "orders-db (SQLite)",
                  "inventory-hedged (gRPC, hedged)"):
        assert title in done.stdout
    assert done.stdout.count("hedges sent / won") == 1  # only the hedged dependency's table
    assert "requests that reached it" in done.stdout
    assert "seawall stats --target 127.0.0.1:" in done.stdout


def test_seawall_spares_the_dependency_during_the_outage(demo_run: Any) -> None:
    """Through seawall, fewer requests reach each dependency while it is down."""
    _, data, _ = demo_run
    for dep in DEPENDENCIES:
        bare = data["bare"][dep]["reached_during_outage"]
        guarded = data["seawall"][dep]["reached_during_outage"]
        assert bare > 0, dep
        assert guarded < bare, f"{dep}: seawall {guarded} vs bare {bare}"


def test_seawall_answers_more_calls_than_bare_clients(demo_run: Any) -> None:
    """Retries and fallbacks leave the seawall callers with fewer errors."""
    _, data, _ = demo_run
    for dep in DEPENDENCIES:
        assert data["seawall"][dep]["errors"] < data["bare"][dep]["errors"], dep
        assert data["seawall"][dep]["breaker_openings"] >= 1, dep


def test_metrics_read_through_the_service_match_the_process(demo_run: Any) -> None:
    """The persisted metrics, queried through the metrics service, equal the in-process counts."""
    _, data, _ = demo_run
    served = {row["point"]: row for row in data["service"]}
    assert set(served) == set(DEPENDENCIES)
    for point, counts in data["in_process"].items():
        for key, value in counts.items():
            assert served[point][key] == value, f"{point}.{key}"


def test_the_hedged_inventory_sends_hedges_that_win(demo_run: Any) -> None:
    """Its latency spikes and errors got a second attempt; the store counts them as the process."""
    _, data, _ = demo_run
    hedged = data["seawall"]["inventory-hedged"]
    assert 0 < hedged["hedges_won"] <= hedged["hedges"], hedged
    assert data["bare"]["inventory-hedged"]["hedges"] is None
    assert data["seawall"]["inventory"]["hedges"] is None  # no Hedge on that point
    served = {row["point"]: row for row in data["service"]}
    assert served["inventory-hedged"]["hedges_sent"] == hedged["hedges"]
    assert served["inventory-hedged"]["hedges_won"] == hedged["hedges_won"]
    assert data["in_process"]["inventory-hedged"]["hedges_sent"] == hedged["hedges"]
    assert served["inventory"]["hedges_sent"] == 0


def test_server_pacing_shows_in_the_inventory_table(demo_run: Any) -> None:
    """A pushback pauses the inventory point: some attempts wait the pause out; pricing,
    whose 429s the demo draws at random (pacing off), never pauses."""
    done, data, _ = demo_run
    assert data["seawall"]["inventory"]["paused_waits"] > 0
    assert data["bare"]["inventory"]["paused_waits"] is None
    assert data["seawall"]["pricing"]["paused_waits"] == 0
    assert "attempts that waited out a pause" in done.stdout


def test_demo_leaves_nothing_behind(demo_run: Any) -> None:
    """Every thread is joined and nothing but the asked-for report is written."""
    _, data, folder = demo_run
    assert data["threads_left"] == []
    assert sorted(p.name for p in folder.iterdir()) == ["report.json"]


def test_an_outage_longer_than_the_run_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    """A fault mix that cannot fit is a usage error (exit 2) before anything starts."""
    assert main(["demo", "--duration", "5", "--outage", "9"]) == 2
    assert "--outage" in capsys.readouterr().err


@pytest.mark.parametrize(("option", "value", "message"), [
    ("--store", "bogus://x", "--store: metrics store bogus://x: SQLAlchemy knows no database"),
    ("--store", "/nonexistent/folder/metrics.db", "the folder /nonexistent/folder does not exist"),
    ("--report", "/nonexistent/folder/report.json",
     "--report: cannot write /nonexistent/folder/report.json"),
])
def test_outputs_that_cannot_be_written_are_refused_before_the_first_run(
        capsys: pytest.CaptureFixture[str], option: str, value: str, message: str) -> None:
    """A bad --store or --report is found at once, not after a run of the workload."""
    import time

    started = time.monotonic()
    assert main(["demo", "--duration", "5", "--plain", option, value]) == 2
    assert time.monotonic() - started < 5.0  # the runs take 2 x 5 s: none started
    captured = capsys.readouterr()
    assert message in captured.err
    assert "1/2 bare clients" not in captured.out
