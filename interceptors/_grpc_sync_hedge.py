"""Hedged sync unary-unary calls of the channel wrapper, on routes marked idempotent.

``resilient_channel``'s blocking ``stub.M(req)`` comes here when its route
is ``idempotent=True`` and its point has a :class:`seawall.Hedge` (and no
result rules): each attempt is the inner multicallable's ``.future()``
(numbered in the ``seawall-attempt`` header), watched from the caller's
thread by the core (``point.hedge_futures``), so no thread is made per
attempt; a losing attempt is cancelled on the wire (``future.cancel()``).
Behind ``grpc.intercept_channel`` a blocking call's continuation blocks,
so hedging needs the wrapper there.

Fault injection (the point's :class:`seawall.Chaos`) runs in every
attempt, hedges included: the core draws per attempt and waits an
injected latency in its loop; :func:`_inject` gives the injection the
sync mountings' shape, a finished call with the injected status
(``_grpc_chaos``).
"""

from __future__ import annotations

from typing import Any

from seawall import Classification, DeadlineExceeded, RejectedError

from ._grpc_chaos import fault_call, late_call, result_call
from ._grpc_commit import end_failure, refuse, resolve_fallback
from ._grpc_routes import Rule
from ._grpc_status import with_attempt
from ._grpc_sync_unary import OUTCOME, classify_outcome


def _inject(injection: Any, timeout: float | None) -> Any:
    """The finished call of an injection whose latency is over, or ``None``: send the RPC."""
    latency = injection.latency
    if latency and timeout is not None and latency >= timeout:
        return late_call(latency)
    if injection.fault is not None:
        return fault_call(injection.fault)
    if injection.has_result:
        return result_call(injection.result)
    return None


def hedges(rule: Rule) -> bool:
    """Whether unary-unary calls of ``rule`` are hedged."""
    return rule.point.hedge is not None and rule.idempotent and not rule.result_rules


def hedged_blocking(rule: Rule, operation: str, timeout: float | None, inner: Any,
                    request: Any, metadata: Any, credentials: Any, wait_for_ready: Any,
                    compression: Any) -> Any:
    """A hedged blocking call: the response, a fallback's value, or the failure raised."""
    point = rule.point
    ex = rule.execution(operation, timeout)

    def start(limit: float | None, number: int) -> Any:
        return inner.future(request, timeout=limit,
                            metadata=metadata if number == 1 else with_attempt(metadata, number),
                            credentials=credentials, wait_for_ready=wait_for_ready,
                            compression=compression)

    def judge(future: Any) -> Classification | None:
        return classify_outcome(rule, future, OUTCOME)[0]

    try:
        future, c = point.hedge_futures(ex, start, judge, _inject)
    except (RejectedError, DeadlineExceeded) as refusal:
        fb, err = refuse(ex, refusal)
        if fb is None:
            raise err  # noqa: B904 (err is the refusal's gRPC twin, chained to it)
        return resolve_fallback(fb, refusal)
    except Exception as exc:  # the first attempt could not be sent: counted, now ended
        c = point.classify_exception(exc).with_retry(False)
        fb = end_failure(ex, c, exc)
        if fb is None:
            raise
        return resolve_fallback(fb, exc)
    if c is None:
        return future.result()
    err = future.exception()
    fb = end_failure(ex, c, err)
    if fb is not None:
        return resolve_fallback(fb, err)
    if err is None:  # a failed status without an error object: the future raises it
        return future.result()
    raise err
