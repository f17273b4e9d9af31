"""Request streams: record what was sent so a retry can send it again.

gRPC consumes a request iterator once; a retry that passed the same
iterator again would send nothing, and the call could "succeed" with a
wrong answer. A replay buffer keeps up to a route's ``request_buffer``
messages and hands each attempt its own view of the whole stream. The
bookkeeping (:class:`ReplayState`) is shared; the sync buffer waits with a
condition, the async one with futures, because sync gRPC drains request
iterators on its own thread while grpc.aio does so in a task. Used by both
mountings, sync and aio.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterable, Iterable, Iterator
from typing import Any, Protocol

from seawall import Classification, Execution

from ._grpc_routes import Rule


class _Exhausted:
    pass


EXHAUSTED: Any = _Exhausted()
NEED_MORE: Any = object()


class ReplayState:
    """The bookkeeping of a replayable request stream, shared by the sync and async buffers.

    Each attempt reads through its own view; starting a new view retires the
    previous one (a retired view ends at once, so gRPC's consumer of a failed
    attempt cannot steal messages from the next). Once more than ``limit``
    messages were drawn no new view can start, and what the current view has
    read is dropped.

    The caller's iterator may block for as long as it likes (a client that
    sends its next message only after a reply, or waits on a queue), so no
    lock is ever held while drawing from it: the failure path of an attempt
    must be able to start a new view at once. One draw at a time
    (``pulling``); every message drawn is kept for whichever view reads next,
    so a message drawn while its attempt failed is sent by the retry. A view
    that needs the next message while another draws it waits, and a retired
    view stops waiting. The shells hold their lock around every method here.
    """

    __slots__ = ("_items", "_limit", "exhausted", "generation", "overflow", "pulling")

    def __init__(self, limit: int) -> None:
        self._items: list[Any] = []
        self._limit = limit
        self.exhausted = False
        self.overflow = limit <= 0
        self.generation = 0
        self.pulling = False

    def next_generation(self) -> int | None:
        """The generation of a new view, or ``None`` when the stream cannot be replayed."""
        if self.overflow and self.generation > 0:
            return None
        self.generation += 1
        return self.generation

    def cached(self, view: Any) -> Any:
        """What ``view`` reads next without drawing from the source: an item,
        ``EXHAUSTED``, or ``NEED_MORE`` (the next message must be drawn)."""
        if view.generation != self.generation:
            return EXHAUSTED
        items = self._items
        if view.index < len(items):
            item = items[view.index]
            view.index += 1
            if self.overflow and view.index == len(items):
                items.clear()  # past the limit nothing reads a message twice
                view.index = 0
            return item
        return EXHAUSTED if self.exhausted else NEED_MORE

    def drawn(self, item: Any) -> None:
        """Keep ``item``, just drawn from the source, for the view that reads next."""
        self._items.append(item)
        if len(self._items) > self._limit:
            self.overflow = True


class ReplayBuffer(ReplayState):
    """Keeps up to ``limit`` request messages of a sync request iterator (see :class:`ReplayState`).

    Thread-safe (sync gRPC drains request iterators on its own thread); the
    lock is never held while the caller's iterator is asked for a message.
    """

    __slots__ = ("_cond", "_source")

    def __init__(self, source: Iterable[Any], limit: int) -> None:
        super().__init__(limit)
        self._source = iter(source)
        self._cond = threading.Condition(threading.Lock())

    def view(self) -> Iterator[Any] | None:
        """A fresh iterator over the whole stream, or ``None`` when it cannot be replayed.

        Never waits for the caller's iterator; a view waiting for a message
        being drawn for the previous one is retired and ends.
        """
        with self._cond:
            generation = self.next_generation()
            self._cond.notify_all()
            return None if generation is None else _View(self, generation)

    def pull(self, view: _View) -> Any:
        """The next message of ``view`` (``EXHAUSTED`` at the end or once retired)."""
        cond = self._cond
        with cond:
            while True:
                item = self.cached(view)
                if item is not NEED_MORE:
                    return item
                if self.pulling:
                    cond.wait()  # another attempt's thread is drawing the next message
                    continue
                self.pulling = True
                cond.release()  # never held while the caller's iterator runs
                try:
                    item = next(self._source, EXHAUSTED)
                finally:
                    cond.acquire()
                    self.pulling = False
                    cond.notify_all()
                if item is EXHAUSTED:
                    self.exhausted = True
                else:
                    self.drawn(item)


class _View:
    __slots__ = ("buffer", "generation", "index")

    def __init__(self, buffer: ReplayBuffer, generation: int) -> None:
        self.buffer = buffer
        self.generation = generation
        self.index = 0

    def __iter__(self) -> _View:
        return self

    def __next__(self) -> Any:
        item = self.buffer.pull(self)
        if item is EXHAUSTED:
            raise StopIteration
        return item


class _Replayable(Protocol):
    def view(self) -> Any: ...


def replay_view(rule: Rule, ex: Execution, c: Classification,
                buffer: _Replayable | None) -> tuple[Classification, Any]:
    """Whether a failed request-streaming attempt may be retried: ``(c, view to send)``.

    First decides from ``c`` and the attempts left whether a retry is
    possible at all; only then asks the buffer for a new view (which never
    waits on the caller's iterator). The view is ``None`` when no retry
    will run; ``c`` loses its retry when the stream cannot be replayed.
    """
    if buffer is None or not c.retry or ex.attempts >= rule.attempts:
        return c, None
    view = buffer.view()
    if view is None:
        return c.with_retry(False), None
    return c, view


class AsyncReplay(ReplayState):
    """The async twin of :class:`ReplayBuffer` for async request iterators.

    Nothing waits on the caller's iterator while holding anything the
    failure path needs: the caller's iterator may wait on a queue for as
    long as it likes, and a retry's view must still send the kept messages
    at once. Each draw runs as its own task, so cancelling a failed attempt
    (grpc.aio cancels its request consumer) does not throw into the caller's
    iterator and lose the message it was about to give: the retry gets it.
    Only :meth:`close` (the caller cancelled the call) cancels a draw, as
    plain grpc.aio would. Views wait on futures woken when a draw ends or a
    new view retires theirs. Loop-bound, like the call it serves.
    """

    def __init__(self, source: AsyncIterable[Any], limit: int) -> None:
        super().__init__(limit)
        self._source = source.__aiter__()
        self._waiters: list[asyncio.Future[None]] = []
        self._draw: asyncio.Task[Any] | None = None
        self._error: BaseException | None = None

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def view(self) -> _AsyncView | None:
        generation = self.next_generation()
        self._wake()  # a view waiting for the previous draw is retired now and ends
        return None if generation is None else _AsyncView(self, generation)

    def close(self) -> None:
        """The call was cancelled: stop a draw in progress (the caller's iterator sees it)."""
        if self._draw is not None:
            self._draw.cancel()

    async def _next(self) -> Any:
        try:
            return await self._source.__anext__()
        except StopAsyncIteration:
            return EXHAUSTED

    def _drawn(self, draw: asyncio.Task[Any]) -> None:
        self._draw = None
        self.pulling = False
        if draw.cancelled():
            self.exhausted = True
        elif draw.exception() is not None:
            self._error = draw.exception()
        else:
            item = draw.result()
            if item is EXHAUSTED:
                self.exhausted = True
            else:
                self.drawn(item)
        self._wake()

    async def pull(self, view: _AsyncView) -> Any:
        """The next message of ``view`` (``EXHAUSTED`` at the end or once retired)."""
        while True:
            item = self.cached(view)
            if item is not NEED_MORE:
                return item
            if self._error is not None:
                raise self._error  # the caller's iterator failed: grpc.aio cancels the call
            if self._draw is None:
                self.pulling = True
                self._draw = asyncio.get_running_loop().create_task(self._next())
                self._draw.add_done_callback(self._drawn)
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            await waiter


def close_draw(buffer: Any) -> None:
    """The caller cancelled: a draw from its async iterator in progress is cancelled too."""
    if isinstance(buffer, AsyncReplay):
        buffer.close()


class _AsyncView:
    __slots__ = ("buffer", "generation", "index")

    def __init__(self, buffer: AsyncReplay, generation: int) -> None:
        self.buffer = buffer
        self.generation = generation
        self.index = 0

    def __aiter__(self) -> _AsyncView:
        return self

    async def __anext__(self) -> Any:
        item = await self.buffer.pull(self)
        if item is EXHAUSTED:
            raise StopAsyncIteration
        return item


class NoReplay:
    """The request stream of a ``call.write()``-style call: its messages go straight to
    the attempt in flight and are never buffered, so no retry could resend them."""

    @staticmethod
    def view() -> None:
        return None


def replayable(rule: Rule, request_iterator: Any) -> tuple[Any, Any]:
    """``(buffer, first attempt's view)`` for a request stream; ``(None, it)`` when the route
    never retries or there is no iterator (sync iterators, and async ones in grpc.aio)."""
    if not rule.retries or request_iterator is None:
        return None, request_iterator
    buffer: ReplayBuffer | AsyncReplay
    if isinstance(request_iterator, AsyncIterable):
        buffer = AsyncReplay(request_iterator, rule.buffer)
    else:
        buffer = ReplayBuffer(request_iterator, rule.buffer)
    return buffer, buffer.view()
