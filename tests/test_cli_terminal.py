"""``seawall stats`` on a terminal: a table that fits, ``--wide``, ``--watch``, ``--series``.

The CLI runs against a real metrics service (``seawall.storage.serve`` on
127.0.0.1) over a store filled by real integration points through a real
recorder: :func:`tests.browser_support.fill_store`'s scripted hour, plus a
point with a long name and ``burst``, whose calls peak in one known minute
and whose p99 peaks in another.
"""

from __future__ import annotations

import fcntl
import os
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from rich.cells import cell_len

import seawall
from seawall._cli import main
from seawall.storage import MetricsServer, Recorder, Store, serve
from seawall.storage._terminal import COLUMNS, chart_height
from seawall.testing import FakeClock
from tests.browser_support import fill_store

ROOT = Path(__file__).resolve().parent.parent
LONG = "inventory-service-primary-replica-eu-west-1"
PRIORITY = ("point", "calls", "ok %", "p99 ms", "breaker")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")
SPARKS = set("▁▂▃▄▅▆▇█")
BURST_MINUTES = 50
BURST_PEAK = 31  # the minute (0 = the oldest) with 8x the calls
SLOW_MINUTE = 17  # the minute whose calls take 300 ms


@dataclass
class Filled:
    server: MetricsServer
    url: str
    end: float  # the minute boundary the scripted data ends at


def record_minutes(url: str, name: str, end: float, calls: list[int],
                   latency: list[float]) -> None:
    """A real point calls ``calls[m]`` times in minute ``m`` (each taking ``latency[m]`` s).

    The point runs on a fake clock; a hook stamps each event with the wall
    time of its minute (``len(calls)`` minutes ending at ``end``) and hands
    it to a real recorder writing ``url``.
    """
    clock = FakeClock(start=0.0)
    start = end - len(calls) * 60
    recorder = Recorder(Store(url), flush_interval=3600.0, owns_store=True)
    seawall.remove_hook(recorder.hook)  # only this point's events, stamped below
    point = seawall.IntegrationPoint(name, clock=clock)

    def stamp(event: Any) -> None:
        recorder.hook(event._replace(time=start + clock.now()))

    point.add_hook(stamp)

    def work() -> None:
        clock.sleep(current)

    try:
        for minute, n in enumerate(calls):
            current = latency[minute]
            for i in range(n):
                clock.advance(max(0.0, minute * 60.0 + i * (50.0 / n) - clock.now()))
                point.call(work)
    finally:
        point.remove_hook(stamp)
        recorder.close()


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Filled]:
    url = f"sqlite:///{tmp_path_factory.mktemp('terminal') / 'metrics.db'}"
    end = (time.time() // 60) * 60  # the current minute's start: the data ends just before
    fill_store(url, end)
    calls = [5] * BURST_MINUTES
    calls[BURST_PEAK] = 40
    latency = [0.002] * BURST_MINUTES
    latency[SLOW_MINUTE] = 0.300
    record_minutes(url, "burst", end, calls, latency)
    record_minutes(url, LONG, end, [3] * 10, [0.001] * 10)
    with serve(url, "127.0.0.1:0") as server:
        yield Filled(server, url, end)


def run(filled: Filled, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        *args: str, columns: int = 80, lines: int = 30) -> tuple[int, list[str]]:
    """``seawall stats ARGS`` at a forced terminal size: (exit code, lines printed)."""
    monkeypatch.setenv("COLUMNS", str(columns))
    monkeypatch.setenv("LINES", str(lines))
    code = main(["stats", "--target", filled.server.address, *args])
    return code, capsys.readouterr().out.splitlines()


def headers(out: list[str]) -> list[str]:
    """The column headers of the first table in ``out``."""
    row = next(line for line in out if line.startswith("┃"))
    return [cell.strip() for cell in row.strip("┃").split("┃")]


def cells(out: list[str], point_prefix: str) -> list[str]:
    """The cells of the first table row whose point starts with ``point_prefix``."""
    row = next(line for line in out if line.startswith("│ " + point_prefix))
    return [cell.strip() for cell in row.strip("│").split("│")]


# -- the table ----------------------------------------------------------------------------


def test_the_table_fits_80_columns_with_the_priority_columns(
        filled: Filled, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """At 80 columns: no line is wider, the priority columns are there, long names end in …."""
    code, out = run(filled, capsys, monkeypatch)
    assert code == 0
    assert max(cell_len(line) for line in out) <= 80
    shown = headers(out)
    assert set(PRIORITY) <= set(shown)
    assert shown == [c.header for c in COLUMNS if c.header in shown]  # in display order
    row = cells(out, LONG[:8])
    assert row[0].endswith("…") and LONG.startswith(row[0][:-1]) and len(row[0]) < len(LONG)
    hidden = [c.header for c in COLUMNS if c.header not in shown]
    assert hidden, "at 80 columns something must give way for a 43-character point name"
    assert f"not shown: {', '.join(hidden)} (--wide shows them)" in " ".join(out)


def test_wide_shows_every_column_and_whole_names(
        filled: Filled, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """``--wide``: all ten columns, the long name whole, whatever the terminal's width."""
    code, out = run(filled, capsys, monkeypatch, "--wide")
    assert code == 0
    assert headers(out) == [c.header for c in COLUMNS]
    assert cells(out, LONG[:8])[0] == LONG
    assert "not shown" not in " ".join(out)
    widths = {cell_len(line) for line in out if line.startswith(("┏", "│", "└"))}
    assert len(widths) == 1 and widths.pop() > 80  # one table, never wrapped


@pytest.mark.parametrize("columns", [60, 72, 90, 100, 120])
def test_columns_give_way_by_priority(
        filled: Filled, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        columns: int) -> None:
    """Narrower terminals drop failures last and p95 first; the table always fits."""
    code, out = run(filled, capsys, monkeypatch, columns=columns)
    assert code == 0
    assert max(cell_len(line) for line in out) <= columns
    shown = set(headers(out))
    assert set(PRIORITY) <= shown
    extras = sorted((c for c in COLUMNS if c.priority), key=lambda c: c.priority)
    flags = [c.header in shown for c in extras]
    assert flags == sorted(flags, reverse=True), f"{shown} at {columns} columns"


def test_narrow_and_wide_show_the_same_figures(
        filled: Filled, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Dropping columns changes nothing in those that show."""
    _, narrow = run(filled, capsys, monkeypatch)
    _, wide = run(filled, capsys, monkeypatch, "--wide")
    narrow_headers, wide_headers = headers(narrow), headers(wide)
    for point in ("payments", "search", "burst"):
        a = dict(zip(narrow_headers, cells(narrow, point), strict=True))
        b = dict(zip(wide_headers, cells(wide, point), strict=True))
        assert all(b[k] == v for k, v in a.items())


# -- --watch ------------------------------------------------------------------------------


def test_watch_piped_prints_each_refresh_with_sparklines(
        filled: Filled, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Piped, ``--watch --count 3`` prints three frames of trends, each within 80 columns."""
    code, out = run(filled, capsys, monkeypatch, "--watch", "--count", "3",
                    "--interval", "0.5")
    assert code == 0
    frames = [i for i, line in enumerate(out) if line.startswith("seawall stats at ")]
    assert len(frames) == 3
    assert max(cell_len(line) for line in out) <= 80
    shown = headers(out)
    assert shown[-2:] == ["calls/s", "p99 ms"] and {"point", "ok %", "breaker"} <= set(shown)
    burst = cells(out, "burst")
    calls_trend, p99_trend = burst[-2], burst[-1]
    assert SPARKS & set(calls_trend) and SPARKS & set(p99_trend)


def test_watch_refreshes_with_new_data(filled: Filled, tmp_path: Path) -> None:
    """A later frame shows calls recorded after the first one was drawn."""
    url = f"sqlite:///{tmp_path / 'live.db'}"
    record_minutes(url, "live", (time.time() // 60) * 60, [4], [0.001])
    with serve(url, "127.0.0.1:0") as server:
        env = {**os.environ, "COLUMNS": "80", "PYTHONPATH": str(ROOT)}
        proc = subprocess.Popen(
            [sys.executable, "-m", "seawall", "stats", "--target", server.address, "--watch",
             "--interval", "0.5", "--count", "60", "--window", "600"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        assert proc.stdout is not None
        try:
            first = _next_row(proc.stdout, "live")
            assert first[1] == "100.0"  # ok %
            recorder = Recorder(Store(url), flush_interval=3600.0, owns_store=True)
            seawall.remove_hook(recorder.hook)
            point = seawall.IntegrationPoint("live")
            point.add_hook(recorder.hook)

            def fail() -> None:
                raise ValueError("bad input")

            for _ in range(4):
                with pytest.raises(ValueError):
                    point.call(fail)
            recorder.close()
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                row = _next_row(proc.stdout, "live")
                if row[1] == "50.0":
                    break
            else:
                raise AssertionError("no frame showed the new failures")
        finally:
            proc.kill()
            proc.wait(timeout=30)
            proc.stdout.close()
            assert proc.stderr is not None
            proc.stderr.close()


def _next_row(stream: Any, point: str) -> list[str]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = stream.readline()
        if not line:
            raise AssertionError("seawall stats --watch ended early")
        if line.startswith("│ " + point):
            return [cell.strip() for cell in line.strip().strip("│").split("│")]
    raise AssertionError(f"no row of {point} within 30 s")


def test_watch_on_a_terminal_redraws_in_place_and_ctrl_c_exits_130(filled: Filled) -> None:
    """Under a real pseudo-terminal of 80x24: frames redraw in place; SIGINT ends it with 130."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env.update(PYTHONPATH=str(ROOT), TERM="xterm-256color")
    proc = subprocess.Popen(
        [sys.executable, "-m", "seawall", "stats", "--target", filled.server.address,
         "--watch", "--interval", "0.5"],
        stdin=slave, stdout=slave, stderr=slave, env=env)
    os.close(slave)
    output = b""
    try:
        deadline = time.monotonic() + 60
        # three frames drawn: the title three times
        while output.count(b"seawall stats at ") < 3 and time.monotonic() < deadline:
            output += _read(master, 0.5)
        assert output.count(b"seawall stats at ") >= 3, output[-2000:]
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=30)
        output += _read(master, 0.2)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        os.close(master)
    assert code == 130
    text = output.decode("utf-8", "replace")
    assert "\x1b[1A" in text or "\x1b[A" in text  # the cursor goes back up to redraw
    assert "\x1b[?25h" in text  # and is shown again at the end
    plain = ANSI.sub("", text).replace("\r", "\n")
    assert max(cell_len(line) for line in plain.split("\n")) <= 80
    assert SPARKS & set(plain)
    assert "Traceback" not in plain


def _read(fd: int, timeout: float) -> bytes:
    found = b""
    while True:
        ready, _, _ = select.select([fd], [], [], timeout)
        if not ready:
            return found
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # the other side closed
            return found
        if not chunk:
            return found
        found += chunk
        timeout = 0.05


# -- --series ------------------------------------------------------------------------------


@dataclass
class Plot:
    title: str
    rows: list[str]  # the plot's rows, top first, from the axis on
    first: str  # the first bucket's HH:MM
    width: int  # cells, as the x axis draws them


def plots(out: list[str]) -> list[Plot]:
    """The charts in ``out``: title, rows right of the ``┤`` axis, first time label."""
    found = []
    i = 0
    while i < len(out):
        if "┤" in out[i]:
            title = out[i - 1]
            axis = out[i].index("┤")
            rows = []
            while "┤" in out[i]:
                rows.append(out[i][axis + 1:])
                i += 1
            assert "└" in out[i]
            found.append(Plot(title, rows, out[i + 1].split()[0], out[i].count("─")))
            i += 2
        else:
            i += 1
    return found


def heights(plot: Plot) -> list[int]:
    """The height in rows of the bar in each plot column."""
    width = max(len(r) for r in plot.rows)
    return [sum(1 for r in plot.rows if x < len(r) and r[x] != " ") for x in range(width)]


def minute_label(wall: float) -> str:
    return time.strftime("%H:%M", time.localtime(wall))


def test_series_draws_three_charts_sized_to_the_terminal(
        filled: Filled, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """80x30: three charts (calls/s, p50, p99) of chart_height(30) rows, none wider than 80."""
    code, out = run(filled, capsys, monkeypatch, "--point", "burst", "--series")
    assert code == 0
    assert max(cell_len(line) for line in out) <= 80
    assert len(out) <= 30
    found = plots(out)
    assert [p.title.split(":")[1].split(",")[0].strip() for p in found] == [
        "calls/s", "p50 ms", "p99 ms"]
    assert all(len(p.rows) == chart_height(30) for p in found)
    assert "60 s per bar" in found[0].title
    # an hour at one bar a minute: 61 bars
    assert found[0].width == 61 and max(len(r) for r in found[0].rows) <= 61

    _, wide = run(filled, capsys, monkeypatch, "--point", "burst", "--series", columns=160,
                  lines=50)
    wider = plots(wide)
    assert max(cell_len(line) for line in wide) <= 160
    assert len(wider[0].rows) == chart_height(50) > chart_height(30)
    assert wider[0].width == 2 * 61  # two cells a bar


def test_series_peaks_where_the_data_peaks(
        filled: Filled, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The tallest calls/s bar is the minute of the burst; the tallest p99 bar the slow one."""
    code, out = run(filled, capsys, monkeypatch, "--point", "burst", "--series")
    assert code == 0
    calls, _, p99 = plots(out)
    start = filled.end - BURST_MINUTES * 60
    for plot, minute in ((calls, BURST_PEAK), (p99, SLOW_MINUTE)):
        h = heights(plot)
        tallest = [x for x, v in enumerate(h) if v == max(h)]
        assert len(tallest) == 1, (plot.title, h)
        first = time.strptime(plot.first, "%H:%M")
        # the bar's minute, counted from the chart's first label
        peak = time.localtime(start + minute * 60)
        offset = ((peak.tm_hour * 60 + peak.tm_min) - (first.tm_hour * 60 + first.tm_min)) % 1440
        assert tallest[0] == offset, (plot.title, plot.first, minute_label(start + minute * 60))
        assert max(h) == len(plot.rows)  # the peak reaches the top row


@pytest.mark.parametrize(("args", "message"), [
    (["--series"], "--series needs --point NAME"),
    (["--watch", "--json"], "--json and --watch cannot be combined"),
    (["--point", "burst", "--series", "--watch"], "--watch and --series cannot be combined"),
    (["--watch", "--interval", "0.1"], "--interval must be >= 0.5 and <= 3600 seconds"),
    (["--watch", "--interval", "soon"], "--interval must be a number"),
    (["--watch", "--count", "0"], "--count must be an integer >= 1"),
    (["--interval", "5"], "--interval only applies to --watch"),
])
def test_bad_terminal_options_are_usage_errors(
        filled: Filled, capsys: pytest.CaptureFixture[str], args: list[str],
        message: str) -> None:
    """A bad combination or value: one line on stderr, exit code 2."""
    assert main(["stats", "--target", filled.server.address, *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_series_of_an_unknown_point_fails_in_one_line(
        filled: Filled, capsys: pytest.CaptureFixture[str]) -> None:
    """A point the store never saw: exit 1, naming the known points."""
    assert main(["stats", "--target", filled.server.address, "--point", "nosuch",
                 "--series"]) == 1
    err = capsys.readouterr().err
    assert "no such point 'nosuch'" in err and len(err.strip().splitlines()) == 1
