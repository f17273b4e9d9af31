"""The recorder's queue: what the hook on the caller's thread leaves for the recorder's thread.

The hook is the only part of the recorder a call pays for, so it does as
little as Python allows: no lock (``list.append`` and ``list.extend`` of a
tuple are atomic), no dict, no clock, and only the records the aggregates
read (of attempts, the timed-out ones).

A call's record is not kept itself: its nine fields are copied onto a flat
list (:attr:`EventQueue.calls`) and the record is freed at once. A record
kept until the next drain outlives the garbage collector's youngest
generation, which walks it first (about 850 instructions per call,
``bench/metrics.py --instructions``); nine references on a list are not
objects it tracks. The other records, rare, wait as they are in
:attr:`EventQueue.others`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from seawall import AttemptEvent, BreakerTransition, CallEvent, Category
from seawall._tally import Tally

#: the fields of one call's record on :attr:`EventQueue.calls`
CALL_FIELDS = len(CallEvent._fields)


class EventQueue:
    """At most ``cap`` call records and ``cap`` other records; beyond, a step of ``overflow``.

    :meth:`hook` is safe from any thread and event loop; :meth:`take` is
    for one drainer at a time (the recorder's lock).
    """

    __slots__ = ("calls", "cap", "others", "overflow")

    def __init__(self, cap: int, overflow: Tally) -> None:
        self.cap = cap
        self.overflow = overflow
        self.calls: list[Any] = []  # CALL_FIELDS entries per call, in CallEvent's order
        self.others: list[Any] = []

    def hook(self, doc: str) -> Callable[[Any], None]:
        """The event hook feeding this queue; ``doc`` becomes its docstring."""
        calls, others = self.calls, self.others
        extend, append = calls.extend, others.append
        cap, call_cap = self.cap, self.cap * CALL_FIELDS
        step = self.overflow.step
        call, attempt, timeout = CallEvent, AttemptEvent, Category.TIMEOUT

        def hook(event: Any) -> None:
            # type(), len(), [3]: the interpreter's fast paths, where .__class__,
            # .__len__ and .category are generic look-ups
            kind = type(event)
            if kind is call:
                if len(calls) < call_cap:
                    extend(event)
                else:
                    step()
            elif kind is not attempt or event[3] is timeout:
                if len(others) < cap:
                    append(event)
                else:
                    step()

        hook.__doc__ = doc
        return hook

    def take(self) -> tuple[list[Any], list[Any]]:
        """What is queued now (calls' fields, other records); what comes meanwhile stays."""
        calls, others = self.calls, self.others
        n, m = len(calls), len(others)  # whole records: an extend is atomic
        taken = calls[:n], others[:m]
        del calls[:n]
        del others[:m]
        return taken

    def queued_calls(self) -> int:
        """How many call records wait."""
        return len(self.calls) // CALL_FIELDS

    def queued_size(self) -> int:
        """What the waiting records count for in ``Recorder.dropped``: each call, each transition."""
        transitions = sum(1 for ev in list(self.others) if type(ev) is BreakerTransition)
        return self.queued_calls() + transitions

    def clear(self) -> None:
        """Forget everything queued."""
        del self.calls[:]
        del self.others[:]
