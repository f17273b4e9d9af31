"""Stopping a recording process: SIGTERM and SIGINT flush first, SIGKILL loses one interval at most.

Each test runs a real child process (``tests.metrics_support``), learns from
its stdout that it has recorded its calls, signals it, and counts what
reached the SQLite store.
"""

from __future__ import annotations

import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import seawall
from seawall.storage import Store
from tests.metrics_support import start_writer

CALLS = 120


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'metrics.db'}"


def _stored(url: str, point: str) -> int:
    store = Store(url)
    try:
        found = store.summary(point, window=3600)
        return found[0].calls if found else 0
    finally:
        store.close()


@pytest.fixture
def child() -> Iterator[list[subprocess.Popen[str]]]:
    """The children a test starts; each is killed and reaped if the test left it running."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()


def _start(started: list[subprocess.Popen[str]], *args: str) -> subprocess.Popen[str]:
    proc = start_writer(*args, stdin=subprocess.PIPE)
    started.append(proc)
    return proc


def _expect(proc: subprocess.Popen[str], prefix: str) -> str:
    assert proc.stdout is not None
    line = proc.stdout.readline()  # the child prints as it goes: no sleeping here
    if not line.startswith(prefix):
        proc.kill()
        proc.wait(timeout=30)
        err = proc.stderr.read() if proc.stderr is not None else ""
        pytest.fail(f"expected {prefix!r} from the child, got {line!r}; stderr:\n{err}")
    return line.strip()


def test_sigterm_flushes_then_ends_the_process_as_sigterm_does(
        url: str, child: list[subprocess.Popen[str]]) -> None:
    """A SIGTERM writes every recorded call, then the process dies of SIGTERM as by default."""
    proc = _start(child, "stopped", url, "--calls", str(CALLS))
    _expect(proc, "ready")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == -signal.SIGTERM
    assert _stored(url, "stopped") == CALLS


def test_without_flush_on_signal_a_sigterm_loses_the_interval(
        url: str, child: list[subprocess.Popen[str]]) -> None:
    """``flush_on_signal=False`` leaves Python's default: SIGTERM skips the exit hooks."""
    proc = _start(child, "stopped", url, "--calls", str(CALLS), "--no-flush-on-signal")
    _expect(proc, "ready")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == -signal.SIGTERM
    assert _stored(url, "stopped") == 0


def test_sigint_flushes_and_the_keyboardinterrupt_still_reaches_the_program(
        url: str, child: list[subprocess.Popen[str]]) -> None:
    """SIGINT flushes, then raises KeyboardInterrupt as before: a program that catches it goes on."""
    proc = _start(child, "stopped", url, "--calls", str(CALLS), "--catch-sigint")
    _expect(proc, "ready")
    proc.send_signal(signal.SIGINT)
    _expect(proc, "interrupted")
    assert proc.poll() is None  # still running: the signal was handed over, not acted on
    assert _stored(url, "stopped") == CALLS  # written at the signal, an hour before its interval
    assert proc.stdin is not None
    proc.stdin.close()
    assert proc.wait(timeout=30) == 0


def test_a_sigterm_handler_installed_before_still_runs_after_the_flush(
        url: str, child: list[subprocess.Popen[str]]) -> None:
    """The program's own SIGTERM handler runs (here it leaves with os._exit) after the flush."""
    proc = _start(child, "stopped", url, "--calls", str(CALLS), "--own-handler")
    _expect(proc, "ready")
    proc.send_signal(signal.SIGTERM)
    _expect(proc, "own handler ran")
    assert proc.wait(timeout=30) == 3
    assert _stored(url, "stopped") == CALLS


def test_sigkill_loses_at_most_the_calls_since_the_last_flush(
        url: str, child: list[subprocess.Popen[str]]) -> None:
    """What a periodic flush wrote survives a SIGKILL; only the calls after it may be lost."""
    proc = _start(child, "bursts", url, "--first", "100", "--second", "50")
    flushed = int(_expect(proc, "flushed").split()[1])
    total = int(_expect(proc, "recorded").split()[1])
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL
    assert flushed <= _stored(url, "bursts") <= total


def test_the_handler_goes_back_when_the_recorder_closes(url: str) -> None:
    """persist_metrics installs the flushing handler; close() gives the signals their old ones."""
    from seawall.storage._recorder import _flush_then_hand_over

    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    recorder = seawall.persist_metrics(url)
    try:
        assert signal.getsignal(signal.SIGTERM) is _flush_then_hand_over
        assert signal.getsignal(signal.SIGINT) is _flush_then_hand_over
    finally:
        recorder.close()
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before


def test_an_ignored_signal_stays_ignored(url: str) -> None:
    """A signal the program ignores is not taken over."""
    previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        recorder = seawall.persist_metrics(url)
        try:
            assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN
        finally:
            recorder.close()
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_persist_metrics_off_the_main_thread_records_without_touching_signals(
        url: str, caplog: pytest.LogCaptureFixture) -> None:
    """Signal handlers can only be installed from the main thread: elsewhere it says so and records."""
    before = signal.getsignal(signal.SIGTERM)
    made: list[object] = []
    thread = threading.Thread(target=lambda: made.append(seawall.persist_metrics(url)))
    thread.start()
    thread.join(30)
    [recorder] = made
    try:
        assert signal.getsignal(signal.SIGTERM) == before
        assert "main thread" in caplog.text
    finally:
        recorder.close()  # type: ignore[attr-defined]
