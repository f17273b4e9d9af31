"""The config file's tables for rate limits, server pacing, hedging, fault injection and the
adaptive bulkhead: what each can say, and every mistake named by file, key path and value."""

from __future__ import annotations

from typing import Any

import pytest

from seawall import (
    AdaptiveBulkhead,
    Bulkhead,
    Category,
    ConfigurationError,
    Hedge,
    RateLimit,
)
from seawall._config import points_from_toml
from seawall.testing import instant


def load(text: str) -> dict[str, Any]:
    return points_from_toml(text, "resilience.toml")


def refused(text: str) -> str:
    """The ConfigurationError's message for ``text``, without the file's name."""
    with pytest.raises(ConfigurationError) as info:
        load(text)
    message = str(info.value)
    assert message.startswith("resilience.toml: ")
    return message.removeprefix("resilience.toml: ")


# -- rate limit and server pacing ---------------------------------------------------------------

def test_a_rate_limit_table_is_a_rate_limit() -> None:
    """rate, burst and max_wait as in code; burst defaults to a second's worth."""
    points = load("[a]\nrate_limit = { rate = 50.0, burst = 5, max_wait = 0.5 }\n"
                  "[b.rate_limit]\nrate = 2.5\n")
    assert points["a"].rate_limit == RateLimit(rate=50.0, burst=5, max_wait=0.5)
    assert points["b"].rate_limit == RateLimit(rate=2.5) and points["b"].rate_limit.burst == 3


def test_the_issues_style_of_message_for_a_rate() -> None:
    """A string where the rate belongs: key path and the value as written; a rate out of range
    is RateLimit's own refusal, under the same path."""
    assert refused('[payments.rate_limit]\nrate = "x"\n') == \
        'payments.rate_limit.rate: must be a number, got "x"'
    assert refused('[payments.rate_limit]\nrate = -2\n') == \
        'payments.rate_limit.rate: must be a finite number > 0 (attempts per second), got -2'


def test_a_field_without_a_default_must_be_written() -> None:
    """A rate limit without its rate, a hedge without its delay: named, not a TypeError."""
    assert refused("[p.rate_limit]\nburst = 3\n") == \
        "p.rate_limit.rate: must be given (a RateLimit has no default for it)"
    assert refused("[p.hedge]\nmax_extra = 2\n") == \
        "p.hedge.delay: must be given (a Hedge has no default for it)"
    assert refused("[p.bulkhead]\nmax_wait = 1.0\n").startswith(
        "p.bulkhead.max_concurrent: must be given")


def test_server_pacing_is_true_or_false() -> None:
    """server_pacing = false turns the pause off, over a preset too; anything else is named."""
    points = load('[a]\nserver_pacing = false\n[b]\npreset = "llm_api"\nserver_pacing = false\n'
                  "[c]\n")
    assert points["a"].pacing is None and points["b"].pacing is None
    assert points["c"].pacing is not None
    assert refused("[p]\nserver_pacing = 1\n") == "p.server_pacing: must be true or false, got 1"
    assert refused('[p]\nserver_pacing = { on = true }\n').startswith("p.server_pacing: must be")


def test_a_point_lists_its_keys_when_one_is_unknown() -> None:
    """A misspelt point key names every key a point takes, the new ones included."""
    assert refused("[p]\nhedging = 1\n") == (
        "p.hedging: unknown key (a point takes preset, server_pacing, retry, breaker, bulkhead, "
        "timeout, fallback, rate_limit, hedge, chaos)")


# -- hedging ----------------------------------------------------------------------------------

def test_a_hedge_table_is_a_hedge_with_categories() -> None:
    """delay, max_extra and on (category names) as in code."""
    p = load('[p.hedge]\ndelay = 0.05\nmax_extra = 2\non = ["timeout", "transient"]\n')["p"]
    assert p.hedge == Hedge(delay=0.05, max_extra=2, on={Category.TIMEOUT, Category.TRANSIENT})


@pytest.mark.parametrize(("toml", "message"), [
    ("[p.hedge]\ndelay = 0.1\nmax_extra = 11\n",
     "p.hedge.max_extra: must be <= 10, got 11"),
    ('[p.hedge]\ndelay = 0.1\non = ["soon"]\n', 'p.hedge.on: must hold categories'),
    ('[p.hedge]\ndelay = 0.1\non = ["soon"]\n', 'or be None, got ["soon"]'),
    ("[p.hedge]\ndelay = 0.1\nlimit = 2\n",
     "p.hedge.limit: unknown key (a Hedge takes delay, max_extra, on)"),
])
def test_hedge_mistakes_are_named(toml: str, message: str) -> None:
    """Out of range, unknown categories, unknown keys: each with its path."""
    assert message in refused(toml)


def test_a_hedge_the_presets_timeouts_outrun_is_refused() -> None:
    """Over http_api (5 s attempts), a 6 s hedge delay fails the cross-option check."""
    text = refused('[p]\npreset = "http_api"\nhedge = { delay = 6.0 }\n')
    assert text.startswith("p: IntegrationPoint 'p': Hedge.delay (6.0 s) must be < "
                           "Timeout.attempt (5.0 s)")


# -- the adaptive bulkhead -------------------------------------------------------------------

def test_kind_adaptive_is_an_adaptive_bulkhead() -> None:
    """kind = "adaptive" takes AdaptiveBulkhead's fields; kind = "fixed" is a Bulkhead."""
    points = load('[a.bulkhead]\nkind = "adaptive"\ninitial = 8\nminimum = 2\nmaximum = 64\n'
                  "max_wait = 0.1\ntolerance = 1.5\nsmoothing = 0.5\n"
                  '[b.bulkhead]\nkind = "fixed"\nmax_concurrent = 4\n'
                  "[c.bulkhead]\nkind = \"adaptive\"\n")
    assert points["a"].bulkhead == AdaptiveBulkhead(initial=8, minimum=2, maximum=64,
                                                    max_wait=0.1, tolerance=1.5, smoothing=0.5)
    assert points["b"].bulkhead == Bulkhead(max_concurrent=4)
    assert points["c"].bulkhead == AdaptiveBulkhead()


def test_over_a_preset_the_other_kind_starts_from_its_defaults() -> None:
    """The preset's fixed bulkhead becomes adaptive from AdaptiveBulkhead's defaults; the same
    kind keeps the preset's other fields."""
    points = load('[a]\npreset = "http_api"\nbulkhead = { kind = "adaptive", maximum = 100 }\n'
                  '[b]\npreset = "http_api"\nbulkhead = { kind = "fixed", max_wait = 0.2 }\n'
                  '[c]\npreset = "http_api"\nbulkhead = { max_concurrent = 10 }\n')
    assert points["a"].bulkhead == AdaptiveBulkhead(maximum=100)
    assert points["b"].bulkhead == Bulkhead(max_concurrent=100, max_wait=0.2)
    assert points["c"].bulkhead == Bulkhead(max_concurrent=10, max_wait=0.05)


def test_a_key_of_the_other_kind_says_which_kind_takes_it() -> None:
    """initial on a fixed bulkhead, max_concurrent on an adaptive one: the hint names the kind."""
    assert refused('[p]\npreset = "http_api"\n[p.bulkhead]\ninitial = 8\n') == (
        'p.bulkhead.initial: unknown key (a Bulkhead takes kind, max_concurrent, max_wait; '
        'kind = "adaptive" takes initial, minimum, maximum, max_wait, tolerance, smoothing)')
    assert refused('[p.bulkhead]\nkind = "adaptive"\nmax_concurrent = 3\n').startswith(
        "p.bulkhead.max_concurrent: unknown key (an AdaptiveBulkhead takes kind, initial")
    assert refused('[p.bulkhead]\nkind = "elastic"\n') == \
        'p.bulkhead.kind: must be one of fixed, adaptive, got "elastic"'


def test_the_adaptive_bulkheads_own_checks_get_the_path() -> None:
    """initial outside [minimum, maximum]: AdaptiveBulkhead's message under p.bulkhead."""
    assert refused('[p.bulkhead]\nkind = "adaptive"\ninitial = 500\n') == (
        "p.bulkhead.initial: must be within [minimum, maximum] = [1, 256], got 500")


# -- fault injection --------------------------------------------------------------------------

def test_a_fault_named_by_class_factory_or_table() -> None:
    """fault: a built-in class by name, a module:attribute factory, a table with a message."""
    from seawall.interceptors import sqlalchemy as sw_sa

    points = load('[a.chaos]\nfault_rate = 1.0\nfault = "TimeoutError"\n'
                  '[b.chaos]\nfault_rate = 0.5\n'
                  'fault = "seawall.interceptors.sqlalchemy:injected_disconnect"\n'
                  '[c.chaos]\nfault_rate = 0.5\n'
                  'fault = { class = "ConnectionError", message = "injected" }\n'
                  '[d.chaos]\nfault_rate = 0.5\nfault = { class = "socket:timeout" }\n')
    import socket

    assert points["a"].chaos.policy.fault is TimeoutError
    assert points["b"].chaos.policy.fault is sw_sa.injected_disconnect
    made = points["c"].chaos.policy.fault
    assert isinstance(made, ConnectionError) and made.args == ("injected",)
    assert points["d"].chaos.policy.fault is socket.timeout


def test_an_injected_fault_from_the_file_meets_the_retry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every attempt injected: the retry makes its attempts, the caller sees the fault."""
    monkeypatch.delenv("SEAWALL_CHAOS", raising=False)  # the safety switch would win
    p = load('[p]\nretry = { attempts = 3, budget = false }\n'
             '[p.chaos]\nfault_rate = 1.0\nfault = { class = "ConnectionError", message = "x" }\n'
             "seed = 1\n")["p"]
    with instant(), pytest.raises(ConnectionError, match="x"):
        p.call(lambda: "real")
    assert p.stats().injected_attempts == 3


def test_a_result_is_a_toml_value_or_a_named_object() -> None:
    """result = 503 is the value as written; result_name imports one (a gRPC status)."""
    import grpc

    points = load("[a.chaos]\nresult_rate = 0.5\nresult = 503\nlatency_rate = 0.1\n"
                  "latency = 0.2\nseed = 3\nenabled = false\n"
                  '[b.chaos]\nresult_rate = 1.0\nresult_name = "grpc:StatusCode.UNAVAILABLE"\n')
    a = points["a"].chaos
    assert (a.policy.result, a.policy.seed, a.policy.latency, a.enabled) == (503, 3, 0.2, False)
    assert points["b"].chaos.policy.result is grpc.StatusCode.UNAVAILABLE


@pytest.mark.parametrize(("toml", "message"), [
    ('[p.chaos]\nfault_rate = 1.0\nfault = "int"\n',
     'p.chaos.fault: must be an Exception subclass, got "int"'),
    ('[p.chaos]\nfault_rate = 1.0\nfault = "math:pi"\n',
     'p.chaos.fault: must be an exception, an exception class or a factory, got "math:pi"'),
    ('[p.chaos]\nfault = "no_such_module:Boom"\n',
     'p.chaos.fault: names nothing importable (write module:attribute), got "no_such_module:Boom"'),
    ('[p.chaos]\nfault = { klass = "X" }\n',
     'p.chaos.fault.klass: unknown key (a fault table takes class, message)'),
    ('[p.chaos]\nfault = { message = "m" }\n', 'p.chaos.fault.class: must be given'),
    ('[p.chaos]\nfault = { class = "len" }\n',
     'p.chaos.fault.class: must name an Exception subclass, got "len"'),
    ('[p.chaos]\nfault = { class = "UnicodeDecodeError", message = "m" }\n',
     'p.chaos.fault.message: cannot make a UnicodeDecodeError from it, got "m"'),
    ('[p.chaos]\nresult = 1\nresult_name = "grpc:StatusCode.OK"\n',
     'p.chaos.result_name: cannot be given with result'),
    ('[p.chaos]\nresult_name = "grpc:StatusCode.NOPE"\n', 'p.chaos.result_name: names nothing'),
    ("[p.chaos]\nfault_rate = 1.0\n", "p.chaos.fault: is needed when fault_rate > 0 "
     "(fault_rate=1.0)"),
    ("[p.chaos]\nfault_rate = 2.0\n", "p.chaos.fault_rate: must be in [0, 1], got 2.0"),
    ("[p.chaos]\nseed = 1.5\n", "p.chaos.seed: must be an integer, got 1.5"),
    ("[p.chaos]\nrate = 0.1\n", "p.chaos.rate: unknown key (a Chaos takes fault_rate, fault"),
])
def test_chaos_mistakes_are_named(toml: str, message: str) -> None:
    """Names of the wrong kind, half a table, two results, Chaos's own checks: each with its path."""
    assert message in refused(toml)


def test_false_turns_each_new_policy_off() -> None:
    """rate_limit, hedge and chaos = false: none of them (as for every policy)."""
    p = load("[p]\nrate_limit = false\nhedge = false\nchaos = false\n")["p"]
    assert (p.rate_limit, p.hedge, p.chaos) == (None, None, None)


def test_the_presets_leave_the_new_policies_off() -> None:
    """preset = "llm_api" alone: pacing on, no rate limit, no hedge, no chaos."""
    p = load('[p]\npreset = "llm_api"\n')["p"]
    assert p.pacing is not None and p.pacing.remaining(0.0) == 0.0
    assert (p.rate_limit, p.hedge, p.chaos) == (None, None, None)
