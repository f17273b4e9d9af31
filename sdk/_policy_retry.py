"""Retry policies: when to try again (:class:`Retry`), how long to wait (:class:`Backoff`
and its jitter), and how many retries all callers may spend (:class:`RetryBudget`)."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal

from ._errors import ConfigurationError
from ._policy_checks import _check_factor, _check_int, _check_rate, _check_seconds, refuse

JITTERS = ("none", "full", "equal", "decorrelated")
Jitter = Literal["none", "full", "equal", "decorrelated"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Backoff:
    """How long to wait before retry number ``n`` (1 for the first retry), in seconds.

    Build with :meth:`constant`, :meth:`linear`, :meth:`exponential` or
    :meth:`custom`. Jitter spreads retries of many clients apart:

    * ``none``: the base delay.
    * ``full``: uniform in ``[0, base]``.
    * ``equal``: uniform in ``[base/2, base]``.
    * ``decorrelated``: uniform in ``[initial, 3 * previous delay]``, capped at ``maximum``.
    """

    kind: Literal["constant", "linear", "exponential", "custom"]
    initial: float = 0.0
    step: float = 0.0
    multiplier: float = 2.0
    maximum: float = 0.0
    jitter: Jitter = "none"
    function: Callable[[int], float] | None = None

    def __post_init__(self) -> None:
        owner = "Backoff"
        if self.kind not in ("constant", "linear", "exponential", "custom"):
            raise refuse(owner, "kind", "must be constant, linear, exponential or custom", self.kind)
        if self.jitter not in JITTERS:
            raise refuse(owner, "jitter", f"must be one of {', '.join(JITTERS)}", self.jitter)
        if self.kind == "custom":
            if not callable(self.function):
                raise refuse(owner, "function", "must be callable", self.function)
            return
        _check_seconds(owner, "initial", self.initial)
        _check_seconds(owner, "step", self.step)
        _check_seconds(owner, "maximum", self.maximum)
        _check_factor(owner, "multiplier", self.multiplier, 1)
        if self.maximum < self.initial:
            raise refuse(owner, "maximum", f"must be >= initial ({self.initial!r})", self.maximum)

    @classmethod
    def constant(cls, delay: float, *, jitter: Jitter = "none") -> Backoff:
        """The same ``delay`` before every retry."""
        return cls(kind="constant", initial=delay, maximum=delay, jitter=jitter)

    @classmethod
    def linear(cls, initial: float, step: float | None = None, *, maximum: float = 30.0,
               jitter: Jitter = "none") -> Backoff:
        """``initial + step * (n - 1)``, capped at ``maximum``; ``step`` defaults to ``initial``."""
        return cls(kind="linear", initial=initial, step=initial if step is None else step,
                   maximum=maximum, jitter=jitter)

    @classmethod
    def exponential(cls, initial: float = 0.05, multiplier: float = 2.0, maximum: float = 2.0,
                    jitter: Jitter = "full") -> Backoff:
        """``initial * multiplier ** (n - 1)``, capped at ``maximum``, with ``jitter`` (full by default)."""
        return cls(kind="exponential", initial=initial, multiplier=multiplier, maximum=maximum,
                   jitter=jitter)

    @classmethod
    def custom(cls, function: Callable[[int], float]) -> Backoff:
        """``function(n)`` gives the delay in seconds; it must return a finite number >= 0."""
        return cls(kind="custom", function=function)

    def base(self, n: int) -> float:
        """The delay before jitter for retry ``n`` (1-based)."""
        if self.kind == "constant":
            return self.initial
        if self.kind == "linear":
            try:
                return min(self.initial + self.step * (n - 1), self.maximum)
            except OverflowError:  # n beyond float range
                return self.maximum if self.step > 0 else self.initial
        if self.kind == "exponential":
            try:
                return min(self.initial * float(self.multiplier) ** (n - 1), self.maximum)
            except OverflowError:  # the growth passed float range: capped, unless it never grows
                return self.maximum if self.initial > 0 and self.multiplier > 1 else self.initial
        assert self.function is not None
        value = self.function(n)
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not (0.0 <= value < math.inf):
            raise ConfigurationError(
                f"Backoff.function returned {value!r} for retry {n}; it must return seconds >= 0"
            )
        return float(value)

    def delay(self, n: int, previous: float, rand: Callable[[], float] = random.random) -> float:
        """The delay before retry ``n``; ``previous`` is the delay used before the last one."""
        base = self.base(n)
        jitter = self.jitter
        if jitter == "none" or self.kind == "custom":
            return base
        if jitter == "full":
            return base * rand()
        if jitter == "equal":
            return base / 2.0 + (base / 2.0) * rand()
        low = self.initial
        high = max(low, (previous if previous > 0 else low) * 3.0)
        return min(self.maximum, low + (high - low) * rand())


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryBudget:
    """Caps retries to a share of calls so a dead dependency never sees N x load.

    Over the last ``period`` seconds, retries are allowed while
    ``retries < ratio * calls + minimum_per_second * period``. State is per
    point, shared by all its callers; thread- and task-safe.
    """

    ratio: float = 0.2
    minimum_per_second: float = 10.0
    period: float = 10.0

    def __post_init__(self) -> None:
        _check_rate("RetryBudget", "ratio", self.ratio, allow_zero=True)
        _check_factor("RetryBudget", "minimum_per_second", self.minimum_per_second, 0)
        _check_seconds("RetryBudget", "period", self.period, positive=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class Retry:
    """Retry failed attempts that are classified as retryable.

    ``attempts`` counts the first call (``attempts=1`` never retries).
    ``backoff`` gives the delays; a server hint (``Retry-After``, gRPC
    pushback) replaces the computed delay, capped at ``max_server_delay``
    seconds. ``on`` adds exception types to retry beyond the classifier's.
    ``budget`` (on by default) limits retries across calls; ``None`` turns
    it off. Retries stop early when the next wait would overrun the total
    deadline.
    """

    attempts: int = 3
    backoff: Backoff = field(default_factory=Backoff.exponential)
    on: tuple[type[BaseException], ...] = ()
    budget: RetryBudget | None = field(default_factory=RetryBudget)
    max_server_delay: float = 30.0

    def __post_init__(self) -> None:
        _check_int("Retry", "attempts", self.attempts, 1)
        if not isinstance(self.backoff, Backoff):
            raise refuse("Retry", "backoff", "must be a Backoff", self.backoff)
        on = self.on
        if isinstance(on, type):
            on = (on,)
            object.__setattr__(self, "on", on)
        if isinstance(on, (str, bytes)) or not isinstance(on, Iterable):
            raise refuse("Retry", "on", "must be a tuple of exception classes", on)
        on = tuple(on)
        object.__setattr__(self, "on", on)
        for t in on:
            if not (isinstance(t, type) and issubclass(t, Exception)):
                raise refuse("Retry", "on", "must hold Exception subclasses", t)
        if self.budget is not None and not isinstance(self.budget, RetryBudget):
            raise refuse("Retry", "budget", "must be a RetryBudget or None", self.budget)
        _check_seconds("Retry", "max_server_delay", self.max_server_delay)
