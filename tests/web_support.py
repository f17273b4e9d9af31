"""Helpers of the HTTP-side tests (dashboard API, /metrics): aggregate vectors, a certificate."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping
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
