"""Tasks in flight: how many generation tasks may be pending or processing at once.

On top of :class:`anyio.CapacityLimiter`; it shrinks when the service says "too many
concurrent tasks" and can grow back slowly.
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio

from ._common import Clock, check_positive

__all__ = ["ConcurrencyLimit", "ConcurrencyPermit"]


class ConcurrencyPermit:
    """One task's place in a :class:`ConcurrencyLimit`; :meth:`release` it once it is done."""

    __slots__ = ("_limit", "_released")

    def __init__(self, limit: ConcurrencyLimit) -> None:
        self._limit = limit
        self._released = False

    @property
    def released(self) -> bool:
        """Whether the permit was given back."""
        return self._released

    def release(self) -> None:
        """Give the place back. Idempotent."""
        if not self._released:
            self._released = True
            self._limit._release(self)

    def __repr__(self) -> str:
        return f"<ConcurrencyPermit {'released' if self._released else 'held'}>"


class ConcurrencyLimit:
    """At most ``max_in_flight`` tasks pending or processing at once (an anyio CapacityLimiter).

    :meth:`shrink` lowers the limit when the service says "too many concurrent tasks" (never
    below 1; tasks already in flight keep their permits). With ``grow_every`` seconds, the
    limit then grows back by one for every ``grow_every`` seconds without a shrink, up to
    ``max_in_flight`` (applied lazily, on the next acquire, release or read of :attr:`limit`);
    :meth:`grow` does it by hand.
    """

    __slots__ = ("_clock", "_configured", "_grow_every", "_held", "_last_change", "_limiter")

    def __init__(
        self,
        max_in_flight: int,
        *,
        grow_every: float | None = None,
        clock: Clock | None = None,
    ) -> None:
        if isinstance(max_in_flight, bool) or not isinstance(max_in_flight, int):
            raise TypeError(f"max_in_flight must be an int, got {max_in_flight!r}")
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1, got {max_in_flight!r}")
        if grow_every is not None:
            grow_every = check_positive("grow_every", grow_every)
        self._configured = max_in_flight
        self._grow_every = grow_every
        self._clock: Clock = clock if clock is not None else time.monotonic
        self._last_change = -math.inf
        self._limiter = anyio.CapacityLimiter(max_in_flight)
        self._held: dict[ConcurrencyPermit, None] = {}  # in acquisition order

    @property
    def configured(self) -> int:
        """The configured maximum."""
        return self._configured

    @property
    def limit(self) -> int:
        """The limit in force now (lowered by :meth:`shrink`)."""
        self._maybe_grow()
        return int(self._limiter.total_tokens)

    @property
    def in_flight(self) -> int:
        """Permits held now (may exceed :attr:`limit` right after a shrink)."""
        return self._limiter.borrowed_tokens

    @property
    def waiters(self) -> int:
        """Tasks waiting in :meth:`acquire`."""
        return self._limiter.statistics().tasks_waiting

    async def acquire(self) -> ConcurrencyPermit:
        """Wait for a place and return its permit (cancellation-safe, first come first served).

        Give the place back with ``permit.release()`` or :meth:`release`.
        """
        self._maybe_grow()
        permit = ConcurrencyPermit(self)
        await self._limiter.acquire_on_behalf_of(permit)
        self._held[permit] = None
        return permit

    def try_acquire(self) -> ConcurrencyPermit | None:
        """A permit if a place is free now and nobody waits for one, else ``None``."""
        self._maybe_grow()
        permit = ConcurrencyPermit(self)
        try:
            self._limiter.acquire_on_behalf_of_nowait(permit)
        except anyio.WouldBlock:
            return None
        self._held[permit] = None
        return permit

    def release(self, permit: ConcurrencyPermit | None = None) -> None:
        """Release ``permit`` (same as ``permit.release()``), or without one the oldest held.

        :raises RuntimeError: without a permit, when none is held.
        """
        if permit is None:
            if not self._held:
                raise RuntimeError("release() without a permit, but no permit is held")
            permit = next(iter(self._held))
        elif permit._limit is not self:
            raise ValueError("this permit belongs to another ConcurrencyLimit")
        permit.release()

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[ConcurrencyPermit]:
        """``async with limit.slot():`` hold a place for the block."""
        permit = await self.acquire()
        try:
            yield permit
        finally:
            permit.release()

    def shrink(self, new_max: int) -> int:
        """Lower the limit to ``new_max`` (never below 1, never raises it); return the limit."""
        self._maybe_grow()
        current = int(self._limiter.total_tokens)
        new = max(1, min(current, int(new_max)))
        self._limiter.total_tokens = new
        self._last_change = self._clock()
        return new

    def grow(self, by: int = 1) -> int:
        """Raise the limit by ``by``, up to :attr:`configured`; return the limit."""
        if by < 0:
            raise ValueError(f"by must be >= 0, got {by!r}")
        new = min(self._configured, int(self._limiter.total_tokens) + by)
        self._limiter.total_tokens = new
        self._last_change = self._clock()
        return new

    def _release(self, permit: ConcurrencyPermit) -> None:
        del self._held[permit]
        self._limiter.release_on_behalf_of(permit)
        self._maybe_grow()

    def _maybe_grow(self) -> None:
        if self._grow_every is None or self._limiter.total_tokens >= self._configured:
            return
        steps = int((self._clock() - self._last_change) / self._grow_every)
        if steps > 0:
            self._limiter.total_tokens = min(
                self._configured, int(self._limiter.total_tokens) + steps
            )
            self._last_change += steps * self._grow_every

    def __repr__(self) -> str:
        return (
            f"<ConcurrencyLimit in_flight={self.in_flight} limit={self.limit}"
            f" (configured {self._configured}) waiters={self.waiters}>"
        )
