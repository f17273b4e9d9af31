"""The one clock every policy reads, so tests can replace it; and the async waits.

Every wait for time to pass (a retry's backoff in the shells, in the gRPC
interceptors, in SQLAlchemy's connect) goes through the point's clock,
``clock.sleep`` or ``await clock.asleep``: the one seam a testing mode
that skips waits without changing decisions short-circuits. That mode
(``seawall.testing.instant()``) is a context variable, :data:`INSTANT`,
read by the system clock: its sleeps return at once and its time moves by
what they skipped (:class:`InstantView`); outside it, one read per clock use.

The async shell waits under whichever library runs the calling task:
asyncio, or trio (httpx's async client supports both). Asking costs
nothing on the asyncio path until something imports ``sniffio`` (trio
always does), and even then it is asked only where the shell is about to
wait anyway: a retry's backoff, a bulkhead queue, an attempt deadline
under trio. Other async libraries get a clear error, never a crash.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Generic, Protocol, TypeVar

T = TypeVar("T")


class Clock(Protocol):
    """Monotonic time in seconds, and the two ways to wait for it."""

    def now(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...

    async def asleep(self, seconds: float) -> None: ...


def async_library() -> str:
    """``"trio"`` when the calling task runs under trio, otherwise ``"asyncio"``.

    Any other library that ``sniffio`` recognises (curio...) raises
    ``RuntimeError``: seawall's async shell waits with asyncio or trio only.
    Cheap: without ``sniffio`` imported no trio task can be running.
    """
    sniffio = sys.modules.get("sniffio")
    if sniffio is None:
        return "asyncio"
    try:
        name: str = sniffio.current_async_library()
    except sniffio.AsyncLibraryNotFoundError:
        return "asyncio"  # asyncio raises its own "no running event loop" where it matters
    if name == "trio" or name == "asyncio":
        return name
    raise RuntimeError(
        f"seawall: the async shell waits with asyncio or trio; this task runs under {name!r}"
    )


async def checkpoint() -> None:
    """Let other tasks run once (``asyncio.sleep(0)`` or trio's checkpoint)."""
    if async_library() == "trio":
        import trio

        await trio.lowlevel.checkpoint()
    else:
        await asyncio.sleep(0)


async def within(attempt: Callable[[float | None], Awaitable[T]], timeout: float | None,
                 expired: Callable[[float | None], BaseException]) -> T:
    """``await attempt(timeout)``, cancelled after ``timeout`` seconds; then raise ``expired(timeout)``.

    The attempt deadline of a task that asyncio's watchdog cannot watch:
    under trio, a cancel scope (trio's own timeouts are cancel scopes too).
    A cancellation from outside passes through unchanged.
    """
    if timeout is None:
        return await attempt(None)
    if async_library() != "trio":
        raise RuntimeError("seawall: no running event loop (asyncio or trio) for the attempt's deadline")
    import trio

    with trio.move_on_after(timeout):
        return await attempt(timeout)
    raise expired(timeout)


class Bounded(Generic[T]):
    """An attempt whose every call runs :func:`within` its timeout (the async shell under trio)."""

    __slots__ = ("attempt", "expired")

    def __init__(self, attempt: Callable[[float | None], Awaitable[T]],
                 expired: Callable[[float | None], BaseException]) -> None:
        self.attempt = attempt
        self.expired = expired

    def __call__(self, timeout: float | None) -> Awaitable[T]:
        return within(self.attempt, timeout, self.expired)


class InstantView:
    """The system clock as ``seawall.testing.instant()`` shows it: waits skipped, time moved.

    Every wait that would have passed on the system clock (a retry's
    backoff, a bulkhead's ``max_wait``) returns at once and moves this
    view's ``offset`` forward by its length instead, so deadlines, the
    breaker's ``open_for`` and the budget's window see the time pass as
    they would have: decisions are unchanged, only the waiting is gone.
    ``advance(seconds)`` moves it by hand (past a breaker's ``open_for``).
    ``skipped`` lists every wait skipped (seconds). Shared by the threads
    and tasks that run in its context; thread-safe.
    """

    __slots__ = ("_lock", "offset", "skipped")

    def __init__(self) -> None:
        self.offset = 0.0
        self.skipped: list[float] = []
        self._lock = threading.Lock()

    def now(self) -> float:
        """The view's time: the system's monotonic time plus every skipped wait."""
        return _monotonic() + self.offset

    def advance(self, seconds: float) -> None:
        """Move the view ``seconds`` forward, as if that much time had passed."""
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds >= 0:
            raise ValueError(f"advance needs seconds >= 0, got {seconds!r}")
        _skew()
        with self._lock:
            self.offset += seconds

    def skip(self, seconds: float) -> None:
        """A wait of ``seconds`` that is not waited: recorded, and the view moves by it."""
        _skew()
        with self._lock:
            self.skipped.append(seconds)
            self.offset += seconds


INSTANT: ContextVar[InstantView | None] = ContextVar("seawall_instant", default=None)
"""The active :class:`InstantView` of this context (``seawall.testing.instant()``), or ``None``."""

SKEWED = [False]
"""Set for good once any instant view moved away from the system clock (in any context):
until then a deadline on the system clock is also an event-loop time (the async shell's
watchdog skips a conversion); after, the shell converts (correct in every context)."""

_skew_lock = threading.Lock()


def _skew() -> None:
    """An instant view is about to move away from the system clock: arm the clock, once.

    Until then every point on the system clock reads ``time.monotonic``
    itself (a C call; :func:`system_now`'s context-variable read is one
    Python frame more, ~800 CPU instructions a call, on every call,
    callgrind): no view has moved, so both read the same. From the first
    skipped wait on, :class:`SystemClock` reads through :func:`system_now`
    and every live point is told to re-bind its clock (one way, for good).
    A call in flight at that moment keeps the deadline scope it set, which a
    nested call on the re-bound clock no longer recognises as its own.
    """
    with _skew_lock:
        if SKEWED[0]:
            return
        SystemClock.now = staticmethod(system_now)
        SKEWED[0] = True
    from ._registry import live_points  # the registry holds points: imported when used

    for point in live_points():
        point._reclock()

_monotonic = time.monotonic
_instant = INSTANT.get


def system_now() -> float:
    """``time.monotonic()``, seen through the context's :class:`InstantView` when one is active.

    What every point on the system clock reads once an instant view has
    moved (:func:`_skew`); before, they read ``time.monotonic`` itself.
    """
    view = _instant()
    if view is None:
        return _monotonic()
    return _monotonic() + view.offset


class SystemClock:
    """Real time: ``time.monotonic`` and real sleeps (asyncio's or trio's, as the task runs).

    Inside ``seawall.testing.instant()`` (a context variable: only the
    threads and tasks of that context) sleeps return at once and time is
    read through the active :class:`InstantView`.
    """

    __slots__ = ()

    # time.monotonic until an instant view first moves (then system_now: see _skew)
    now = staticmethod(time.monotonic)

    @staticmethod
    def sleep(seconds: float) -> None:
        view = _instant()
        if view is None:
            time.sleep(seconds)
        else:
            view.skip(seconds)

    @staticmethod
    def wait(event: threading.Event, seconds: float) -> bool:
        """Wait up to ``seconds`` for ``event`` (a real wait a cancellation may end early).

        True when the event was set. Inside ``instant()`` the wait is skipped, as a sleep is.
        """
        view = _instant()
        if view is None:
            return event.wait(seconds)
        view.skip(seconds)
        return event.is_set()

    async def asleep(self, seconds: float) -> None:
        view = _instant()
        if view is not None:
            view.skip(seconds)
            await checkpoint()  # other tasks still get their turn
        elif async_library() == "trio":
            import trio

            await trio.sleep(seconds)
        else:
            await asyncio.sleep(seconds)


SYSTEM_CLOCK = SystemClock()
