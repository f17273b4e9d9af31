"""Hedged grpc.aio unary-unary calls: the point's Hedge on routes marked idempotent.

Both mountings send a unary-unary call here when its route is
``idempotent=True`` and its point has a :class:`seawall.Hedge` (and no
result rules). The hedging itself is the core's (``point.ahedged``): each
attempt here is one RPC, numbered in the ``seawall-attempt`` header, that
ends when its status is known; a losing attempt is cancelled on the wire
(``call.cancel()``). The answer is the winning attempt's call, the last
failed one when all failed, a fallback's value, or a refusal as its gRPC
twin.

Fault injection (the point's :class:`seawall.Chaos`) is the core's
innermost step of every attempt, hedges included; an injected result or
fault gets gRPC's shape here, a finished call with the status the
unhedged mountings give it (``_grpc_chaos``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import grpc

from seawall import Classification, DeadlineExceeded, RejectedError

from ._grpc_aio_status import DoneCall, Status, classify, read_status
from ._grpc_chaos import InjectedDone, fault_done, result_done
from ._grpc_refusals import as_rpc_error
from ._grpc_routes import Rule
from ._grpc_sync_hedge import hedges as hedges  # one rule for both mountings

_OK = grpc.StatusCode.OK


class _Outcome:
    """One finished attempt: its call and status (told apart from a fallback's value)."""

    __slots__ = ("call", "status")

    def __init__(self, call: Any, status: Status) -> None:
        self.call = call
        self.status = status


def _injected(shape: Callable[[Any], InjectedDone]) -> Callable[[Any], _Outcome]:
    """``shape``'s finished call as an attempt's outcome (an injection, never sent)."""
    def outcome(value: Any) -> _Outcome:
        call = shape(value)
        return _Outcome(call, call.status)

    return outcome


_injected_result = _injected(result_done)
_injected_fault = _injected(fault_done)


async def hedged_unary(rule: Rule, operation: str, timeout: float | None, send: Any,
                       args: Any, request: Any, wrap: bool) -> Any:
    """A hedged unary-unary call; returns what answers the caller (see the module docstring).

    ``send(args, request, timeout, attempt)`` starts one attempt, as for the
    unhedged shell; ``wrap``: a fallback's value comes back as a :class:`DoneCall`.
    """
    point = rule.point
    deadline = None if timeout is None else point.clock.now() + timeout
    started = 0

    async def attempt(limit: float | None) -> _Outcome:
        nonlocal started
        started += 1
        call = await send(args, request, limit, started)
        try:
            return _Outcome(call, await read_status(call))
        except asyncio.CancelledError:
            call.cancel()  # a losing hedge: stop it on the wire too
            raise

    def judge(outcome: Any) -> Classification | None:
        if outcome.status.code is _OK:
            return None
        return classify(rule, outcome.status)[0]

    try:
        answer = await point.ahedged(attempt, operation, deadline, None, judge, None,
                                     _injected_result, _injected_fault)
    except (RejectedError, DeadlineExceeded) as refusal:  # counted where it happened
        return DoneCall.failing(as_rpc_error(refusal, aio=True))
    if isinstance(answer, _Outcome):
        return answer.call
    return DoneCall(answer) if wrap else answer
