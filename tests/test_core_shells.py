"""The two shells: the sync one is generated from the async one and committed up to date.

``sdk/_sync_shell.py`` is ``sdk/_async_shell.py`` put through
``sdk/_unasync.py``; these tests keep the two from drifting apart (as
``make lint`` does) and pin the generator's rules. The shells' behaviour is
the rest of the core's tests.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import seawall
from seawall import IntegrationPoint, _async_shell, _sync_shell, _unasync
from seawall.testing import full_pipeline_point


def test_the_committed_sync_shell_matches_the_async_shell() -> None:
    """Regenerating the sync shell changes nothing (else run python sdk/_unasync.py)."""
    assert _unasync.check()


def test_a_stale_sync_shell_is_detected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An edit to the async shell that was not carried over is reported, by the module and the CLI."""
    for name in (_unasync.SOURCE, _unasync.TARGET):
        shutil.copy(_unasync.HERE / name, tmp_path / name)
    with (tmp_path / _unasync.SOURCE).open("a", encoding="utf-8") as f:
        f.write("\n# a change\n")
    monkeypatch.setattr(_unasync, "HERE", tmp_path)
    assert not _unasync.check()
    assert _unasync.main(["--check"]) == 1
    assert _unasync.main([]) == 0  # writes it
    assert _unasync.check()


def test_the_check_runs_as_a_plain_script() -> None:
    """``python sdk/_unasync.py --check`` (what make lint runs) passes on the committed files."""
    script = Path(_unasync.__file__).resolve()
    done = subprocess.run([sys.executable, str(script), "--check"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_the_rules_drop_async_blocks_replace_sync_lines_and_rename() -> None:
    """``# async only`` drops a statement and its block; ``# sync:`` replaces a line; twins renamed."""
    source = '''"""doc"""

import asyncio  # async only
from x import aanswer


async def arun(attempt: Callable[[float | None], Awaitable[T]]) -> T:
    try:
        value = await attempt(None)
    except asyncio.CancelledError:  # async only
        if True:

            raise
    except Exception:
        value = None
    late = False  # sync: late = True
    await clock.asleep(1.0)
    return await aanswer(value)
'''
    text = _unasync.unasync(source)
    body = text.split('"""\n', 1)[1]
    assert body == '''
from x import answer


def run(attempt: Callable[[float | None], T]) -> T:
    try:
        value = attempt(None)
    except Exception:
        value = None
    late = True
    clock.sleep(1.0)
    return answer(value)
'''
    assert text.startswith(_unasync.HEADER)


def test_the_sync_shell_has_no_async_left() -> None:
    """No coroutine, await, asyncio, watchdog or trio wrapper reaches the sync shell's code."""
    text = Path(_sync_shell.__file__).read_text(encoding="utf-8")
    assert "# async only" not in text and "# sync:" not in text
    names = set()
    for node in ast.walk(ast.parse(text)):
        assert not isinstance(node, (ast.AsyncFunctionDef, ast.Await, ast.AsyncWith,
                                     ast.AsyncFor)), ast.dump(node)
        if isinstance(node, ast.Name):
            names.add(node.id)
        elif isinstance(node, ast.alias):
            names.add(node.asname or node.name)
    assert names & {"asyncio", "watchdog", "Bounded", "trio", "aanswer"} == set()
    assert {"answer", "finish_failure", "finish_rejection"} <= names


def test_run_and_arun_are_the_shells_themselves() -> None:
    """point.run / point.arun are the shell functions: no frame between the caller and the shell."""
    assert IntegrationPoint.run is _sync_shell.run
    assert IntegrationPoint.arun is _async_shell.arun
    point = full_pipeline_point("frames")
    frames: list[str] = []

    def attempt(timeout: float | None) -> int:
        frames.append(sys._getframe(1).f_code.co_name)
        frames.append(sys._getframe(2).f_code.co_name)
        return 7

    def caller() -> int:
        return point.run(attempt, "op")

    assert caller() == 7
    assert frames == ["run", "caller"]


def test_run_takes_its_arguments_by_position() -> None:
    """run(attempt, operation, deadline, classify_exception, classify_result, discard) by position."""
    point = IntegrationPoint("pos", retry=seawall.Retry(attempts=2, budget=None,
                                                        backoff=seawall.Backoff.constant(0.0)))
    discarded: list[str] = []
    results = iter(["bad", "good"])

    def rule(result: str) -> seawall.Classification | None:
        return seawall.Classification(seawall.Category.TRANSIENT, retry=True, breaker=True) \
            if result == "bad" else None

    value = point.run(lambda _t: next(results), "op", None, None, rule, discarded.append)
    assert value == "good" and discarded == ["bad"]
    assert point.stats().retries == 1


# -- the httpx transport: the same generator, another pair -----------------------------------

def test_the_committed_httpx_sync_transport_matches_the_async_one() -> None:
    """interceptors/_httpx_sync.py is what _unasync writes from _httpx_async.py (a pair of PAIRS)."""
    pair = _unasync.HTTPX
    assert pair in _unasync.PAIRS and _unasync.SHELL in _unasync.PAIRS
    assert _unasync.is_current(pair)
    text = pair.path(pair.target).read_text(encoding="utf-8")
    assert text.startswith("# Generated from interceptors/_httpx_async.py by ")


def test_a_stale_httpx_sync_transport_is_detected(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """An edit to the async transport that was not carried over fails --check; writing fixes it."""
    pair = _unasync.HTTPX
    for name in (pair.source, pair.target):
        shutil.copy(pair.path(name), tmp_path / name)
    with (tmp_path / pair.source).open("a", encoding="utf-8") as f:
        f.write("\n# a change\n")
    monkeypatch.setattr(_unasync, "INTERCEPTORS", tmp_path)
    assert [p.target for p in _unasync.stale()] == [pair.target]
    assert _unasync.main(["--check"]) == 1
    assert _unasync.main([]) == 0
    assert _unasync.check()
    assert (tmp_path / pair.target).read_text(encoding="utf-8").endswith("# a change\n")


def test_a_passage_the_source_lost_stops_the_generator(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A prose passage of the table that no longer occurs is an error, never silently skipped."""
    pair = _unasync.HTTPX
    text = pair.path(pair.source).read_text(encoding="utf-8")
    old = pair.passages[0][0]
    (tmp_path / pair.source).write_text(text.replace(old, "reworded"), encoding="utf-8")
    shutil.copy(pair.path(pair.target), tmp_path / pair.target)
    monkeypatch.setattr(_unasync, "INTERCEPTORS", tmp_path)
    with pytest.raises(_unasync.GenerationError, match="occurs 0 times"):
        _unasync.expected(pair)
    assert _unasync.main([]) == 2


def test_the_httpx_sync_transport_has_no_async_left() -> None:
    """No coroutine, await, async name or marker reaches the generated sync transport."""
    pair = _unasync.HTTPX
    text = pair.path(pair.target).read_text(encoding="utf-8")
    assert "# async only" not in text and "# sync:" not in text
    names = set()
    for node in ast.walk(ast.parse(text)):
        assert not isinstance(node, (ast.AsyncFunctionDef, ast.Await, ast.AsyncWith,
                                     ast.AsyncFor)), ast.dump(node)
        if isinstance(node, ast.Name):
            names.add(node.id)
        elif isinstance(node, ast.Attribute):
            names.add(node.attr)
        elif isinstance(node, (ast.ClassDef, ast.FunctionDef)):
            names.add(node.name)
    assert names & set(pair.renames) == set()
    assert {"ResilientTransport", "handle_request", "_discard", "SyncByteStream"} <= names
