"""Fault injection in the gRPC interceptors and channel wrappers: an injected status.

A point with :class:`seawall.Chaos` gets, per attempt, a send wrapped by
the core's injection (``point.chaos.wrap`` / ``awrap``: it draws, marks the
attempt as injected and waits the latency) with gRPC's own shapes of a
failure: a finished call whose status is

* ``Chaos.result``: a ``grpc.StatusCode`` (or ``(code, details)``), as the
  server would have answered (``UNAVAILABLE``, ``RESOURCE_EXHAUSTED``...);
* ``Chaos.fault``: ``UNAVAILABLE`` with the fault's text, what gRPC reports
  when the connection fails (a fault with its own ``code()``, a
  ``grpc.RpcError`` made by the test, keeps that code);
* latency past the attempt's timeout: ``DEADLINE_EXCEEDED`` after waiting
  that long (shorter latency is waited, then the RPC is sent).

The status is classified by the point's status table like a real one, so
retries, the breaker and the fallback react as to a real outage. Waits go
through the point's clock. Without chaos the send is the mounting's own:
one ``None`` check per call.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

import grpc
import grpc.aio

from seawall import Execution

from ._grpc_aio_status import DoneCall, Status
from ._grpc_refusals import FailedCall
from ._grpc_routes import Rule

Send = Callable[[Any, Any, "float | None", int], Any]
AioSend = Callable[[Any, Any, "float | None", int], Awaitable[Any]]

_UNAVAILABLE = grpc.StatusCode.UNAVAILABLE
_DEADLINE = grpc.StatusCode.DEADLINE_EXCEEDED
C = TypeVar("C")


class InjectedCall(FailedCall):
    """A finished sync call that failed with an injected status (also its ``grpc.RpcError``)."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self._code = code
        self._details = details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def debug_error_string(self) -> str:
        return self._details

    def __repr__(self) -> str:
        return f"InjectedCall({self._code.name}, {self._details!r})"


class InjectedDone(DoneCall):
    """A finished grpc.aio call that failed with an injected status.

    ``InjectedDone(code, details)`` is the one way our grpc.aio code stands
    for an attempt that ended without reaching the server: its ``status``
    (a :class:`Status` with ``code``, ``details`` as details and debug
    string, empty metadata) is what the call reports, and awaiting it raises
    that status' ``AioRpcError``. Not thread-safe; made per attempt.
    """

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self.status = Status(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details, details)
        super().__init__(None, self.status)

    def __repr__(self) -> str:
        return f"InjectedDone({self.status.code.name}, {self.status.details!r})"


def status_of(result: Any) -> tuple[grpc.StatusCode, str]:
    """The status of an injected ``Chaos.result``: a ``grpc.StatusCode`` or ``(code, details)``."""
    if isinstance(result, grpc.StatusCode):
        return result, f"seawall: injected status {result.name}"
    if isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], grpc.StatusCode):
        return result[0], str(result[1])
    raise TypeError(f"seawall: Chaos.result for gRPC must be a grpc.StatusCode or "
                    f"(code, details), got {result!r}")


def fault_status(fault: Exception) -> tuple[grpc.StatusCode, str]:
    """The status of an injected ``Chaos.fault``: its own ``code()``, else ``UNAVAILABLE``."""
    code = getattr(fault, "code", None)
    if callable(code):
        found = code()
        if isinstance(found, grpc.StatusCode):
            return found, f"seawall: injected {fault!r}"
    return _UNAVAILABLE, f"seawall: injected fault {fault!r}"


class Answers(Generic[C]):
    """An injection's answers in one mounting's shape of a finished call.

    ``make(code, details)`` builds that call (:class:`InjectedCall` for the
    sync mountings, :class:`InjectedDone` for grpc.aio); the three methods
    are what the core's injection (``chaos.wrap`` / ``awrap``) is handed.
    Stateless: one per shape, shared by every thread and task.
    """

    __slots__ = ("make",)

    def __init__(self, make: Callable[[grpc.StatusCode, str], C]) -> None:
        self.make = make

    def result(self, result: Any) -> C:
        """The finished call of an injected ``Chaos.result``."""
        return self.make(*status_of(result))

    def fault(self, fault: Exception) -> C:
        """The finished call of an injected ``Chaos.fault``."""
        return self.make(*fault_status(fault))

    def late(self, latency: float) -> C:
        """The finished call of an injected latency past the attempt's timeout (``latency`` s)."""
        return self.make(_DEADLINE, f"seawall: injected latency of {latency:g} s")


SYNC = Answers(InjectedCall)
AIO = Answers(InjectedDone)
result_call, fault_call, late_call = SYNC.result, SYNC.fault, SYNC.late
result_done, fault_done, late_done = AIO.result, AIO.fault, AIO.late


def chaos_send(rule: Rule, ex: Execution, send: Send) -> Send:
    """``send`` with the point's fault injection for the attempts of ``ex`` (sync).

    The core's injection (``chaos.wrap``) with gRPC's shapes of its answers.
    """
    point = rule.point
    chaos = point.chaos
    if chaos is None:
        return send

    def attempt(args: Any, request: Any, timeout: float | None, number: int) -> Any:
        def call(left: float | None) -> Any:
            return send(args, request, left, number)

        return chaos.wrap(point, call, ex, result_call, fault_call, late_call)(timeout)

    return attempt


def aio_chaos_send(rule: Rule, ex: Execution, send: AioSend) -> AioSend:
    """``send`` with the point's fault injection for the attempts of ``ex`` (grpc.aio).

    The core's injection (``chaos.awrap``) with gRPC's shapes of its answers.
    """
    point = rule.point
    chaos = point.chaos
    if chaos is None:
        return send

    async def attempt(args: Any, request: Any, timeout: float | None, number: int) -> Any:
        async def call(left: float | None) -> Any:
            return await send(args, request, left, number)

        return await chaos.awrap(point, call, ex, result_done, fault_done, late_done)(timeout)

    return attempt
