"""seawall.presets: the documented numbers, overrides, validation, and a call through each."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import seawall
from seawall import Backoff, Bulkhead, Timeout, presets
from seawall.testing import instant
from tests.docs_support import Page

BUILDERS = {"http_api": presets.http_api, "grpc_service": presets.grpc_service,
            "database": presets.database, "llm_api": presets.llm_api}
DOC = Path(__file__).resolve().parent.parent / "docs" / "presets.md"


def test_names_are_the_four_presets() -> None:
    """NAMES lists the presets the config file accepts."""
    assert presets.NAMES == ("http_api", "grpc_service", "database", "llm_api")


@pytest.mark.parametrize("preset", list(BUILDERS))
def test_each_preset_sets_every_policy(preset: str) -> None:
    """Retry, breaker, bulkhead and timeout set; the point carries the given name."""
    p = BUILDERS[preset]("dep")
    assert p.name == "dep"
    assert None not in (p.retry, p.breaker, p.bulkhead, p.timeout)


# the numbers of docs/presets.md's table, one row per preset
DOCUMENTED: dict[str, dict[str, Any]] = {
    "http_api": {"attempts": 3, "initial": 0.2, "maximum": 2.0, "server": 10.0,
                 "ratio": 0.2, "rate": 0.5, "window": (30.0, "time"), "minimum": 20,
                 "open_for": 10.0, "open_max": 120.0, "bulkhead": (100, 0.05),
                 "timeout": (5.0, 15.0)},
    "grpc_service": {"attempts": 3, "initial": 0.1, "maximum": 1.0, "server": 5.0,
                     "ratio": 0.2, "rate": 0.5, "window": (100, "count"), "minimum": 20,
                     "open_for": 5.0, "open_max": 60.0, "bulkhead": (100, 0.0),
                     "timeout": (2.0, 6.0)},
    "database": {"attempts": 3, "initial": 0.05, "maximum": 0.5, "server": 1.0,
                 "ratio": 0.1, "rate": 0.5, "window": (50, "count"), "minimum": 10,
                 "open_for": 5.0, "open_max": 60.0, "bulkhead": (15, 2.0),
                 "timeout": (5.0, 10.0)},
    "llm_api": {"attempts": 4, "initial": 1.0, "maximum": 20.0, "server": 60.0,
                "ratio": 0.1, "rate": 0.8, "window": (300.0, "time"), "minimum": 10,
                "open_for": 30.0, "open_max": 300.0, "bulkhead": (16, 5.0),
                "timeout": (120.0, 300.0)},
}


@pytest.mark.parametrize("preset", list(BUILDERS))
def test_numbers_are_the_documented_ones(preset: str) -> None:
    """Each preset holds the numbers docs/presets.md states."""
    want, p = DOCUMENTED[preset], BUILDERS[preset]("dep")
    assert p.retry is not None and p.breaker is not None and p.retry.budget is not None
    assert p.retry.attempts == want["attempts"]
    assert p.retry.backoff == Backoff.exponential(initial=want["initial"],
                                                  maximum=want["maximum"], jitter="full")
    assert p.retry.max_server_delay == want["server"]
    assert p.retry.budget.ratio == want["ratio"]
    assert p.breaker.failure_rate == want["rate"]
    assert (p.breaker.window, p.breaker.window_kind) == want["window"]
    assert p.breaker.minimum_calls == want["minimum"]
    assert (p.breaker.open_for, p.breaker.open_for_max) == (want["open_for"], want["open_max"])
    assert p.breaker.open_for_multiplier == 2.0
    assert p.bulkhead == Bulkhead(max_concurrent=want["bulkhead"][0],
                                  max_wait=want["bulkhead"][1])
    assert p.timeout == Timeout(attempt=want["timeout"][0], total=want["timeout"][1])


def test_doc_table_shows_the_same_numbers() -> None:
    """The doc's table carries each preset's attempts and timeouts as the code has them."""
    text = DOC.read_text(encoding="utf-8")
    assert "| attempts (first call included) | 3 | 3 | 3 | 4 |" in text
    assert "| timeout attempt / total | 5 s / 15 s | 2 s / 6 s | 5 s / 10 s | 120 s / 300 s |" in text


def test_overrides_replace_keywords_and_none_turns_off() -> None:
    """Any IntegrationPoint keyword overrides; None removes the policy."""
    fb = seawall.Fallback(value="cached")
    p = presets.http_api("x", bulkhead=None, fallback=fb, timeout=Timeout(attempt=1.0, total=3.0))
    assert p.bulkhead is None and p.fallback is fb
    assert p.timeout == Timeout(attempt=1.0, total=3.0)
    assert p.retry == presets.options("http_api")["retry"]


def test_an_unknown_keyword_is_a_type_error() -> None:
    """A misspelt override is not silently dropped."""
    with pytest.raises(TypeError, match="retries"):
        presets.http_api("x", retries=5)


def test_overrides_go_through_cross_validation() -> None:
    """An override that contradicts the rest of the preset fails at construction."""
    with pytest.raises(seawall.ConfigurationError, match=r"Timeout\.total \(0\.3 s\)"):
        presets.http_api("x", timeout=Timeout(total=0.3))


def test_options_are_fresh_and_unknown_presets_named() -> None:
    """options() gives a new dict each time; an unknown name lists the known ones."""
    a = presets.options("database")
    a["retry"] = None
    assert presets.options("database")["retry"] is not None
    with pytest.raises(seawall.ConfigurationError, match=r"'rest'.*http_api, grpc_service"):
        presets.options("rest")
    with pytest.raises(seawall.ConfigurationError) as info:
        presets.options(["http_api"])  # type: ignore[arg-type]  # not a name at all
    assert (info.value.field, info.value.value) == ("preset", ["http_api"])
    assert info.value.complaint == "must be one of http_api, grpc_service, database, llm_api"


@pytest.mark.parametrize("preset", list(BUILDERS))
def test_a_failing_call_retries_as_documented(preset: str) -> None:
    """Through each preset, an always-failing call makes its documented attempts (no waits)."""
    p = BUILDERS[preset]("dep")
    tries: list[int] = []

    def down() -> None:
        tries.append(1)
        raise ConnectionError("down")

    with instant() as view, pytest.raises(ConnectionError):
        p.call(down)
    assert len(tries) == DOCUMENTED[preset]["attempts"]
    assert len(view.skipped) == len(tries) - 1
    assert all(0 <= w <= DOCUMENTED[preset]["maximum"] for w in view.skipped)


@pytest.mark.parametrize("preset", list(BUILDERS))
def test_options_cover_every_keyword_a_preset_decides(preset: str) -> None:
    """options() names rate_limit, server_pacing, hedge and chaos too: off, on, off, off."""
    options = presets.options(preset)
    assert set(options) == {"retry", "breaker", "bulkhead", "timeout", "rate_limit",
                            "server_pacing", "hedge", "chaos"}
    assert (options["rate_limit"], options["server_pacing"], options["hedge"],
            options["chaos"]) == (None, True, None, None)
    p = BUILDERS[preset]("dep")
    assert p.pacing is not None and p.rate_limit is None and p.hedge is None and p.chaos is None
    assert type(p.bulkhead) is Bulkhead  # fixed, not adaptive: docs/presets.md says why


def test_llm_api_sets_pacing_on_itself_and_hedging_off() -> None:
    """Issue 15: server pacing on (not left to the default), a long max_server_delay, no hedge."""
    own = presets._llm_api()  # the preset's own numbers, before what every preset shares
    assert own["server_pacing"] is True and own["hedge"] is None
    p = presets.llm_api("model")
    assert p.pacing is not None and p.retry is not None and p.retry.max_server_delay == 60.0
    assert p.hedge is None


def test_new_policies_are_overrides_like_any_other() -> None:
    """A hedge, a rate limit, an adaptive bulkhead or pacing off, given as overrides."""
    p = presets.grpc_service("x", hedge=seawall.Hedge(delay=0.5),
                             rate_limit=seawall.RateLimit(rate=100.0),
                             bulkhead=seawall.AdaptiveBulkhead(maximum=100))
    assert p.hedge == seawall.Hedge(delay=0.5) and p.rate_limit == seawall.RateLimit(rate=100.0)
    assert isinstance(p.bulkhead, seawall.AdaptiveBulkhead)
    assert presets.llm_api("y", server_pacing=False).pacing is None


def test_presets_are_reachable_from_the_package() -> None:
    """``import seawall`` is enough for seawall.presets.http_api."""
    assert seawall.presets.http_api is presets.http_api


PAGE = Page(DOC)


def test_the_doc_has_only_runnable_python_blocks() -> None:
    """docs/presets.md shows code, and every python block of it is one this module runs."""
    assert PAGE.blocks
    assert set(PAGE.infos) == {"python"}


@pytest.mark.parametrize("index", range(len(PAGE.blocks)))
def test_doc_example_runs(index: int, tmp_path: Path) -> None:
    """Example number ``index`` of docs/presets.md exits 0 in a fresh interpreter."""
    PAGE.run(index, tmp_path)


def test_http_api_over_a_real_server_obeys_retry_after_without_waiting() -> None:
    """httpx through http_api: two 503s with Retry-After 7 s, then 200; the waits are skipped."""
    import httpx

    from seawall.interceptors import httpx as sw_httpx
    from tests.http_support import Reply, ScriptedServer

    p = presets.http_api("billing")
    with ScriptedServer() as server, instant() as view:
        server.script(Reply(503, headers=(("Retry-After", "7"),)),
                      Reply(503, headers=(("Retry-After", "7"),)), Reply(200, b"paid"))
        with httpx.Client(transport=sw_httpx.ResilientTransport(p)) as client:
            response = client.get(server.url + "/charge")
        assert (response.status_code, response.text) == (200, "paid")
        assert len(server.requests) == 3
    assert view.skipped == [7.0, 7.0]  # the server's hint, under the preset's 10 s cap
    assert p.stats().retries == 2


def test_llm_api_over_a_real_server_caps_a_long_retry_after_at_60_s() -> None:
    """A 429 asking for 600 s is waited (skipped here) only for the preset's 60 s cap."""
    import httpx

    from seawall.interceptors import httpx as sw_httpx
    from tests.http_support import Reply, ScriptedServer

    p = presets.llm_api("model")
    with ScriptedServer() as server, instant() as view:
        server.script(Reply(429, headers=(("Retry-After", "600"),)), Reply(200, b"text"))
        with httpx.Client(transport=sw_httpx.ResilientTransport(p)) as client:
            # a POST is retried when it carries an idempotency key
            response = client.post(server.url + "/v1/generate", json={},
                                   headers={"Idempotency-Key": "req-1"})
            assert response.text == "text"
    assert view.skipped == [60.0]
