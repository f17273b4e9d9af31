"""pytest plugin: mount seawall on every engine and client a host library's own suite makes.

Loaded with ``-p seawall_mount`` (``conformance/`` on ``PYTHONPATH``, not
the repository root: httpx's suite is a package named ``tests`` too) by
``conformance/run.py``; see ``conformance/README.md``.

``--seawall=off`` (the default) mounts nothing and does not even import
seawall: the plain run. ``--seawall=breaker-off`` / ``--seawall=breaker-on``
patch, before any test module is collected,

* ``sqlalchemy.create_engine`` (under every name it is reached by:
  ``sqlalchemy``, ``sqlalchemy.engine``, ``sqlalchemy.engine.create``,
  whose module global ``engine_from_config`` calls) and
  ``sqlalchemy.ext.asyncio.create_async_engine`` (also the module global
  ``async_engine_from_config`` calls): each engine returned is instrumented
  with ``seawall.interceptors.sqlalchemy.instrument(engine, point)``.
  SQLAlchemy's own harness (``sqlalchemy.testing.engines.testing_engine``,
  which makes ``testing.db`` and every per-test engine) imports
  ``create_engine`` / ``create_async_engine`` from those modules when it is
  called, so its engines are covered too;
* ``httpx.Client.__init__`` / ``httpx.AsyncClient.__init__``: once httpx has
  built the client, its default transport and every mounted transport
  (proxies from ``proxy=``/the environment, the caller's ``mounts=``) are
  wrapped in ``ResilientTransport(point, transport=inner)`` /
  ``AsyncResilientTransport(point, transport=inner)``; ``httpx2``'s
  clients the same way when ``httpx2`` and ``seawall.interceptors.httpx2``
  are importable.

Each engine or client gets its own point: ``Retry(attempts=3)``,
``Bulkhead(max_concurrent=64, max_wait=5)``, ``Timeout(attempt=30)``, and
no breaker (``breaker-off``) or ``CircuitBreaker()`` with its defaults
(``breaker-on``). Only seawall's public API is used.

Whatever the mode, ``--seawall-results=PATH`` writes a JSON file with each
test's outcome (``passed``, ``failed``, ``skipped``, ``xfailed``; a test
counts as failed if its setup, call or teardown failed) and duration, and, when mounted,
how many engines/clients were instrumented and how many calls their points
saw (so a run that mounted nothing cannot pass for a transparent one).
``--seawall-only=PATH`` (one node id a line) deselects every other test:
the runner's plain re-run of what failed instrumented.
``--seawall-marked-only=MARK[,!MARK...]=PATH[,PATH...]`` (repeatable) keeps,
under those paths, only the tests carrying every ``MARK`` and none of the
``!MARK`` markers (SQLAlchemy's ``backend``: the tests that run against the
database; ``sparse_driver_backend``: those it runs on one driver per database).
"""

from __future__ import annotations

import functools
import itertools
import json
import threading
import weakref
from pathlib import Path
from typing import Any

import pytest

MODES = ("off", "breaker-off", "breaker-on")

# worst outcome wins across a test's setup, call and teardown reports
_RANK = {"passed": 0, "skipped": 1, "xfailed": 1, "failed": 2}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("seawall", "seawall conformance mount")
    group.addoption("--seawall", choices=MODES, default="off",
                    help="mount seawall on every engine/client (default: off, the plain run)")
    group.addoption("--seawall-pool-liveness", choices=("on", "off"), default="on",
                    help="instrument(..., pool_liveness=) for engines (default on, "
                         "seawall's default; off only to see what that check hides)")
    group.addoption("--seawall-results", default=None, metavar="PATH",
                    help="write each test's outcome (and the mount's counts) as JSON to PATH")
    group.addoption("--seawall-only", default=None, metavar="PATH",
                    help="run only the node ids listed in PATH (one a line)")
    group.addoption("--seawall-marked-only", action="append", default=[],
                    metavar="MARK[,!MARK]=PATH[,PATH]",
                    help="under the given paths, run only the tests carrying every MARK and "
                         "none of the !MARKs (repeatable)")


class _Mount:
    """The patches of one instrumented session, and what they did."""

    def __init__(self, mode: str, pool_liveness: bool = True) -> None:
        self.mode = mode
        self.pool_liveness = pool_liveness
        self.undo: list[tuple[Any, str, Any]] = []
        self.points: list[Any] = []
        self.counts = {"engines": 0, "async_engines": 0, "clients": 0, "async_clients": 0}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._engines: weakref.WeakSet[Any] = weakref.WeakSet()

    # -- the point each engine/client gets ------------------------------------------

    def point(self, kind: str) -> Any:
        import seawall

        breaker = seawall.CircuitBreaker() if self.mode == "breaker-on" else None
        point = seawall.IntegrationPoint(
            f"conformance-{kind}-{next(self._ids)}",
            retry=seawall.Retry(attempts=3),
            bulkhead=seawall.Bulkhead(max_concurrent=64, max_wait=5),
            timeout=seawall.Timeout(attempt=30),
            breaker=breaker,
        )
        with self._lock:
            self.points.append(point)
        return point

    def patch(self, owner: Any, name: str, value: Any) -> None:
        self.undo.append((owner, name, owner.__dict__[name] if isinstance(owner, type)
                          else getattr(owner, name)))
        setattr(owner, name, value)

    def restore(self) -> None:
        for owner, name, value in reversed(self.undo):
            setattr(owner, name, value)
        self.undo.clear()

    def calls(self) -> int:
        return sum(p.stats().calls for p in self.points)

    # -- SQLAlchemy -----------------------------------------------------------------

    def _instrument(self, engine: Any, counter: str) -> None:
        from sqlalchemy.engine import Engine

        from seawall.interceptors import sqlalchemy as sw_sa

        sync = getattr(engine, "sync_engine", engine)
        if not isinstance(sync, Engine):  # create_engine(strategy="mock"): no engine to mount on
            return
        with self._lock:
            # create_async_engine builds its sync engine with a create_engine the
            # patch may or may not have reached: instrument each engine once
            if sync in self._engines:
                return
            self._engines.add(sync)
            self.counts[counter] += 1
        sw_sa.instrument(engine, self.point("engine"), pool_liveness=self.pool_liveness)

    def mount_sqlalchemy(self) -> None:
        try:
            import sqlalchemy
            import sqlalchemy.engine
            import sqlalchemy.engine.create
        except ImportError:
            return
        try:
            # imported before the patch, so that create_async_engine keeps the
            # create_engine it bound at import and its engines are counted as async
            import sqlalchemy.ext.asyncio
            import sqlalchemy.ext.asyncio.engine
        except ImportError:  # no greenlet: no AsyncEngine to mount on
            has_async = False
        else:
            has_async = True
        original = sqlalchemy.engine.create.create_engine

        @functools.wraps(original)
        def create_engine(*args: Any, **kwargs: Any) -> Any:
            engine = original(*args, **kwargs)
            self._instrument(engine, "engines")
            return engine

        for module in (sqlalchemy, sqlalchemy.engine, sqlalchemy.engine.create):
            self.patch(module, "create_engine", create_engine)

        if not has_async:
            return
        original_async = sqlalchemy.ext.asyncio.engine.create_async_engine

        @functools.wraps(original_async)
        def create_async_engine(*args: Any, **kwargs: Any) -> Any:
            engine = original_async(*args, **kwargs)
            self._instrument(engine, "async_engines")
            return engine

        for module in (sqlalchemy.ext.asyncio, sqlalchemy.ext.asyncio.engine):
            self.patch(module, "create_async_engine", create_async_engine)

    # -- httpx (and httpx2) ---------------------------------------------------------

    def _wrap_clients(self, httpx: Any, interceptor: Any) -> None:
        mount = self

        def wrapping(cls: Any, transport_cls: Any, counter: str) -> None:
            original = cls.__dict__["__init__"]

            @functools.wraps(original)
            def __init__(client: Any, *args: Any, **kwargs: Any) -> None:
                original(client, *args, **kwargs)
                point = mount.point("client")
                # the same objects httpx would have used, each behind the point
                client._transport = transport_cls(point, transport=client._transport)
                client._mounts = {
                    pattern: None if inner is None else transport_cls(point, transport=inner)
                    for pattern, inner in client._mounts.items()
                }
                with mount._lock:
                    mount.counts[counter] += 1

            mount.patch(cls, "__init__", __init__)

        wrapping(httpx.Client, interceptor.ResilientTransport, "clients")
        wrapping(httpx.AsyncClient, interceptor.AsyncResilientTransport, "async_clients")

    def mount_httpx(self) -> None:
        wrapped: list[Any] = []
        try:
            import httpx

            from seawall.interceptors import httpx as sw_httpx
        except ImportError:
            pass
        else:
            self._wrap_clients(httpx, sw_httpx)
            wrapped.append(httpx.Client)
        try:
            import httpx2  # type: ignore[import-not-found,unused-ignore]

            from seawall.interceptors import (  # type: ignore[attr-defined,unused-ignore]
                httpx2 as sw_httpx2,
            )
        except ImportError:
            return
        if httpx2.Client not in wrapped:  # httpx2 can alias itself as httpx
            self._wrap_clients(httpx2, sw_httpx2)


_STATE: dict[str, Any] = {}


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    # tryfirst: before the host suite's own plugins make their first engine
    # (SQLAlchemy's makes testing.db in pytest_sessionstart) and before any
    # test module binds ``from sqlalchemy import create_engine`` at collection
    mode = config.getoption("--seawall")
    _STATE["results"] = {}
    _STATE["durations"] = {}
    if mode != "off":
        mount = _Mount(mode, config.getoption("--seawall-pool-liveness") == "on")
        mount.mount_sqlalchemy()
        mount.mount_httpx()
        _STATE["mount"] = mount


def _marked_only(spec: str) -> tuple[list[str], list[str], tuple[str, ...]]:
    marks, _, paths = spec.partition("=")
    wanted = [m.strip() for m in marks.split(",") if m.strip() and not m.strip().startswith("!")]
    unwanted = [m.strip()[1:] for m in marks.split(",") if m.strip().startswith("!")]
    prefixes = tuple(p.strip().rstrip("/") + "/" for p in paths.split(",") if p.strip())
    if not (wanted or unwanted) or not prefixes:
        raise pytest.UsageError(
            f"--seawall-marked-only wants MARK[,!MARK]=PATH[,PATH], got {spec!r}")
    return wanted, unwanted, prefixes


def _kept(item: pytest.Item, specs: list[tuple[list[str], list[str], tuple[str, ...]]]) -> bool:
    for wanted, unwanted, prefixes in specs:
        if item.nodeid.startswith(prefixes):
            marks = {m.name for m in item.iter_markers()}
            if not all(m in marks for m in wanted) or any(m in marks for m in unwanted):
                return False
    return True


@pytest.hookimpl(trylast=True)  # after SQLAlchemy's plugin made its per-backend items
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    keep = list(items)
    specs = [_marked_only(spec) for spec in config.getoption("--seawall-marked-only")]
    if specs:
        keep = [item for item in keep if _kept(item, specs)]
    only = config.getoption("--seawall-only")
    if only is not None:
        wanted = {line.strip() for line in Path(only).read_text().splitlines() if line.strip()}
        keep = [item for item in keep if item.nodeid in wanted]
    if len(keep) != len(items):
        kept = {id(item) for item in keep}
        config.hook.pytest_deselected(items=[item for item in items if id(item) not in kept])
        items[:] = keep


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.failed:
        outcome = "failed"
    elif report.skipped:
        outcome = "xfailed" if hasattr(report, "wasxfail") else "skipped"
    else:
        outcome = "passed"
    durations: dict[str, float] = _STATE.setdefault("durations", {})
    durations[report.nodeid] = durations.get(report.nodeid, 0.0) + report.duration
    results: dict[str, str] = _STATE.setdefault("results", {})
    previous = results.get(report.nodeid)
    if previous is None or _RANK[outcome] > _RANK[previous]:
        results[report.nodeid] = outcome


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    mount: _Mount | None = _STATE.pop("mount", None)
    path = config.getoption("--seawall-results")
    if path is not None:
        payload: dict[str, Any] = {
            "mode": config.getoption("--seawall"),
            "results": _STATE.get("results", {}),
            "durations": {k: round(v, 4) for k, v in _STATE.get("durations", {}).items()},
        }
        if mount is not None:
            payload["mounted"] = dict(mount.counts, calls=mount.calls())
        Path(path).write_text(json.dumps(payload, indent=0, sort_keys=True))
    if mount is not None:
        mount.restore()
