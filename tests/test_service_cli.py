"""``seawall stats`` and ``seawall serve`` on the command line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from seawall._cli import main
from seawall.storage import MetricsServer, Store, serve
from seawall.storage._schema import CALLS, H0, LATENCY_SUM, SUCCESSES, WIDTH

ROOT = Path(__file__).resolve().parent.parent
JSON_KEYS = {"point", "calls", "successes", "failures", "retries", "rejected", "p50_ms", "p95_ms",
             "p99_ms", "breaker_state"}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[MetricsServer]:
    store = Store(f"sqlite:///{tmp_path / 'metrics.db'}")
    vec: list[float] = [0] * WIDTH
    vec[CALLS] = vec[SUCCESSES] = 12
    vec[LATENCY_SUM] = 0.12
    vec[H0 + 40] = 12
    store.write({("payments", "charge", int(time.time() // 60)): vec}, host="h", pid=1)
    with serve(store, "127.0.0.1:0") as running:
        yield running
    store.close()


def test_stats_prints_a_table(server: MetricsServer, capsys: pytest.CaptureFixture[str]) -> None:
    """By default, one row per point with calls, percentiles and breaker state."""
    assert main(["stats", "--target", server.address]) == 0
    out = capsys.readouterr().out
    assert "payments" in out and "12" in out and "closed" in out and "p99 ms" in out


def test_stats_json_prints_one_object_per_point(server: MetricsServer,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """``--json`` prints one JSON object per line with at least the documented keys."""
    assert main(["stats", "--target", server.address, "--json", "--window", "600"]) == 0
    [line] = capsys.readouterr().out.strip().splitlines()
    record = json.loads(line)
    assert JSON_KEYS <= record.keys()
    assert record["point"] == "payments" and record["calls"] == 12


def test_stats_of_an_unknown_point_prints_nothing_in_json(
        server: MetricsServer, capsys: pytest.CaptureFixture[str]) -> None:
    """``--point`` filters; a point without calls yields no line."""
    assert main(["stats", "--target", server.address, "--point", "nope", "--json"]) == 0
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize(("args", "message"), [
    (["--window", "-5"], "--window must be > 0"),
    (["--window", "soon"], "--window must be a number"),
    (["--window", "1e12"], "--window must be > 0"),
    (["--point", "x" * 300], "at most 200 characters"),
])
def test_stats_with_a_bad_argument_fails_in_one_line(
        server: MetricsServer, capsys: pytest.CaptureFixture[str], args: list[str],
        message: str) -> None:
    """A bad value: one line on stderr, exit code 1, no traceback."""
    assert main(["stats", "--target", server.address, *args]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert message in err and "Traceback" not in err


def test_stats_against_nothing_listening_fails_in_one_line(
        capsys: pytest.CaptureFixture[str]) -> None:
    """An unreachable service is reported in one line."""
    import socket

    with socket.socket() as sock:  # a port that was free a moment ago
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert main(["stats", "--target", f"127.0.0.1:{port}"]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "cannot reach the metrics service" in err


def test_serve_refuses_a_public_address_without_a_token(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """``seawall serve --listen 0.0.0.0:...`` without --token exits 1 and says why."""
    monkeypatch.delenv("SEAWALL_METRICS_TOKEN", raising=False)
    code = main(["serve", "--store", str(tmp_path / "m.db"), "--listen", "0.0.0.0:50057"])
    assert code == 1
    err = capsys.readouterr().err
    assert "without a token" in err and len(err.strip().splitlines()) == 1


def test_serve_runs_until_sigterm(tmp_path: Path) -> None:
    """``seawall serve`` serves the store, answers ``seawall stats``, and stops cleanly on SIGTERM."""
    store_url = f"sqlite:///{tmp_path / 'metrics.db'}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "seawall", "serve", "--store", store_url, "--listen",
         "127.0.0.1:0"], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        banner = proc.stdout.readline()
        assert " on 127.0.0.1:" in banner, proc.stderr.read() if proc.stderr else banner
        address = banner.split(" on ", 1)[1].split()[0]
        assert main(["stats", "--target", address, "--json"]) == 0
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
