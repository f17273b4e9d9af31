"""The HTTP side of ``seawall serve --http``: the JSON API's figures, its errors, its rules.

The API's numbers are checked against store contents written here; the
server is a real one on 127.0.0.1, reached over real sockets.
"""

from __future__ import annotations

import json
import re
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

import seawall
from seawall._cli import main
from seawall.storage import Store, WebServer, serve_http
from seawall.storage._dashboard_api import MAX_LANES, auto_step, dashboard
from seawall.storage._http_handler import ASSETS
from tests.web_support import banner, certificate, seawall_serve, stop, vector

ROOT = Path(__file__).resolve().parent.parent
END = 1_700_000_040.0  # a minute boundary (epoch seconds)
E = int(END // 60)  # the minute that starts at END; the window's last minute is E - 1
TOKEN = "s3cret-token-for-tests"


def _transition(store: Store, point: str, old: str, new: str, when: float, host: str = "web-1",
                pid: int = 1) -> None:
    store.write({}, [seawall.BreakerTransition(point, old, new, "scripted", when)],
                host=host, pid=pid)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(f"sqlite:///{tmp_path / 'metrics.db'}")
    yield s
    s.close()


@pytest.fixture
def web(store: Store) -> Iterator[WebServer]:
    with serve_http(store, "127.0.0.1:0") as server:
        yield server


def _get(server: WebServer, path: str, **kwargs: object) -> httpx.Response:
    return httpx.get(server.url.rstrip("/") + path, timeout=10.0, **kwargs)  # type: ignore[arg-type]


# -- the figures ---------------------------------------------------------------------------

def test_each_step_holds_its_minutes_figures(store: Store) -> None:
    """Over 15 minutes: 15 steps of 60 s, rates per second, percentiles, gaps where none ran."""
    store.write({("payments", "charge", E - 15): vector(successes=30),
                 ("payments", "charge", E - 1): vector(successes=45, failures={"transient": 15},
                                                       retries=20, refused={"budget": 2},
                                                       latencies={0.004: 50, 0.3: 10}),
                 ("payments", "charge", E - 16): vector(successes=99),  # before the window
                 ("payments", "charge", E): vector(successes=99)},  # after it
                host="web-1", pid=1)
    out = dashboard(store, {"window": ["900"], "end": [str(END)]}, now=END + 500)
    assert (out["step"], out["start"], out["end"], out["live"]) == (60, END - 900, END, False)
    assert out["t"] == [END - 900 + 60 * k for k in range(15)]
    (payments,) = out["points"]
    s = payments["series"]
    assert s["calls_per_second"] == [0.5] + [0.0] * 13 + [1.0]
    assert s["success_rate"] == [1.0] + [None] * 13 + [0.75]
    assert s["p50_ms"][1:14] == [None] * 13 and s["p99_ms"][1:14] == [None] * 13
    assert s["p50_ms"][-1] == pytest.approx(4.0, rel=0.1)
    assert s["p99_ms"][-1] == pytest.approx(300.0, rel=0.1)
    assert s["retries"] == [0] * 14 + [20] and s["rejections"] == [0] * 14 + [2]
    totals = payments["totals"]
    assert (totals["calls"], totals["successes"], totals["failures"]) == (90, 75, 15)
    assert totals["rejections_by_reason"]["budget"] == 2


def test_the_limit_is_a_level_per_step_with_gaps_where_none_was_sampled(store: Store) -> None:
    """concurrency_limit per step: the mean of the step's samples; null in steps without any."""
    from seawall.storage._schema import LIMIT_SAMPLES, LIMIT_SUM

    def limited(total: int, samples: int) -> list[float]:
        vec = vector(successes=1)
        vec[LIMIT_SUM], vec[LIMIT_SAMPLES] = total, samples
        return vec

    store.write({("pool", "get", E - 15): limited(24, 2), ("pool", "get", E - 2): vector(),
                 ("pool", "get", E - 1): limited(30, 3)}, host="web-1", pid=1)
    store.write({("pool", "get", E - 1): limited(20, 1)}, host="web-2", pid=2)
    (pool,) = dashboard(store, {"window": ["900"], "end": [str(END)]}, now=END)["points"]
    assert pool["series"]["concurrency_limit"] == [12.0] + [None] * 13 + [12.5]
    assert len(pool["series"]["concurrency_limit"]) == len(pool["series"]["waits"]) == 15


def test_live_the_current_step_is_a_rate_over_the_seconds_elapsed(store: Store) -> None:
    """20 s into a minute, 10 calls recorded in it read as 0.5 calls per second."""
    store.write({("search", "lookup", E): vector(successes=10),
                 ("search", "lookup", E - 1): vector(successes=60)}, host="h", pid=1)
    out = dashboard(store, {"window": ["900"]}, now=END + 20)
    assert out["live"] is True and out["t"][-1] == END
    assert out["points"][0]["series"]["calls_per_second"][-2:] == [1.0, 0.5]


def test_a_day_is_drawn_in_288_steps_of_five_minutes(store: Store) -> None:
    """24 h: steps of 300 s; one step sums its five minutes."""
    assert auto_step(86400) == 300 and auto_step(900) == auto_step(3600) == 60
    end = 1_700_000_100.0  # a multiple of 300
    first = int(end // 60) - 5
    store.write({("payments", "charge", first + k): vector(successes=6) for k in range(5)},
                host="h", pid=1)
    out = dashboard(store, {"window": ["86400"], "end": [str(end)]})
    assert out["step"] == 300 and len(out["t"]) == 288 and out["t"][-1] == end - 300
    series = out["points"][0]["series"]["calls_per_second"]
    assert series[-1] == 0.1 and sum(series[:-1]) == 0


def test_the_host_and_point_filters_narrow_the_figures(store: Store) -> None:
    """Only the chosen host's rows count; only the chosen point is listed."""
    store.write({("payments", "charge", E - 1): vector(successes=5),
                 ("search", "lookup", E - 1): vector(successes=7)}, host="web-1", pid=1)
    store.write({("payments", "charge", E - 1): vector(successes=11)}, host="web-2", pid=2)
    base = {"window": ["900"], "end": [str(END)]}
    everything = dashboard(store, base)
    assert [(p["name"], p["totals"]["calls"]) for p in everything["points"]] == [
        ("payments", 16), ("search", 7)]
    web2 = dashboard(store, {**base, "host": ["web-2"]})
    assert [(p["name"], p["totals"]["calls"]) for p in web2["points"]] == [("payments", 11)]
    search = dashboard(store, {**base, "point": ["search"]})
    assert [p["name"] for p in search["points"]] == ["search"]
    assert dashboard(store, {**base, "host": ["nowhere"]})["points"] == []


def test_breaker_lanes_start_in_the_state_of_the_windows_start(store: Store) -> None:
    """A lane per process: its state when the window began, then its transitions in order."""
    store.write({("payments", "charge", E - 3): vector(successes=3)}, host="web-1", pid=1)
    store.write({("payments", "charge", E - 3): vector(successes=3)}, host="web-2", pid=2)
    _transition(store, "payments", "closed", "open", END - 2000, host="web-2", pid=2)
    _transition(store, "payments", "closed", "open", END - 600)
    _transition(store, "payments", "open", "half_open", END - 540)
    _transition(store, "payments", "half_open", "closed", END - 530)
    _transition(store, "payments", "closed", "open", END + 100)  # after the window
    out = dashboard(store, {"window": ["900"], "end": [str(END)]})
    breaker = out["points"][0]["breaker"]
    lanes = {(lane["host"], lane["pid"]): lane for lane in breaker["lanes"]}
    first = lanes[("web-1", 1)]
    assert first["initial"] == "closed" and first["state"] == "closed"
    assert [(m["from"], m["to"]) for m in first["transitions"]] == [
        ("closed", "open"), ("open", "half_open"), ("half_open", "closed")]
    assert [m["time"] for m in first["transitions"]] == [END - 600, END - 540, END - 530]
    second = lanes[("web-2", 2)]
    assert (second["initial"], second["state"], second["transitions"]) == ("open", "open", [])
    assert breaker["states"] == {"closed": 1, "open": 1} and breaker["hidden_lanes"] == 0


def test_a_point_whose_breaker_moved_without_calls_is_listed(store: Store) -> None:
    """A transition alone puts a point on the page."""
    _transition(store, "ledger", "closed", "forced_open", END - 60)
    (ledger,) = dashboard(store, {"window": ["900"], "end": [str(END)]})["points"]
    assert ledger["name"] == "ledger" and ledger["totals"]["calls"] == 0
    assert ledger["breaker"]["lanes"][0]["state"] == "forced_open"


def test_more_processes_than_lanes_are_counted_not_drawn(store: Store) -> None:
    """At most MAX_LANES lanes; the processes that moved come first; the rest are counted."""
    for pid in range(MAX_LANES + 3):
        store.write({("payments", "charge", E - 1): vector(successes=1)}, host="web", pid=pid)
    _transition(store, "payments", "closed", "open", END - 30, host="web", pid=MAX_LANES + 2)
    breaker = dashboard(store, {"window": ["900"], "end": [str(END)]})["points"][0]["breaker"]
    assert len(breaker["lanes"]) == MAX_LANES and breaker["hidden_lanes"] == 3
    assert MAX_LANES + 2 in {lane["pid"] for lane in breaker["lanes"]}
    assert breaker["states"] == {"closed": MAX_LANES + 2, "open": 1}


def test_an_empty_store_answers_no_points(web: WebServer) -> None:
    """No data: both API calls answer 200 with empty lists."""
    assert _get(web, "/api/points").json() == {"points": [], "hosts": []}
    answer = _get(web, "/api/dashboard")
    assert answer.status_code == 200
    out = answer.json()
    assert out["points"] == [] and out["window"] == 3600 and len(out["t"]) == 60


def test_api_points_lists_points_operations_and_hosts(store: Store, web: WebServer) -> None:
    """/api/points names every point, its operations, and every host that wrote."""
    store.write({("payments", "charge", E): vector(successes=1),
                 ("payments", "refund", E): vector(successes=1)}, host="web-1", pid=1)
    store.write({("search", "lookup", E): vector(successes=1)}, host="web-2", pid=2)
    out = _get(web, "/api/points").json()
    assert [(p["name"], p["operations"]) for p in out["points"]] == [
        ("payments", ["charge", "refund"]), ("search", ["lookup"])]
    assert out["hosts"] == ["web-1", "web-2"]


def test_the_api_over_http_equals_the_function(store: Store, web: WebServer) -> None:
    """GET /api/dashboard with end= answers what dashboard() computes, as JSON."""
    store.write({("payments", "charge", E - 1): vector(successes=5)}, host="web-1", pid=1)
    answer = _get(web, "/api/dashboard", params={"window": "3600", "end": str(END)})
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    assert answer.headers["cache-control"] == "no-store"
    expected = dashboard(store, {"window": ["3600"], "end": [str(END)]})
    got = answer.json()
    assert {k: v for k, v in got.items() if k != "now"} == json.loads(json.dumps(
        {k: v for k, v in expected.items() if k != "now"}))


# -- bad requests --------------------------------------------------------------------------

@pytest.mark.parametrize(("query", "message"), [
    ("window=abc", "window must be a number of seconds, got 'abc'"),
    ("window=10", "window must be between 60 and 604800 seconds, got 10"),
    ("window=1e9", "window must be between 60 and 604800"),
    ("window=nan", "window must be finite"),
    ("window=60&window=120", "window given 2 times"),
    ("step=90", "step must be a positive multiple of 60 seconds, got 90"),
    ("step=0", "step must be a positive multiple of 60"),
    ("window=604800&step=60", "gives 10080 points; at most 1440"),
    ("end=-5", "end must be epoch seconds after the window's start"),
    ("end=inf", "end must be finite"),
    ("colour=red", "unknown parameter 'colour'"),
    ("point=" + "x" * 201, "point must be at most 200 characters"),
    ("host=" + "h" * 256, "host must be at most 255 characters"),
])
def test_a_bad_parameter_gets_400_naming_it(web: WebServer, query: str, message: str) -> None:
    """Each bad query parameter is answered 400 with a message; the server keeps serving."""
    answer = _get(web, "/api/dashboard?" + query)
    assert answer.status_code == 400
    assert message in answer.json()["error"]
    assert _get(web, "/api/dashboard").status_code == 200


def test_unknown_paths_methods_and_garbage_do_not_hurt_the_server(web: WebServer) -> None:
    """404 for an unknown page, 501 for POST, 400 for a broken request line; then it still serves."""
    missing = _get(web, "/nope")
    assert missing.status_code == 404 and "no such page: /nope" in missing.json()["error"]
    assert httpx.post(web.url + "api/dashboard", content=b"x", timeout=10).status_code == 501
    for garbage, code in ((b"\x00\xffNOT HTTP AT ALL\r\n\r\n", b"400"),
                          (b"GET / HTTP/9.z\r\n\r\n", b"400"),
                          (b"GET /%zz?window=%ff HTTP/1.0\r\n\r\n", b"404")):
        with socket.create_connection(("127.0.0.1", web.port), timeout=10) as raw:
            raw.sendall(garbage)
            answer = b""
            while chunk := raw.recv(4096):
                answer += chunk
        assert code in answer.split(b"\n", 1)[0] or b"Error code: " + code in answer, answer[:300]
    assert _get(web, "/healthz").text == "ok\n"


def test_a_client_that_sends_nothing_blocks_no_one(web: WebServer) -> None:
    """An idle connection holds one worker; other requests are answered meanwhile."""
    with socket.create_connection(("127.0.0.1", web.port), timeout=10):
        started = time.monotonic()
        assert _get(web, "/api/points").status_code == 200
        assert time.monotonic() - started < 8.0  # the idle one is cut after 10 s


def test_a_failing_store_answers_503_and_then_recovers(store: Store, web: WebServer) -> None:
    """A store error is 503 with a message, not a crash; the next good read is 200."""
    store.write({("payments", "charge", E): vector(successes=1)}, host="h", pid=1)
    with store.engine.begin() as conn:
        conn.execute(text("ALTER TABLE seawall_minute RENAME TO seawall_minute_away"))
    answer = _get(web, "/api/dashboard")
    assert answer.status_code == 503 and "store unavailable" in answer.json()["error"]
    with store.engine.begin() as conn:
        conn.execute(text("ALTER TABLE seawall_minute_away RENAME TO seawall_minute"))
    assert _get(web, "/api/dashboard").status_code == 200


def test_many_clients_at_once_while_a_writer_writes(store: Store, web: WebServer) -> None:
    """8 threads x 15 requests over the three data endpoints, during writes: every answer is 200."""
    stop = threading.Event()
    statuses: list[int] = []
    lock = threading.Lock()

    def writer() -> None:
        minute = int(time.time() // 60)
        for i in range(200):
            if stop.is_set():
                return
            store.write({("payments", "charge", minute): vector(successes=1)}, host="h", pid=i % 3)

    def reader(n: int) -> None:
        with httpx.Client(base_url=web.url, timeout=30.0) as client:
            for i in range(15):
                path = ("api/dashboard", "metrics", "api/points")[(n + i) % 3]
                code = client.get(path).status_code
                with lock:
                    statuses.append(code)

    threads = [threading.Thread(target=writer)] + [
        threading.Thread(target=reader, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads[1:]:
        t.join(120)
    stop.set()
    threads[0].join(60)
    assert statuses == [200] * (8 * 15)


# -- the page and its assets ---------------------------------------------------------------------

def test_the_page_and_its_assets_are_served_with_a_strict_policy(web: WebServer) -> None:
    """/, the script and the style sheet come from us, under a same-origin-only CSP."""
    page = _get(web, "/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert page.headers["x-content-type-options"] == "nosniff"
    for path, (_, content_type) in ASSETS.items():
        answer = _get(web, path)
        assert answer.status_code == 200 and answer.headers["content-type"] == content_type


def test_no_asset_refers_to_anything_elsewhere(web: WebServer) -> None:
    """The only absolute URL in the page, script and styles is the SVG namespace (never fetched)."""
    for path in ASSETS:
        body = _get(web, path).text
        urls = set(re.findall(r"(?:https?:)?//[\w.-]+\.[a-z]{2,}[^\s\"')]*", body))
        assert urls <= {"http://www.w3.org/2000/svg"}, (path, urls)
        assert "@import" not in body and "<iframe" not in body


def test_the_page_draws_waits_hedges_and_the_limit(web: WebServer) -> None:
    """app.js reads the waits, hedges and limit series and totals, and styles each series."""
    script = _get(web, "/static/app.js").text
    style = _get(web, "/static/style.css").text
    for series in ("waits", "hedges", "concurrency_limit"):
        assert f"s.{series}" in script, series
    for total in ("waits_by_reason", "hedges_sent", "hedges_won", "concurrency_limit"):
        assert f"t.{total}" in script, total
    for chart in ('barChart("pacing"', 'lineChart("limit"'):
        assert chart in script, chart
    for color in ("--waits", "--hedges", "--limit"):
        assert f"var({color})" in script and f"{color}:" in style, color


def test_a_page_elsewhere_cannot_read_a_loopback_server_through_dns_rebinding(
        web: WebServer) -> None:
    """Without a token the server only answers requests addressed to a loopback name."""
    evil = _get(web, "/api/points", headers={"Host": "attacker.example:8057"})
    assert evil.status_code == 421
    for host in (f"127.0.0.1:{web.port}", f"localhost:{web.port}", "localhost"):
        assert _get(web, "/api/points", headers={"Host": host}).status_code == 200


# -- exposure rules: loopback, token, TLS, address in use -----------------------------------------

def test_a_public_address_needs_a_token_and_nothing_is_bound(store: Store) -> None:
    """``0.0.0.0`` without a token is refused before binding, naming the way out."""
    with pytest.raises(seawall.ConfigurationError, match="without a token") as caught:
        serve_http(store, "0.0.0.0:0")
    assert "--token" in str(caught.value) and "127.0.0.1" in str(caught.value)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"listen": "nowhere"}, "listen must be HOST:PORT"),
    ({"listen": "127.0.0.1:99999"}, "port 0-65535"),
    ({"token": "short"}, "at least 8 characters"),
    ({"token": "has space in it"}, "without spaces"),
    ({"tls_cert": "cert.pem"}, "both a certificate and a key"),
    ({"tls_cert": "/no/such/cert.pem", "tls_key": "/no/such/key.pem"}, "cannot read"),
    ({"tls_cert": b"not a pem", "tls_key": b"not a pem"}, "cannot load the TLS certificate"),
])
def test_bad_options_are_refused_with_a_message(store: Store, kwargs: dict[str, object],
                                                message: str) -> None:
    """Each bad option is a ConfigurationError naming the problem."""
    options = {"listen": "127.0.0.1:0", **kwargs}
    with pytest.raises(seawall.ConfigurationError, match=message):
        serve_http(store, **options)  # type: ignore[arg-type]


def test_with_a_token_data_needs_the_bearer_and_the_page_does_not(store: Store) -> None:
    """/api and /metrics want ``Authorization: Bearer``; the page, its assets and /healthz stay open."""
    with serve_http(store, "127.0.0.1:0", token=TOKEN) as web:
        for path in ("/api/points", "/api/dashboard", "/metrics"):
            refused = _get(web, path)
            assert refused.status_code == 401, path
            assert refused.headers["www-authenticate"].startswith("Bearer")
            for wrong in ("Bearer nope", f"Bearer {TOKEN}x", TOKEN, f"bearer {TOKEN}"):
                assert _get(web, path, headers={"Authorization": wrong}).status_code == 401
            good = _get(web, path, headers={"Authorization": f"Bearer {TOKEN}"})
            assert good.status_code == 200, path
        for path in ("/", "/static/app.js", "/healthz"):
            assert _get(web, path).status_code == 200
        # with a token the Host check gives way: the token is what protects the data
        assert _get(web, "/api/points", headers={"Host": "metrics.internal",
                                                  "Authorization": f"Bearer {TOKEN}"}
                    ).status_code == 200


def test_the_token_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch,
                                                store: Store) -> None:
    """The check goes through hmac.compare_digest with the whole header."""
    import seawall.storage._http_handler as http_module

    seen: list[tuple[bytes, bytes]] = []
    real = http_module.hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        seen.append((a, b))
        return real(a, b)

    monkeypatch.setattr(http_module.hmac, "compare_digest", spy)
    with serve_http(store, "127.0.0.1:0", token=TOKEN) as web:
        _get(web, "/api/points", headers={"Authorization": "Bearer guess"})
    assert seen == [(b"Bearer guess", f"Bearer {TOKEN}".encode())]


def test_tls_serves_https_only(store: Store, tmp_path: Path) -> None:
    """With a certificate and key the server speaks HTTPS; a client trusting it gets in."""
    cert, key = certificate(tmp_path)
    with serve_http(store, "127.0.0.1:0", token=TOKEN, tls_cert=str(cert),
                    tls_key=key.read_bytes()) as web:
        assert web.url.startswith("https://127.0.0.1:")
        context = ssl.create_default_context(cafile=str(cert))
        answer = httpx.get(web.url + "api/points", verify=context, timeout=10,
                           headers={"Authorization": f"Bearer {TOKEN}"})
        assert answer.status_code == 200
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{web.port}/api/points", timeout=5)
        with pytest.raises(httpx.ConnectError):
            httpx.get(web.url, timeout=5)  # not trusted without the CA
        assert httpx.get(web.url + "healthz", verify=context, timeout=10).text == "ok\n"


def test_an_address_in_use_is_refused_clearly(store: Store, web: WebServer) -> None:
    """A second server on the same port fails with a message saying the address is in use."""
    with pytest.raises(seawall.ConfigurationError, match="address is in use"):
        serve_http(store, f"127.0.0.1:{web.port}")
    assert _get(web, "/healthz").status_code == 200


def test_stop_is_idempotent_and_frees_the_port(store: Store) -> None:
    """After stop() the port can be bound again; a second stop() does nothing."""
    server = serve_http(store, "127.0.0.1:0")
    port = server.port
    server.stop()
    server.stop()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", port))


def test_ipv6_loopback_is_loopback(store: Store) -> None:
    """``[::1]:0`` serves without a token; a machine without IPv6 loopback says so clearly."""
    try:
        server = serve_http(store, "[::1]:0")
    except seawall.ConfigurationError as exc:  # no ::1 on this machine: a clear refusal
        assert "[::1]:0" in str(exc)
        return
    with server:
        assert server.url.startswith("http://[::1]:")
        assert httpx.get(server.url + "healthz", timeout=10).status_code == 200


# -- the command line ---------------------------------------------------------------------------

def test_serve_http_prints_the_dashboard_and_stops_on_sigterm(tmp_path: Path) -> None:
    """``seawall serve --http`` prints where the dashboard is, serves it, exits 0 on SIGTERM."""
    url = f"sqlite:///{tmp_path / 'metrics.db'}"
    with seawall_serve("--store", url, "--create", "--listen", "127.0.0.1:0",
                       "--http", "127.0.0.1:0") as proc:
        banner(proc, " on 127.0.0.1:")
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "dashboard at http://127.0.0.1:" in line, line
        page = line.split("dashboard at ", 1)[1].split(",")[0]
        assert httpx.get(page, timeout=10).status_code == 200
        assert httpx.get(page + "metrics", timeout=10).status_code == 200
        stop(proc)


def test_serve_http_on_a_public_address_without_a_token_fails_in_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """``--http 0.0.0.0:...`` without --token exits 2 (a usage error) and says why, in one line."""
    monkeypatch.delenv("SEAWALL_METRICS_TOKEN", raising=False)
    code = main(["serve", "--store", str(tmp_path / "m.db"), "--create", "--listen", "127.0.0.1:0",
                 "--http", "0.0.0.0:8057"])
    assert code == 2
    err = capsys.readouterr().err
    assert "over HTTP on 0.0.0.0:8057 without a token" in err
    assert len(err.strip().splitlines()) == 1


def test_serve_http_on_a_port_in_use_fails_in_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], web: WebServer) -> None:
    """``--http`` on a taken port exits 2 saying the address is in use, as ``--listen`` does."""
    code = main(["serve", "--store", str(tmp_path / "m.db"), "--create", "--listen", "127.0.0.1:0",
                 "--http", f"127.0.0.1:{web.port}"])
    assert code == 2
    err = capsys.readouterr().err
    assert "address is in use" in err and len(err.strip().splitlines()) == 1
