"""``Limits``: the rate, the client's tasks in flight and its credits, as one gate.

The transport passes it before every request (:meth:`Limits.acquire`) and tells it of every 429
(:meth:`Limits.on_rate_limited`). One 429 is handled here, in one place: the rate pauses for
its Retry-After and slows down (AIMD); a "too many concurrent tasks" 429 also shrinks every
concurrency limit in force. Whoever wants to know (a batch's statistics and events) subscribes
with :meth:`Limits.subscribe`; :attr:`Limits.throttles` counts the 429s.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from types import TracebackType

import attrs

from ..errors import RateLimitError
from .backend import Budget, RateGate, SlotLimit
from .rate import RateLimiter

__all__ = ["LimitSettings", "Limits", "Throttle"]

logger = logging.getLogger("evolink_async")


@attrs.frozen
class Throttle:
    """One 429 as the limits took it: the pause it asked for, the rate in force after it,
    and whether it was the service's "too many concurrent tasks"."""

    retry_after: float | None
    effective_rate: float
    concurrency: bool


@attrs.frozen
class LimitSettings:
    """What a client asks of its limits, given to :meth:`Limits.configure` by the client (a
    shared backend builds its parts from it). The API key never shows in a repr."""

    rate: float | None
    burst: int
    max_in_flight: int | None
    budget: float | None
    api_key: str = attrs.field(repr=False)
    running: Callable[[], int] | None = None
    grow_every: float = 60.0


class Limits:
    """The limits every request of one client shares (``None``: not limited locally).

    ``running`` tells how many tasks run at the service now (the poller's count); a
    concurrency 429 shrinks each concurrency limit to at most that, and below what it holds.
    """

    __slots__ = ("_extra", "_listeners", "budget", "concurrency", "rate", "running", "throttles")

    def __init__(
        self,
        rate: RateGate | None = None,
        concurrency: SlotLimit | None = None,
        budget: Budget | None = None,
        *,
        running: Callable[[], int] | None = None,
    ) -> None:
        self.rate: RateGate = rate if rate is not None else RateLimiter.unlimited()
        self.concurrency = concurrency
        self.budget = budget
        self.running = running
        #: 429s seen so far
        self.throttles = 0
        self._listeners: list[Callable[[Throttle], object]] = []
        self._extra: list[SlotLimit] = []

    def __repr__(self) -> str:
        return (
            f"<Limits rate={self.rate!r} concurrency={self.concurrency!r}"
            f" budget={self.budget!r} throttles={self.throttles}>"
        )

    def configure(self, settings: LimitSettings) -> None:
        """Take a client's settings: the in-process bundle keeps the parts it was built with
        (a shared backend builds its parts here)."""

    async def __aenter__(self) -> Limits:
        """The limits' async context, entered by a client used with ``async with`` (a shared
        backend runs its background tasks in it; nothing here)."""
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Leave the context (the client has closed the limits already)."""

    async def aclose(self) -> None:
        """Give back what the limits hold outside this process (nothing here)."""

    async def acquire(self) -> None:
        """Wait until a request may go (the rate, and any pause a 429 asked for)."""
        await self.rate.acquire()

    def take_now(self) -> bool:
        """Let a request go at once if the rate has a token free now, at no cost (the
        in-process limiter only; a shared rate is always asked with :meth:`acquire`)."""
        rate = self.rate
        return isinstance(rate, RateLimiter) and rate.take_now()

    def on_rate_limited(self, error: RateLimitError) -> None:
        """The service answered 429: pause and slow the rate, shrink concurrency on a
        "too many concurrent tasks" answer, then tell the subscribers."""
        self.throttles += 1
        self.rate.on_rate_limited(error.retry_after)
        concurrency = error.is_concurrency_limit
        if concurrency:
            self._shrink()
        throttle = Throttle(error.retry_after, self.rate.effective_rate, concurrency)
        for listener in list(self._listeners):
            try:
                listener(throttle)
            except Exception:  # an observer must not break the request that saw the 429
                logger.exception("a 429 listener failed on %r", throttle)

    def _shrink(self) -> None:
        # The service holds at most the tasks running there now. Slots also count creates
        # still waiting for an answer (or retrying this very 429), so "in_flight - 1" alone
        # never converged: one 429 per create, each halving the rate.
        running = self.running() if self.running is not None else None
        for limit in self.concurrency_limits():
            target = limit.in_flight - 1 if running is None else min(limit.in_flight - 1, running)
            limit.shrink(max(1, target))

    def concurrency_limits(self) -> list[SlotLimit]:
        """Every concurrency limit in force: the client's, then those of running batches."""
        own = [self.concurrency] if self.concurrency is not None else []
        return own + self._extra

    def add_concurrency(self, limit: SlotLimit) -> None:
        """Put a batch's own concurrency limit in force (shrunk by 429s too)."""
        self._extra.append(limit)

    def discard_concurrency(self, limit: SlotLimit) -> None:
        """Take a limit of :meth:`add_concurrency` out of force (a no-op if it is not)."""
        if limit in self._extra:
            self._extra.remove(limit)

    def subscribe(self, listener: Callable[[Throttle], object]) -> None:
        """Call ``listener`` with every 429 from now on."""
        self._listeners.append(listener)

    def unsubscribe(self, listener: Callable[[Throttle], object]) -> None:
        """Stop calling ``listener`` (a no-op when it is not subscribed)."""
        if listener in self._listeners:
            self._listeners.remove(listener)
