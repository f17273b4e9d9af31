"""Echo servers (sync ``grpc.server`` and ``grpc.aio.server``) with fault injection.

A test writes a :class:`Plan` for a request ``key``; the servers obey it
attempt by attempt and record what each attempt saw (:class:`Seen`): the
``seawall-attempt`` header, the deadline left, the messages received, and
whether the client cancelled it. ``Backend.calls`` counts every RPC that
reached the server, so a test can prove a breaker kept calls away.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
import grpc.aio

from . import load_echo

pb2, pb2_grpc = load_echo()

ATTEMPT = "seawall-attempt"
PUSHBACK = "grpc-retry-pushback-ms"
NO_DEADLINE = 1e8  # time_remaining() above this means "no deadline" (grpc/grpc#26236)


@dataclass
class Plan:
    """How the server treats the attempts of one key.

    The first ``fail`` attempts fail with ``code`` (after sending
    ``fail_after`` stream messages), with a ``grpc-retry-pushback-ms``
    trailer of ``pushback`` when set. The first ``delay_attempts`` attempts
    wait ``delay`` seconds (or until the client cancels) before answering.
    With ``read`` set, ``ClientStream`` reads only that many request
    messages before answering and leaves the rest unread, the way a server
    that rejects a stream early does (the client may still be writing).
    """

    fail: int = 0
    code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE
    pushback: str | None = None
    delay: float = 0.0
    delay_attempts: int = 1 << 30
    fail_after: int = 0
    read: int | None = None


@dataclass
class Seen:
    """What the server saw in one attempt."""

    attempt_header: str | None
    time_remaining: float | None
    received: list[str] = field(default_factory=list)
    cancelled: bool = False


class Backend:
    """Plans and records, shared by the sync and the aio servicer. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.plans: dict[str, Plan] = {}
        self.seen: dict[str, list[Seen]] = defaultdict(list)
        self.calls = 0
        self.cancelled = threading.Event()  # set when any attempt saw a client cancellation

    def plan(self, key: str, **fields: Any) -> None:
        """Set the fault plan of ``key`` (see :class:`Plan`)."""
        with self._lock:
            self.plans[key] = Plan(**fields)

    def attempts(self, key: str) -> list[Seen]:
        with self._lock:
            return list(self.seen[key])

    def headers(self, key: str) -> list[str | None]:
        return [s.attempt_header for s in self.attempts(key)]

    def begin(self, key: str, metadata: Any, time_remaining: float | None) -> tuple[Plan, int, Seen]:
        header = None
        for item in metadata or ():
            if item[0] == ATTEMPT:
                header = item[1]
        if time_remaining is not None and time_remaining > NO_DEADLINE:
            time_remaining = None
        seen = Seen(header, time_remaining)
        with self._lock:
            self.calls += 1
            plan = self.plans.get(key, Plan())
            index = len(self.seen[key])
            self.seen[key].append(seen)
        return plan, index, seen


def _attempt_of(seen: Seen) -> int:
    return int(seen.attempt_header) if seen.attempt_header else 1


# ---------------------------------------------------------------------------
# sync server


class SyncEcho(pb2_grpc.EchoServicer):  # type: ignore[misc,name-defined]
    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def _start(self, key: str, context: grpc.ServicerContext) -> tuple[Plan, int, Seen]:
        return self.backend.begin(key, context.invocation_metadata(), context.time_remaining())

    def _wait(self, plan: Plan, index: int, seen: Seen, context: grpc.ServicerContext) -> bool:
        """Apply the delay; false when the client went away meanwhile."""
        if plan.delay > 0 and index < plan.delay_attempts:
            ended = threading.Event()
            context.add_callback(ended.set)
            ended.wait(plan.delay)
        if not context.is_active():
            seen.cancelled = True
            self.backend.cancelled.set()
            return False
        return True

    def _fail(self, plan: Plan, context: grpc.ServicerContext) -> None:
        if plan.pushback is not None:
            context.set_trailing_metadata(((PUSHBACK, plan.pushback),))
        context.abort(plan.code, f"injected {plan.code.name}")

    def Unary(self, request: Any, context: grpc.ServicerContext) -> Any:
        plan, index, seen = self._start(request.key, context)
        seen.received.append(request.text)
        if not self._wait(plan, index, seen, context):
            return pb2.EchoReply()
        if index < plan.fail:
            self._fail(plan, context)
        return pb2.EchoReply(text=request.text, attempt=_attempt_of(seen))

    def ServerStream(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        plan, index, seen = self._start(request.key, context)
        if not self._wait(plan, index, seen, context):
            return
        failing = index < plan.fail
        count = plan.fail_after if failing else request.count
        for i in range(count):
            yield pb2.EchoReply(text=f"{request.text}-{i}", attempt=_attempt_of(seen))
        if failing:
            self._fail(plan, context)

    def ClientStream(self, request_iterator: Iterator[Any], context: grpc.ServicerContext) -> Any:
        requests: list[Any] = []
        started: tuple[Plan, int, Seen] | None = None
        for request in request_iterator:
            requests.append(request)
            if started is None:
                started = self._start(request.key, context)
            if started[0].read is not None and len(requests) >= started[0].read:
                break  # the rest stays unread
        plan, index, seen = started or self._start("", context)
        seen.received.extend(r.text for r in requests)
        if not self._wait(plan, index, seen, context):
            return pb2.EchoReply()
        if index < plan.fail:
            self._fail(plan, context)
        return pb2.EchoReply(text="|".join(seen.received), attempt=_attempt_of(seen),
                             received=seen.received)

    def Bidi(self, request_iterator: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
        started: tuple[Plan, int, Seen] | None = None
        for request in request_iterator:
            if started is None:
                started = self._start(request.key, context)
                if not self._wait(started[0], started[1], started[2], context):
                    return
            plan, index, seen = started
            if index < plan.fail and len(seen.received) >= plan.fail_after:
                self._fail(plan, context)
            seen.received.append(request.text)
            yield pb2.EchoReply(text=request.text, attempt=_attempt_of(seen))


def start_sync_server(backend: Backend, port: int = 0) -> tuple[grpc.Server, int]:
    """Serve ``backend`` on 127.0.0.1 (``port`` 0: any free one); returns the server and port."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    pb2_grpc.add_EchoServicer_to_server(SyncEcho(backend), server)
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    return server, bound


# ---------------------------------------------------------------------------
# aio server


class AioEcho(pb2_grpc.EchoServicer):  # type: ignore[misc,name-defined]
    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def _start(self, key: str, context: Any) -> tuple[Plan, int, Seen]:
        return self.backend.begin(key, context.invocation_metadata(), context.time_remaining())

    async def _wait(self, plan: Plan, index: int, seen: Seen) -> None:
        if plan.delay > 0 and index < plan.delay_attempts:
            try:
                await asyncio.sleep(plan.delay)
            except asyncio.CancelledError:
                seen.cancelled = True
                self.backend.cancelled.set()
                raise

    async def _fail(self, plan: Plan, context: Any) -> None:
        if plan.pushback is not None:
            context.set_trailing_metadata(((PUSHBACK, plan.pushback),))
        await context.abort(plan.code, f"injected {plan.code.name}")

    async def Unary(self, request: Any, context: Any) -> Any:
        plan, index, seen = self._start(request.key, context)
        seen.received.append(request.text)
        await self._wait(plan, index, seen)
        if index < plan.fail:
            await self._fail(plan, context)
        return pb2.EchoReply(text=request.text, attempt=_attempt_of(seen))

    async def ServerStream(self, request: Any, context: Any) -> AsyncIterator[Any]:
        plan, index, seen = self._start(request.key, context)
        await self._wait(plan, index, seen)
        failing = index < plan.fail
        count = plan.fail_after if failing else request.count
        for i in range(count):
            yield pb2.EchoReply(text=f"{request.text}-{i}", attempt=_attempt_of(seen))
        if failing:
            await self._fail(plan, context)

    async def ClientStream(self, request_iterator: AsyncIterator[Any], context: Any) -> Any:
        requests: list[Any] = []
        started: tuple[Plan, int, Seen] | None = None
        async for request in request_iterator:
            requests.append(request)
            if started is None:
                started = self._start(request.key, context)
            if started[0].read is not None and len(requests) >= started[0].read:
                break  # the rest stays unread
        plan, index, seen = started or self._start("", context)
        seen.received.extend(r.text for r in requests)
        await self._wait(plan, index, seen)
        if index < plan.fail:
            await self._fail(plan, context)
        return pb2.EchoReply(text="|".join(seen.received), attempt=_attempt_of(seen),
                             received=seen.received)

    async def Bidi(self, request_iterator: AsyncIterator[Any], context: Any) -> AsyncIterator[Any]:
        started: tuple[Plan, int, Seen] | None = None
        async for request in request_iterator:
            if started is None:
                started = self._start(request.key, context)
                await self._wait(started[0], started[1], started[2])
            plan, index, seen = started
            if index < plan.fail and len(seen.received) >= plan.fail_after:
                await self._fail(plan, context)
            seen.received.append(request.text)
            yield pb2.EchoReply(text=request.text, attempt=_attempt_of(seen))


async def start_aio_server(backend: Backend, port: int = 0) -> tuple[grpc.aio.Server, int]:
    """The grpc.aio twin of :func:`start_sync_server` (call from the test's event loop)."""
    server = grpc.aio.server()
    pb2_grpc.add_EchoServicer_to_server(AioEcho(backend), server)
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    return server, bound


def free_port() -> int:
    """A loopback port nothing listens on (for "the server is down")."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port
