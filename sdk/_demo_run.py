"""The demo's runs: start the dependencies, drive the workload, report (see ``seawall._demo``)."""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import Any

from rich.console import Console
from rich.live import Live

import seawall

from ._demo_deps import Arrivals, FaultPlan, GrpcDependency, HttpDependency, SqliteDependency
from ._demo_report import (
    DependencyResult,
    comparison_table,
    live_view,
    make_console,
    service_table,
    summarize,
)
from ._demo_workload import (
    CallLog,
    Client,
    Workload,
    db_client,
    grpc_client,
    hedged_grpc_client,
    http_client,
    rehearsal_chaos,
)

WORKERS = 4
RATE = 50.0  # calls per second per dependency
DEPENDENCIES = (("inventory", "gRPC"), ("pricing", "HTTP"), ("orders-db", "SQLite"))
# a second Inventory service with the same faults, called through a hedged point: its latency
# spikes get a second attempt instead of a timeout; a rehearsal (--chaos) injects its outage
# too, into every attempt, hedges included
HEDGED = ("inventory-hedged", "gRPC, hedged")


def dependencies(plan: FaultPlan) -> tuple[tuple[str, str], ...]:
    """The dependencies of a run: the three, and the hedged Inventory."""
    return (*DEPENDENCIES, HEDGED)


def _plan(args: argparse.Namespace) -> FaultPlan:
    duration = float(args.duration)
    outage = duration / 3.0 if args.outage is None else float(args.outage)
    if not 0.0 <= outage < duration:
        raise seawall.ConfigurationError(
            f"--outage must be >= 0 and shorter than --duration, got {outage}")
    start = (duration - outage) / 2.0
    return FaultPlan(seed=args.seed, error_rate=args.error_rate, latency_rate=args.latency_rate,
                     rate_limit_rate=args.rate_limit_rate, outage_start=round(start, 3),
                     outage_end=round(start + outage, 3),
                     outage_injected=bool(getattr(args, "chaos", False)))


class Run:
    """One run of the workload: start the dependencies, call them, stop everything."""

    def __init__(self, label: str, *, resilient: bool, plan: FaultPlan, duration: float,
                 folder: str) -> None:
        self.label = label
        self.resilient = resilient
        self.plan = plan
        self.duration = duration
        self.deps = dependencies(plan)
        self.arrivals = [Arrivals(plan, 0.0) for _ in self.deps]
        self.grpc = GrpcDependency(self.arrivals[0])
        self.hedged = GrpcDependency(self.arrivals[3]) if len(self.deps) > 3 else None
        self.http = HttpDependency(self.arrivals[1])
        self.db = SqliteDependency(self.arrivals[2], os.path.join(folder, f"orders-{label}.db"),
                                   duration)
        self.logs = [CallLog() for _ in self.deps]
        self.clients: list[Client] = []
        self.stop = threading.Event()
        self.start_time = 0.0
        self.rehearsed = threading.Event()  # set when the run ends: the rehearsal thread stops

    @contextlib.contextmanager
    def running(self) -> Iterator[list[Workload]]:
        deps: tuple[Any, ...] = (self.grpc, self.http, self.db)
        if self.hedged is not None:
            deps = (*deps, self.hedged)
        started: list[Any] = []
        workloads: list[Workload] = []
        try:
            # the hedged Inventory rehearses the same outage as the first one (UNAVAILABLE)
            chaos = [rehearsal_chaos(name, self.plan.seed) if self.plan.outage_injected else None
                     for name, _ in (*DEPENDENCIES, DEPENDENCIES[0])]
            self.clients = [
                grpc_client(self.grpc.target, resilient=self.resilient, chaos=chaos[0]),
                http_client(self.http.url, resilient=self.resilient, chaos=chaos[1]),
                db_client(self.db, resilient=self.resilient, chaos=chaos[2]),
            ]
            if self.hedged is not None:
                self.clients.append(hedged_grpc_client(self.hedged.target,
                                                       resilient=self.resilient,
                                                       chaos=chaos[3]))
            self.start_time = time.monotonic() + 0.2
            for arrivals in self.arrivals:
                arrivals.start = self.start_time
            for dep in deps:
                dep.start()
                started.append(dep)
            for client, log, arrivals in zip(self.clients, self.logs, self.arrivals, strict=True):
                workloads.append(Workload(client, log, workers=WORKERS, rate=RATE,
                                          start=self.start_time, duration=self.duration,
                                          stop=self.stop, in_outage=arrivals.in_outage))
            for w in workloads:
                w.start()
            if self.plan.outage_injected:
                rehearsal = threading.Thread(target=self._rehearse, name="demo-rehearsal")
                rehearsal.start()
                started.append(_Joined(rehearsal, self.rehearsed))
            yield workloads
        except BaseException:
            self.stop.set()  # Ctrl-C or a failure: the workers stop at once
            raise
        finally:
            for w in workloads:
                w.join(self.duration + 30.0)
            for client in self.clients:
                client.close()
            for dep in reversed(started):
                dep.stop()

    def _rehearse(self) -> None:
        """Inject the outage: each client's Chaos on for the outage window, then off."""
        points = [c.rehearsal for c in self.clients if c.rehearsal is not None]
        for at, on in ((self.plan.outage_start, True), (self.plan.outage_end, False)):
            wait = self.start_time + at - time.monotonic()
            if wait > 0 and self.rehearsed.wait(wait) and on:
                return  # the run ended before the outage began
            for point in points:
                assert point.chaos is not None
                if on:
                    point.chaos.enable()
                else:
                    point.chaos.disable()

    def results(self) -> list[DependencyResult]:
        out = []
        for (name, _kind), log, arrivals, client in zip(self.deps, self.logs, self.arrivals,
                                                         self.clients, strict=True):
            point = client.point
            during = arrivals.during_outage
            if client.rehearsal is not None:  # attempts that met the injected outage
                during = client.rehearsal.stats().injected_attempts
            out.append(summarize(
                name, name, log, arrivals.total, during,
                None if point is None else point.stats(),
                None if point is None else client.openings[0],
                hedged=point is not None and point.hedge is not None,
            ))
        return out


def _watch(run: Run, workloads: list[Workload], console: Console, *, live: bool,
           phase: str) -> None:
    outage = (run.plan.outage_start, run.plan.outage_end)

    def view() -> Any:
        return live_view(phase, run.start_time, run.duration, outage,
                         [(n, log) for (n, _), log in zip(run.deps, run.logs, strict=True)],
                         [(a.total, a.during_outage) for a in run.arrivals])

    def alive() -> bool:
        return any(t.is_alive() for w in workloads for t in w._threads)

    deadline = run.start_time + run.duration + 30.0
    if live:
        with Live(view(), console=console, refresh_per_second=4, transient=False) as screen:
            while alive() and time.monotonic() < deadline:
                run.stop.wait(0.25)
                screen.update(view())
    else:
        console.print(f"{phase}: running for {run.duration:.0f} s (outage from "
                      f"{outage[0]:.1f} s to {outage[1]:.1f} s) ...")
        while alive() and time.monotonic() < deadline:
            run.stop.wait(0.25)
        console.print(view())


def _check_outputs(args: argparse.Namespace) -> None:
    """Refuse a --store or --report that cannot be written, before the first run starts."""
    if args.store:
        from seawall.storage import Store

        try:
            Store.open(args.store, create=True).close()
        except seawall.ConfigurationError as exc:
            raise seawall.ConfigurationError(f"--store: {exc}") from None
    if args.report:
        path = os.path.abspath(args.report)
        if os.path.isdir(path):
            raise seawall.ConfigurationError(f"--report: {path} is a folder; name a file")
        existed = os.path.exists(path)
        try:
            with open(path, "a", encoding="utf-8"):
                pass
        except OSError as exc:
            raise seawall.ConfigurationError(
                f"--report: cannot write {path}: {exc.strerror}") from None
        if not existed:
            os.remove(path)  # written at the end; nothing is left if the demo fails


def main(args: argparse.Namespace) -> int:
    """Run the demo; returns the process exit code."""
    plan = _plan(args)
    _check_outputs(args)
    console = make_console(plain=True if args.plain else None)
    plain = args.plain or not console.is_terminal
    with tempfile.TemporaryDirectory(prefix="seawall-demo-") as folder:
        return _run(args, plan, console, plain, folder)


def _run(args: argparse.Namespace, plan: FaultPlan, console: Console, plain: bool,
         folder: str) -> int:
    duration = float(args.duration)
    store = args.store or f"sqlite:///{os.path.join(folder, 'metrics.db')}"
    down = ("with an outage injected by seawall.Chaos in the clients (UNAVAILABLE, 503, a "
            "lost database connection; the dependencies stay up)" if plan.outage_injected
            else "and down")
    console.print(
        f"seawall demo (seed {plan.seed}): a gRPC service, an HTTP API and a SQLite database "
        f"on 127.0.0.1, each failing {plan.error_rate:.0%} of requests, slowing "
        f"{plan.latency_rate:.0%} by {plan.spike * 1000:.0f} ms, rate limiting "
        f"{plan.rate_limit_rate:.0%}, {down} from {plan.outage_start:.1f} s to "
        f"{plan.outage_end:.1f} s of each {duration:.0f} s run."
    )
    hedged = "; a second gRPC Inventory with the same faults is called through a hedged point"
    console.print(f"{len(dependencies(plan))} x {WORKERS} callers, {RATE:.0f} calls/s per "
                  f"dependency{hedged}.\n")

    bare = Run("bare", resilient=False, plan=plan, duration=duration, folder=folder)
    with bare.running() as workloads:
        _watch(bare, workloads, console, live=not plain, phase="1/2 bare clients")
    bare_results = bare.results()

    from seawall.storage import MetricsClient, serve

    recorder = seawall.persist_metrics(store, flush_interval=0.5)
    try:
        guarded = Run("seawall", resilient=True, plan=plan, duration=duration, folder=folder)
        with guarded.running() as workloads:
            _watch(guarded, workloads, console, live=not plain, phase="2/2 through seawall")
    finally:
        recorder.close()
    guarded_results = guarded.results()

    console.print()
    for (name, kind), b, g in zip(guarded.deps, bare_results, guarded_results, strict=True):
        console.print(comparison_table(f"{name} ({kind})", b, g, plain=plain,
                                       injected=plan.outage_injected))
        console.print()

    memory = {r.point: _counters(guarded, r.point) for r in guarded_results}
    server = serve(store, listen="127.0.0.1:0")
    try:
        target = f"127.0.0.1:{server.port}"
        console.print(f"seawall's metrics were persisted to {store} and are served on {target}.")
        console.print(f"$ seawall stats --target {target}")
        from seawall._cli import main as cli

        sys.stdout.flush()
        cli(["stats", "--target", target])
        sys.stdout.flush()
        with MetricsClient(target) as client:
            rows = [s.as_dict() for s in client.summary(window=3600.0)]
    finally:
        server.stop()
    del server
    _join_pool_threads()
    rows = [r for r in rows if r.get("point") in memory]
    console.print()
    console.print(service_table(rows, memory, plain=plain, injected=plan.outage_injected))
    if plan.outage_injected:
        console.print("(the injected calls are stored apart, as injected_calls: a rehearsal "
                      "never counts in the real calls and failures.)")
    console.print("(orders-db counts each transaction and, inside it, each connect and statement "
                  "as calls: the engine hooks and run_transaction share its point.)")

    if args.report:
        report = {
            "plan": {"seed": plan.seed, "chaos": plan.outage_injected,
                     "error_rate": plan.error_rate,
                     "latency_rate": plan.latency_rate, "rate_limit_rate": plan.rate_limit_rate,
                     "outage": [plan.outage_start, plan.outage_end], "duration": duration},
            "bare": {r.dependency: r.as_dict() for r in bare_results},
            "seawall": {r.dependency: r.as_dict() for r in guarded_results},
            "in_process": memory,
            "service": rows,
            "threads_left": [t.name for t in threading.enumerate()
                             if t is not threading.main_thread()],
        }
        with open(args.report, "w", encoding="utf-8") as fh:
            json.dump(report, fh, indent=2, default=str)
    _offer_dashboard(store, console)
    return 0


def _offer_dashboard(store: str, console: Console) -> None:
    """On a terminal, serve the dashboard over the run's store until Enter or Ctrl-C.

    Piped (CI, a script), the demo stays non-interactive and only says how to get it.
    """
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        console.print("\nDashboard: run the demo on a terminal, or `seawall serve --store URL "
                      "--http 127.0.0.1:8057` over a store of yours.")
        return
    from seawall.storage import serve_http

    with serve_http(store, "127.0.0.1:0") as web:
        console.print(f"\nDashboard of these metrics: {web.url}  (Enter or Ctrl-C stops it)")
        try:
            input()
        except (EOFError, KeyboardInterrupt):
            pass


def _join_pool_threads() -> None:
    """Let the stopped metrics server's worker threads end.

    ``MetricsServer.stop()`` stops gRPC but not the thread pool it was built
    with; its idle workers exit once the pool is garbage collected.
    """
    gc.collect()
    deadline = time.monotonic() + 5.0
    for t in threading.enumerate():
        if t.name.startswith("seawall-metrics-rpc"):
            t.join(max(0.0, deadline - time.monotonic()))


COUNTERS = ("calls", "successes", "failures", "retries", "rejected", "fallbacks")
# the store's names of PointStats counters named otherwise in the process
RENAMED = {"hedges_sent": "hedges", "hedges_won": "hedges_won"}


def _counters(run: Run, point: str) -> dict[str, int]:
    """The in-process counters of ``point`` that the metrics service must agree with.

    In a rehearsal the store keeps the injected calls apart (``injected_calls``,
    not in ``calls``, nor their fallbacks in ``fallbacks``): the process's
    counts are compared on that footing.
    """
    for (name, _), client in zip(run.deps, run.clients, strict=True):
        if name == point and client.point is not None:
            stats = client.point.stats()
            counts = {key: int(getattr(stats, key)) for key in COUNTERS}
            counts.update({key: int(getattr(stats, name)) for key, name in RENAMED.items()})
            if run.plan.outage_injected:
                counts["calls"] -= stats.injected_failures
                del counts["fallbacks"]
                counts["injected_calls"] = stats.injected_failures
            return counts
    return {}


class _Joined:
    """A started helper thread, stopped like a dependency: ``stop()`` sets its event, joins it."""

    def __init__(self, thread: threading.Thread, done: threading.Event) -> None:
        self.thread = thread
        self.done = done

    def stop(self) -> None:
        self.done.set()
        self.thread.join(5.0)
