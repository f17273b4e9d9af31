"""MetricsClient: typed access to a metrics service."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc

from ._gen import metrics_pb2 as pb
from ._gen import metrics_pb2_grpc as pb_grpc
from ._types import MetricsServiceError, PointInfo, SeriesBucket, Summary, Transition


def _stats(s: pb.Stats) -> dict[str, Any]:
    return {
        "calls": s.calls, "successes": s.successes, "failures": s.failures,
        "retries": s.retries, "rejected": s.rejected, "cancelled": s.cancelled,
        "fallbacks": s.fallbacks, "timeouts": s.timeouts,
        "failures_by_category": dict(s.failures_by_category),
        "rejections_by_reason": dict(s.rejections_by_reason),
        "p50_ms": s.p50_ms, "p95_ms": s.p95_ms, "p99_ms": s.p99_ms, "mean_ms": s.mean_ms,
    }


def _summaries(response: pb.SummaryResponse) -> list[Summary]:
    return [Summary(point=s.point, breaker_state=s.breaker_state or "closed", **_stats(s.stats))
            for s in response.summaries]


class MetricsClient:
    """A client of the seawall metrics service at ``target`` (``host:port``).

    ``token`` is sent as ``authorization: Bearer <token>``. ``tls=True``
    (or ``root_certificates``, PEM bytes of the CA to trust) uses TLS.
    ``timeout`` bounds each unary call in seconds. Errors raise
    :class:`MetricsServiceError` with the status code name. Thread-safe;
    close it (or use ``with``) to release the channel.
    """

    def __init__(self, target: str, token: str | None = None, *, tls: bool = False,
                 root_certificates: bytes | None = None, timeout: float = 10.0) -> None:
        self.target = target
        self.timeout = timeout
        if tls or root_certificates is not None:
            credentials = grpc.ssl_channel_credentials(root_certificates=root_certificates)
            self._channel = grpc.secure_channel(target, credentials)
        else:
            self._channel = grpc.insecure_channel(target)
        self._stub = pb_grpc.MetricsServiceStub(self._channel)
        self._metadata: tuple[tuple[str, str], ...] = (
            (("authorization", f"Bearer {token}"),) if token else ())

    def __repr__(self) -> str:
        return f"MetricsClient({self.target!r})"

    def _call(self, method: Any, request: Any) -> Any:
        try:
            return method(request, timeout=self.timeout, metadata=self._metadata)
        except grpc.RpcError as exc:
            raise _translate(exc, self.target) from exc

    def points(self) -> list[PointInfo]:
        """Every point the store has seen, with its operations."""
        response = self._call(self._stub.ListPoints, pb.ListPointsRequest())
        return [PointInfo(name=p.name, operations=tuple(p.operations), first_seen=p.first_seen,
                          last_seen=p.last_seen) for p in response.points]

    def summary(self, point: str | None = None, *, window: float = 3600.0,
                operation: str | None = None) -> list[Summary]:
        """The totals of ``point`` (``None``: each point) over the last ``window`` seconds."""
        response = self._call(self._stub.GetSummary, pb.SummaryRequest(
            point=point or "", operation=operation or "", window_seconds=window))
        return _summaries(response)

    def series(self, point: str, *, start: float, end: float, step: float = 60.0,
               operation: str | None = None) -> list[SeriesBucket]:
        """``point``'s figures per ``step`` seconds between ``start`` and ``end`` (epoch seconds)."""
        response = self._call(self._stub.GetSeries, pb.SeriesRequest(
            point=point, operation=operation or "", start=start, end=end, step_seconds=step))
        return [SeriesBucket(start=b.start, **_stats(b.stats)) for b in response.buckets]

    def transitions(self, point: str | None = None, *, start: float | None = None,
                    end: float | None = None, page_size: int = 100) -> Iterator[Transition]:
        """Breaker transitions in stored order, fetched a page at a time as you iterate."""
        token = ""
        while True:
            response = self._call(self._stub.ListTransitions, pb.ListTransitionsRequest(
                point=point or "", start=start or 0.0, end=end or 0.0, page_size=page_size,
                page_token=token))
            for t in response.transitions:
                yield Transition(point=t.point, from_state=t.from_state, to_state=t.to_state,
                                 reason=t.reason, time=t.time, host=t.host, pid=t.pid)
            token = response.next_page_token
            if not token:
                return

    def watch(self, point: str | None = None, *, window: float = 3600.0, interval: float = 5.0,
              operation: str | None = None) -> Iterator[list[Summary]]:
        """Summaries every ``interval`` seconds until you stop iterating (or close the generator)."""
        call = self._stub.WatchSummary(
            pb.WatchSummaryRequest(point=point or "", operation=operation or "",
                                   window_seconds=window, interval_seconds=interval),
            metadata=self._metadata)
        try:
            for response in call:
                yield _summaries(response)
        except grpc.RpcError as exc:
            if exc.code() is not grpc.StatusCode.CANCELLED:
                raise _translate(exc, self.target) from exc
        finally:
            call.cancel()  # type: ignore[no-untyped-call]

    def close(self) -> None:
        """Close the channel."""
        self._channel.close()

    def __enter__(self) -> MetricsClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _translate(exc: grpc.RpcError, target: str) -> MetricsServiceError:
    code = exc.code() if isinstance(exc, grpc.Call) else grpc.StatusCode.UNKNOWN
    details = (exc.details() if isinstance(exc, grpc.Call) else None) or str(exc)
    if code is grpc.StatusCode.UNAVAILABLE:
        details = f"cannot reach the metrics service at {target}: {details}"
    elif code is grpc.StatusCode.DEADLINE_EXCEEDED:
        details = f"the metrics service at {target} did not answer in time"
    return MetricsServiceError(details, code=code.name)
