"""The metrics service's servicer: each RPC checked, answered from the :class:`Store`.

A bad request is answered ``INVALID_ARGUMENT`` with a message (a point or
an operation the store has never seen: ``NOT_FOUND``, naming the known
ones); a store that fails, ``UNAVAILABLE``. Watch streams are bounded in
number and end when the client leaves or the server stops. The server
around it (addresses, token, TLS, lifecycle) is :mod:`._service`.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import grpc
from sqlalchemy.exc import SQLAlchemyError

from ._gen import metrics_pb2 as pb
from ._gen import metrics_pb2_grpc as pb_grpc
from ._store import (
    DEFAULT_PAGE,
    MAX_PAGE,
    Store,
    check_name,
    check_time,
    check_window,
)
from ._types import BREAKDOWNS, STATS_FIELDS, MetricsQueryError, Stats, Summary

log = logging.getLogger("seawall.storage")

DEFAULT_WATCH_INTERVAL = 5.0
_MAX_ID = 2**63 - 1
_SHOWN_POINTS = 20

T = TypeVar("T")


class _PointNotFound(MetricsQueryError):
    """A request named a point (or an operation) the store has never seen: NOT_FOUND."""


def _stats_pb(stats: Stats) -> pb.Stats:
    fields: dict[str, Any] = {name: getattr(stats, name) for name in STATS_FIELDS}
    for name in BREAKDOWNS:
        fields[name] = dict(fields[name])
    return pb.Stats(**fields)


def _summary_pb(summaries: list[Summary], start: float, end: float) -> pb.SummaryResponse:
    return pb.SummaryResponse(
        summaries=[pb.PointSummary(point=s.point, stats=_stats_pb(s), breaker_state=s.breaker_state)
                   for s in summaries],
        start=start, end=end,
    )


# -- the servicer ------------------------------------------------------------------

class Servicer(pb_grpc.MetricsServiceServicer):
    """The MetricsService RPCs over ``store``; at most ``max_watchers`` watch streams at once."""

    def __init__(self, store: Store, stopping: threading.Event, max_watchers: int) -> None:
        self.store = store
        self.stopping = stopping
        self.watchers = threading.BoundedSemaphore(max_watchers)

    def _answer(self, context: grpc.ServicerContext, work: Callable[[], T]) -> T:
        try:
            return work()
        except _PointNotFound as exc:
            context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
        except MetricsQueryError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except SQLAlchemyError as exc:
            log.warning("seawall.storage: store error while serving: %s", exc)
            context.abort(grpc.StatusCode.UNAVAILABLE,
                          f"metrics store unavailable: {type(exc).__name__}")
        raise AssertionError("unreachable")  # pragma: no cover - abort raises

    def _known(self, point: str, operation: str) -> None:
        """Raise NOT_FOUND for a point (or an operation of it) the store has never seen."""
        points = {p.name: p for p in self.store.points()}
        found = points.get(point)
        if found is None:
            names = sorted(points)
            shown = ", ".join(names[:_SHOWN_POINTS]) or "none yet"
            if len(names) > _SHOWN_POINTS:
                shown += f" and {len(names) - _SHOWN_POINTS} more"
            raise _PointNotFound(f"no such point {point!r}; known points: {shown}")
        if operation and operation not in found.operations:
            raise _PointNotFound(f"point {point!r} has no operation {operation!r}; its "
                                 f"operations: {', '.join(found.operations)}")

    def _known_if_empty(self, point: str, operation: str, buckets: list[Any]) -> None:
        if not any(b.calls for b in buckets):  # nothing in range: quiet, or never seen?
            self._known(point, operation)

    def _summary(self, point: str, operation: str, window: float,
                 strict: bool = True) -> pb.SummaryResponse:
        window = check_window(window)
        point_name = check_name("point", point)
        operation_name = check_name("operation", operation)
        now = time.time()
        found = self.store.summary(point_name, operation=operation_name, window=window, now=now)
        if strict and not found and point_name is not None:
            self._known(point_name, operation_name or "")  # nothing in range: quiet, or unknown?
        return _summary_pb(found, (now - window) // 60 * 60.0, now)

    def ListPoints(self, request: pb.ListPointsRequest,
                   context: grpc.ServicerContext) -> pb.ListPointsResponse:
        def work() -> pb.ListPointsResponse:
            return pb.ListPointsResponse(points=[
                pb.PointInfo(name=p.name, operations=list(p.operations),
                             first_seen=p.first_seen, last_seen=p.last_seen)
                for p in self.store.points()
            ])
        return self._answer(context, work)

    def GetSummary(self, request: pb.SummaryRequest,
                   context: grpc.ServicerContext) -> pb.SummaryResponse:
        return self._answer(context, lambda: self._summary(
            request.point, request.operation, request.window_seconds))

    def GetSeries(self, request: pb.SeriesRequest,
                  context: grpc.ServicerContext) -> pb.SeriesResponse:
        def work() -> pb.SeriesResponse:
            buckets = self.store.series(request.point, start=request.start, end=request.end,
                                        step=request.step_seconds,
                                        operation=request.operation or None)
            self._known_if_empty(request.point, request.operation, buckets)
            return pb.SeriesResponse(
                point=request.point, step_seconds=request.step_seconds,
                buckets=[pb.SeriesBucket(start=b.start, stats=_stats_pb(b)) for b in buckets],
            )
        return self._answer(context, work)

    def ListTransitions(self, request: pb.ListTransitionsRequest,
                        context: grpc.ServicerContext) -> pb.ListTransitionsResponse:
        def work() -> pb.ListTransitionsResponse:
            size = request.page_size or DEFAULT_PAGE
            if not 0 < size <= MAX_PAGE:
                raise MetricsQueryError(
                    f"page_size must be between 1 and {MAX_PAGE}, got {request.page_size}")
            after = 0
            if request.page_token:
                try:
                    after = int(request.page_token) if request.page_token.isdigit() else -1
                except ValueError:
                    after = -1
                if not 0 <= after <= _MAX_ID:
                    raise MetricsQueryError(f"page_token {request.page_token[:40]!r} is not one "
                                            "this service issued")
            check_time("start", request.start)
            check_time("end", request.end)
            point = check_name("point", request.point)
            rows = self.store.transitions(
                point, start=request.start or None, end=request.end or None,
                limit=size, after=after)
            if not rows and point is not None and not after:
                self._known(point, "")
            return pb.ListTransitionsResponse(
                transitions=[pb.Transition(point=t.point, from_state=t.from_state,
                                           to_state=t.to_state, reason=t.reason, time=t.time,
                                           host=t.host, pid=t.pid) for t in rows],
                # a full page may be followed by more: hand out where to go on
                next_page_token=str(rows[-1].id) if len(rows) == size else "",
            )
        return self._answer(context, work)

    def WatchSummary(self, request: pb.WatchSummaryRequest,
                     context: grpc.ServicerContext) -> Iterator[pb.SummaryResponse]:
        def check() -> float:
            check_window(request.window_seconds)
            check_name("point", request.point)
            check_name("operation", request.operation)
            interval = request.interval_seconds or DEFAULT_WATCH_INTERVAL
            if math.isnan(interval) or not 0.1 <= interval <= 3600:
                raise MetricsQueryError(
                    f"interval_seconds must be between 0.1 and 3600, got {request.interval_seconds!r}")
            return interval

        interval = self._answer(context, check)
        if not self.watchers.acquire(blocking=False):
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                          "too many watchers on this metrics service; try again later")
        try:
            done = threading.Event()
            context.add_callback(done.set)
            while not done.is_set() and not self.stopping.is_set():
                yield self._answer(context, lambda: self._summary(
                    request.point, request.operation, request.window_seconds, strict=False))
                deadline = time.monotonic() + interval
                while not done.is_set() and not self.stopping.is_set():
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    done.wait(min(left, 0.25))  # wakes for a server stop too
        finally:
            self.watchers.release()
