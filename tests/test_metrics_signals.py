"""Stopping a recording process: SIGTERM and SIGINT flush first, SIGKILL loses one interval at most.

Each test runs a real child process (``tests.metrics_support``), learns from
its stdout that it has recorded its calls, signals it, and counts what
reached the SQLite store.
"""

from __future__ import annotations

import queue
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


class Child:
    """A child process whose stdout lines are read by a thread (so waits can be bounded)."""

    def __init__(self, *args: str) -> None:
        self.proc = start_writer(*args, stdin=subprocess.PIPE)
        self.lines: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put("")  # end of output

    def expect(self, prefix: str) -> str:
        """The next line, which must start with ``prefix``; fails after 60 s without one."""
        try:
            line = self.lines.get(timeout=60)  # the child prints as it goes: no sleeping here
        except queue.Empty:
            line = "(nothing in 60 s)"
        if not line.startswith(prefix):
            self.proc.kill()
            self.proc.wait(timeout=30)
            err = self.proc.stderr.read() if self.proc.stderr is not None else ""
            pytest.fail(f"expected {prefix!r} from the child, got {line!r}; stderr:\n{err}")
        return line.strip()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)
        self._reader.join(30)
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()


@pytest.fixture
def child() -> Iterator[list[Child]]:
    """The children a test starts; each is killed and reaped if the test left it running."""
    started: list[Child] = []
    yield started
    for each in started:
        each.close()


def _start(started: list[Child], *args: str) -> Child:
    started.append(Child(*args))
    return started[-1]


def test_sigterm_flushes_then_ends_the_process_as_sigterm_does(
        url: str, child: list[Child]) -> None:
    """A SIGTERM writes every recorded call, then the process dies of SIGTERM as by default."""
    proc = _start(child, "stopped", url, "--calls", str(CALLS))
    proc.expect("ready")
    proc.proc.send_signal(signal.SIGTERM)
    assert proc.proc.wait(timeout=30) == -signal.SIGTERM
    assert _stored(url, "stopped") == CALLS


def test_without_flush_on_signal_a_sigterm_loses_the_interval(
        url: str, child: list[Child]) -> None:
    """``flush_on_signal=False`` leaves Python's default: SIGTERM skips the exit hooks."""
    proc = _start(child, "stopped", url, "--calls", str(CALLS), "--no-flush-on-signal")
    proc.expect("ready")
    proc.proc.send_signal(signal.SIGTERM)
    assert proc.proc.wait(timeout=30) == -signal.SIGTERM
    assert _stored(url, "stopped") == 0


def test_sigint_flushes_and_the_keyboardinterrupt_still_reaches_the_program(
        url: str, child: list[Child]) -> None:
    """SIGINT flushes, then raises KeyboardInterrupt as before: a program that catches it goes on."""
    proc = _start(child, "stopped", url, "--calls", str(CALLS), "--catch-sigint")
    proc.expect("ready")
    proc.proc.send_signal(signal.SIGINT)
    proc.expect("interrupted")
    assert proc.proc.poll() is None  # still running: the signal was handed over, not acted on
    assert _stored(url, "stopped") == CALLS  # written at the signal, an hour before its interval
    assert proc.proc.stdin is not None
    proc.proc.stdin.close()
    assert proc.proc.wait(timeout=30) == 0


def test_a_sigterm_handler_installed_before_still_runs_after_the_flush(
        url: str, child: list[Child]) -> None:
    """The program's own SIGTERM handler runs (here it leaves with os._exit) after the flush."""
    proc = _start(child, "stopped", url, "--calls", str(CALLS), "--own-handler")
    proc.expect("ready")
    proc.proc.send_signal(signal.SIGTERM)
    proc.expect("own handler ran")
    assert proc.proc.wait(timeout=30) == 3
    assert _stored(url, "stopped") == CALLS


def test_sigkill_loses_at_most_the_calls_since_the_last_flush(
        url: str, child: list[Child]) -> None:
    """What a flush wrote survives a SIGKILL; only the calls after it (one interval) are lost."""
    proc = _start(child, "bursts", url, "--first", "100", "--second", "50")
    flushed = int(proc.expect("flushed").split()[1])
    total = int(proc.expect("recorded").split()[1])
    proc.proc.send_signal(signal.SIGKILL)
    assert proc.proc.wait(timeout=30) == -signal.SIGKILL
    assert _stored(url, "bursts") == flushed  # the interval is an hour: nothing after the flush
    assert total - flushed == 50


def test_the_handler_goes_back_when_the_recorder_closes(url: str) -> None:
    """persist_metrics installs the flushing handler; close() gives the signals their old ones."""
    from seawall.storage._recorder_process import _flush_then_hand_over

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
