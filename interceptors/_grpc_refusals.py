"""Local refusals that are also gRPC errors: breaker, bulkhead, rate limit, no time left.

A refusal never touches the network and reaches the caller the way a gRPC
failure does. In sync gRPC it is a finished, failed call (an ``RpcError``
that is also a ``grpc.Call``, a done ``grpc.Future`` and a response iterator
raising it); in grpc.aio an ``AioRpcError``. Each is also the matching
seawall error, so ``except seawall.CircuitOpenError`` and ``except
grpc.RpcError`` both catch it. Shared by both mountings.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, cast

import grpc
import grpc.aio

from seawall import (
    BulkheadFullError,
    CircuitOpenError,
    DeadlineExceeded,
    RateLimitedError,
    RejectedError,
    SeawallError,
)

from ._grpc_status import REJECTED_TRAILER

if TYPE_CHECKING:  # grpc-stubs makes it generic; grpc itself does not
    Future = grpc.Future[Any]
else:
    Future = grpc.Future


class Finished:
    """The ``grpc.Call`` / ``grpc.Future`` answers of a call that is already over."""

    def is_active(self) -> bool:
        return False

    def time_remaining(self) -> float:
        return 0.0

    def add_callback(self, callback: Any) -> bool:
        return False

    def cancel(self) -> bool:
        return False

    def cancelled(self) -> bool:
        return False

    def running(self) -> bool:
        return False

    def done(self) -> bool:
        return True

    def add_done_callback(self, fn: Any) -> None:
        fn(self)


class _Refusal:
    """What the eight refusal classes share: the message, the reason and the seawall fields."""

    _status: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE
    _reason = "rejected"
    _message = ""

    def _adopt(self, source: SeawallError) -> None:
        self._message = str(source)
        cast(Exception, self).args = (self._message,)
        for name in ("point", "operation", "retry_after", "retry_at", "max_concurrent", "timeout",
                     "reason"):
            if hasattr(source, name):
                setattr(self, name, getattr(source, name))

    def code(self) -> grpc.StatusCode:
        return self._status

    def details(self) -> str:
        return self._message

    def debug_error_string(self) -> str:
        return self._message

    def __str__(self) -> str:
        return self._message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._status.name}, {self._message!r})"


class FailedCall(Finished, grpc.RpcError, grpc.Call, Future):
    """A finished, failed sync call that is its own error: ``except grpc.RpcError``, a done
    ``Future`` whose ``result()`` raises it, a response iterator whose first ``next()``
    raises it. Subclasses say ``code()`` and ``details()``."""

    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.UNKNOWN

    def details(self) -> str:
        return ""

    def initial_metadata(self) -> Any:
        return ()

    def trailing_metadata(self) -> Any:
        return ()

    def result(self, timeout: float | None = None) -> Any:
        raise self

    def exception(self, timeout: float | None = None) -> Exception | None:
        return self

    def traceback(self, timeout: float | None = None) -> Any:
        return self.__traceback__

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        raise self


class _SyncRefusal(_Refusal, FailedCall):
    """A refused sync call: a :class:`FailedCall` whose trailing metadata says why."""

    # grpc-stubs types this differently on grpc.Call and grpc.RpcError (grpc's own
    # _InactiveRpcError has the same clash); we follow grpc.Call, as gRPC does at runtime
    def trailing_metadata(self) -> tuple[tuple[str, str | bytes], ...]:  # type: ignore[override]
        return ((REJECTED_TRAILER, self._reason),)


class _AioRefusal(_Refusal, grpc.aio.AioRpcError):
    """A failed grpc.aio call: the intercepted call's ``code()`` and metadata report it."""

    def _adopt(self, source: SeawallError) -> None:
        grpc.aio.AioRpcError.__init__(
            self, self._status, grpc.aio.Metadata(),
            grpc.aio.Metadata((REJECTED_TRAILER, self._reason)), str(source), str(source))
        super()._adopt(source)


class CircuitOpenRpcError(CircuitOpenError, _SyncRefusal):
    """The breaker refused a sync call: a :class:`seawall.CircuitOpenError` that is also a
    ``grpc.RpcError``, ``grpc.Call`` and ``grpc.Future``.

    ``code()`` is ``UNAVAILABLE``; the trailing metadata holds ``seawall-rejected: breaker``.
    Returned as the failed call (so ``stub.M(req)`` raises it) without touching the network.
    """

    _status = grpc.StatusCode.UNAVAILABLE
    _reason = "breaker"

    def __init__(self, source: CircuitOpenError) -> None:
        self._adopt(source)


class BulkheadFullRpcError(BulkheadFullError, _SyncRefusal):
    """The bulkhead refused a sync call: a :class:`seawall.BulkheadFullError` and a gRPC error.

    ``code()`` is ``RESOURCE_EXHAUSTED``; trailing metadata ``seawall-rejected: bulkhead``.
    """

    _status = grpc.StatusCode.RESOURCE_EXHAUSTED
    _reason = "bulkhead"

    def __init__(self, source: BulkheadFullError) -> None:
        self._adopt(source)


class DeadlineExceededRpcError(DeadlineExceeded, _SyncRefusal):
    """No time was left to start a sync call: a :class:`seawall.DeadlineExceeded` and a gRPC error.

    ``code()`` is ``DEADLINE_EXCEEDED``; trailing metadata ``seawall-rejected: deadline``.
    """

    _status = grpc.StatusCode.DEADLINE_EXCEEDED
    _reason = "deadline"

    def __init__(self, source: DeadlineExceeded) -> None:
        self._adopt(source)


class RateLimitedRpcError(RateLimitedError, _SyncRefusal):
    """The rate limit or a server's pause refused a sync call: a :class:`seawall.RateLimitedError`
    and a gRPC error (``code()`` ``RESOURCE_EXHAUSTED``; trailer ``seawall-rejected:
    rate_limit`` or ``paused``)."""

    _status = grpc.StatusCode.RESOURCE_EXHAUSTED
    _reason = "rate_limit"

    def __init__(self, source: RateLimitedError) -> None:
        self._reason = source.reason
        self._adopt(source)


class AioCircuitOpenRpcError(CircuitOpenError, _AioRefusal):
    """The breaker refused a grpc.aio call: a :class:`seawall.CircuitOpenError` that is also a
    ``grpc.aio.AioRpcError`` (``code()`` ``UNAVAILABLE``, trailer ``seawall-rejected: breaker``)."""

    _status = grpc.StatusCode.UNAVAILABLE
    _reason = "breaker"

    def __init__(self, source: CircuitOpenError) -> None:
        self._adopt(source)


class AioBulkheadFullRpcError(BulkheadFullError, _AioRefusal):
    """The bulkhead refused a grpc.aio call: a :class:`seawall.BulkheadFullError` that is also
    an ``AioRpcError`` (``code()`` ``RESOURCE_EXHAUSTED``)."""

    _status = grpc.StatusCode.RESOURCE_EXHAUSTED
    _reason = "bulkhead"

    def __init__(self, source: BulkheadFullError) -> None:
        self._adopt(source)


class AioDeadlineExceededRpcError(DeadlineExceeded, _AioRefusal):
    """No time was left to start a grpc.aio call: a :class:`seawall.DeadlineExceeded` that is
    also an ``AioRpcError`` (``code()`` ``DEADLINE_EXCEEDED``)."""

    _status = grpc.StatusCode.DEADLINE_EXCEEDED
    _reason = "deadline"

    def __init__(self, source: DeadlineExceeded) -> None:
        self._adopt(source)


class AioRateLimitedRpcError(RateLimitedError, _AioRefusal):
    """The rate limit or a server's pause refused a grpc.aio call: a
    :class:`seawall.RateLimitedError` that is also an ``AioRpcError`` (``RESOURCE_EXHAUSTED``)."""

    _status = grpc.StatusCode.RESOURCE_EXHAUSTED
    _reason = "rate_limit"

    def __init__(self, source: RateLimitedError) -> None:
        self._reason = source.reason
        self._adopt(source)


_SYNC_KINDS: tuple[tuple[type[SeawallError], Any], ...] = (
    (CircuitOpenError, CircuitOpenRpcError), (BulkheadFullError, BulkheadFullRpcError),
    (DeadlineExceeded, DeadlineExceededRpcError), (RateLimitedError, RateLimitedRpcError),
)
_AIO_KINDS: tuple[tuple[type[SeawallError], Any], ...] = (
    (CircuitOpenError, AioCircuitOpenRpcError), (BulkheadFullError, AioBulkheadFullRpcError),
    (DeadlineExceeded, AioDeadlineExceededRpcError),
    (RateLimitedError, AioRateLimitedRpcError),
)


def as_rpc_error(exc: RejectedError | DeadlineExceeded, *, aio: bool = False) -> Any:
    """The gRPC-flavoured twin of a seawall refusal, chained to it."""
    for kind, twin in (_AIO_KINDS if aio else _SYNC_KINDS):
        if isinstance(exc, kind):
            err = twin(exc)
            break
    else:  # a future kind of refusal: still a gRPC failure
        source = CircuitOpenError(str(exc), point=exc.point, operation=exc.operation)
        err = (AioCircuitOpenRpcError if aio else CircuitOpenRpcError)(source)
    err.__cause__ = exc
    err.__suppress_context__ = True
    return err

