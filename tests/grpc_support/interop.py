"""The interop-shaped test service (``interop.proto``): a server, blocking request pipes, a proxy.

The server follows the server features of gRPC's interop test descriptions:
empty and sized unary answers, streams whose responses follow
``response_parameters`` (with ``interval_us`` waits), an aggregated size for
client streams, ``response_status`` ending a call with that status, and the
``x-grpc-test-echo-initial`` / ``x-grpc-test-echo-trailing-bin`` metadata
echoed back. ``UnimplementedCall`` is in the contract but not served, and
``UnimplementedService`` is not served at all.

:class:`Pipe` and :class:`AsyncPipe` are request iterators that block until
the test adds the next message or closes them, the way real clients feed a
ping-pong or a call they cancel. :class:`ByteCounter` relays TCP on loopback
and counts what the client sent (to see compression on the wire).
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections import deque
from collections.abc import AsyncIterator, Iterator
from concurrent import futures
from typing import Any

import grpc

from . import load_interop

pb2, pb2_grpc = load_interop()

SERVICE = "seawall.test.interop.v1.TestService"
ECHO_INITIAL = "x-grpc-test-echo-initial"
ECHO_TRAILING = "x-grpc-test-echo-trailing-bin"


def zeros(size: int) -> Any:
    """A payload of ``size`` zero bytes."""
    return pb2.Payload(body=bytes(size))


class InteropServicer:
    """The handlers; counts the calls in progress so a test can see cancellations reach it."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.active = 0

    # -- bookkeeping ------------------------------------------------------

    def _enter(self, context: grpc.ServicerContext) -> None:
        with self._cond:
            self.active += 1
        initial, trailing = [], []
        for item in context.invocation_metadata():
            if item.key == ECHO_INITIAL:
                initial.append((item.key, item.value))
            elif item.key == ECHO_TRAILING:
                trailing.append((item.key, item.value))
        if initial:
            context.send_initial_metadata(initial)
        if trailing:
            context.set_trailing_metadata(trailing)

    def _leave(self) -> None:
        with self._cond:
            self.active -= 1
            self._cond.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no handler runs (every call ended on the server); false on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self.active == 0, timeout)

    @staticmethod
    def _end_with(status: Any, context: grpc.ServicerContext) -> None:
        if status.code:
            context.abort(_CODES[status.code], status.message)

    @staticmethod
    def _respond(parameters: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        for p in parameters:
            if p.interval_us:
                ended = threading.Event()
                context.add_callback(ended.set)  # wake at once when the client goes away
                ended.wait(p.interval_us / 1e6)
                if not context.is_active():
                    return
            yield pb2.StreamingOutputCallResponse(payload=zeros(p.size))

    # -- the methods ------------------------------------------------------

    def EmptyCall(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._enter(context)
        try:
            return pb2.Empty()
        finally:
            self._leave()

    def UnaryCall(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._enter(context)
        try:
            self._end_with(request.response_status, context)
            return pb2.SimpleResponse(payload=zeros(request.response_size))
        finally:
            self._leave()

    def StreamingOutputCall(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        self._enter(context)
        try:
            yield from self._respond(request.response_parameters, context)
            self._end_with(request.response_status, context)
        finally:
            self._leave()

    def StreamingInputCall(self, requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
        self._enter(context)
        try:
            total = sum(len(r.payload.body) for r in requests)
            return pb2.StreamingInputCallResponse(aggregated_payload_size=total)
        finally:
            self._leave()

    def FullDuplexCall(self, requests: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
        self._enter(context)
        try:
            for request in requests:
                self._end_with(request.response_status, context)
                yield from self._respond(request.response_parameters, context)
        finally:
            self._leave()


_CODES = {code.value[0]: code for code in grpc.StatusCode}


def _handlers(servicer: InteropServicer) -> grpc.GenericRpcHandler:
    """Every TestService method but ``UnimplementedCall`` (so the server answers UNIMPLEMENTED)."""
    def unary(fn: Any, req: Any, resp: Any) -> Any:
        return grpc.unary_unary_rpc_method_handler(
            fn, request_deserializer=req.FromString, response_serializer=resp.SerializeToString)

    return grpc.method_handlers_generic_handler(SERVICE, {
        "EmptyCall": unary(servicer.EmptyCall, pb2.Empty, pb2.Empty),
        "UnaryCall": unary(servicer.UnaryCall, pb2.SimpleRequest, pb2.SimpleResponse),
        "StreamingOutputCall": grpc.unary_stream_rpc_method_handler(
            servicer.StreamingOutputCall,
            request_deserializer=pb2.StreamingOutputCallRequest.FromString,
            response_serializer=pb2.StreamingOutputCallResponse.SerializeToString),
        "StreamingInputCall": grpc.stream_unary_rpc_method_handler(
            servicer.StreamingInputCall,
            request_deserializer=pb2.StreamingInputCallRequest.FromString,
            response_serializer=pb2.StreamingInputCallResponse.SerializeToString),
        "FullDuplexCall": grpc.stream_stream_rpc_method_handler(
            servicer.FullDuplexCall,
            request_deserializer=pb2.StreamingOutputCallRequest.FromString,
            response_serializer=pb2.StreamingOutputCallResponse.SerializeToString),
    })


def start_interop_server() -> tuple[grpc.Server, int, InteropServicer]:
    """Serve the TestService on 127.0.0.1 (any free port): ``(server, port, servicer)``."""
    servicer = InteropServicer()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    server.add_generic_rpc_handlers((_handlers(servicer),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, port, servicer


# ---------------------------------------------------------------------------
# request iterators that block


class Pipe:
    """A sync request iterator: ``next()`` blocks until :meth:`add` or :meth:`close`.

    ``drawn`` counts the messages handed to gRPC (a replay reads them from
    seawall's buffer, not from here).
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._items: deque[Any] = deque()
        self._closed = False
        self.drawn = 0

    def add(self, item: Any) -> None:
        with self._cond:
            self._items.append(item)
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def __iter__(self) -> Pipe:
        return self

    def __next__(self) -> Any:
        with self._cond:
            self._cond.wait_for(lambda: self._items or self._closed)
            if self._items:
                self.drawn += 1
                return self._items.popleft()
            raise StopIteration

    def __enter__(self) -> Pipe:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()  # never leave gRPC's consumer thread blocked after a test


class AsyncPipe:
    """The asyncio twin of :class:`Pipe` (an async iterator over an ``asyncio.Queue``)."""

    _END: Any = object()

    def __init__(self) -> None:
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._ended = False
        self.drawn = 0

    def add(self, item: Any) -> None:
        self._queue.put_nowait(item)

    def close(self) -> None:
        self._queue.put_nowait(self._END)

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._messages()

    async def _messages(self) -> AsyncIterator[Any]:
        while not self._ended:
            item = await self._queue.get()
            if item is self._END:
                self._ended = True
                return
            self.drawn += 1
            yield item


# ---------------------------------------------------------------------------
# a loopback TCP relay that counts bytes


class ByteCounter:
    """Relays 127.0.0.1:``port`` -> 127.0.0.1:``target``; ``sent`` counts client->server bytes.

    Bounded: one listening socket, two relay threads per connection, all
    closed by :meth:`close`.
    """

    def __init__(self, target: int) -> None:
        self._target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = [self._listener]
        self.sent = 0
        self._closed = False
        threading.Thread(target=self._accept, daemon=True, name="byte-counter").start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self._target))
            with self._lock:
                self._sockets += [client, upstream]
            threading.Thread(target=self._relay, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._relay, args=(upstream, client, False), daemon=True).start()

    def _relay(self, source: socket.socket, sink: socket.socket, upstream: bool) -> None:
        try:
            while chunk := source.recv(65536):
                if upstream:
                    with self._lock:
                        self.sent += len(chunk)
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            try:
                sink.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def close(self) -> None:
        self._closed = True
        with self._lock:
            for s in self._sockets:
                s.close()

