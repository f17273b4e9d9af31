"""The dashboard in a real browser: headless Chromium loads the page against a scripted store.

The store is filled by real integration points (tests/browser_support.py);
the page is served by a real server on 127.0.0.1 and the checks read what
the page drew (SVG vertices, bars, breaker segments and marks). A
screenshot is saved to build/test-artifacts/; ``SEAWALL_UPDATE_SCREENSHOT=1``
also writes it to docs/images/dashboard.png.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from seawall.storage import Store, WebServer, serve_http
from tests.browser_support import (
    IDLE,
    MINUTES,
    OUTAGE,
    Tally,
    chromium,
    fill_store,
    save_screenshot,
)
from tests.web_support import vector

TOKEN = "browser-test-token"
WAIT = 30.0  # seconds: a bound for a loaded machine, not an expected time


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as driver:
        yield driver


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[WebServer, Tally]]:
    folder = tmp_path_factory.mktemp("dashboard")
    url = f"sqlite:///{folder / 'metrics.db'}"
    end = (time.time() // 60 - 2) * 60  # a past minute boundary: the pinned view's end
    tally = fill_store(url, end)
    with serve_http(url, "127.0.0.1:0") as web:
        yield web, tally


def _wait_state(driver: Any, *states: str) -> str:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        state = driver.execute_script("return document.body.dataset.state")
        if state in states:
            return str(state)
        time.sleep(0.1)
    banner = driver.execute_script("return document.getElementById('banner').textContent")
    raise AssertionError(f"page state {state!r}, wanted {states}; banner: {banner!r}")


def _open(driver: Any, url: str, *states: str) -> str:
    driver.get(url)
    return _wait_state(driver, *states)


DRAWN = """
const chart = document.querySelector(`section[data-point="${arguments[0]}"] [data-chart="${arguments[1]}"]`);
if (!chart) return null;
const out = {};
for (const g of chart.querySelectorAll("g[data-series]")) {
  const vertices = [...g.querySelectorAll("polyline")]
    .reduce((n, line) => n + line.getAttribute("points").trim().split(/\\s+/).length, 0);
  out[g.dataset.series] = {vertices: vertices + g.querySelectorAll("circle").length,
                           bars: g.querySelectorAll("rect").length};
}
return out;
"""

TIMELINE = """
const box = document.querySelector(`section[data-point="${arguments[0]}"] [data-chart="breaker"]`);
const axis = box.querySelector("line.axis");
const left = Number(axis.getAttribute("x1")), right = Number(axis.getAttribute("x2"));
const at = (x) => (Number(x) - left) / (right - left);
return {
  segments: [...box.querySelectorAll("rect.segment")].map((r) => [r.dataset.state,
    at(r.getAttribute("x")), at(Number(r.getAttribute("x")) + Number(r.getAttribute("width")))]),
  marks: [...box.querySelectorAll("g.transition")].map((g) => [g.dataset.from, g.dataset.to,
    at(g.querySelector("line").getAttribute("x1"))]),
  labels: [...box.querySelectorAll("text.mark-label")].map((t) => t.textContent),
};
"""


def _points(driver: Any) -> list[str]:
    return list(driver.execute_script(
        "return [...document.querySelectorAll('section.point')].map((s) => s.dataset.point)"))


def _errors(driver: Any) -> list[Any]:
    return [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]


def test_the_charts_hold_one_point_per_minute_of_the_hour(browser: Any, filled: Any) -> None:
    """Over 1 h: 60 calls/s vertices, 58 success and latency vertices (2 idle minutes), bars where due."""
    web, tally = filled
    _open(browser, f"{web.url}?end={tally.end:.0f}", "ready")
    assert _points(browser) == ["payments", "search"]
    api = httpx.get(f"{web.url}api/dashboard", params={"end": tally.end}, timeout=10).json()
    for point in api["points"]:
        name = point["name"]
        busy = MINUTES - len(IDLE)
        assert browser.execute_script(DRAWN, name, "calls") == {
            "calls/s": {"vertices": MINUTES, "bars": 0}}
        assert browser.execute_script(DRAWN, name, "success")["success"]["vertices"] == busy
        latency = browser.execute_script(DRAWN, name, "latency")
        assert latency["p50"]["vertices"] == latency["p99"]["vertices"] == busy
        bars = browser.execute_script(DRAWN, name, "bars")
        for series in ("retries", "rejections"):
            assert bars[series]["bars"] == sum(1 for v in point["series"][series] if v), series
        # the page shows what the callers made
        assert point["totals"]["calls"] == sum(tally.calls[name])
        shown = browser.execute_script(
            f"return document.querySelector('section[data-point=\"{name}\"] .figures b')"
            ".textContent")
        assert shown == f"{sum(tally.calls[name]) / 1000:.1f}k"
    payments = api["points"][0]["series"]["rejections"]
    assert {k for k, v in enumerate(payments) if v} <= set(OUTAGE) | {OUTAGE[-1] + 1}
    assert sum(tally.rejected["payments"]) > 0
    assert _errors(browser) == []
    save_screenshot(browser, "dashboard.png", docs=True)


def test_the_breaker_timeline_shows_the_opening(browser: Any, filled: Any) -> None:
    """payments' timeline turns open during the outage, marks each transition, closes after."""
    web, tally = filled
    _open(browser, f"{web.url}?end={tally.end:.0f}", "ready")
    drawn = browser.execute_script(TIMELINE, "payments")
    opened = [m for m in drawn["marks"] if m[1] == "open"]
    assert len(opened) == len(tally.opened) >= 1
    assert drawn["marks"][0][:2] == ["closed", "open"] and drawn["marks"][-1][1] == "closed"
    start = OUTAGE[0] / MINUTES
    assert start <= opened[0][2] <= (OUTAGE[0] + 1) / MINUTES
    states = [s for s, _, _ in drawn["segments"]]
    assert states[0] == "closed" and states[-1] == "closed" and "open" in states
    open_span = [(a, b) for s, a, b in drawn["segments"] if s == "open"]
    assert all(start <= a < b <= (OUTAGE[-1] + 2) / MINUTES for a, b in open_span)
    assert drawn["labels"] and drawn["labels"][0].startswith("opened ")
    badge = browser.execute_script(
        "return document.querySelector('section[data-point=\"payments\"] .badge').textContent")
    assert badge == "breaker closed"
    quiet = browser.execute_script(TIMELINE, "search")
    assert quiet["marks"] == [] and [s for s, _, _ in quiet["segments"]] == ["closed"]


def test_the_filters_and_the_window_selector_redraw_the_page(browser: Any, filled: Any) -> None:
    """Host and point filters narrow the page; 15 min and 24 h redraw with 15 and 288 points."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    web, tally = filled
    _open(browser, f"{web.url}?end={tally.end:.0f}", "ready")

    def redrawn(points: list[str]) -> None:
        deadline = time.monotonic() + WAIT
        while _points(browser) != points and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _points(browser) == points

    Select(browser.find_element(By.ID, "host")).select_by_value("web-2")
    redrawn(["search"])
    assert "host=web-2" in browser.current_url
    Select(browser.find_element(By.ID, "host")).select_by_value("")
    Select(browser.find_element(By.ID, "point")).select_by_value("payments")
    redrawn(["payments"])
    for window, count in (("900", 15), ("86400", 288)):
        browser.find_element(By.CSS_SELECTOR, f"#windows button[data-window='{window}']").click()
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            drawn = browser.execute_script(DRAWN, "payments", "calls")
            if drawn and drawn["calls/s"]["vertices"] == count:
                break
            time.sleep(0.1)
        assert drawn["calls/s"]["vertices"] == count
        assert f"window={window}" in browser.current_url
    assert _errors(browser) == []


def test_waits_hedges_and_the_limit_are_drawn_where_a_point_has_them(
        browser: Any, tmp_path: Path) -> None:
    """A paced, hedged, bulkheaded point gets its bars and its limit line; a plain one does not."""
    from seawall.storage._schema import HEDGES_SENT, HEDGES_WON, LIMIT_SAMPLES, LIMIT_SUM, WAITED

    end = (time.time() // 60 - 2) * 60
    last = int(end // 60) - 1  # the window's last minute
    rows: dict[tuple[str, str, int], list[float]] = {}
    for minute in range(last - 9, last + 1):
        vec = vector(successes=5)
        if minute % 2 == 0:
            vec[WAITED["paused"]], vec[HEDGES_SENT], vec[HEDGES_WON] = 2, 3, 1
        if minute >= last - 4:  # the bulkhead sampled only in the last five minutes
            vec[LIMIT_SUM], vec[LIMIT_SAMPLES] = 10 + minute - last + 4, 1
        rows[("pool", "get", minute)] = vec
        rows[("plain", "get", minute)] = vector(successes=1)
    store = Store(f"sqlite:///{tmp_path / 'metrics.db'}")
    try:
        store.write(rows, host="web-1", pid=1)
        with serve_http(store, "127.0.0.1:0") as web:
            _open(browser, f"{web.url}?window=900&end={end:.0f}", "ready")
            paced = sum(1 for m in range(last - 9, last + 1) if m % 2 == 0)
            assert browser.execute_script(DRAWN, "pool", "pacing") == {
                "waits": {"vertices": 0, "bars": paced}, "hedges": {"vertices": 0, "bars": paced}}
            assert browser.execute_script(DRAWN, "pool", "limit") == {
                "limit": {"vertices": 5, "bars": 0}}
            figures = browser.execute_script(
                "return document.querySelector('section[data-point=\"pool\"] .figures')"
                ".textContent")
            assert f"{2 * paced} waits" in figures and f"{3 * paced}/{paced} hedges" in figures
            assert "12 limit" in figures  # the mean of 10, 11, 12, 13, 14
            assert browser.execute_script(DRAWN, "plain", "pacing") is None
            assert browser.execute_script(DRAWN, "plain", "limit") is None
            assert _errors(browser) == []
    finally:
        store.close()


def test_an_empty_store_says_so_then_the_page_fills_itself(browser: Any, tmp_path: Path) -> None:
    """With no data the page says so; calls written later appear on the next refresh (every 5 s)."""
    store = Store(f"sqlite:///{tmp_path / 'metrics.db'}")
    try:
        with serve_http(store, "127.0.0.1:0") as web:
            _open(browser, web.url, "empty")
            message = browser.execute_script("return document.getElementById('empty').textContent")
            assert "No metrics recorded yet" in message
            assert "every 5 s" in browser.execute_script(
                "return document.getElementById('status').textContent")
            save_screenshot(browser, "dashboard-empty.png")
            seen = int(browser.execute_script("return document.body.dataset.refreshes"))
            store.write({("payments", "charge", int(time.time() // 60)): vector(successes=3)},
                        host="web-1", pid=1)
            _wait_state(browser, "ready")
            assert _points(browser) == ["payments"]
            assert int(browser.execute_script("return document.body.dataset.refreshes")) > seen
            assert _errors(browser) == []
    finally:
        store.close()


def test_a_token_protected_server_asks_for_the_token(browser: Any, filled: Any,
                                                     tmp_path: Path) -> None:
    """Behind a token the page asks for it, then shows the charts; #token= works too and is hidden."""
    from selenium.webdriver.common.by import By

    web, tally = filled
    with serve_http(web.store, "127.0.0.1:0", token=TOKEN) as guarded:
        browser.get(guarded.url + "healthz")  # a fresh origin: no token stored for it yet
        browser.execute_script("sessionStorage.clear()")
        _open(browser, f"{guarded.url}?end={tally.end:.0f}", "auth")
        assert browser.find_element(By.ID, "token-form").is_displayed()
        browser.find_element(By.ID, "token").send_keys(TOKEN)
        browser.find_element(By.CSS_SELECTOR, "#token-form button").click()
        _wait_state(browser, "ready")
        assert _points(browser) == ["payments", "search"]
        browser.execute_script("sessionStorage.clear()")
        browser.get("about:blank")
        _open(browser, f"{guarded.url}?end={tally.end:.0f}#token={TOKEN}", "ready")
        assert TOKEN not in browser.current_url
