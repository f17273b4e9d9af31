"""A counter that any number of threads may step without a lock.

Python's ``x += 1`` on a shared integer is three bytecodes, and a thread
switch between them loses a count. :class:`Tally` steps an
``itertools.count`` instead: one C call, atomic, and as cheap as a step
can be (the success path of every call takes one). A count has no way to
be read without stepping it, so :meth:`Tally.value` takes one step and
remembers to leave it out; reads are rare (stats, the retry budget's
bucket boundaries) and take a lock among themselves.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from typing import Any


class Tally:
    """A monotonically increasing count: ``step()`` from any thread, ``value()`` to read.

    ``step`` is the bound ``__next__`` of an ``itertools.count``: hot paths
    bind it once and call it directly. Thread-safe; never reset (callers
    that need a reset keep a baseline and subtract it).
    """

    __slots__ = ("_count", "_lock", "_reads", "step")

    def __init__(self) -> None:
        self._count = itertools.count()
        self.step: Callable[[], int] = self._count.__next__
        self._reads = 0  # steps taken by value() itself
        self._lock = threading.Lock()

    def value(self) -> int:
        """How many times :attr:`step` was called so far."""
        with self._lock:
            seen = next(self._count) - self._reads
            self._reads += 1
        return seen


def queue_hook(pending: list[Any], cap: int, overflow: Tally, doc: str) -> Callable[[Any], None]:
    """An event hook that appends each event to ``pending``, or steps ``overflow`` when full.

    The caller's-thread half of a queue another thread drains
    (:func:`seawall.otel_metrics`'; the metrics recorder has its own, see
    ``seawall.storage._recorder_queue``): a length check and an append, no
    lock (``list.append`` is atomic). ``cap`` bounds the queue; ``doc``
    becomes the hook's docstring (it names its owner in hook listings).
    """
    append = pending.append
    step = overflow.step

    def hook(event: Any) -> None:
        # len(pending), not a bound pending.__len__: the builtin is a specialised call,
        # the method-wrapper a generic one (~200 instructions per event, callgrind)
        if len(pending) < cap:
            append(event)
        else:
            step()

    hook.__doc__ = doc
    return hook
