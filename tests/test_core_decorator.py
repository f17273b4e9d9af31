"""The decorator and call/acall: def and async def, signature and metadata kept."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

import seawall
from seawall import IntegrationPoint, Retry
from seawall.testing import FakeClock

point = IntegrationPoint("decorated", retry=Retry(attempts=2, budget=None), clock=FakeClock())


@point
def charge(order_id: int, *, amount: float = 1.0, note: str | None = None) -> str:
    """Charge an order."""
    return f"{order_id}:{amount}:{note}"


@point
async def refund(order_id: int, amount: float, /, *reasons: str, **extra: Any) -> tuple[Any, ...]:
    """Refund an order."""
    return order_id, amount, reasons, extra


def undecorated_charge(order_id: int, *, amount: float = 1.0, note: str | None = None) -> str:
    return ""


def test_sync_function_keeps_its_metadata() -> None:
    """A decorated def keeps __name__, __qualname__, __doc__, __wrapped__ and its signature."""
    assert charge.__name__ == "charge"
    assert charge.__doc__ == "Charge an order."
    assert charge.__wrapped__.__name__ == "charge"  # type: ignore[attr-defined]
    assert inspect.signature(charge) == inspect.signature(undecorated_charge)
    assert not inspect.iscoroutinefunction(charge)


def test_async_function_keeps_its_metadata_and_stays_a_coroutine_function() -> None:
    """A decorated async def is still a coroutine function with the same signature."""
    assert refund.__name__ == "refund"
    assert refund.__doc__ == "Refund an order."
    assert inspect.iscoroutinefunction(refund)
    assert str(inspect.signature(refund)) == (
        "(order_id: 'int', amount: 'float', /, *reasons: 'str', **extra: 'Any') -> 'tuple[Any, ...]'")


def test_sync_arguments_pass_through() -> None:
    """Positional and keyword arguments reach the function."""
    assert charge(7, amount=2.5, note="x") == "7:2.5:x"


async def test_async_arguments_pass_through() -> None:
    """Positional-only, variadic and keyword arguments reach the async function."""
    assert await refund(1, 2.0, "late", "broken", who="me") == (1, 2.0, ("late", "broken"), {"who": "me"})


def test_decorated_function_is_retried() -> None:
    """The policy applies to the decorated function: a transient failure is retried."""
    calls = []

    @point
    def flaky() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError
        return "second time"

    assert flaky() == "second time"
    assert len(calls) == 2


def test_operation_is_the_qualified_name() -> None:
    """Events of a decorated function carry its __qualname__ as the operation."""
    seen: list[Any] = []
    p = IntegrationPoint("ops")
    p.add_hook(seen.append)

    @p
    def lookup() -> None:
        return None

    lookup()
    assert seen[-1].operation == lookup.__qualname__


def test_methods_can_be_decorated() -> None:
    """A decorated method receives self."""

    class Client:
        def __init__(self) -> None:
            self.base = 10

        @point
        def get(self, n: int) -> int:
            return self.base + n

    assert Client().get(5) == 15


def test_call_passes_arguments() -> None:
    """point.call(fn, *args, **kwargs) calls fn with them."""
    assert point.call(divmod, 17, 5) == (3, 2)
    assert point.call(dict, a=1) == {"a": 1}


async def test_acall_passes_arguments() -> None:
    """await point.acall(fn, *args, **kwargs) awaits fn with them."""

    async def add(a: int, b: int = 0) -> int:
        return a + b

    assert await point.acall(add, 2, b=3) == 5


def test_exceptions_from_decorated_functions_are_the_originals() -> None:
    """A permanent error raised inside a decorated function reaches the caller unchanged."""

    @point
    def broken() -> None:
        raise LookupError("missing")

    with pytest.raises(LookupError, match="missing"):
        broken()


def test_point_repr_names_it() -> None:
    """repr(point) shows the point's name."""
    assert repr(IntegrationPoint("payments")) == "IntegrationPoint('payments')"
    assert seawall.IntegrationPoint("p").breaker_state is None
