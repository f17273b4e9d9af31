"""The sync shell: ``grpc.intercept_channel`` interceptors for all four call shapes.

Unary responses: the blocking paths (``stub.M(req)``, ``.with_call``) retry
in the caller's thread; ``.future()`` returns a proxy future that re-drives
attempts from done-callbacks and never blocks the caller (retry waits run
on a short-lived thread). Response streams return a proxy iterator that
retries in the reading thread until the first message was delivered; one
shared timer thread ends an attempt that delivered nothing within
``Timeout.attempt`` (the wire deadline of a stream is the call's own).
"""

from __future__ import annotations

import collections
import heapq
import itertools
import logging
import math
import threading
import time
import types
import weakref
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import grpc

from seawall import (
    Classification,
    DeadlineExceeded,
    Execution,
    RejectedError,
    ResultFailure,
    SystemClock,
)

from ._grpc_common import (
    Finished,
    ReplayBuffer,
    Router,
    Rule,
    add_note,
    as_rpc_error,
    classify_status,
    end_failure,
    operation_name,
    refuse,
    replay_view,
    resolve_fallback,
    stream_limits,
    with_attempt,
)

_OK = grpc.StatusCode.OK
_CANCELLED = grpc.StatusCode.CANCELLED
_DEADLINE_EXCEEDED = grpc.StatusCode.DEADLINE_EXCEEDED
_log = logging.getLogger("seawall")

if TYPE_CHECKING:  # grpc-stubs makes these generic; grpc itself does not
    _Future = grpc.Future[Any]
    _UnaryUnary = grpc.UnaryUnaryClientInterceptor[Any, Any]
    _UnaryStream = grpc.UnaryStreamClientInterceptor[Any, Any]
    _StreamUnary = grpc.StreamUnaryClientInterceptor[Any, Any]
    _StreamStream = grpc.StreamStreamClientInterceptor[Any, Any]
else:
    _Future = grpc.Future
    _UnaryUnary = grpc.UnaryUnaryClientInterceptor
    _UnaryStream = grpc.UnaryStreamClientInterceptor
    _StreamUnary = grpc.StreamUnaryClientInterceptor
    _StreamStream = grpc.StreamStreamClientInterceptor


class _Details(
    collections.namedtuple(
        "_Details", ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression")
    ),
    grpc.ClientCallDetails,
):
    """Call details rebuilt for one attempt (the one helper every shape uses)."""


def _attempt_details(d: grpc.ClientCallDetails, timeout: float | None, attempt: int) -> Any:
    if attempt == 1 and timeout == d.timeout:
        return d
    return _Details(
        d.method, timeout,
        d.metadata if attempt == 1 else with_attempt(d.metadata, attempt),
        getattr(d, "credentials", None), getattr(d, "wait_for_ready", None),
        getattr(d, "compression", None),
    )


def _classify(rule: Rule, out: Any) -> tuple[Classification | None, BaseException | None]:
    """Classify a finished attempt's outcome: ``(None, None)`` on success."""
    code = out.code()
    if code is _OK:
        point = rule.point
        if point.classifier.result_rules:
            result = out.result()
            c = point.classify_result(result)
            if c is not None:
                return c, ResultFailure(result, c, point=point.name)
        return None, None
    err = out.exception()
    if isinstance(err, grpc.RpcError):
        def status_rule(_exc: BaseException) -> Classification | None:
            return classify_status(code, out.trailing_metadata(), idempotent=rule.idempotent)
        return rule.point.classify_exception(err, status_rule), err
    if err is None:  # a failed call without an exception object: go by the code alone
        return classify_status(code, out.trailing_metadata(), idempotent=rule.idempotent), None
    return rule.point.classify_exception(err), err


def _sleep(rule: Rule, delay: float, wake: threading.Event | None = None) -> None:
    clock = rule.point.clock
    if wake is not None and isinstance(clock, SystemClock):
        wake.wait(delay)
    else:
        clock.sleep(delay)


class _Done(Finished, grpc.Call, _Future):
    """A finished, successful call carrying a fallback value."""

    def __init__(self, value: Any) -> None:
        self._value = value

    def initial_metadata(self) -> Any:
        return ()

    def trailing_metadata(self) -> Any:
        return ()

    def code(self) -> grpc.StatusCode:
        return _OK

    def details(self) -> str:
        return ""

    def result(self, timeout: float | None = None) -> Any:
        return self._value

    def exception(self, timeout: float | None = None) -> Exception | None:
        return None

    def traceback(self, timeout: float | None = None) -> types.TracebackType | None:
        return None


def _fallback_outcome(fb: Any, error: BaseException) -> _Done:
    return _Done(resolve_fallback(fb, error))


def _execution(rule: Rule, details: grpc.ClientCallDetails) -> Execution:
    point = rule.point
    timeout = details.timeout
    return point.execution(
        operation_name(details.method),
        deadline=None if timeout is None else point.clock.now() + timeout,
    )


# --------------------------------------------------------------------------
# unary responses, blocking paths


def _blocking(rule: Rule, continuation: Callable[[Any, Any], Any], details: grpc.ClientCallDetails,
              request: Any, buffer: ReplayBuffer | None) -> Any:
    """The retry loop of ``stub.M(req)`` / ``.with_call``: returns the outcome grpc unwraps."""
    ex = _execution(rule, details)
    permits = rule.permits
    last: tuple[Classification, Any, BaseException | None] | None = None
    while True:
        try:
            timeout = ex.begin()
            if permits is not None and not permits.acquire(rule.max_wait):
                raise ex.bulkhead_rejected()
        except (RejectedError, DeadlineExceeded) as refusal:
            if last is not None:
                ex.stop_reason = f"retry refused: {refusal}"
                return _failed(ex, *last)
            fb, err = refuse(ex, refusal)
            return err if fb is None else _fallback_outcome(fb, refusal)
        try:
            out = continuation(_attempt_details(details, timeout, ex.attempts), request)
        except Exception as exc:  # an inner interceptor raised: final, never retried
            if permits is not None:
                permits.release()
            final = rule.point.classify_exception(exc).with_retry(False)
            ex.failure(final)
            end_failure(ex, final, exc)
            raise
        except BaseException:
            if permits is not None:
                permits.release()
            ex.cancelled()
            raise
        if permits is not None:
            permits.release()
        # the blocking continuation returns failures as RpcError objects; telling success by
        # type spares a code() call, which takes the call's lock while gRPC's thread may hold it
        if not isinstance(out, grpc.RpcError) and not rule.point.classifier.result_rules:
            ex.success()
            return out
        c, err = _classify(rule, out)
        if c is None:
            ex.success()
            return out
        c, view = replay_view(rule, ex, c, buffer)
        if view is not None:
            request = view
        delay = ex.failure(c)
        if delay is None:
            return _failed(ex, c, out, err)
        last = (c, out, err)
        if delay > 0:
            rule.point.clock.sleep(delay)


def _failed(ex: Execution, c: Classification, out: Any, err: BaseException | None) -> Any:
    fb = end_failure(ex, c, err)
    if fb is not None:
        return _fallback_outcome(fb, err if err is not None else
                                 ResultFailure(out.result(), c, point=ex.point.name,
                                               operation=ex.operation))
    return out


# --------------------------------------------------------------------------
# unary responses, .future()

_IDLE, _RUNNING, _DECIDING, _WAITING, _SETTLED = range(5)


class _RetryingFuture(grpc.Call, _Future):
    """What ``.future()`` returns: one future over every attempt of the call.

    Never blocks the caller: attempts are started from gRPC's done-callbacks
    and retry waits run on a short-lived thread. ``cancel()`` cancels the
    attempt in flight (or the pending retry) and counts a cancellation.
    """

    def __init__(self, rule: Rule, continuation: Callable[[Any, Any], Any],
                 details: grpc.ClientCallDetails, request: Any,
                 buffer: ReplayBuffer | None) -> None:
        self._rule = rule
        self._continuation = continuation
        self._details = details
        self._request = request
        self._buffer = buffer
        self._ex = _execution(rule, details)
        self._cond = threading.Condition()
        self._state = _IDLE
        self._cancelled = False
        self._current: Any = None
        self._final: Any = None
        self._callbacks: list[Callable[[Any], None]] = []
        self._last: tuple[Classification, Any, BaseException | None] | None = None
        self._wake = threading.Event()

    def start(self) -> Any:
        """Launch the first attempt; a refusal comes back at once as a failed call."""
        ex = self._ex
        try:
            timeout = ex.begin()
        except (RejectedError, DeadlineExceeded) as refusal:
            fb, err = refuse(ex, refusal)
            return err if fb is None else _fallback_outcome(fb, refusal)
        permits = self._rule.permits
        if permits is not None and not permits.try_acquire():
            if self._rule.max_wait <= 0:
                fb, err = refuse(ex, ex.bulkhead_rejected())
                return err if fb is None else _fallback_outcome(fb, err)
            self._state = _WAITING  # wait for a permit off the caller's thread
            threading.Thread(target=self._wait_permit, args=(timeout,), daemon=True,
                             name="seawall-grpc-permit").start()
            return self
        self._send(timeout)
        return self

    # -- attempts ------------------------------------------------------------

    def _wait_permit(self, timeout: float | None) -> None:
        permits = self._rule.permits
        assert permits is not None
        if not permits.acquire(self._rule.max_wait):
            rejection = self._ex.bulkhead_rejected()
            with self._cond:
                if self._cancelled:
                    return
            fb, err = refuse(self._ex, rejection)
            self._settle(err if fb is None else _fallback_outcome(fb, err))
            return
        with self._cond:
            if self._cancelled:
                permits.release()
                return
        self._send(timeout)

    def _send(self, timeout: float | None) -> None:
        ex = self._ex
        permits = self._rule.permits
        details = _attempt_details(self._details, timeout, ex.attempts)
        try:
            fut = self._continuation(details, self._request)
        except Exception as exc:
            if permits is not None:
                permits.release()
            c = self._rule.point.classify_exception(exc).with_retry(False)
            ex.failure(c)
            fb = end_failure(ex, c, exc)
            self._settle(_fallback_outcome(fb, exc) if fb is not None
                         else _RaisedOutcome(exc))
            return
        with self._cond:
            cancelled = self._cancelled
            if not cancelled:
                self._current = fut
                self._state = _RUNNING
        if cancelled:
            fut.cancel()
        fut.add_done_callback(self._attempt_done)

    def _attempt_done(self, fut: Any) -> None:
        permits = self._rule.permits
        if permits is not None:
            permits.release()
        with self._cond:
            if self._cancelled or fut is not self._current or self._state != _RUNNING:
                return
            self._state = _DECIDING
        ex = self._ex
        c, err = _classify(self._rule, fut)
        if c is None:
            ex.success()
            self._settle(fut)
            return
        c, view = replay_view(self._rule, ex, c, self._buffer)
        if view is not None:
            self._request = view
        delay = ex.failure(c)
        if delay is None:
            self._settle(_failed(ex, c, fut, err))
            return
        self._last = (c, fut, err)
        with self._cond:
            self._state = _WAITING
        threading.Thread(target=self._retry, args=(delay,), daemon=True,
                         name="seawall-grpc-retry").start()

    def _retry(self, delay: float) -> None:
        if delay > 0:
            _sleep(self._rule, delay, self._wake)
        with self._cond:
            if self._cancelled:
                return
        ex = self._ex
        permits = self._rule.permits
        try:
            timeout = ex.begin()
            if permits is not None and not permits.acquire(self._rule.max_wait):
                raise ex.bulkhead_rejected()
        except (RejectedError, DeadlineExceeded) as refusal:
            assert self._last is not None
            ex.stop_reason = f"retry refused: {refusal}"
            self._settle(_failed(ex, *self._last))
            return
        with self._cond:
            if self._cancelled:
                if permits is not None:
                    permits.release()
                return
        self._send(timeout)

    def _settle(self, outcome: Any) -> None:
        with self._cond:
            if self._state == _SETTLED:
                return
            self._state = _SETTLED
            self._final = outcome
            callbacks, self._callbacks = self._callbacks, []
            self._cond.notify_all()
        for fn in callbacks:
            try:
                fn(self)
            except Exception:  # a caller's callback must not break the channel's thread
                _log.exception("seawall: gRPC done-callback raised")

    def _wait(self, timeout: float | None) -> Any:
        with self._cond:
            if not self._cond.wait_for(lambda: self._state == _SETTLED, timeout):
                raise grpc.FutureTimeoutError()
            return self._final

    # -- grpc.Future ------------------------------------------------------------

    def cancel(self) -> bool:
        with self._cond:
            if self._state in (_SETTLED, _DECIDING) or self._cancelled:
                return False
            self._cancelled = True
            current = self._current
        self._wake.set()
        if current is not None:
            current.cancel()
        self._ex.cancelled()
        self._settle(current if current is not None else _Cancelled())
        return True

    def cancelled(self) -> bool:
        return self._cancelled

    def running(self) -> bool:
        return self._state != _SETTLED

    def done(self) -> bool:
        return self._state == _SETTLED

    def result(self, timeout: float | None = None) -> Any:
        final = self._wait(timeout)
        if self._cancelled:
            raise grpc.FutureCancelledError()
        return final.result()

    def exception(self, timeout: float | None = None) -> Exception | None:
        final = self._wait(timeout)
        if self._cancelled:
            raise grpc.FutureCancelledError()
        exc: Exception | None = final.exception()
        return exc

    def traceback(self, timeout: float | None = None) -> types.TracebackType | None:
        final = self._wait(timeout)
        if self._cancelled:
            raise grpc.FutureCancelledError()
        tb: types.TracebackType | None = final.traceback()
        return tb

    def add_done_callback(self, fn: Callable[[Any], None]) -> None:
        with self._cond:
            if self._state != _SETTLED:
                self._callbacks.append(fn)
                return
        fn(self)

    # -- grpc.Call (blocks until the call settles, as gRPC's own future does) ----

    def initial_metadata(self) -> Any:
        return self._wait(None).initial_metadata()

    def trailing_metadata(self) -> Any:
        return self._wait(None).trailing_metadata()

    def code(self) -> grpc.StatusCode:
        final = self._wait(None)
        if self._cancelled:
            return _CANCELLED
        code: grpc.StatusCode = final.code()
        return code

    def details(self) -> str:
        details: str = self._wait(None).details()
        return details

    def is_active(self) -> bool:
        return self._state != _SETTLED

    def time_remaining(self) -> float:
        left = self._ex.remaining()
        return math.inf if left is None else left

    def add_callback(self, callback: Callable[[], None]) -> bool:
        with self._cond:
            if self._state == _SETTLED:
                return False
            self._callbacks.append(lambda _f: callback())
            return True


class _Cancelled(_Done):
    """The outcome of a call cancelled while waiting to retry."""

    def __init__(self) -> None:
        super().__init__(None)

    def code(self) -> grpc.StatusCode:
        return _CANCELLED

    def details(self) -> str:
        return "Locally cancelled by application!"

    def cancelled(self) -> bool:
        return True


class _RaisedOutcome(_Done):
    """An attempt whose continuation raised: ``result()`` raises the original."""

    def __init__(self, exc: Exception) -> None:
        super().__init__(None)
        self._exc = exc

    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.INTERNAL

    def result(self, timeout: float | None = None) -> Any:
        raise self._exc

    def exception(self, timeout: float | None = None) -> Exception | None:
        return self._exc


# --------------------------------------------------------------------------
# response streams


class _Timer:
    """One scheduled callback of :class:`_Timers`; :meth:`cancel` is thread-safe and idempotent."""

    __slots__ = ("args", "cancelled", "fn", "owner")

    def __init__(self, owner: _Timers, fn: Callable[..., None], args: tuple[Any, ...]) -> None:
        self.owner = owner
        self.fn = fn
        self.args = args
        self.cancelled = False

    def cancel(self) -> None:
        if not self.cancelled:
            self.cancelled = True
            self.owner.dropped()


class _Timers:
    """Runs callbacks at their times on one daemon thread, started on first use.

    A response stream's first-message limit needs a timer per attempt; a
    thread per attempt would cost more than the call. Times are real
    (``time.monotonic``), like the gRPC deadlines they stand in for.
    Callbacks must be quick and never raise (one that raises is logged).
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._heap: list[tuple[float, int, _Timer]] = []
        self._order = itertools.count()
        self._dead = 0
        self._thread: threading.Thread | None = None

    def call_later(self, delay: float, fn: Callable[..., None], *args: Any) -> _Timer:
        """Run ``fn(*args)`` on the timer thread in ``delay`` seconds (unless cancelled)."""
        timer = _Timer(self, fn, args)
        when = time.monotonic() + delay
        with self._cond:
            heapq.heappush(self._heap, (when, next(self._order), timer))
            if self._thread is None or not self._thread.is_alive():  # first use, or forked
                self._thread = threading.Thread(target=self._run, daemon=True,
                                                name="seawall-grpc-timers")
                self._thread.start()
            if self._heap[0][2] is timer:
                self._cond.notify()
        return timer

    def dropped(self) -> None:
        with self._cond:
            self._dead += 1
            if self._dead > 64 and self._dead * 2 > len(self._heap):
                # mostly cancelled (streams that delivered in time): keep the heap small
                self._heap = [entry for entry in self._heap if not entry[2].cancelled]
                heapq.heapify(self._heap)
                self._dead = 0

    def _run(self) -> None:
        while True:
            with self._cond:
                heap = self._heap
                while True:
                    while heap and heap[0][2].cancelled:
                        heapq.heappop(heap)
                        self._dead = max(0, self._dead - 1)
                    if heap:
                        left = heap[0][0] - time.monotonic()
                        if left <= 0:
                            timer = heapq.heappop(heap)[2]
                            break
                        self._cond.wait(left)
                    else:
                        self._cond.wait()
                    heap = self._heap
            if not timer.cancelled:
                try:
                    timer.fn(*timer.args)
                except Exception:  # the timer thread must survive a faulty callback
                    _log.exception("seawall: gRPC timer callback raised")


_TIMERS = _Timers()


def _expire_first(owner: weakref.ref[_ResponseStream], call: Any) -> None:
    stream = owner()
    if stream is not None:
        stream._expire(call)


class _FirstMessageTimeout(Finished, grpc.RpcError, grpc.Call, _Future):
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


def _release_when_done(permits: Any, fut: Any, owner: weakref.ref[_ResponseStream]) -> None:
    def done(f: Any) -> None:
        if permits is not None:
            permits.release()
        stream = owner()
        if stream is not None:
            stream._attempt_done(f)
    fut.add_done_callback(done)


class _ResponseStream(grpc.Call, _Future):
    """What a server-streaming or bidi call returns: an iterator over every attempt.

    A failure before the first message reached the caller is retried (and,
    for request streams, only while the requests can be replayed); after
    that, the error is final. ``code()``, ``details()`` and
    ``trailing_metadata()`` wait for the call to settle, retrying the same way.
    """

    def __init__(self, rule: Rule, continuation: Callable[[Any, Any], Any],
                 details: grpc.ClientCallDetails, request: Any,
                 buffer: ReplayBuffer | None) -> None:
        self._rule = rule
        self._continuation = continuation
        self._details = details
        self._request = request
        self._buffer = buffer
        self._ex = _execution(rule, details)
        self._observe = threading.Lock()   # one observer decides a failure at a time
        self._state_lock = threading.Lock()  # never held while waiting
        self._closed = False
        self._cancelled = False
        self._delivered = False
        self._current: Any = None
        self._callbacks: list[Callable[[Any], None]] = []
        self._wake = threading.Event()
        self._self_ref = weakref.ref(self)
        self._timer: _Timer | None = None  # the current attempt's first-message limit
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
        ex = self._ex
        permits = self._rule.permits
        try:
            timeout = ex.begin()
            if permits is not None and not permits.acquire(self._rule.max_wait):
                raise ex.bulkhead_rejected()
        except (RejectedError, DeadlineExceeded) as refusal:
            return refusal
        wire, limit = stream_limits(ex, timeout)
        try:
            fut = self._continuation(_attempt_details(self._details, wire, ex.attempts),
                                     self._request)
        except BaseException:
            if permits is not None:
                permits.release()
            ex.cancelled()
            raise
        self._current = fut
        if limit is not None:
            self._limit = limit
            self._timer = _TIMERS.call_later(limit, _expire_first, self._self_ref, fut)
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
                call = self._current = _FirstMessageTimeout(call, self._limit)
            c, err = _classify(self._rule, call)
            if c is None:  # finished OK after all (a result rule did not object)
                self._close(success=True)
                return False
            if self._delivered:
                c = c.with_retry(False)
            else:
                c, view = replay_view(self._rule, ex, c, self._buffer)
                if view is not None:
                    self._request = view
            delay = ex.failure(c)
            if delay is None:
                if self._close():
                    end_failure(ex, c, err)
                return False
            if delay > 0:
                _sleep(self._rule, delay, self._wake)
            if self._closed:
                return False
            refusal = self._launch()
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
                if final is not call and isinstance(final, _FirstMessageTimeout):
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
            c, _err = _classify(self._rule, current)
            if c is not None and self._close():
                self._ex.failure(c.with_retry(False))
                self._ex.end_failure(c)
        except Exception:  # never raise from a finalizer
            pass


# --------------------------------------------------------------------------
# the interceptor

_FUTURE_PATH: dict[types.CodeType, bool] = {}


def _is_future_path(continuation: Any) -> bool:
    """Whether grpc called us for ``.future()`` (the continuation is that method's closure).

    grpc hands the interceptor a different closure for ``__call__``/``with_call``
    and for ``future``; telling them apart lets the blocking paths retry in
    the caller's thread without a proxy. Unknown continuations get the proxy,
    which is correct for both.
    """
    code = getattr(continuation, "__code__", None)
    if code is None:
        return True
    known = _FUTURE_PATH.get(code)
    if known is None:
        known = "_with_call" not in getattr(continuation, "__qualname__", "")
        if len(_FUTURE_PATH) < 256:
            _FUTURE_PATH[code] = known
    return known


class ClientInterceptor(_UnaryUnary, _UnaryStream, _StreamUnary, _StreamStream):
    """Applies the routed point's policy to every call shape of a sync channel."""

    def __init__(self, router: Router) -> None:
        self._lookup = router.lookup

    def intercept_unary_unary(self, continuation: Any, client_call_details: Any,
                              request: Any) -> Any:
        rule = self._lookup(client_call_details.method)
        if rule is None:
            return continuation(client_call_details, request)
        if _is_future_path(continuation):
            return _RetryingFuture(rule, continuation, client_call_details, request, None).start()
        return _blocking(rule, continuation, client_call_details, request, None)

    def intercept_stream_unary(self, continuation: Any, client_call_details: Any,
                               request_iterator: Any) -> Any:
        rule = self._lookup(client_call_details.method)
        if rule is None:
            return continuation(client_call_details, request_iterator)
        buffer, first = _replayable(rule, request_iterator)
        if _is_future_path(continuation):
            return _RetryingFuture(rule, continuation, client_call_details, first, buffer).start()
        return _blocking(rule, continuation, client_call_details, first, buffer)

    def intercept_unary_stream(self, continuation: Any, client_call_details: Any,
                               request: Any) -> Any:
        rule = self._lookup(client_call_details.method)
        if rule is None:
            return continuation(client_call_details, request)
        return _ResponseStream(rule, continuation, client_call_details, request, None).start()

    def intercept_stream_stream(self, continuation: Any, client_call_details: Any,
                                request_iterator: Any) -> Any:
        rule = self._lookup(client_call_details.method)
        if rule is None:
            return continuation(client_call_details, request_iterator)
        buffer, first = _replayable(rule, request_iterator)
        return _ResponseStream(rule, continuation, client_call_details, first, buffer).start()


def _replayable(rule: Rule, request_iterator: Any) -> tuple[ReplayBuffer | None, Any]:
    if not rule.retries:
        return None, request_iterator
    buffer = ReplayBuffer(request_iterator, rule.buffer)
    view = buffer.view()
    assert view is not None
    return buffer, view


__all__ = ["ClientInterceptor", "add_note"]
