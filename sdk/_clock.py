"""The one clock every policy reads, so tests can replace it; and the async waits.

Every wait for time to pass (a retry's backoff in the shells, in the gRPC
interceptors, in SQLAlchemy's connect) goes through the point's clock,
``clock.sleep`` or ``await clock.asleep``: the one seam a testing mode
that skips waits without changing decisions short-circuits.

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
import time
from collections.abc import Awaitable, Callable
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


class SystemClock:
    """Real time: ``time.monotonic`` and real sleeps (asyncio's or trio's, as the task runs)."""

    __slots__ = ()

    now = staticmethod(time.monotonic)
    sleep = staticmethod(time.sleep)

    async def asleep(self, seconds: float) -> None:
        if async_library() == "trio":
            import trio

            await trio.sleep(seconds)
        else:
            await asyncio.sleep(seconds)


SYSTEM_CLOCK = SystemClock()
