"""The recorder's queue: what its hook keeps, what it turns away, and nothing lost under load."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import seawall
from seawall import AttemptEvent, CallEvent, Category, RetryEvent
from seawall._tally import Tally
from seawall.storage import Recorder, Store
from seawall.storage._aggregates import Aggregates
from seawall.storage._recorder_queue import CALL_FIELDS, EventQueue
from seawall.storage._schema import CALLS, TIMEOUTS


def _call(point: str = "p") -> CallEvent:
    return CallEvent(point, "op", None, 1, 0.001, time.time(), False, None)


def _attempt(category: Category | None) -> AttemptEvent:
    return AttemptEvent("p", "op", 1, category, 0.001, time.time())


def test_calls_are_kept_as_their_fields_and_only_timed_out_attempts_are_kept() -> None:
    """A call's record is queued as its fields; of attempts, only the timed-out ones wait."""
    queue = EventQueue(10, Tally())
    hook = queue.hook("doc")
    call, timed_out = _call(), _attempt(Category.TIMEOUT)
    retry = RetryEvent("p", "op", 1, 0.1, Category.TRANSIENT, time.time())
    for event in (call, _attempt(None), _attempt(Category.TRANSIENT), timed_out, retry):
        hook(event)
    assert hook.__doc__ == "doc"
    assert queue.queued_calls() == 1
    calls, others = queue.take()
    assert calls == list(call) and len(calls) == CALL_FIELDS
    assert others == [timed_out, retry]
    assert queue.take() == ([], [])


def test_a_full_queue_counts_each_record_it_turns_away() -> None:
    """Beyond ``cap`` calls (or ``cap`` other records) each record steps the overflow count."""
    overflow = Tally()
    queue = EventQueue(2, overflow)
    hook = queue.hook("doc")
    for _ in range(5):
        hook(_call())
        hook(_attempt(Category.TIMEOUT))
        hook(_attempt(None))  # never queued, so never lost either
    assert queue.queued_calls() == 2 and len(queue.others) == 2
    assert overflow.value() == 6


def test_threads_and_tasks_calling_while_the_thread_drains_lose_nothing(tmp_path: Path) -> None:
    """8 threads and 200 asyncio tasks call while the recorder drains and writes: all stored."""
    store = Store(f"sqlite:///{tmp_path / 'load.db'}")
    recorder = Recorder(store, flush_interval=0.05, drain_interval=0.005)
    point = seawall.IntegrationPoint("load")
    threads_n, per_thread, tasks_n, per_task = 8, 2_000, 200, 20
    start = threading.Barrier(threads_n + 1)

    def caller() -> None:
        start.wait()
        for _ in range(per_thread):
            point.call(lambda: None)

    async def task() -> None:
        for _ in range(per_task):
            await point.acall(asyncio.sleep, 0)

    async def tasks() -> None:
        await asyncio.gather(*(task() for _ in range(tasks_n)))

    try:
        threads = [threading.Thread(target=caller) for _ in range(threads_n)]
        for t in threads:
            t.start()
        start.wait()
        asyncio.run(tasks())
        for t in threads:
            t.join(120)
        assert not any(t.is_alive() for t in threads)
    finally:
        recorder.close()
    assert recorder.dropped == 0
    [summary] = store.summary("load")
    total = threads_n * per_thread + tasks_n * per_task
    assert (summary.calls, summary.successes) == (total, total)
    assert point.stats().calls == total
    store.close()


def test_folding_calls_puts_each_in_its_own_minute_row_and_counts_what_finds_no_room() -> None:
    """Points, operations and minute edges interleaved: each call in its row; no room, dropped."""
    minute = 28_000_000
    edge = minute * 60.0
    stamps = [edge - 1e-6, edge, edge + 59.999, edge + 60.0, edge - 30.0, edge + 1.0]
    points = [f"p{i}" for i in range(3)]
    fields: list[object] = []
    expected: dict[tuple[str, str, int], int] = {}
    for i in range(60):  # runs of one point and operation, their stamps across minute edges
        point, operation, stamp = points[i // 5 % 3], ("a", "b")[i // 10 % 2], stamps[i % 6]
        if i % 7 == 0:
            point = "".join(point)  # an equal name, not the same object
        fields.extend(CallEvent(point, operation, None, 1, 0.002, stamp, False, None))
        key = (point, operation, int(stamp // 60))
        expected[key] = expected.get(key, 0) + 1
    rows = Aggregates(max_keys=100, max_transitions=10)
    rows.fold_calls(fields)
    assert {k: int(v[CALLS]) for k, v in rows.counts.items()} == expected
    assert rows.dropped == 0

    full = Aggregates(max_keys=2, max_transitions=10)
    full.fold_calls(fields)
    kept = {k: int(v[CALLS]) for k, v in full.counts.items()}
    assert len(kept) == 2 and all(kept[k] == expected[k] for k in kept)
    assert full.dropped == 60 - sum(kept.values())


def test_only_real_timed_out_attempts_count_as_timeouts() -> None:
    """An injected timed-out attempt is queued (the hook reads no more than the category) but not counted."""
    queue = EventQueue(10, Tally())
    hook = queue.hook("doc")
    now = time.time()
    hook(AttemptEvent("p", "op", 1, Category.TIMEOUT, 0.5, now))
    hook(AttemptEvent("p", "op", 2, Category.TIMEOUT, 0.5, now, True))
    calls, others = queue.take()
    assert calls == [] and len(others) == 2
    rows = Aggregates(max_keys=10, max_transitions=10)
    rows.fold(others)
    [vec] = rows.counts.values()
    assert vec[TIMEOUTS] == 1 and vec[CALLS] == 0
