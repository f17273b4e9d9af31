"""Fault injection at run time: ``point.chaos``, the innermost step of the pipeline.

A :class:`seawall.Chaos` policy says how often to inject what; the
:class:`ChaosRuntime` made from it (``point.chaos``) draws, for each
attempt, one step of a seeded random sequence and answers with an
:class:`Injection` (or ``None``: call the dependency as usual). The draw
takes three numbers whatever fires, under a lock, so one seed gives one
sequence of decisions however many threads and tasks share the point.

The shells wrap the attempt callable with :meth:`ChaosRuntime.wrap` /
:meth:`ChaosRuntime.awrap` before their loop, so the injection runs inside
the attempt's deadline and its fault is classified, retried, counted by
the breaker and answered by the fallback like a real one. A hedged call
(:mod:`._hedge`) wraps each of its attempts, hedges included, marking the
attempt (not the call). Integrations that drive attempts themselves
(gRPC) call :meth:`ChaosRuntime.inject` per attempt (a draw that marks
the execution's attempt as injected), wait
:attr:`Injection.latency` through the point's clock and answer with their
own shape of the fault or result (see docs/chaos.md).

Safety: off unless a point is given ``chaos=``; ``SEAWALL_CHAOS=off`` (or
``0``, ``false``, ``no``) in the environment turns every injection off,
read at each draw; :meth:`disable` turns one point's off at run time.
"""

from __future__ import annotations

import copy
import os
import random
import threading
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from ._execution import Execution, deadline_error
from ._policies import Chaos

if TYPE_CHECKING:
    from ._point import IntegrationPoint

T = TypeVar("T")


class Marked(Protocol):
    """What an injection marks: an :class:`Execution`, or one hedged attempt of it."""

    injected: bool
    operation: str

ENVIRONMENT = "SEAWALL_CHAOS"
"""The environment variable whose ``off`` turns every injection off."""
_OFF = frozenset({"off", "0", "false", "no"})

_environ = os.environ


def switched_off() -> bool:
    """True when the environment turns fault injection off (``SEAWALL_CHAOS=off``)."""
    value = _environ.get(ENVIRONMENT)
    return value is not None and value.strip().lower() in _OFF


class Injection:
    """What to do to one attempt instead of (or before) calling the dependency.

    ``latency``: seconds to wait first (``0.0``: none). Then ``fault`` (an
    exception made for this attempt) is raised, or, when ``has_result``,
    ``result`` is returned in place of the dependency's answer; with
    neither, the dependency is called after the wait.
    """

    __slots__ = ("fault", "has_result", "latency", "result")

    def __init__(self, latency: float, fault: Exception | None, has_result: bool,
                 result: Any) -> None:
        self.latency = latency
        self.fault = fault
        self.has_result = has_result
        self.result = result

    def __repr__(self) -> str:
        return (f"Injection(latency={self.latency!r}, fault={self.fault!r}, "
                f"has_result={self.has_result!r}, result={self.result!r})")


def make_fault(fault: Any) -> Exception:
    """A fresh exception from a :attr:`Chaos.fault` (instance copied, class or factory called)."""
    if isinstance(fault, BaseException):
        made: Any = copy.copy(fault)  # each injection its own traceback and notes
        made.__traceback__ = None
    else:
        made = fault()
    if not isinstance(made, Exception):
        raise TypeError(f"seawall: Chaos.fault's factory must return an Exception, got {made!r}")
    return made


class ChaosRuntime:
    """The fault injection of one point (``point.chaos``): a policy, a switch, a sequence.

    Thread- and task-safe: the sequence is drawn under a lock; the switch is
    one attribute. :attr:`policy` is the :class:`seawall.Chaos` it was made
    from.
    """

    __slots__ = ("_lock", "_on", "_random", "policy")

    def __init__(self, policy: Chaos) -> None:
        self.policy = policy
        self._on = policy.enabled
        self._random = random.Random(policy.seed)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<ChaosRuntime {'on' if self.enabled else 'off'} {self.policy!r}>"

    @property
    def enabled(self) -> bool:
        """True when this point injects: switched on and not turned off by ``SEAWALL_CHAOS``."""
        return self._on and not switched_off()

    def enable(self) -> None:
        """Start injecting (the environment's ``SEAWALL_CHAOS=off`` still wins)."""
        self._on = True

    def disable(self) -> None:
        """Stop injecting; calls go to the dependency untouched."""
        self._on = False

    def draw(self) -> Injection | None:
        """The next step of the sequence: what to inject into this attempt, or ``None``.

        Switched off (by :meth:`disable` or the environment), it returns
        ``None`` and takes no step. A fault wins over a result when both fire.
        """
        if not self._on or switched_off():
            return None
        policy = self.policy
        rand = self._random.random
        with self._lock:
            fault_draw, latency_draw, result_draw = rand(), rand(), rand()
        latency = policy.latency if latency_draw < policy.latency_rate else 0.0
        fault = make_fault(policy.fault) if fault_draw < policy.fault_rate else None
        has_result = fault is None and result_draw < policy.result_rate
        if not latency and fault is None and not has_result:
            return None
        return Injection(latency, fault, has_result, policy.result if has_result else None)

    def inject(self, execution: Execution) -> Injection | None:
        """:meth:`draw` for one attempt of ``execution``, marking it (``execution.injected``).

        What an integration that drives attempts itself calls after
        ``execution.begin()``: it then waits ``latency`` through the point's
        clock and answers with its own shape of ``fault`` or ``result`` (the
        gRPC interceptors: a failed call with a status), so the attempt's
        outcome is counted as injected.
        """
        injection = self.draw()
        execution.injected = injection is not None
        return injection

    def wrap(self, point: IntegrationPoint, attempt: Callable[[float | None], T],
             execution: Marked, shape: Callable[[Any], T] | None = None,
             fault_shape: Callable[[Exception], T] | None = None,
             late_shape: Callable[[float], T] | None = None) -> Callable[[float | None], T]:
        """``attempt`` with injections, for the sync shell; marks ``execution.injected``.

        The shapes as for :meth:`awrap`.
        """
        return _SyncAttempt(self, point, attempt, execution, shape, fault_shape, late_shape)

    def awrap(self, point: IntegrationPoint, attempt: Callable[[float | None], Awaitable[T]],
              execution: Marked, shape: Callable[[Any], T] | None = None,
              fault_shape: Callable[[Exception], T] | None = None,
              late_shape: Callable[[float], T] | None = None,
              ) -> Callable[[float | None], Awaitable[T]]:
        """``attempt`` with injections, for the async shell; marks ``execution.injected``.

        ``execution``: the :class:`Execution`, or one hedged attempt (anything
        with ``injected`` and ``operation``). ``shape``: an injected result is
        returned as ``shape(result)``. ``fault_shape``: an injected fault is
        returned as ``fault_shape(fault)`` instead of raised, and
        ``late_shape``: a latency past the attempt's timeout, once that
        timeout is waited, is answered ``late_shape(latency)`` instead of
        raising the deadline's error (an integration whose attempts answer
        with a status: gRPC).
        """
        return _AsyncAttempt(self, point, attempt, execution, shape, fault_shape,
                             late_shape).__call__


class _Shaped(Generic[T]):
    """What the sync and async attempts share: the attempt, the point, the mark, the shapes."""

    __slots__ = ("attempt", "execution", "fault_shape", "late_shape", "point", "runtime",
                 "shape")

    def __init__(self, runtime: ChaosRuntime, point: IntegrationPoint, attempt: Any,
                 execution: Marked, shape: Callable[[Any], T] | None,
                 fault_shape: Callable[[Exception], T] | None = None,
                 late_shape: Callable[[float], T] | None = None) -> None:
        self.runtime = runtime
        self.point = point
        self.attempt = attempt
        self.execution = execution
        self.shape = shape
        self.fault_shape = fault_shape
        self.late_shape = late_shape

    def late(self, latency: float, timeout: float) -> T:
        """The answer of a latency past ``timeout`` (already waited): the deadline's."""
        if self.late_shape is not None:
            return self.late_shape(latency)
        # a dependency slower than the deadline: the transport gives up at the deadline
        raise deadline_error(self.point, self.execution.operation, timeout)

    def answer(self, injection: Injection) -> tuple[bool, T | None]:
        """``(True, answer)`` for an injected fault or result (a fault raised unless
        shaped), ``(False, None)``: call the dependency."""
        if injection.fault is not None:
            if self.fault_shape is not None:
                return True, self.fault_shape(injection.fault)
            raise injection.fault
        if injection.has_result:
            shape = self.shape
            return True, injection.result if shape is None else shape(injection.result)
        return False, None


class _SyncAttempt(_Shaped[T]):
    __slots__ = ()

    def __call__(self, timeout: float | None) -> T:
        injection = self.runtime.draw()
        self.execution.injected = injection is not None
        if injection is None:
            return self.attempt(timeout)  # type: ignore[no-any-return]
        latency = injection.latency
        if latency:
            if timeout is not None and latency >= timeout:
                self.point.clock.sleep(timeout)
                return self.late(latency, timeout)
            self.point.clock.sleep(latency)
            if timeout is not None:
                timeout -= latency
        done, answer = self.answer(injection)
        return answer if done else self.attempt(timeout)  # type: ignore[return-value]


class _AsyncAttempt(_Shaped[T]):
    __slots__ = ()

    async def __call__(self, timeout: float | None) -> T:
        injection = self.runtime.draw()
        self.execution.injected = injection is not None
        if injection is None:
            return await self.attempt(timeout)  # type: ignore[no-any-return]
        latency = injection.latency
        if latency:
            if timeout is not None and latency >= timeout:
                await self.point.clock.asleep(timeout)
                return self.late(latency, timeout)
            await self.point.clock.asleep(latency)
            if timeout is not None:
                timeout -= latency
        done, answer = self.answer(injection)
        return answer if done else await self.attempt(timeout)  # type: ignore[return-value]
