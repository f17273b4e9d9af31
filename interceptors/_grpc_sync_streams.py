"""Sync response streams (server-streaming and bidi): one iterator over every attempt.

A failure before the first message reached the caller is retried in the
reading thread (for request streams, only while the requests can be
replayed); after that the error is final. ``Timeout.attempt`` bounds only
that first phase: the shared timer thread ends an attempt that delivered
nothing in time, and the wire deadline is the call's own. Both mountings
use it; ``send`` starts one attempt and returns gRPC's response iterator
(the continuation's, or the inner channel's multicallable's).

Sync and aio: its twin is ``_grpc_aio_streams``, written apart, not
generated: sync gRPC hands back an iterator that is also a ``grpc.Call``
and a ``grpc.Future`` and is drained from threads (locks, a timer thread),
grpc.aio an async call object on one loop (a loop timer, an asyncio lock).
The decisions they share are ``_grpc_commit.stream_retry`` and
``stream_limits``.
"""

from __future__ import annotations

import math
import threading
import types
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from seawall import DeadlineExceeded, Execution, RejectedError
from seawall._execution import add_note

from ._grpc_commit import end_failure, stream_limits, stream_retry
from ._grpc_refusals import FailedCall, Future, as_rpc_error
from ._grpc_replay import ReplayBuffer
from ._grpc_routes import Rule
from ._grpc_sync_unary import Send, classify_outcome
from ._grpc_sync_wait import TIMERS, Timer, sleep

_OK = grpc.StatusCode.OK
_DEADLINE_EXCEEDED = grpc.StatusCode.DEADLINE_EXCEEDED


def _expire_first(owner: weakref.ref[ResponseStream], call: Any) -> None:
    stream = owner()
    if stream is not None:
        stream._expire(call)


class FirstMessageTimeout(FailedCall):
    """A response-streaming attempt that sent no message within ``Timeout.attempt``.

    seawall ended the attempt (gRPC's deadline on the wire is the call's
    own); the caller sees what gRPC reports for a deadline: ``code()``
    ``DEADLINE_EXCEEDED``, details ``"Deadline Exceeded"``, an ``RpcError``
    that is also a finished ``grpc.Call``, ``grpc.Future`` and response
    iterator. Its note says which limit ended it.
    """

    def __init__(self, attempt: Any, limit: float) -> None:
        super().__init__("Deadline Exceeded")
        self._initial = attempt.initial_metadata() or ()
        add_note(self, f"seawall: no response message within Timeout.attempt ({limit:g} s)")

    def code(self) -> grpc.StatusCode:
        return _DEADLINE_EXCEEDED

    def details(self) -> str:
        return "Deadline Exceeded"

    def debug_error_string(self) -> str:
        return "Deadline Exceeded (seawall: first response message not in time)"

    def initial_metadata(self) -> Any:
        return self._initial


def _release_when_done(permits: Any, fut: Any, owner: weakref.ref[ResponseStream]) -> None:
    def done(f: Any) -> None:
        if permits is not None:
            permits.release()
        stream = owner()
        if stream is not None:
            stream._attempt_done(f)
    fut.add_done_callback(done)


class ResponseStream(grpc.Call, Future):
    """What a server-streaming or bidi call returns: an iterator over every attempt.

    A failure before the first message reached the caller is retried (and,
    for request streams, only while the requests can be replayed); after
    that, the error is final. ``code()``, ``details()`` and
    ``trailing_metadata()`` wait for the call to settle, retrying the same way.
    """

    def __init__(self, rule: Rule, ex: Execution, send: Send, args: Any, request: Any,
                 buffer: ReplayBuffer | None) -> None:
        self._rule = rule
        self._ex = ex
        self._send = send
        self._args = args
        self._request = request
        self._buffer = buffer
        self._observe = threading.Lock()   # one observer decides a failure at a time
        self._state_lock = threading.Lock()  # never held while waiting
        self._closed = False
        self._cancelled = False
        self._delivered = False
        self._current: Any = None
        self._callbacks: list[Callable[[Any], None]] = []
        self._wake = threading.Event()
        self._self_ref = weakref.ref(self)
        self._timer: Timer | None = None  # the current attempt's first-message limit
        self._limit = 0.0
        self._expired: Any = None  # the attempt that limit ended

    def start(self) -> Any:
        refusal = self._launch()
        if refusal is not None:  # no fallback for streams: what would it stream?
            self._closed = True
            self._ex.end_rejected(refusal)
            return as_rpc_error(refusal)
        return self

    def _launch(self) -> RejectedError | DeadlineExceeded | None:
        """Admit and start an attempt; ``None`` once started (or the stream was cancelled).

        A server's pause or a rate-limit token is waited here, in the
        calling thread, as a bulkhead permit is: the caller opening the
        stream, or the reader retrying it (a cancel ends the wait).
        """
        ex = self._ex
        permits = self._rule.permits
        try:
            timeout = ex.begin(True)
            if ex.wait > 0.0:
                sleep(self._rule, ex.wait, self._wake)
                if self._closed:  # cancelled meanwhile (and accounted by cancel())
                    ex.withdraw()
                    return None
            if permits is not None and not permits.acquire(self._rule.max_wait):
                raise ex.bulkhead_rejected()
        except (RejectedError, DeadlineExceeded) as refusal:
            return refusal
        wire, limit = stream_limits(ex, timeout)
        try:
            fut = self._send(self._args, self._request, wire, ex.attempts)
        except BaseException:
            if permits is not None:
                permits.release()
            ex.cancelled()
            raise
        self._current = fut
        if limit is not None:
            self._limit = limit
            self._timer = TIMERS.call_later(limit, _expire_first, self._self_ref, fut)
        _release_when_done(permits, fut, self._self_ref)
        return None

    def _expire(self, call: Any) -> None:
        """The first-message limit passed: end ``call`` unless a message was delivered."""
        with self._state_lock:
            if self._delivered or self._closed or call is not self._current or call.done():
                return
            self._expired = call
        if not call.cancel():  # it ended by itself meanwhile: its own status stands
            self._expired = None

    def _stop_timer(self) -> None:
        timer = self._timer
        if timer is not None:
            self._timer = None
            timer.cancel()

    def _attempt_done(self, fut: Any) -> None:
        if fut is self._current:
            self._stop_timer()
        if fut.code() is _OK:
            self._close(success=True)

    def _close(self, *, success: bool = False) -> bool:
        with self._state_lock:
            if self._closed:
                return False
            self._closed = True
            callbacks, self._callbacks = self._callbacks, []
        self._stop_timer()
        if success:
            self._ex.success()
        for fn in callbacks:
            fn(self)
        return True

    def _on_failure(self, call: Any) -> bool:
        """Decide a failed attempt; true when a new attempt is now current."""
        with self._observe:
            if call is not self._current:
                return True
            if self._closed:
                return False
            ex = self._ex
            if call is self._expired:  # our first-message limit ended it, not the caller
                call = self._current = FirstMessageTimeout(call, self._limit)
            c, err = classify_outcome(self._rule, call)
            if c is None:  # finished OK after all (a result rule did not object)
                self._close(success=True)
                return False
            delay, view = stream_retry(self._rule, ex, c, self._delivered, self._buffer)
            if view is not None:
                self._request = view
            if delay is None:
                if self._close():
                    end_failure(ex, c, err)
                return False
            if delay > 0:
                sleep(self._rule, delay, self._wake)
            if self._closed:
                return False
            refusal = self._launch()
            if self._closed:  # cancelled while waiting to start the retry
                return False
            if refusal is not None:
                if self._close():
                    ex.stop_reason = f"retry refused: {refusal}"
                    end_failure(ex, c, err)
                return False
            return True

    # -- iteration --------------------------------------------------------------

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        while True:
            call = self._current
            try:
                message = next(call)
            except grpc.RpcError:
                if self._on_failure(call):
                    continue
                final = self._current
                if final is not call and isinstance(final, FirstMessageTimeout):
                    raise final from None
                raise
            if not self._delivered:
                self._delivered = True
                self._stop_timer()
            return message

    def next(self) -> Any:
        return self.__next__()

    # -- grpc.Call ----------------------------------------------------------------

    def _settled(self) -> Any:
        while True:
            call = self._current
            code = call.code()
            if code is _OK or self._closed or not self._on_failure(call):
                return self._current

    def code(self) -> grpc.StatusCode:
        code: grpc.StatusCode = self._settled().code()
        return code

    def details(self) -> str:
        details: str = self._settled().details()
        return details

    def trailing_metadata(self) -> Any:
        return self._settled().trailing_metadata()

    def initial_metadata(self) -> Any:
        return self._current.initial_metadata()

    def is_active(self) -> bool:
        return not self._closed

    def time_remaining(self) -> float:
        left = self._ex.remaining()
        return math.inf if left is None else left

    def add_callback(self, callback: Callable[[], None]) -> bool:
        with self._state_lock:
            if self._closed:
                return False
            self._callbacks.append(lambda _s: callback())
            return True

    # -- grpc.Future --------------------------------------------------------------

    def cancel(self) -> bool:
        with self._state_lock:
            if self._closed:
                return False
            self._cancelled = True
        self._wake.set()
        self._current.cancel()
        if self._close():
            self._ex.cancelled()
        return True

    def cancelled(self) -> bool:
        return self._cancelled

    def running(self) -> bool:
        return not self._closed

    def done(self) -> bool:
        return self._closed and bool(self._current.done())

    def result(self, timeout: float | None = None) -> Any:
        return self._settled().result(timeout)

    def exception(self, timeout: float | None = None) -> Exception | None:
        exc: Exception | None = self._settled().exception(timeout)
        return exc

    def traceback(self, timeout: float | None = None) -> types.TracebackType | None:
        tb: types.TracebackType | None = self._settled().traceback(timeout)
        return tb

    def add_done_callback(self, fn: Callable[[Any], None]) -> None:
        with self._state_lock:
            if not self._closed:
                self._callbacks.append(fn)
                return
        fn(self)

    def __del__(self) -> None:
        # abandoned by the caller: account once, and stop an attempt still running
        try:
            if self._closed or self._current is None:
                return
            current = self._current
            if not current.done():
                current.cancel()
                if self._close():
                    self._ex.cancelled()
                return
            c, _err = classify_outcome(self._rule, current)
            if c is not None and self._close():
                self._ex.failure(c.with_retry(False))
                self._ex.end_failure(c)
        except Exception:  # never raise from a finalizer
            pass
