"""Helpers of the dashboard tests: a scripted workload and a headless Chromium.

:func:`fill_store` runs real integration points (retry, breaker) against a
scripted dependency for an hour of simulated time and records their events
through a real :class:`~seawall.storage.Recorder` into a real store. Only
the time is simulated: the points run on a :class:`FakeClock` (so latencies
and the breaker's ``open_for`` take no real time) and a hook stamps each
event with the matching wall-clock time, minute by minute over the hour
before ``end``. The workload counts what its callers saw, independently of
the store, in :class:`Tally`.

:func:`chromium` starts Debian's ``chromium`` through ``chromedriver`` with
Selenium, with the flags that work offline and as root; it skips (a failure
in CI) when either is missing. ``.ci/browser-deps`` installs them.
"""

from __future__ import annotations

import base64
import os
import random
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import seawall
from seawall.storage import Recorder, Store
from seawall.testing import FakeClock

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "build" / "test-artifacts"
DOCS_SCREENSHOT = ROOT / "docs" / "images" / "dashboard.png"
MINUTES = 60
IDLE = (12, 13)  # minutes without any call: gaps in the latency and success lines
OUTAGE = range(40, 44)  # minutes when the payments dependency is down
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--hide-scrollbars", "--force-color-profile=srgb",
)


@dataclass
class Tally:
    """What the workload's callers saw, per point and minute index (0 = the oldest)."""

    calls: dict[str, list[int]] = field(default_factory=dict)
    rejected: dict[str, list[int]] = field(default_factory=dict)
    opened: list[float] = field(default_factory=list)  # wall times the payments breaker opened
    end: float = 0.0

    def minute(self, point: str, what: str) -> list[int]:
        table = getattr(self, what)
        return table.setdefault(point, [0] * MINUTES)  # type: ignore[no-any-return]


class _Dependency:
    """A scripted downstream: latency from a seeded draw, down during the outage."""

    def __init__(self, clock: FakeClock, seed: int, base_ms: float) -> None:
        self.clock = clock
        self.rand = random.Random(seed)
        self.base = base_ms / 1000.0
        self.down = False

    def call(self) -> str:
        slow = self.rand.random() < 0.03
        latency = self.base * (6.0 if slow else 0.6 + 0.8 * self.rand.random())
        self.clock.sleep(latency)
        if self.down:
            raise ConnectionError("dependency down")
        if self.rand.random() < 0.02:
            raise ConnectionError("one flaky answer")
        return "ok"


def _operation(name: str, dependency: _Dependency) -> Any:
    def operation() -> str:
        return dependency.call()

    operation.__name__ = operation.__qualname__ = name  # the operation label in the store
    return operation


def _point(name: str, clock: FakeClock) -> seawall.IntegrationPoint:
    return seawall.IntegrationPoint(
        name, clock=clock,
        retry=seawall.Retry(attempts=3, backoff=seawall.Backoff.constant(0.01), budget=None),
        breaker=seawall.CircuitBreaker(failure_rate=0.5, minimum_calls=10, window=20,
                                       open_for=60.0, half_open_calls=2),
    )


def fill_store(url: str, end: float, *, seed: int = 3) -> Tally:
    """Record an hour of two points ending at ``end`` (a minute boundary) into ``url``.

    ``payments`` (host ``web-1``) answers in ~20 ms, fails now and then
    (retried), and is down for minutes 40-43: its breaker opens, rejects,
    probes half-open and closes again once it is back. ``search`` (host
    ``web-2``) answers in ~4 ms. Nobody calls in minutes 12 and 13.
    """
    if end % 60:
        raise ValueError(f"end must be on a minute boundary, got {end!r}")
    tally = Tally(end=end)
    start = end - MINUTES * 60
    for name, host, base_ms, rate in (("payments", "web-1", 20.0, 180), ("search", "web-2", 4.0, 420)):
        clock = FakeClock(start=0.0)
        store = Store(url)
        recorder = Recorder(store, flush_interval=3600.0, owns_store=True)
        seawall.remove_hook(recorder.hook)  # only this point's events, stamped below
        recorder.host = host
        point = _point(name, clock)
        dependency = _Dependency(clock, seed + len(name), base_ms)

        def stamp(event: Any, forward: Any = recorder.hook, clock: FakeClock = clock) -> None:
            event = event._replace(time=start + clock.now())
            if isinstance(event, seawall.BreakerTransition) and event.to_state == "open":
                tally.opened.append(event.time)
            forward(event)

        point.add_hook(stamp)
        operation = _operation("charge" if name == "payments" else "lookup", dependency)
        try:
            for minute in range(MINUTES):
                minute_end = (minute + 1) * 60.0
                dependency.down = name == "payments" and minute in OUTAGE
                calls = 0 if minute in IDLE else rate + (minute * 7) % 11
                gap = 60.0 / max(calls, 1)
                for i in range(calls):
                    clock.advance(max(0.0, minute * 60.0 + i * gap - clock.now()))
                    if clock.now() >= minute_end:
                        break
                    tally.minute(name, "calls")[minute] += 1
                    try:
                        point.call(operation)
                    except seawall.CircuitOpenError:
                        tally.minute(name, "rejected")[minute] += 1
                    except ConnectionError:
                        pass
                tally.minute(name, "rejected")
                clock.advance(max(0.0, minute_end - clock.now()))
        finally:
            point.remove_hook(stamp)
            recorder.close()
    return tally


def chromium_paths() -> tuple[str, str] | None:
    """``(browser, driver)`` executables, or None when either is missing."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if browser is None or driver is None:
        return None
    return browser, driver


@contextmanager
def chromium(width: int = 1440, height: int = 1000) -> Iterator[Any]:
    """A headless Chromium WebDriver session (offline-safe flags, a fresh profile)."""
    paths = chromium_paths()
    if paths is None:
        pytest.skip("Debian's chromium and chromium-driver are needed (.ci/browser-deps)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser, driver_path = paths
    profile = tempfile.mkdtemp(prefix="seawall-chromium-")
    options = webdriver.ChromeOptions()
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument(f"--window-size={width},{height}")
    options.binary_location = browser
    service = Service(executable_path=driver_path, log_output=os.devnull)
    driver = webdriver.Chrome(options=options, service=service)
    try:
        driver.set_page_load_timeout(30)
        driver.set_script_timeout(30)
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def save_screenshot(driver: Any, name: str, *, docs: bool = False) -> Path:
    """Save a full-page PNG under build/test-artifacts/ (and as the docs image when ``docs``).

    The docs image is rewritten only when ``SEAWALL_UPDATE_SCREENSHOT=1``.
    """
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    width, height = driver.execute_script(
        "const parts = [...document.body.children].filter((e) => !e.hidden);"
        "const bottom = Math.max(...parts.map((e) => e.getBoundingClientRect().bottom));"
        "return [document.documentElement.scrollWidth, Math.ceil(bottom + 16)]")
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1},
    })
    path = ARTIFACTS / name
    path.write_bytes(base64.b64decode(shot["data"]))
    if docs and os.environ.get("SEAWALL_UPDATE_SCREENSHOT") == "1":
        DOCS_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOCS_SCREENSHOT)
    return path
