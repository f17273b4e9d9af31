"""Instructions per call of metrics recording, counted by callgrind (not timed).

Run: ``.venv/bin/python bench/metrics.py --instructions`` (needs ``valgrind``;
about a minute and a half: three processes under callgrind, each paying
the interpreter's start-up once, which is not counted).

Wall-clock figures move with whatever else the machine runs; an
instruction count does not. Each configuration runs in its own process
under ``valgrind --tool=callgrind``, which counts only inside
``functools.reduce`` (``--toggle-collect``): the driver runs each measured
region as one ``reduce`` over a step function, so start-up, imports and
warm-up are left out, and the profile is dumped as each region ends.

* ``baseline``: a decorated no-op called through a point with no hooks;
* ``noop``: the same with a do-nothing hook (the core building and
  delivering the two event records of a successful call);
* ``recorder``: the same with the recorder's hook (the caller's thread),
  then, as a second region, the recorder folding those events into its
  aggregates (what its background thread does per call, without the
  store's write).

Per call: ``(region - baseline) / calls``; the aggregation region divided
by ``calls`` is added to the recorder's share.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from seawall.storage import Recorder

CALLS = 20_000
WARM_UP = 3_000
CONFIGS = ("baseline", "noop", "recorder")


def _regions(config: str, calls: int) -> None:
    """The driver (run under callgrind): warm up, then one ``reduce`` per measured region."""
    import seawall
    from seawall.storage import Recorder, Store

    point = seawall.IntegrationPoint("bench")

    @point
    def work() -> int:
        return 1

    def noop(_event: object) -> None:
        pass

    def call(acc: None, _: int) -> None:
        work()

    tmp = tempfile.mkdtemp(prefix="seawall-bench-instructions-")
    recorder: Recorder | None = None
    if config == "noop":
        seawall.add_hook(noop)
    elif config == "recorder":
        store = Store(f"sqlite:///{Path(tmp) / 'instructions.db'}")
        # the thread never wakes by itself: the fold below is the only one
        recorder = Recorder(store, flush_interval=3600.0, drain_interval=3600.0)
    for _ in range(WARM_UP):  # the interpreter specialises the hot code first
        work()
    if recorder is not None:
        recorder.flush()
    functools.reduce(call, range(calls), None)
    if recorder is not None:
        functools.reduce(lambda acc, _: _fold(recorder), range(1), None)
        assert recorder.dropped == 0
        recorder.close()


def _fold(recorder: Recorder) -> None:
    """What the recorder's thread does between writes: the queued events into aggregates."""
    with recorder._lock:
        recorder._fold_pending()


def _collected(out: Path) -> list[int]:
    """The instruction totals of the dumps callgrind wrote, in order."""
    totals = []
    for dump in sorted(out.parent.glob(out.name + ".*"), key=lambda p: int(p.suffix[1:])):
        match = re.search(r"^(?:summary|totals):\s*(\d+)", dump.read_text(), re.M)
        if match:
            totals.append(int(match.group(1)))
    return totals


def measure(calls: int = CALLS) -> dict[str, float]:
    """Run each configuration under callgrind; instructions per call of each region."""
    found: dict[str, list[int]] = {}
    here = Path(__file__).resolve().parent / "metrics.py"
    with tempfile.TemporaryDirectory(prefix="seawall-callgrind-") as tmp:
        for config in CONFIGS:
            out = Path(tmp) / f"{config}.out"
            subprocess.run(
                ["valgrind", "--tool=callgrind", "--toggle-collect=functools_reduce",
                 "--collect-atstart=no", "--dump-after=functools_reduce",
                 f"--callgrind-out-file={out}", sys.executable, str(here),
                 "--instructions-driver", config, str(calls)],
                check=True, capture_output=True, env={**os.environ, "PYTHONHASHSEED": "0"})
            found[config] = _collected(out)
    base = found["baseline"][0] / calls
    noop = found["noop"][0] / calls
    hook = found["recorder"][0] / calls
    fold = found["recorder"][1] / calls
    return {"baseline": base, "core_events": noop - base, "recorder_hook": hook - noop,
            "recorder_fold": fold, "recorder_added": hook - base + fold}


def report(measure_fn: Callable[[], dict[str, float]] = measure) -> int:
    """Print the figures of :func:`measure`."""
    got = measure_fn()
    print(f"seawall metrics recording, instructions per call (callgrind, {CALLS} calls):")
    print(f"  a decorated no-op, no hooks      {got['baseline']:8.0f}")
    print(f"  core building and emitting 2 events  +{got['core_events']:.0f}")
    print(f"  the recorder's hook (2 events)   +{got['recorder_hook']:.0f}")
    print(f"  the recorder folding them        +{got['recorder_fold']:.0f}   (its thread)")
    print(f"  recording added in all           +{got['recorder_added']:.0f}")
    return 0


def drive(argv: list[str]) -> int:
    """``--instructions-driver CONFIG CALLS``: the process callgrind watches."""
    _regions(argv[0], int(argv[1]))
    return 0
