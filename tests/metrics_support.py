"""Helpers of the metrics tests: writer processes, a known workload, a store on disk.

Run as a module, it is a writer process::

    python -m tests.metrics_support mixed URL --threads 3 --tasks 3 --calls 200
    python -m tests.metrics_support steady URL --flush 0.5

``mixed`` runs a deterministic workload from threads and asyncio tasks,
then prints the point's stats as JSON and exits (flushing through
``Recorder.close()`` or, with ``--atexit``, through the exit hook).
``steady`` records successful calls until it is killed, printing
``<count> <epoch seconds>`` every 20 calls.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import seawall

ROOT = Path(__file__).resolve().parent.parent
POINT = "inventory"


def behaviour(i: int) -> str:
    """What call number ``i`` of a worker does."""
    if i % 7 == 0:
        return "permanent"  # ValueError: failed, not retried
    if i % 11 == 0:
        return "down"  # ConnectionError every time: failed after 3 attempts
    if i % 5 == 0:
        return "flaky"  # ConnectionError once, then success
    return "ok"


@dataclass(frozen=True)
class Totals:
    calls: int
    successes: int
    failures: int
    retries: int
    transient: int
    permanent: int

    def __add__(self, other: Totals) -> Totals:
        return Totals(*(a + b for a, b in zip(vars(self).values(), vars(other).values(),
                                              strict=True)))

    def times(self, n: int) -> Totals:
        return Totals(*(v * n for v in vars(self).values()))


def expected(calls: int) -> Totals:
    """The totals one worker making ``calls`` calls must produce."""
    kinds = [behaviour(i) for i in range(calls)]
    return Totals(
        calls=calls,
        successes=kinds.count("ok") + kinds.count("flaky"),
        failures=kinds.count("permanent") + kinds.count("down"),
        retries=kinds.count("flaky") + 2 * kinds.count("down"),
        transient=kinds.count("down"),
        permanent=kinds.count("permanent"),
    )


def make_point() -> seawall.IntegrationPoint:
    """Retries without waits or budget, so every process counts the same."""
    return seawall.IntegrationPoint(
        POINT, retry=seawall.Retry(attempts=3, backoff=seawall.Backoff.constant(0.0), budget=None))


def _attempt(i: int, seen: dict[int, int]) -> int:
    seen[i] = seen.get(i, 0) + 1
    kind = behaviour(i)
    if kind == "permanent":
        raise ValueError(f"bad item {i}")
    if kind == "down" or (kind == "flaky" and seen[i] == 1):
        raise ConnectionError(f"item {i}: connection reset")
    return i


def run_mixed(url: str, threads: int, tasks: int, calls: int, flush: float,
              use_atexit: bool) -> dict[str, Any]:
    recorder = seawall.persist_metrics(url, flush_interval=flush)
    point = make_point()

    @point
    def lookup(i: int, seen: dict[int, int]) -> int:
        return _attempt(i, seen)

    @point
    async def alookup(i: int, seen: dict[int, int]) -> int:
        await asyncio.sleep(0)
        return _attempt(i, seen)

    def thread_worker() -> None:
        seen: dict[int, int] = {}
        for i in range(calls):
            try:
                lookup(i, seen)
            except (ValueError, ConnectionError):
                pass

    async def task_worker() -> None:
        seen: dict[int, int] = {}
        for i in range(calls):
            try:
                await alookup(i, seen)
            except (ValueError, ConnectionError):
                pass

    async def all_tasks() -> None:
        await asyncio.gather(*(task_worker() for _ in range(tasks)))

    workers = [threading.Thread(target=thread_worker) for _ in range(threads)]
    for w in workers:
        w.start()
    asyncio.run(all_tasks())
    for w in workers:
        w.join()
    if not use_atexit:
        recorder.close()
    return point.stats()._asdict()


def run_steady(url: str, flush: float) -> None:
    seawall.persist_metrics(url, flush_interval=flush)
    point = seawall.IntegrationPoint("steady")

    @point
    def tick() -> None:
        time.sleep(0.0005)

    count = 0
    while True:
        tick()
        count += 1
        if count % 20 == 0:
            print(f"{count} {time.time():.6f}", flush=True)


def writer_command(*args: str) -> list[str]:
    """The command line of a writer process (run from the repository root)."""
    return [sys.executable, "-m", "tests.metrics_support", *args]


def start_writer(*args: str, stdout: int | None = subprocess.PIPE) -> subprocess.Popen[str]:
    """Start a writer process; its stdout is a text pipe."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(writer_command(*args), cwd=ROOT, env=env, stdout=stdout,
                            stderr=subprocess.PIPE, text=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.metrics_support")
    sub = parser.add_subparsers(dest="mode", required=True)
    mixed = sub.add_parser("mixed")
    mixed.add_argument("url")
    mixed.add_argument("--threads", type=int, default=3)
    mixed.add_argument("--tasks", type=int, default=3)
    mixed.add_argument("--calls", type=int, default=200)
    mixed.add_argument("--flush", type=float, default=0.2)
    mixed.add_argument("--atexit", action="store_true")
    steady = sub.add_parser("steady")
    steady.add_argument("url")
    steady.add_argument("--flush", type=float, default=0.5)
    args = parser.parse_args(argv)
    if args.mode == "mixed":
        stats = run_mixed(args.url, args.threads, args.tasks, args.calls, args.flush, args.atexit)
        print(json.dumps(stats), flush=True)
    else:
        run_steady(args.url, args.flush)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
