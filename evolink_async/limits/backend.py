"""The interface of the limits, apart from their backends (in-process, or Redis).

The dispatcher and the transport see only these: a rate gate, a concurrency limit that hands
out permits, a budget that hands out reservations. :class:`~.rate.RateLimiter`,
:class:`~.concurrency.ConcurrencyLimit` and :class:`~.credits.CreditBudget` are the in-process
backend; :mod:`.redis_limits` shares them between processes.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

__all__ = ["Budget", "Hold", "Permit", "RateGate", "SlotLimit"]


@runtime_checkable
class RateGate(Protocol):
    """The request rate: every request passes :meth:`acquire`; a 429 pauses and slows it."""

    @property
    def effective_rate(self) -> float: ...

    @property
    def pause_left(self) -> float: ...

    async def acquire(self) -> None: ...

    def on_rate_limited(self, retry_after: float | None = None) -> None: ...


class Permit(Protocol):
    """One place held in a :class:`SlotLimit`; ``release`` is idempotent."""

    def release(self) -> None: ...


@runtime_checkable
class SlotLimit(Protocol):
    """Tasks in flight at once."""

    @property
    def in_flight(self) -> int: ...

    async def acquire(self) -> Permit: ...

    def shrink(self, new_max: int) -> int: ...


class Hold(Protocol):
    """Credits held for one create: settled with the service's figure, then closed."""

    @property
    def amount(self) -> float: ...

    def settle(self, actual: float) -> None: ...

    def commit(self) -> None: ...

    def release(self) -> None: ...


@runtime_checkable
class Budget(Protocol):
    """Credits that may be reserved in all."""

    @property
    def reserved(self) -> float: ...

    async def reserve(self, amount: float) -> Hold: ...
