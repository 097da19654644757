"""The interface of the limits, apart from their backends (in-process, or Redis).

The dispatcher and the transport see only these: a rate gate, a concurrency limit that hands
out permits, a budget that hands out reservations. :class:`~.rate.RateLimiter`,
:class:`~.concurrency.ConcurrencyLimit` and :class:`~.credits.CreditBudget` are the in-process
backend; :mod:`.redis_limits` shares them between processes.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from ..errors import EvolinkError

__all__ = ["Budget", "Hold", "Permit", "RateGate", "SharedLimitsError", "SlotLimit"]


class SharedLimitsError(EvolinkError):
    """The limits shared through Redis cannot be used (``unreachable``, or a budget that
    differs from the one the namespace already has): no request is sent without them.
    (An :class:`~evolink_async.errors.EvolinkError`; defined with the backends it is about.)"""

    def __init__(self, message: str, *, unreachable: bool = False) -> None:
        super().__init__(message)
        self.unreachable = unreachable


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
    def configured(self) -> int: ...

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
