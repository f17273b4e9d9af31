"""Helpers of the metrics tests: writer processes, a known workload, a store on disk.

Run as a module, it is a writer process::

    python -m tests.metrics_support mixed URL --threads 3 --tasks 3 --calls 200
    python -m tests.metrics_support steady URL --flush 0.5

    python -m tests.metrics_support stopped URL --calls 100 [--own-handler] [--catch-sigint]
    python -m tests.metrics_support bursts URL --first 100 --second 50

``mixed`` runs a deterministic workload from threads and asyncio tasks,
then prints the point's stats as JSON and exits (flushing through
``Recorder.close()`` or, with ``--atexit``, through the exit hook).
``steady`` records successful calls until it is killed, printing
``<count> <epoch seconds>`` every 20 calls.
``stopped`` records ``--calls`` calls with a flush interval of an hour,
prints ``ready <calls>`` and waits for a signal (or for stdin to close):
what reaches the store was flushed by the signal. ``--own-handler``
installs, before ``persist_metrics``, a SIGTERM handler that prints
``own handler ran`` and leaves with ``os._exit(3)`` (no exit hooks);
``--catch-sigint`` catches the ``KeyboardInterrupt`` of a SIGINT, prints
``interrupted`` and goes on waiting. ``bursts`` records ``--first`` calls,
flushes them, prints ``flushed <n>``, records ``--second`` calls and prints
``recorded <total>``, then waits to be killed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
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


def _wait_for_stdin_to_close(catch_sigint: bool, announce: str) -> None:
    """Print ``announce``, then wait until stdin closes (a caught SIGINT prints ``interrupted``)."""
    announced = False
    while True:
        try:
            if not announced:  # inside the try: a SIGINT right after it is caught too
                print(announce, flush=True)
                announced = True
            if not sys.stdin.readline():
                return
        except KeyboardInterrupt:
            if not catch_sigint:
                raise
            print("interrupted", flush=True)


def run_stopped(url: str, calls: int, own_handler: bool, catch_sigint: bool,
                flush_on_signal: bool) -> None:
    if own_handler:
        def leave(signum: int, frame: Any) -> None:
            print("own handler ran", flush=True)
            os._exit(3)  # no exit hooks: only a flush made before this handler counts

        signal.signal(signal.SIGTERM, leave)
    if flush_on_signal:  # the default
        seawall.persist_metrics(url, flush_interval=3600.0)
    else:
        seawall.persist_metrics(url, flush_interval=3600.0, flush_on_signal=False)
    point = seawall.IntegrationPoint("stopped")

    @point
    def tick() -> None:
        pass

    for _ in range(calls):
        tick()
    _wait_for_stdin_to_close(catch_sigint, f"ready {calls}")


def run_bursts(url: str, first: int, second: int) -> None:
    recorder = seawall.persist_metrics(url, flush_interval=3600.0, flush_on_signal=False)
    point = seawall.IntegrationPoint("bursts")

    @point
    def tick() -> None:
        pass

    for _ in range(first):
        tick()
    if not recorder.flush():  # what the periodic flush does, at a moment the test knows
        print("the flush failed", flush=True)
        return
    print(f"flushed {first}", flush=True)
    for _ in range(second):
        tick()
    _wait_for_stdin_to_close(False, f"recorded {first + second}")


def unprivileged_prefix() -> list[str] | None:
    """A command prefix that runs a program as a user without root's powers over files.

    Root ignores file permissions, so as root the program runs as ``nobody``
    (with ``setpriv``); as anyone else it runs as is. ``None`` when root
    cannot drop its powers here (no ``setpriv``).
    """
    if os.geteuid() != 0:
        return []
    import shutil

    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return None
    return [setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


def writer_command(*args: str) -> list[str]:
    """The command line of a writer process (run from the repository root)."""
    return [sys.executable, "-m", "tests.metrics_support", *args]


def start_writer(*args: str, stdout: int | None = subprocess.PIPE,
                 stdin: int | None = None) -> subprocess.Popen[str]:
    """Start a writer process; its stdout is a text pipe."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(writer_command(*args), cwd=ROOT, env=env, stdout=stdout,
                            stderr=subprocess.PIPE, stdin=stdin, text=True)


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
    stopped = sub.add_parser("stopped")
    stopped.add_argument("url")
    stopped.add_argument("--calls", type=int, default=100)
    stopped.add_argument("--own-handler", action="store_true")
    stopped.add_argument("--catch-sigint", action="store_true")
    stopped.add_argument("--no-flush-on-signal", action="store_true")
    bursts = sub.add_parser("bursts")
    bursts.add_argument("url")
    bursts.add_argument("--first", type=int, default=100)
    bursts.add_argument("--second", type=int, default=50)
    args = parser.parse_args(argv)
    if args.mode == "mixed":
        stats = run_mixed(args.url, args.threads, args.tasks, args.calls, args.flush, args.atexit)
        print(json.dumps(stats), flush=True)
    elif args.mode == "stopped":
        run_stopped(args.url, args.calls, args.own_handler, args.catch_sigint,
                    not args.no_flush_on_signal)
    elif args.mode == "bursts":
        run_bursts(args.url, args.first, args.second)
    else:
        run_steady(args.url, args.flush)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
