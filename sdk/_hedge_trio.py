"""Hedging under trio: the attempts of :mod:`._hedge` in a nursery, each in its own cancel scope.

The rules, the counting and the judgement are :class:`._hedge._Hedging`'s;
this driver only starts and cancels the attempts the trio way: each runs in
the call's nursery inside its own :class:`trio.CancelScope` (its deadline a
``move_on_after`` within it), tells its end through a memory channel, and
is cancelled by cancelling its scope. Cancelling the caller cancels the
nursery, so every attempt; nothing counts as a failure. Imported only when
a hedged call runs under trio.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import trio

from ._classify import ExceptionRule, ResultRule
from ._deadline import DEADLINE
from ._execution import Execution, deadline_error
from ._hedge import _Hedging

if TYPE_CHECKING:
    from ._point import IntegrationPoint


class _Slot:
    """One attempt's task: its cancel scope, its outcome, and an event set once it ended."""

    __slots__ = ("ended", "error", "has_result", "result", "scope")

    def __init__(self) -> None:
        self.scope = trio.CancelScope()
        self.ended = trio.Event()
        self.error: BaseException | None = None
        self.has_result = False
        self.result: Any = None


class _TrioHedging(_Hedging):
    """:class:`_Hedging` whose attempts are tasks of a trio nursery."""

    def __init__(self, nursery: trio.Nursery, *args: Any) -> None:
        super().__init__(*args)
        self.nursery = nursery
        self.send, self.receive = trio.open_memory_channel[_Slot](math.inf)

    def launch(self, timeout: float | None) -> None:
        tr = self.new_try()
        slot = _Slot()
        self.tries[slot] = tr
        self.nursery.start_soon(self._run, slot, self.work(tr), timeout, tr.limit)

    async def _run(self, slot: _Slot, attempt: Callable[[float | None], Awaitable[Any]],
                   timeout: float | None, limit: float | None) -> None:
        point = self.point
        try:
            with slot.scope:
                if limit is not None:
                    DEADLINE.set((limit, point._now))  # this task's own context
                try:
                    if timeout is None:
                        slot.result = await attempt(None)
                        slot.has_result = True
                    else:
                        with trio.move_on_after(timeout):
                            slot.result = await attempt(timeout)
                            slot.has_result = True
                        if not slot.has_result:
                            raise deadline_error(point, self.operation, timeout)
                except Exception as exc:
                    slot.error = exc
        finally:
            if point.permits is not None:
                point.permits.release()
            slot.ended.set()
        if not slot.scope.cancel_called:
            self.send.send_nowait(slot)

    async def watch(self, discard: Callable[[Any], Awaitable[None] | None] | None,
                    ) -> tuple[bool, Any]:
        point = self.point
        while self.tries:
            wait = max(0.0, self.next_at - point._now()) if self.open else math.inf
            slot = None
            with trio.move_on_after(wait):
                slot = await self.receive.receive()
            if slot is None:
                self.hedge_now()  # the delay passed without an answer
                continue
            tr = self.tries.pop(slot, None)
            if tr is None:
                continue  # cancelled already
            ended = await self.settle(tr, slot.error, slot.result, discard)
            if ended is not None:
                return ended
        return False, None

    async def cancel_all(self, discard: Callable[[Any], Awaitable[None] | None] | None) -> None:
        """Cancel every running attempt and wait for them; give back their breaker tickets."""
        tries, self.tries = self.tries, {}
        for slot in tries:
            slot.scope.cancel()
        with trio.CancelScope(shield=True):
            for slot in tries:
                await slot.ended.wait()
        circuit = self.point.circuit
        for slot, tr in tries.items():
            if circuit is not None:
                circuit.release(tr.ticket)
            if discard is not None and slot.has_result:
                closing = discard(slot.result)  # it finished as it was cancelled: drop it
                if closing is not None:
                    await closing


async def hedge_trio(point: IntegrationPoint, attempt: Callable[[float | None], Awaitable[Any]],
                     operation: str, ex: Execution, timeout: float | None,
                     classify_exception: ExceptionRule | None,
                     classify_result: ResultRule | None,
                     chaos_result: Callable[[Any], Any] | None,
                     chaos_fault: Callable[[Exception], Any] | None,
                     discard: Callable[[Any], Awaitable[None] | None] | None,
                     ) -> tuple[_Hedging, bool, Any]:
    """Run an admitted hedged call under trio: ``(state, won, answer)`` as ``_Hedging.watch``."""
    async with trio.open_nursery() as nursery:
        run = _TrioHedging(nursery, point, attempt, operation, ex, classify_exception,
                           classify_result, chaos_result, chaos_fault)
        run.launch(timeout)
        try:
            won, result = await run.watch(discard)
        except BaseException:  # cancelled: every attempt goes, nothing counts as a failure
            if run.tries:
                await run.cancel_all(None)
            run.abandoned()
            raise
    return run, won, result
