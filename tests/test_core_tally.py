"""The lock-free counter behind the success path and the recorder's overflow count."""

from __future__ import annotations

import threading

from seawall._tally import Tally


def test_steps_from_many_threads_are_all_counted_while_others_read() -> None:
    """8 threads step 20 000 times each while a reader reads: nothing lost, reads never go back."""
    tally = Tally()
    start = threading.Barrier(9)
    done = threading.Event()
    seen: list[int] = []

    def stepper() -> None:
        step = tally.step
        start.wait()
        for _ in range(20_000):
            step()

    def reader() -> None:
        start.wait()
        while not done.is_set():
            seen.append(tally.value())

    threads = [threading.Thread(target=stepper) for _ in range(8)]
    watcher = threading.Thread(target=reader)
    for t in [*threads, watcher]:
        t.start()
    for t in threads:
        t.join(60)
    done.set()
    watcher.join(60)
    assert tally.value() == 8 * 20_000
    assert seen and seen == sorted(seen) and seen[-1] <= 8 * 20_000


def test_a_read_is_not_a_step() -> None:
    """Reading twice in a row gives the same value; it starts at zero."""
    tally = Tally()
    assert tally.value() == tally.value() == 0
    tally.step()
    tally.step()
    assert tally.value() == tally.value() == 2
