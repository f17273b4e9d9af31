"""seawall.load_points: points from TOML, presets as a base, errors naming file, key and value."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest

import seawall
from seawall import (
    AdaptiveBulkhead,
    Backoff,
    Bulkhead,
    Chaos,
    CircuitBreaker,
    ConfigurationError,
    Hedge,
    RateLimit,
    RetryBudget,
    Timeout,
)
from seawall._config import FIELDS, points_from_toml
from seawall.testing import instant
from tests.docs_support import Page

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "resilience.toml"


def load(tmp_path: Path, text: str, name: str = "resilience.toml") -> dict[str, Any]:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return seawall.load_points(path)


def refused(tmp_path: Path, text: str) -> str:
    """The ConfigurationError's message for ``text``."""
    with pytest.raises(ConfigurationError) as info:
        load(tmp_path, text)
    return str(info.value)


# -- the example file ---------------------------------------------------------------------

def test_the_example_file_loads_every_point() -> None:
    """examples/resilience.toml gives its seven points, presets and overrides applied."""
    points = seawall.load_points(EXAMPLE)
    assert list(points) == ["payments", "inventory", "orders-db", "assistant", "search",
                            "recommendations", "geocoder"]
    pay = points["payments"]
    base = seawall.presets.options("http_api")
    assert pay.name == "payments" and pay.retry is not None and pay.breaker is not None
    assert pay.retry.attempts == 4 and pay.retry.backoff == base["retry"].backoff
    assert pay.breaker.failure_rate == 0.3 and pay.breaker.window == base["breaker"].window
    assert pay.timeout == Timeout(attempt=2.0, total=8.0)
    assert points["orders-db"].breaker is None
    assert points["orders-db"].bulkhead == Bulkhead(max_concurrent=30, max_wait=1.0)
    geo = points["geocoder"]
    assert geo.retry is not None and geo.retry.on == (KeyError,)
    assert geo.retry.backoff == Backoff.exponential(initial=0.05, multiplier=3.0, maximum=1.0,
                                                    jitter="equal")
    assert geo.retry.budget == RetryBudget(ratio=0.1, minimum_per_second=2.0, period=10.0)
    assert geo.breaker == CircuitBreaker(
        failure_rate=0.5, minimum_calls=10, window=60.0, window_kind="time", buckets=12,
        slow_call_duration=2.0, slow_call_rate=0.8, open_for=15.0, open_for_multiplier=2.0,
        open_for_max=120.0, half_open_calls=2)
    search = points["search"]
    assert search.rate_limit == RateLimit(rate=50.0, burst=5, max_wait=0.5)
    assert search.hedge == Hedge(delay=0.2, max_extra=1)
    assert search.bulkhead == AdaptiveBulkhead(initial=16, maximum=100, max_wait=0.05)
    assert search.pacing is not None and search.retry == base["retry"]
    rec = points["recommendations"]
    assert rec.pacing is None and rec.chaos is not None and not rec.chaos.enabled
    fault = rec.chaos.policy.fault
    assert isinstance(fault, ConnectionError) and fault.args == ("injected",)
    # exceptions compare by identity: the rest of the policy, with the same fault
    assert rec.chaos.policy == Chaos(fault_rate=0.3, fault=fault, latency_rate=0.1, latency=0.2,
                                     seed=7, enabled=False)


def test_calls_through_the_example_points() -> None:
    """Each point of the example works: retries as configured, fallbacks answer."""
    points = seawall.load_points(EXAMPLE)
    tries: dict[str, int] = {}

    def down(name: str, exc: Exception) -> Any:
        def fn() -> None:
            tries[name] = tries.get(name, 0) + 1
            raise exc
        return fn

    with instant():
        with pytest.raises(ConnectionError):
            points["payments"].call(down("payments", ConnectionError("down")))
        assert points["inventory"].call(lambda: "stock") == "stock"
        assert points["assistant"].call(down("assistant", TimeoutError())).startswith("The")
        assert points["geocoder"].call(down("geocoder", KeyError("lat"))) == {"lat": 0.0,
                                                                             "lon": 0.0}
    assert tries == {"payments": 4, "assistant": 4, "geocoder": 3}


async def test_the_example_search_point_takes_async_calls() -> None:
    """The hedged, rate-limited, adaptive search point answers an async call."""
    search = seawall.load_points(EXAMPLE)["search"]

    async def query() -> str:
        return "hits"

    assert await search.acall(query) == "hits"
    assert search.stats().successes == 1


def test_the_example_rehearsal_injects_once_enabled(monkeypatch: pytest.MonkeyPatch) -> None:
    """recommendations: untouched while chaos is off; enabled, faults meet retry and fallback."""
    monkeypatch.delenv("SEAWALL_CHAOS", raising=False)  # the safety switch would win
    rec = seawall.load_points(EXAMPLE)["recommendations"]
    assert rec.chaos is not None
    with instant():
        assert rec.call(lambda: ["a"]) == ["a"]
        assert rec.stats().injected_attempts == 0
        rec.chaos.enable()
        answers = [rec.call(lambda: ["a"]) for _ in range(30)]
    assert all(answer in (["a"], []) for answer in answers)
    assert rec.stats().injected_attempts > 0


# -- errors name the file, the key path and the value ----------------------------------------

def test_the_issues_own_example_message(tmp_path: Path) -> None:
    """A string where an integer belongs (a type only the reader sees): file, key path, value."""
    text = refused(tmp_path, '[payments.retry]\nattempts = "3"\n')
    assert text == (f"{tmp_path / 'resilience.toml'}: payments.retry.attempts: "
                    f'must be an integer ≥ 1, got "3"')


def test_a_range_error_is_the_policys_own_under_the_key_path(tmp_path: Path) -> None:
    """attempts = 0 is refused by Retry itself; the reader words it with file and key path."""
    with pytest.raises(ConfigurationError) as info:
        load(tmp_path, "[payments.retry]\nattempts = 0\n")
    assert str(info.value) == (f"{tmp_path / 'resilience.toml'}: payments.retry.attempts: "
                               f"must be >= 1, got 0")
    with pytest.raises(ConfigurationError) as direct:
        seawall.Retry(attempts=0)
    assert str(direct.value) == "Retry.attempts must be >= 1, got 0"  # the code's own message
    for error in (info.value, direct.value):
        assert (error.field, error.value, error.complaint) == ("attempts", 0, "must be >= 1")


def test_the_reader_no_longer_checks_ranges() -> None:
    """FIELDS checks TOML types only: every number in range or not passes it, for the policy."""
    for kind, keys in FIELDS.items():
        for key, check in keys.items():
            if check(1) is None:  # a key that takes numbers
                assert check(-1) is None and check(10**9) is None and check(0.5) in (
                    None, "must be an integer", "must be an integer ≥ 1"), (kind.__name__, key)


def test_policy_errors_carry_field_value_and_complaint() -> None:
    """Each policy's own refusal names its field and value apart from the message."""
    cases: list[tuple[Any, str, Any, str]] = [
        (lambda: Timeout(attempt=5.0, total=3.0), "attempt", 5.0, "must be <= total (3.0)"),
        (lambda: Hedge(delay=0.1, max_extra=11), "max_extra", 11, "must be <= 10"),
        (lambda: Backoff(kind="linear", initial=2.0, maximum=1.0), "maximum", 1.0,
         "must be >= initial (2.0)"),
        (lambda: CircuitBreaker(minimum_calls=200), "minimum_calls", 200,
         "must be <= window (100) for a count window"),
        (lambda: Chaos(fault_rate=0.5), "fault", None,
         "is needed when fault_rate > 0 (fault_rate=0.5)"),
        (lambda: RetryBudget(ratio=2), "ratio", 2, "must be in [0, 1]"),
    ]
    for make, field, value, complaint in cases:
        with pytest.raises(ConfigurationError) as info:
            make()
        assert (info.value.field, info.value.value, info.value.complaint) == \
            (field, value, complaint)
        assert complaint in str(info.value)


@pytest.mark.parametrize(("toml", "where"), [
    ("[p]\nretries = 3\n", "p.retries: unknown key"),
    ("[p.retry]\nattemps = 3\n", "p.retry.attemps: unknown key (a Retry takes attempts"),
    ("[p.retry.backoff]\nstart = 1.0\n", "p.retry.backoff.start: unknown key"),
    ("[p.retry.budget]\nrate = 0.1\n", "p.retry.budget.rate: unknown key"),
    ("[p.breaker]\nthreshold = 0.5\n", "p.breaker.threshold: unknown key"),
    ("[p.bulkhead]\nmax_concurrent = 2\nqueue = 3\n", "p.bulkhead.queue: unknown key"),
    ("[p.timeout]\nconnect = 1.0\n", "p.timeout.connect: unknown key"),
    ("[p.fallback]\nvalue = 1\ndefault = 2\n", "p.fallback.default: unknown key"),
])
def test_unknown_keys_are_errors_at_every_level(tmp_path: Path, toml: str, where: str) -> None:
    """A misspelt key anywhere is refused with its full path, never ignored."""
    assert where in refused(tmp_path, toml)


def test_every_policy_field_is_a_key_of_its_table() -> None:
    """FIELDS is written by hand (its checks word the file's errors): it must name every field
    of each policy, so a field added to a policy cannot go missing from the config file."""
    for kind, keys in FIELDS.items():
        fields = {f.name for f in dataclasses.fields(kind) if f.init}
        assert fields <= set(keys), (kind.__name__, fields - set(keys))


# one wrong value per field of every policy table, and the path it is reported at
WRONG: list[tuple[str, str, str]] = [
    (table, field, value)
    for table, kind, value in [
        ("retry", seawall.Retry, '"x"'), ("retry.backoff", Backoff, "-1"),
        ("retry.budget", RetryBudget, "-1"), ("breaker", CircuitBreaker, "-1"),
        ("bulkhead", Bulkhead, "-1"), ("timeout", Timeout, "-1"),
        ("fallback", seawall.Fallback, "3"), ("rate_limit", RateLimit, "-1"),
        ("hedge", Hedge, "-1"), ("chaos", Chaos, "[]"), ("bulkhead", AdaptiveBulkhead, "-1"),
    ]
    for field in FIELDS[kind]
    if not (table == "retry" and field in ("backoff", "budget"))
    and field not in ("value", "result")
    and not (kind is AdaptiveBulkhead and field == "kind")
]

ADAPTIVE = {("bulkhead", f) for f in FIELDS[AdaptiveBulkhead] if f not in FIELDS[Bulkhead]}


# the fields a table cannot do without, written beside the wrong one
REQUIRED = {"bulkhead": ("max_concurrent", "1"), "rate_limit": ("rate", "1.0"),
            "hedge": ("delay", "0.1")}


@pytest.mark.parametrize(("table", "field", "value"), WRONG)
def test_every_field_is_checked_with_its_path(tmp_path: Path, table: str, field: str,
                                              value: str) -> None:
    """Each field of each policy refuses a wrong value, naming point.table.field and the value."""
    adaptive = 'kind = "adaptive"\n' if (table, field) in ADAPTIVE else ""
    need = REQUIRED.get(table)
    required = f"{need[0]} = {need[1]}\n" if need and not adaptive and field != need[0] else ""
    text = refused(tmp_path, f"[p.{table}]\n{adaptive}{required}{field} = {value}\n")
    assert f": p.{table}.{field}: must " in text
    assert text.endswith(f"got {value}")


def test_a_point_must_be_a_table_and_preset_known(tmp_path: Path) -> None:
    """A bare value where a point belongs, or an unknown preset, is named."""
    assert "payments: must be a table, got 3" in refused(tmp_path, "payments = 3\n")
    text = refused(tmp_path, '[p]\npreset = "rest"\n')
    assert 'p.preset: must be one of http_api, grpc_service, database, llm_api, got "rest"' in text
    assert "p.retry: must be a table, got true" in refused(tmp_path, "[p]\nretry = true\n")
    assert refused(tmp_path, '[p]\npreset = ["http_api"]\n').endswith(
        'p.preset: must be one of http_api, grpc_service, database, llm_api, got ["http_api"]')


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    """A syntax error is a ConfigurationError naming the file."""
    text = refused(tmp_path, "[p\n")
    assert text.startswith(f"{tmp_path / 'resilience.toml'}: not valid TOML")


def test_a_policys_own_check_gets_the_path(tmp_path: Path) -> None:
    """maximum < initial (Backoff's own check): reported under p.retry.backoff.maximum."""
    text = refused(tmp_path, "[p.retry.backoff]\nkind = \"exponential\"\ninitial = 2.0\n"
                             "maximum = 1.0\n")
    assert text.endswith(": p.retry.backoff.maximum: must be >= initial (2.0), got 1.0")
    text = refused(tmp_path, "[p.retry.backoff]\nmaximum = 0.01\n")  # initial 0.05 by default
    assert text.endswith(": p.retry.backoff.maximum: must be >= initial (0.05), got 0.01")
    text = refused(tmp_path, "[p.retry.backoff]\ninitial = 5.0\n")  # maximum 2.0 by default
    assert text.endswith(": p.retry.backoff.maximum: must be >= initial (5.0), got 2.0 "
                         "(not written: the default)")


def test_cross_option_errors_name_the_file_and_point(tmp_path: Path) -> None:
    """Waits that cannot fit the total: the point-level check, prefixed by file and point."""
    text = refused(tmp_path, '[p]\npreset = "http_api"\ntimeout = { total = 0.3, attempt = 0.1 }\n')
    assert text.startswith(f"{tmp_path / 'resilience.toml'}: p: IntegrationPoint 'p': Retry.attempts")


def test_preset_fields_conflicting_with_an_override_are_named(tmp_path: Path) -> None:
    """Over http_api (attempt 5 s), total = 3 s alone contradicts the kept attempt timeout."""
    text = refused(tmp_path, '[p]\npreset = "http_api"\ntimeout = { total = 3.0 }\n')
    assert text.endswith(": p.timeout.attempt: must be <= total (3.0), got 5.0 "
                         "(not written: kept from the preset)")


# -- what the tables can say ------------------------------------------------------------------

def test_false_turns_a_preset_policy_off(tmp_path: Path) -> None:
    """``retry = false`` and ``bulkhead = false`` remove those policies from the preset."""
    p = load(tmp_path, '[p]\npreset = "grpc_service"\nretry = false\nbulkhead = false\n')["p"]
    assert p.retry is None and p.bulkhead is None and p.breaker is not None


def test_no_preset_and_empty_tables_take_the_policy_defaults(tmp_path: Path) -> None:
    """``[p.retry]`` with nothing in it is Retry(); a point with no table has no policy."""
    points = load(tmp_path, "[p.retry]\n[q]\n")
    assert points["p"].retry == seawall.Retry()
    assert points["q"].retry is None and points["q"].timeout is None


def test_budget_false_true_and_fields(tmp_path: Path) -> None:
    """budget = false: none; true: the default; a table: those fields over the default."""
    points = load(tmp_path, "[a.retry]\nbudget = false\n[b.retry]\nbudget = true\n"
                            "[c.retry]\nbudget = { ratio = 0.5 }\n")
    assert points["a"].retry.budget is None
    assert points["b"].retry.budget == RetryBudget()
    assert points["c"].retry.budget == RetryBudget(ratio=0.5)


def test_a_new_backoff_kind_starts_from_its_own_defaults(tmp_path: Path) -> None:
    """Over a preset's exponential backoff, kind = "linear" is a plain linear backoff."""
    p = load(tmp_path, '[p]\npreset = "http_api"\n[p.retry.backoff]\nkind = "linear"\n'
                       "initial = 0.1\nstep = 0.2\nmaximum = 1.0\n")["p"]
    assert p.retry.backoff == Backoff(kind="linear", initial=0.1, step=0.2, maximum=1.0)
    q = load(tmp_path, '[q]\npreset = "http_api"\nretry = { backoff = { initial = 0.3 } }\n')["q"]
    assert q.retry.backoff == Backoff.exponential(initial=0.3, maximum=2.0)


def test_imported_names_exceptions_handlers_functions(tmp_path: Path) -> None:
    """``on``, a fallback handler and a custom backoff function name importable objects."""
    p = load(tmp_path, '[p.retry]\non = ["json:JSONDecodeError", "socket.gaierror"]\n'
                       '[p.retry.backoff]\nkind = "custom"\nfunction = "math:sqrt"\n'
                       '[p.fallback]\nhandler = "builtins:repr"\non = ["permanent"]\n')["p"]
    import json
    import math
    import socket

    assert p.retry.on == (json.JSONDecodeError, socket.gaierror)
    assert p.retry.backoff.function is math.sqrt
    assert p.fallback.handler is repr and p.fallback.on == frozenset({seawall.Category.PERMANENT})


@pytest.mark.parametrize(("toml", "message"), [
    ('[p.retry]\non = ["NoSuchError"]\n', 'p.retry.on: names nothing importable'),
    ('[p.retry]\non = ["no_such_module:Error"]\n', 'got "no_such_module:Error"'),
    ('[p.retry]\non = ["builtins:len"]\n',
     'p.retry.on: must hold Exception subclasses, got ["builtins:len"]'),
    ('[p.fallback]\nvalue = 1\non = ["sometimes"]\n', 'p.fallback.on: must hold categories'),
    ('[p.fallback]\non = ["transient"]\n', 'p.fallback: Fallback needs exactly one of value='),
])
def test_bad_names_are_refused(tmp_path: Path, toml: str, message: str) -> None:
    """Names that import nothing, or the wrong kind of thing, are refused with their path."""
    assert message in refused(tmp_path, toml)


def test_string_source_and_missing_file(tmp_path: Path) -> None:
    """points_from_toml names its source in errors; a missing file is an OSError."""
    with pytest.raises(ConfigurationError, match=r"^inline: p\.bulkhead\.max_concurrent"):
        points_from_toml("[p.bulkhead]\nmax_concurrent = 0\n", "inline")
    with pytest.raises(FileNotFoundError):
        seawall.load_points(tmp_path / "absent.toml")


# -- docs/config.md -------------------------------------------------------------------------

PAGE = Page("docs/config.md")


def test_the_doc_has_only_runnable_python_blocks() -> None:
    """docs/config.md shows code, and every python block of it is one this module runs."""
    assert PAGE.blocks
    assert set(PAGE.infos) == {"python"}


@pytest.mark.parametrize("index", range(len(PAGE.blocks)))
def test_doc_example_runs(index: int, tmp_path: Path) -> None:
    """Example number ``index`` of docs/config.md exits 0 in a fresh interpreter."""
    PAGE.run(index, tmp_path, cwd=ROOT)  # its paths are the repository's (examples/...)


TOML_BLOCKS = re.findall(r"^```toml\n(.*?)^```", PAGE.text, re.S | re.M)


@pytest.mark.parametrize("index", range(len(TOML_BLOCKS)))
def test_doc_toml_loads_and_matches_the_example(index: int) -> None:
    """Each TOML block of docs/config.md loads, and says what examples/resilience.toml says."""
    shown = points_from_toml(TOML_BLOCKS[index], "docs/config.md")
    example = seawall.load_points(EXAMPLE)
    for name, point in shown.items():
        kept = example[name]
        for field in ("retry", "breaker", "bulkhead", "timeout", "rate_limit", "hedge"):
            assert getattr(point, field) == getattr(kept, field), (name, field)
