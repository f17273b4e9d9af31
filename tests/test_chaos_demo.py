"""``seawall demo --chaos``: the outage rehearsed through seawall.Chaos, the same tables shown."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

DEPENDENCIES = ("inventory", "pricing", "orders-db", "inventory-hedged")  # hedges rehearse too


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """One short rehearsal as a subprocess, with its JSON report."""
    folder = tmp_path_factory.mktemp("chaos-demo")
    report = folder / "report.json"
    done = subprocess.run(
        [sys.executable, "-m", "seawall", "demo", "--chaos", "--duration", "9", "--seed", "7",
         "--report", str(report)],
        cwd=folder, capture_output=True, text=True, timeout=110,
    )
    return done, json.loads(report.read_text()) if report.exists() else {}


def test_rehearsal_exits_0_and_shows_the_same_tables(rehearsal: Any) -> None:
    """The tables of the demo, the outage row saying it was injected, and the stats."""
    done, data = rehearsal
    assert done.returncode == 0, done.stdout + done.stderr
    for title in ("inventory (gRPC)", "pricing (HTTP)", "orders-db (SQLite)",
                  "inventory-hedged (gRPC, hedged)"):
        assert title in done.stdout
    assert "injected by seawall.Chaos" in done.stdout
    assert "...met the injected outage" in done.stdout
    assert "fault injection:" in done.stdout and "not counted above" in done.stdout
    assert data["plan"]["chaos"] is True


def test_the_policies_meet_the_injected_outage_less_and_answer_more(rehearsal: Any) -> None:
    """Through seawall fewer attempts meet the injected outage and callers see fewer errors."""
    _, data = rehearsal
    for dep in DEPENDENCIES:
        bare, guarded = data["bare"][dep], data["seawall"][dep]
        assert bare["reached_during_outage"] > 0, dep
        assert guarded["reached_during_outage"] < bare["reached_during_outage"], dep
        assert guarded["errors"] < bare["errors"], dep
        assert guarded["breaker_openings"] >= 1, dep


def test_injected_calls_are_stored_apart_and_match_the_process(rehearsal: Any) -> None:
    """The service's injected_calls equal the process's injected failures; the rest agrees."""
    _, data = rehearsal
    served = {row["point"]: row for row in data["service"]}
    assert set(served) == set(DEPENDENCIES)
    for point, counts in data["in_process"].items():
        assert counts["injected_calls"] > 0, point
        for key, value in counts.items():
            assert served[point][key] == value, f"{point}.{key}"
    assert data["threads_left"] == []
