"""Helpers of the service-side tests: aggregate vectors, a certificate, ``seawall serve`` in a subprocess."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest

import seawall
from seawall.storage import _histogram as hist
from seawall.storage._schema import (
    CALLS,
    CANCELLED,
    FAILED,
    FAILURES,
    FALLBACKS,
    H0,
    LATENCY_SUM,
    REFUSED,
    REJECTED,
    RETRIES,
    SUCCESSES,
    TIMEOUTS,
    WIDTH,
)


def vector(*, successes: int = 0, failures: Mapping[str, int] | None = None, rejected: int = 0,
           cancelled: int = 0, retries: int = 0, refused: Mapping[str, int] | None = None,
           fallbacks: int = 0, timeouts: int = 0,
           latencies: Mapping[float, int] | None = None) -> list[float]:
    """An aggregate vector as the recorder writes it; ``latencies`` maps seconds to a count.

    Without ``latencies``, every call that ran (successes and failures) took 10 ms.
    """
    vec: list[float] = [0] * WIDTH
    failed = dict(failures or {})
    vec[SUCCESSES] = successes
    vec[FAILURES] = sum(failed.values())
    for category, n in failed.items():
        vec[FAILED[seawall.Category(category)]] = n
    vec[REJECTED] = rejected
    vec[CANCELLED] = cancelled
    vec[CALLS] = successes + vec[FAILURES] + rejected + cancelled
    vec[RETRIES] = retries
    for reason, n in (refused or {}).items():
        vec[REFUSED[reason]] = n
    vec[FALLBACKS] = fallbacks
    vec[TIMEOUTS] = timeouts
    ran = successes + int(vec[FAILURES])
    spread = dict(latencies) if latencies is not None else ({0.010: ran} if ran else {})
    assert sum(spread.values()) == ran, "latencies must cover every call that ran"
    for seconds, n in spread.items():
        vec[H0 + hist.bucket_of(seconds)] += n
        vec[LATENCY_SUM] += seconds * n
    return vec


def certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost: ``(cert.pem, key.pem)``."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is needed to make a test certificate")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60)
    return cert, key


ROOT = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def seawall_serve(*args: str, cwd: Path = ROOT,
                  prefix: Sequence[str] = ()) -> Iterator[subprocess.Popen[str]]:
    """``python -m seawall serve ARGS`` in a fresh interpreter, its pipes as text.

    ``prefix`` goes before the interpreter (``setpriv ...`` to drop root). On the
    way out a process still running is killed and both pipes are closed; a test
    that means to check a clean stop calls :func:`stop` itself.
    """
    proc = subprocess.Popen(
        [*prefix, sys.executable, "-m", "seawall", "serve", *args], cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()


def banner(proc: subprocess.Popen[str], expected: str) -> str:
    """The first line ``serve`` prints, checked to contain ``expected`` (stderr shown if not)."""
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert expected in line, proc.stderr.read() if proc.stderr and not line else line
    return line


def stop(proc: subprocess.Popen[str]) -> None:
    """SIGTERM, then the process must exit 0 within 20 s."""
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0
