"""Sync unary responses, ``.future()``: one future over every attempt, never blocking the caller.

Attempts start from gRPC's done-callbacks; the waits between them (and a
wait for a bulkhead permit, a server's pause or a rate-limit token) run on
short-lived threads. Both mountings use
it: ``send`` starts one attempt as gRPC's own ``.future()`` and returns
that future (behind ``grpc.intercept_channel`` the continuation does; the
channel wrapper calls the inner channel's multicallable).

Sync only: grpc.aio has no future separate from its call object (the aio
unary shell, ``_grpc_aio_unary``, is awaited instead).
"""

from __future__ import annotations

import logging
import math
import threading
import types
from collections.abc import Callable
from typing import Any

import grpc

from seawall import Classification, DeadlineExceeded, Execution, RejectedError

from ._grpc_commit import end_failure, refuse, resolve_fallback
from ._grpc_refusals import Future
from ._grpc_replay import ReplayBuffer, replay_view
from ._grpc_routes import Rule
from ._grpc_sync_unary import (
    OUTCOME,
    Cancelled,
    Done,
    RaisedOutcome,
    Send,
    classify_outcome,
    failed,
)
from ._grpc_sync_wait import sleep

_CANCELLED = grpc.StatusCode.CANCELLED
_log = logging.getLogger("seawall")

_IDLE, _RUNNING, _DECIDING, _WAITING, _SETTLED = range(5)


class RetryingFuture(grpc.Call, Future):
    """What ``.future()`` returns: one future over every attempt of the call.

    Never blocks the caller: attempts are started from gRPC's done-callbacks
    and retry waits run on a short-lived thread. ``cancel()`` cancels the
    attempt in flight (or the pending retry) and counts a cancellation.
    """

    def __init__(self, rule: Rule, ex: Execution, send: Send, args: Any, request: Any,
                 buffer: ReplayBuffer | None) -> None:
        self._rule = rule
        self._ex = ex
        self._send_attempt = send
        self._args = args
        self._request = request
        self._buffer = buffer
        self._cond = threading.Condition()
        self._state = _IDLE
        self._cancelled = False
        self._current: Any = None
        self._final: Any = None
        self._callbacks: list[Callable[[Any], None]] = []
        self._last: tuple[Classification, Any, BaseException | None] | None = None
        self._wake = threading.Event()

    def start(self) -> Any:
        """Launch the first attempt; a refusal comes back at once as a failed call.

        A server's pause or a rate-limit token to wait for is waited off the
        caller's thread, like a bulkhead permit (within the call's deadline:
        a longer wait is refused at once, as :class:`seawall.RateLimitedError`).
        """
        ex = self._ex
        try:
            timeout = ex.begin(True)
        except (RejectedError, DeadlineExceeded) as refusal:
            fb, err = refuse(ex, refusal)
            return err if fb is None else Done(resolve_fallback(fb, refusal))
        if ex.wait > 0.0:
            self._state = _WAITING
            threading.Thread(target=self._paced, args=(timeout, ex.wait), daemon=True,
                             name="seawall-grpc-pause").start()
            return self
        permits = self._rule.permits
        if permits is not None and not permits.try_acquire():
            if self._rule.max_wait <= 0:
                fb, err = refuse(ex, ex.bulkhead_rejected())
                return err if fb is None else Done(resolve_fallback(fb, err))
            self._state = _WAITING  # wait for a permit off the caller's thread
            threading.Thread(target=self._wait_permit, args=(timeout,), daemon=True,
                             name="seawall-grpc-permit").start()
            return self
        self._send(timeout)
        return self

    # -- attempts ------------------------------------------------------------

    def _paced(self, timeout: float | None, wait: float) -> None:
        """The first attempt, once the pause (or the token's wait) of ``wait`` seconds is over."""
        if not self._waited(wait):
            return
        permits = self._rule.permits
        if permits is not None and not permits.try_acquire():
            if self._rule.max_wait <= 0:
                fb, err = refuse(self._ex, self._ex.bulkhead_rejected())
                self._settle(err if fb is None else Done(resolve_fallback(fb, err)))
                return
            self._wait_permit(timeout)
            return
        self._send(timeout)

    def _waited(self, wait: float) -> bool:
        """Wait ``wait`` seconds before an attempt (ends early on cancel); false when cancelled."""
        sleep(self._rule, wait, self._wake)
        with self._cond:
            if not self._cancelled:
                return True
        self._ex.withdraw()  # cancel() accounted the call; the token it waited for goes back
        return False

    def _wait_permit(self, timeout: float | None) -> None:
        permits = self._rule.permits
        assert permits is not None
        if not permits.acquire(self._rule.max_wait):
            rejection = self._ex.bulkhead_rejected()
            with self._cond:
                if self._cancelled:
                    return
            fb, err = refuse(self._ex, rejection)
            self._settle(err if fb is None else Done(resolve_fallback(fb, err)))
            return
        with self._cond:
            if self._cancelled:
                permits.release()
                return
        self._send(timeout)

    def _send(self, timeout: float | None) -> None:
        ex = self._ex
        permits = self._rule.permits
        try:
            fut = self._send_attempt(self._args, self._request, timeout, ex.attempts)
        except Exception as exc:
            if permits is not None:
                permits.release()
            c = self._rule.point.classify_exception(exc).with_retry(False)
            ex.failure(c)
            fb = end_failure(ex, c, exc)
            self._settle(Done(resolve_fallback(fb, exc)) if fb is not None
                         else RaisedOutcome(exc))
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
        c, err = classify_outcome(self._rule, fut)
        if c is None:
            ex.success()
            self._settle(fut)
            return
        c, view = replay_view(self._rule, ex, c, self._buffer)
        if view is not None:
            self._request = view
        delay = ex.failure(c)
        if delay is None:
            self._settle(failed(ex, OUTCOME, c, fut, err))
            return
        self._last = (c, fut, err)
        with self._cond:
            self._state = _WAITING
        threading.Thread(target=self._retry, args=(delay,), daemon=True,
                         name="seawall-grpc-retry").start()

    def _retry(self, delay: float) -> None:
        if delay > 0:
            sleep(self._rule, delay, self._wake)
        with self._cond:
            if self._cancelled:
                return
        ex = self._ex
        permits = self._rule.permits
        try:
            timeout = ex.begin(True)
            if ex.wait > 0.0 and not self._waited(ex.wait):  # a server's pause, a token
                return
            if permits is not None and not permits.acquire(self._rule.max_wait):
                raise ex.bulkhead_rejected()
        except (RejectedError, DeadlineExceeded) as refusal:
            assert self._last is not None
            ex.stop_reason = f"retry refused: {refusal}"
            self._settle(failed(ex, OUTCOME, *self._last))
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
        self._settle(current if current is not None else Cancelled())
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
