"""``seawall stats`` and ``seawall serve`` on the command line."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from seawall._cli import main
from seawall.storage import MetricsServer, Store, serve
from seawall.storage._schema import CALLS, H0, LATENCY_SUM, SUCCESSES, WIDTH
from tests.web_support import banner, seawall_serve, stop
from tests.web_support import certificate as make_certificate

ROOT = Path(__file__).resolve().parent.parent
JSON_KEYS = {"point", "calls", "successes", "failures", "retries", "rejected", "p50_ms", "p95_ms",
             "p99_ms", "breaker_state"}
JSON_ORDER = ("point", "calls", "successes", "failures", "retries", "rejected", "cancelled",
              "fallbacks", "timeouts", "failures_by_category", "rejections_by_reason", "p50_ms",
              "p95_ms", "p99_ms", "mean_ms", "breaker_state", "injected_calls",
              "injected_failures", "waits_by_reason", "hedges_sent", "hedges_won",
              "concurrency_limit", "window_seconds")


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


def test_stats_of_a_known_point_without_calls_in_the_window_prints_nothing(
        server: MetricsServer, capsys: pytest.CaptureFixture[str]) -> None:
    """``--point`` filters; a known point without calls in the window yields no line."""
    vec: list[float] = [0] * WIDTH
    vec[CALLS] = vec[SUCCESSES] = 1
    server.store.write({("quiet", "op", int(time.time() // 60) - 600): vec}, host="h", pid=1)
    assert main(["stats", "--target", server.address, "--point", "quiet", "--json",
                 "--window", "60"]) == 0
    assert capsys.readouterr().out == ""


def test_stats_of_an_unknown_point_says_so_and_fails(
        server: MetricsServer, capsys: pytest.CaptureFixture[str]) -> None:
    """A point the store never saw: exit 1, and the message lists the known points."""
    assert main(["stats", "--target", server.address, "--point", "nosuchpoint", "--json"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "no such point 'nosuchpoint'; known points: payments" in captured.err
    assert len(captured.err.strip().splitlines()) == 1


def test_json_keys_come_in_one_documented_order(server: MetricsServer,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """The keys of ``--json``, and of its maps, come in a fixed order, run after run."""
    assert main(["stats", "--target", server.address, "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert list(record) == list(JSON_ORDER)
    assert list(record["failures_by_category"]) == [
        "transient", "timeout", "rate_limited", "unavailable", "permanent"]
    assert list(record["rejections_by_reason"]) == ["breaker", "bulkhead", "budget", "deadline",
                                                    "rate_limit", "paused"]
    assert list(record["waits_by_reason"]) == ["paused", "rate_limit"]


def test_json_keys_are_derived_in_the_documented_order() -> None:
    """JSON_KEYS, derived from the Stats fields and the schema's versions, is the order above."""
    from seawall.storage._cli import JSON_KEYS

    assert JSON_KEYS == JSON_ORDER


@pytest.mark.parametrize(("args", "message"), [
    (["--window", "-5"], "--window must be > 0"),
    (["--window", "soon"], "--window must be a number"),
    (["--window", "1e12"], "--window must be > 0"),
    (["--point", "x" * 300], "at most 200 characters"),
])
def test_stats_with_a_bad_argument_fails_in_one_line(
        server: MetricsServer, capsys: pytest.CaptureFixture[str], args: list[str],
        message: str) -> None:
    """A bad value: one line on stderr, exit code 2 (a usage error), no traceback."""
    assert main(["stats", "--target", server.address, *args]) == 2
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
    assert f"cannot reach the metrics service at 127.0.0.1:{port}: nothing answers there" in err
    assert "is `seawall serve` running on that host and port?" in err


def test_serve_refuses_a_public_address_without_a_token(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """``seawall serve --listen 0.0.0.0:...`` without --token exits 1 and says why."""
    monkeypatch.delenv("SEAWALL_METRICS_TOKEN", raising=False)
    code = main(["serve", "--store", str(tmp_path / "m.db"), "--create",
                 "--listen", "0.0.0.0:50057"])
    assert code == 2
    err = capsys.readouterr().err
    assert "without a token" in err and len(err.strip().splitlines()) == 1
    assert "Pass --token (or $SEAWALL_METRICS_TOKEN)" in err


def test_serve_runs_until_sigterm(tmp_path: Path) -> None:
    """``seawall serve`` serves the store, answers ``seawall stats``, and stops cleanly on SIGTERM."""
    store_url = f"sqlite:///{tmp_path / 'metrics.db'}"
    Store(store_url).ensure_schema()
    with seawall_serve("--store", store_url, "--listen", "127.0.0.1:0") as proc:
        address = banner(proc, " on 127.0.0.1:").split(" on ", 1)[1].split()[0]
        assert main(["stats", "--target", address, "--json"]) == 0
        stop(proc)


# -- what a team running it trips over --------------------------------------------


def _seawall(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``python -m seawall ARGS`` in a fresh interpreter (gRPC's core starts untouched)."""
    return subprocess.run([sys.executable, "-m", "seawall", *args], cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
                          text=True, timeout=timeout)


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err  # nothing else: no traceback, no gRPC core log lines
    return lines[0]


def test_a_second_serve_on_the_same_port_fails_with_address_in_use(server: MetricsServer) -> None:
    """Two ``seawall serve`` on one port never share it: the second exits 2, "address in use"."""
    done = _seawall("serve", "--store", str(server.store.engine.url.database), "--listen",
                    server.address)
    assert done.returncode == 2, done.stdout + done.stderr
    line = _one_line(done.stderr)
    assert f"cannot listen on {server.address}: address in use" in line


def test_serve_of_a_missing_store_names_the_file_and_the_flag(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A typo in ``--store`` is an error naming the path, not a new empty store."""
    typo = tmp_path / "metrcs.db"
    assert main(["serve", "--store", str(typo), "--listen", "127.0.0.1:0"]) == 2
    line = _one_line(capsys.readouterr().err)
    assert f"no metrics store at {typo}: the file does not exist" in line
    assert "pass --create" in line
    assert not typo.exists()


def test_serve_create_starts_an_empty_store(tmp_path: Path) -> None:
    """``--create`` makes the file and serves it."""
    path = tmp_path / "new.db"
    with seawall_serve("--store", str(path), "--create", "--listen", "127.0.0.1:0") as proc:
        banner(proc, " on 127.0.0.1:")
        assert path.exists()
        stop(proc)


def test_a_store_this_user_cannot_write_is_served_read_only(server: MetricsServer) -> None:
    """A read-only file in a read-only folder: ``serve`` reads it without writing anything."""
    import shutil
    import tempfile

    from tests.metrics_support import unprivileged_prefix

    prefix = unprivileged_prefix()
    if prefix is None:
        pytest.skip("setpriv (util-linux) is needed to drop root for this test")
    folder = Path(tempfile.mkdtemp(prefix="seawall-ro-"))
    try:
        copy = folder / "metrics.db"
        source = Store(f"sqlite:///{copy}")
        vec: list[float] = [0] * WIDTH
        vec[CALLS] = vec[SUCCESSES] = 3
        source.write({("archived", "op", int(time.time() // 60)): vec}, host="h", pid=1)
        source.close()
        copy.chmod(0o444)
        folder.chmod(0o555)
        before = sorted(p.name for p in folder.iterdir())
        with seawall_serve("--store", str(copy), "--listen", "127.0.0.1:0", cwd=folder,
                           prefix=prefix) as proc:
            line = banner(proc, "(read-only) on 127.0.0.1:")
            address = line.split(" on ", 1)[1].split()[0]
            from seawall.storage import MetricsClient

            with MetricsClient(address) as client:
                assert client.summary("archived")[0].calls == 3
            stop(proc)
        assert sorted(p.name for p in folder.iterdir()) == before  # nothing written
    finally:
        folder.chmod(0o755)
        shutil.rmtree(folder)


@pytest.mark.parametrize(("target", "message"), [
    ("127.0.0.1:99999", "--target must be HOST:PORT with a port 1-65535, got '127.0.0.1:99999'"),
    ("127.0.0.1", "--target must be HOST:PORT, got '127.0.0.1'"),
    ("127.0.0.1:http", "--target port must be a number"),
    ("127.0.0.1:0", "with a port 1-65535"),
])
def test_a_malformed_target_is_a_usage_error(capsys: pytest.CaptureFixture[str], target: str,
                                             message: str) -> None:
    """``--target`` is checked like ``--listen``, before anything is sent."""
    assert main(["stats", "--target", target]) == 2
    assert message in _one_line(capsys.readouterr().err)


def test_a_service_that_is_not_seawall_is_named_as_such(
        capsys: pytest.CaptureFixture[str]) -> None:
    """Another gRPC server on the port: the message says it is not a seawall metrics service."""
    from concurrent import futures

    import grpc
    from grpc_health.v1 import health, health_pb2_grpc

    other = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), other)
    port = other.add_insecure_port("127.0.0.1:0")
    other.start()
    try:
        assert main(["stats", "--target", f"127.0.0.1:{port}"]) == 1
    finally:
        other.stop(None)
    line = _one_line(capsys.readouterr().err)
    assert f"127.0.0.1:{port} answered, but it is not a seawall metrics service" in line
    assert "seawall.metrics.v1.MetricsService" in line


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    return make_certificate(tmp_path)


def test_plaintext_against_tls_and_tls_against_plaintext_say_what_to_check(
        server: MetricsServer, certificate: tuple[Path, Path]) -> None:
    """Either mismatch names TLS as the thing to check, in one line, without gRPC's own logs."""
    cert, key = certificate
    with serve(server.store, "127.0.0.1:0", tls_cert=str(cert), tls_key=str(key)) as secure:
        plain_to_tls = _seawall("stats", "--target", secure.address)
    tls_to_plain = _seawall("stats", "--target", server.address, "--tls")
    assert plain_to_tls.returncode == 1 and tls_to_plain.returncode == 1
    line = _one_line(plain_to_tls.stderr)
    assert "closed this plaintext one; it may require TLS (seawall stats --tls" in line
    line = _one_line(tls_to_plain.stderr)
    assert "the TLS handshake failed; it may serve plaintext (drop --tls" in line


def test_version_prints_the_version() -> None:
    """``seawall --version`` prints the installed version and exits 0."""
    import seawall

    done = _seawall("--version")
    assert done.returncode == 0
    assert done.stdout.strip() == f"seawall {seawall.__version__}"


def test_an_unknown_option_shows_the_usage_of_its_subcommand() -> None:
    """``stats --frobnicate``: exit 2 with the usage of ``seawall stats``."""
    done = _seawall("stats", "--frobnicate")
    assert done.returncode == 2
    assert "usage: seawall stats" in done.stderr
    assert "unrecognized arguments: --frobnicate" in done.stderr


@pytest.mark.parametrize("args", [
    ["demo", "--duration", "-1"],
    ["demo", "--duration", "5", "--outage", "9"],
    ["serve", "--retention-days", "soon"],
    ["serve", "--listen", "127.0.0.1:70000"],
    ["stats", "--window", "-5"],
    ["stats", "--json", "--nope"],
    ["nosuchcommand"],
])
def test_every_usage_error_exits_2(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """One convention for every subcommand: a usage error (a bad option or value) exits 2."""
    assert main(args) == 2
    assert "error:" in capsys.readouterr().err


def test_in_process_stats_and_the_service_agree_on_every_count(tmp_path: Path) -> None:
    """Counted in the process and read back from the service: the same figures, same categories."""
    import asyncio

    import seawall
    from seawall.storage import MetricsClient, Recorder

    store = Store(f"sqlite:///{tmp_path / 'agree.db'}")
    recorder = Recorder(store, flush_interval=3600.0)
    point = seawall.IntegrationPoint("agree", retry=seawall.Retry(
        attempts=2, backoff=seawall.Backoff.constant(0.0), budget=None))
    cancelled = seawall.Classifier().on(LookupError, seawall.Category.CANCELLED)
    cancelling = seawall.IntegrationPoint("agree-cancel", classifier=cancelled)

    def fail() -> None:
        raise ConnectionError("down")

    def refuse() -> None:
        raise LookupError("the server cancelled it")

    hanging = asyncio.Event()

    async def hang() -> None:
        hanging.set()
        await asyncio.sleep(10)

    async def cancel_one() -> None:
        task = asyncio.ensure_future(point.acall(hang))
        await asyncio.wait_for(hanging.wait(), 5)  # the call is in its work
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    for fn in (lambda: None, fail, fail):
        with pytest.raises(ConnectionError) if fn is fail else contextlib.nullcontext():
            point.call(fn)
    asyncio.run(cancel_one())
    with pytest.raises(LookupError):
        cancelling.call(refuse)
    recorder.close()
    with serve(store, "127.0.0.1:0") as running, MetricsClient(running.address) as client:
        for p in (point, cancelling):
            local = p.stats()
            [remote] = client.summary(p.name)
            assert (remote.calls, remote.successes, remote.failures, remote.cancelled) == (
                local.calls, local.successes, local.failures, local.cancelled), p.name
            assert dict(remote.failures_by_category) == local.failures_by_category, p.name
    store.close()


@pytest.mark.parametrize(("store", "message"), [
    ("bogus://x", "metrics store bogus://x: SQLAlchemy knows no database 'bogus'"),
    ("mysql://metrics@127.0.0.1/seawall",
     "needs the database driver 'MySQLdb', not installed: pip install mysqlclient"),
    ("NOTSQLITE", "is not a SQLite database (the file exists and holds something else)"),
])
def test_serve_names_the_store_and_the_fix_when_it_cannot_open_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], store: str, message: str) -> None:
    """Store errors are one line naming the URL or file and what to do, not the driver's text."""
    if store == "NOTSQLITE":
        junk = tmp_path / "notsqlite.db"
        junk.write_text("not a database\n")
        store = str(junk)
    assert main(["serve", "--store", store, "--listen", "127.0.0.1:0"]) == 2
    line = _one_line(capsys.readouterr().err)
    assert message in line
    assert "Can't load plugin" not in line and "No module named" not in line
