"""seawall's pytest plugin (``-p seawall.testing`` / the pytest11 entry point), run by pytester.

Its fixtures ``seawall_instant``, ``seawall_points`` and ``seawall_events``,
how it loads, and instant() reaching async tests under pytest-asyncio.
"""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]


# -- the pytest plugin --------------------------------------------------------------------

PLUGIN_TESTS = '''
import time
import pytest
import seawall

point = seawall.IntegrationPoint(
    "payments", retry=seawall.Retry(attempts=3, backoff=seawall.Backoff.constant(5.0),
                                    budget=None))

def charge():
    raise ConnectionError("down")

def test_instant_points_events(seawall_instant, seawall_points, seawall_events):
    started = time.monotonic()
    with pytest.raises(ConnectionError):
        point.call(charge)
    assert time.monotonic() - started < 2.0
    assert seawall_instant.skipped == [5.0, 5.0]
    assert seawall_points.names() == ["payments"]
    assert seawall_points["payments"].stats.retries == 2
    assert "payments" in seawall_points and len(seawall_points) == 1
    retries = seawall_events.of(seawall.RetryEvent, point="payments")
    assert [e.delay for e in retries] == [5.0, 5.0]
    assert len(seawall_events.of(seawall.CallEvent)) == 1

def test_next_test_starts_clean(seawall_points, seawall_events):
    assert seawall._clock.INSTANT.get() is None
    assert len(seawall_points) == 0 and seawall_events == []
    with pytest.raises(KeyError, match="payments"):
        seawall_points["payments"]

def test_failure_shows_points(seawall_points):
    point.call(lambda: 1)
    assert False, "on purpose"
'''


def test_plugin_fixtures_with_dash_p(pytester: pytest.Pytester,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """-p seawall.testing alone (autoload off) gives the three fixtures; failures list points."""
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    pytester.makepyfile(test_plugin=PLUGIN_TESTS)
    result = pytester.runpytest("-p", "seawall.testing")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*seawall points*", "payments: calls=1 successes=1*"])


def test_plugin_is_needed_without_autoload(pytester: pytest.Pytester,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Without -p and without autoload the fixtures are unknown (so -p is what loaded them)."""
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    pytester.makepyfile(test_plugin=PLUGIN_TESTS)
    result = pytester.runpytest()
    result.stdout.fnmatch_lines(["*fixture 'seawall_instant' not found*"])


def test_plugin_loads_by_entry_point(pytester: pytest.Pytester) -> None:
    """Installed, the pytest11 entry point loads it; -p then changes nothing."""
    pytester.makepyfile(test_plugin=PLUGIN_TESTS)
    pytester.runpytest("-p", "no:asyncio").assert_outcomes(passed=2, failed=1)
    pytester.runpytest("-p", "seawall.testing", "-p", "no:asyncio").assert_outcomes(
        passed=2, failed=1)


def test_plugin_instant_reaches_async_tests(pytester: pytest.Pytester) -> None:
    """Under pytest-asyncio (function and session loops), an async test is inside instant()."""
    pytester.makeini("[pytest]\nasyncio_mode = auto\n"
                     "asyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(test_async='''
import time
import pytest
import seawall

point = seawall.IntegrationPoint(
    "llm", retry=seawall.Retry(attempts=3, backoff=seawall.Backoff.constant(5.0), budget=None))

async def down():
    raise ConnectionError("down")

async def check(view):
    started = time.monotonic()
    with pytest.raises(ConnectionError):
        await point.acall(down)
    assert time.monotonic() - started < 2.0
    assert view.skipped == [5.0, 5.0]

async def test_function_loop(seawall_instant):
    await check(seawall_instant)

@pytest.mark.asyncio(loop_scope="session")
async def test_session_loop(seawall_instant):
    await check(seawall_instant)
''')
    pytester.runpytest().assert_outcomes(passed=2)
