"""MetricsClient: typed access to a metrics service."""

from __future__ import annotations

import math
import socket
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

import grpc

from seawall import ConfigurationError

from ._gen import metrics_pb2 as pb
from ._gen import metrics_pb2_grpc as pb_grpc
from ._service import SERVICE_NAME, parse_listen
from ._types import (
    BREAKDOWNS,
    STATS_FIELDS,
    MetricsServiceError,
    PointInfo,
    SeriesBucket,
    Summary,
    Transition,
)


def _ordered(found: Mapping[str, int], order: Sequence[str]) -> dict[str, int]:
    """A protobuf map (unordered) as a dict in the documented order, unknown keys last."""
    out = {key: found[key] for key in order if key in found}
    out.update(sorted((k, v) for k, v in found.items() if k not in out))
    return out


def _stats(s: pb.Stats) -> dict[str, Any]:
    out = {name: getattr(s, name) for name in STATS_FIELDS}
    for name, order in BREAKDOWNS.items():
        out[name] = _ordered(out[name], order)
    return out


def _epoch(name: str, value: float | datetime) -> float:
    """Epoch seconds from a number or a datetime (a naive one is local time, as Python has it)."""
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigurationError(f"{name} must be epoch seconds or a datetime, got {value!r}")
    return float(value)


def _summaries(response: pb.SummaryResponse) -> list[Summary]:
    return [Summary(point=s.point, breaker_state=s.breaker_state or "closed", **_stats(s.stats))
            for s in response.summaries]


class MetricsClient:
    """A client of the seawall metrics service at ``target`` (``host:port``, port 1-65535).

    ``token`` is sent as ``authorization: Bearer <token>``. ``tls=True``
    (or ``root_certificates``, PEM bytes of the CA to trust) uses TLS.
    ``timeout`` bounds each unary call in seconds. A malformed ``target``
    raises :class:`seawall.ConfigurationError` here. Errors of calls raise
    :class:`MetricsServiceError` with the status code name and a message
    that says what was tried and what to check (nothing listening, not a
    seawall service, TLS against plaintext, a point that does not exist:
    ``NOT_FOUND``). Thread-safe; close it (or use ``with``) to release the
    channel.
    """

    def __init__(self, target: str, token: str | None = None, *, tls: bool = False,
                 root_certificates: bytes | None = None, timeout: float = 10.0) -> None:
        parse_listen(target, name="target", lowest=1)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) \
                or not 0 < timeout < math.inf:
            raise ConfigurationError(f"MetricsClient.timeout must be > 0 seconds, got {timeout!r}")
        self.target = target
        self.timeout = float(timeout)
        self.tls = bool(tls or root_certificates is not None)
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
            raise _translate(exc, self) from exc

    def points(self) -> list[PointInfo]:
        """Every point the store has seen, with its operations."""
        response = self._call(self._stub.ListPoints, pb.ListPointsRequest())
        return [PointInfo(name=p.name, operations=tuple(p.operations), first_seen=p.first_seen,
                          last_seen=p.last_seen) for p in response.points]

    def summary(self, point: str | None = None, *, window: float = 3600.0,
                operation: str | None = None) -> list[Summary]:
        """The totals of ``point`` (``None``: each point) over the last ``window`` seconds.

        The window is resolved to whole minutes (from the start of the minute
        ``window`` seconds ago to now). A known point without calls in the
        window gives ``[]``; a point the store has never seen raises
        :class:`MetricsServiceError` with code ``NOT_FOUND``, naming the
        known points.
        """
        response = self._call(self._stub.GetSummary, pb.SummaryRequest(
            point=point or "", operation=operation or "", window_seconds=window))
        return _summaries(response)

    def series(self, point: str, *, start: float | datetime, end: float | datetime,
               step: float = 60.0, operation: str | None = None) -> list[SeriesBucket]:
        """``point``'s figures per ``step`` seconds from ``start`` to ``end``.

        ``start`` and ``end`` are seconds since the Unix epoch (UTC, as
        :func:`time.time` gives) or :class:`datetime.datetime` values (a naive
        one is local time); ``start`` is rounded down to its minute.
        ``step`` is in seconds, a positive multiple of 60; at most 10,000
        steps. Every step is returned, empty ones included.
        """
        response = self._call(self._stub.GetSeries, pb.SeriesRequest(
            point=point, operation=operation or "", start=_epoch("start", start),
            end=_epoch("end", end), step_seconds=step))
        return [SeriesBucket(start=b.start, **_stats(b.stats)) for b in response.buckets]

    def transitions(self, point: str | None = None, *, start: float | datetime | None = None,
                    end: float | datetime | None = None,
                    page_size: int = 100) -> Iterator[Transition]:
        """Breaker transitions in stored order, fetched a page at a time as you iterate.

        ``start`` / ``end`` bound their times like :meth:`series` (``None``: unbounded).
        """
        token = ""
        first = 0.0 if start is None else _epoch("start", start)
        last = 0.0 if end is None else _epoch("end", end)
        while True:
            response = self._call(self._stub.ListTransitions, pb.ListTransitionsRequest(
                point=point or "", start=first, end=last, page_size=page_size,
                page_token=token))
            for t in response.transitions:
                yield Transition(point=t.point, from_state=t.from_state, to_state=t.to_state,
                                 reason=t.reason, time=t.time, host=t.host, pid=t.pid)
            token = response.next_page_token
            if not token:
                return

    def watch(self, point: str | None = None, *, window: float = 3600.0, interval: float = 5.0,
              operation: str | None = None) -> Iterator[list[Summary]]:
        """Summaries every ``interval`` seconds until you stop iterating (or close the generator).

        A point not seen yet is watched all the same (it may appear). A
        service answers ``max_workers - 2`` watches at once (6 by default);
        one more gets ``RESOURCE_EXHAUSTED``.
        """
        call = self._stub.WatchSummary(
            pb.WatchSummaryRequest(point=point or "", operation=operation or "",
                                   window_seconds=window, interval_seconds=interval),
            metadata=self._metadata)
        try:
            for response in call:
                yield _summaries(response)
        except grpc.RpcError as exc:
            if exc.code() is not grpc.StatusCode.CANCELLED:
                raise _translate(exc, self) from exc
        finally:
            call.cancel()  # type: ignore[no-untyped-call]

    def close(self) -> None:
        """Close the channel."""
        self._channel.close()

    def __enter__(self) -> MetricsClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _translate(exc: grpc.RpcError, client: MetricsClient) -> MetricsServiceError:
    """The status of a failed call, with what was tried and what to check, in one line."""
    code = exc.code() if isinstance(exc, grpc.Call) else grpc.StatusCode.UNKNOWN
    details = (exc.details() if isinstance(exc, grpc.Call) else None) or str(exc)
    target = client.target
    if code is grpc.StatusCode.UNAVAILABLE:
        details = _unreachable(client)
    elif code is grpc.StatusCode.UNIMPLEMENTED:
        details = (f"{target} answered, but it is not a seawall metrics service ({SERVICE_NAME} "
                   f"is not there: {details}); is this the address of `seawall serve`?")
    elif code is grpc.StatusCode.DEADLINE_EXCEEDED:
        details = (f"{target} accepted the connection but did not answer within "
                   f"{client.timeout:g} s: it may not be a gRPC service, or it is overloaded")
    elif code is grpc.StatusCode.UNAUTHENTICATED:
        details = (f"{details}: pass the service's token (seawall stats --token or "
                   "$SEAWALL_METRICS_TOKEN; MetricsClient(target, token=...))")
    return MetricsServiceError(" ".join(details.split()), code=code.name)


def _unreachable(client: MetricsClient) -> str:
    """Why the service at the client's target cannot be reached, found with a plain connect."""
    host, port = parse_listen(client.target, name="target", lowest=1)
    try:
        with socket.create_connection((host, port), timeout=min(client.timeout, 2.0)):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        return (f"cannot reach the metrics service at {client.target}: nothing answers there "
                f"({reason}); is `seawall serve` running on that host and port?")
    if client.tls:
        return (f"cannot reach the metrics service at {client.target}: it accepts connections "
                "but the TLS handshake failed; it may serve plaintext (drop --tls / --ca, or "
                "tls=False), or its certificate is not one this client trusts (--ca FILE, or "
                "root_certificates=)")
    return (f"cannot reach the metrics service at {client.target}: it accepts connections but "
            "closed this plaintext one; it may require TLS (seawall stats --tls, or --ca FILE "
            "for a self-signed certificate; MetricsClient(tls=True, root_certificates=...))")
