"""The three limits one client keeps for the whole process: request rate, tasks in flight, credits.

Each class works alone and shows its live state in its ``repr``:

``RateLimiter``
    A token bucket (in GCRA form: every request books a *slot*, a point in time) shared by
    every request of a client. A 429 from the service pauses *all* requests until its
    Retry-After has passed and lowers the rate multiplicatively; the rate climbs back
    additively while no 429 comes (AIMD). ``reserve(now)``/``book(now)`` are the pure core,
    driven by any clock; ``acquire()`` is the async form.

``ConcurrencyLimit``
    How many generation tasks may be pending or processing at once, on top of
    :class:`anyio.CapacityLimiter`. It shrinks when the service says "too many concurrent
    tasks" and can grow back slowly.

``CreditBudget``
    Credits are reserved before a create (from a :class:`PriceTable` or a user
    :data:`Estimator`), settled with the service's ``usage.credits_reserved``, then committed
    (the task completed) or released (it failed). The budget is never exceeded, whatever the
    number of creates in flight.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any, Final, Literal, TypeAlias

import anyio
import anyio.lowlevel

from .errors import BudgetExceededError
from .models import DEFAULT_PRICES

__all__ = [
    "DEFAULT_PRICES",
    "BudgetExceededError",
    "ConcurrencyLimit",
    "ConcurrencyPermit",
    "CreditBudget",
    "Estimator",
    "PriceTable",
    "RateLimiter",
    "RateSlot",
    "Reservation",
    "ReservationState",
]

_Clock: TypeAlias = Callable[[], float]
_Sleep: TypeAlias = Callable[[float], Awaitable[Any]]

Estimator: TypeAlias = Callable[[str, int | None, Mapping[str, Any]], float | None]
"""``(model, duration, extra fields) -> credits, or None when unknown``.

A user-supplied estimator of what a create will cost; a :class:`PriceTable` is one.
"""

# Slack for float round-off: a bucket level of 0.9999999999 is a whole token, a budget of
# 69.12 holds three reservations of 23.04.
_EPS: Final = 1e-9


def _check_positive(name: str, value: float, *, allow_inf: bool = False) -> float:
    value = float(value)
    if math.isnan(value) or value <= 0 or (math.isinf(value) and not allow_inf):
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return value


def _fmt(value: float) -> str:
    return f"{value:.4g}"


# --------------------------------------------------------------------------------------------
# Request rate
# --------------------------------------------------------------------------------------------


class RateSlot:
    """One booked request slot of a :class:`RateLimiter`: the request may go at :attr:`at`.

    A 429 (:meth:`RateLimiter.on_rate_limited`) moves every slot that has not come yet to
    after the pause, so read :attr:`at` again after one. :meth:`cancel` gives the slot up.
    """

    __slots__ = (
        "_abandoned",
        "_at",
        "_epoch",
        "_limiter",
        "_live",
        "_prev_level",
        "_prev_t",
        "_scope",
    )

    def __init__(self, limiter: RateLimiter) -> None:
        self._limiter = limiter
        self._at = 0.0
        self._prev_t = -math.inf
        self._prev_level = 0.0
        self._epoch = 0
        self._live = False  # still in the limiter's booking queue
        self._abandoned = False  # cancelled, but kept so that a later caller can adopt it
        self._scope: anyio.CancelScope | None = None  # the sleep of acquire(), woken on a 429

    @property
    def at(self) -> float:
        """The clock time at which the request may be sent."""
        return self._at

    def cancel(self) -> None:
        """Give the slot up (only when it will not be used). A no-op once it has come."""
        self._limiter._abandon(self)

    def __repr__(self) -> str:
        state = "cancelled" if self._abandoned else ("booked" if self._live else "done")
        return f"<RateSlot at={self._at:.6g} {state}>"


class RateLimiter:
    """Token bucket shared by every request of a client, paused and slowed down by 429s.

    ``rate`` requests per second (``None`` or ``math.inf``: no rate limit, but 429 pauses
    still apply), at most ``burst`` at once; the bucket starts with ``burst`` tokens, so there
    is never a start-up burst above it.

    Guarantee: in any window ``[x, x + t]``, at most ``burst + ∫ effective_rate`` slots are
    granted, and never more than ``burst + rate * t``.

    On a 429 (:meth:`on_rate_limited`), at a moment ``now``:

    - every request waits until ``paused_until = now + retry_after`` (``default_pause``
      seconds when the service gave no Retry-After); slots already booked after ``now`` are
      moved behind the pause, in their order;
    - the effective rate drops to ``max(min_rate, effective_rate * decrease_factor)`` and stays
      there until the pause ends, then climbs by ``increase_per_second`` every second, up to
      ``rate``. A 429 that arrives while a pause is running (an answer to a request sent before
      it) extends the pause but does not lower the rate again.

    ``clock`` (default :func:`time.monotonic`) and ``sleep`` (default :func:`anyio.sleep`) can
    be injected, so tests drive the limiter in virtual time.
    """

    __slots__ = (
        "_abandoned",
        "_base_rate",
        "_base_time",
        "_burst",
        "_clock",
        "_decrease_factor",
        "_default_pause",
        "_epoch",
        "_increase",
        "_level",
        "_min_rate",
        "_paused_until",
        "_rate",
        "_sleep",
        "_slots",
        "_t",
        "_throttles",
        "_waiters",
    )

    def __init__(
        self,
        rate: float | None,
        burst: int = 1,
        *,
        clock: _Clock | None = None,
        sleep: _Sleep | None = None,
        min_rate: float | None = None,
        decrease_factor: float = 0.5,
        increase_per_second: float | None = None,
        default_pause: float = 2.0,
    ) -> None:
        self._rate = math.inf if rate is None else _check_positive("rate", rate, allow_inf=True)
        if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
            raise ValueError(f"burst must be an int >= 1, got {burst!r}")
        self._burst = burst
        if not 0 < decrease_factor <= 1:
            raise ValueError(f"decrease_factor must be in (0, 1], got {decrease_factor!r}")
        self._decrease_factor = float(decrease_factor)
        if min_rate is None:
            min_rate = self._rate / 16
        self._min_rate = _check_positive("min_rate", min_rate, allow_inf=True)
        if self._min_rate > self._rate:
            raise ValueError(f"min_rate {min_rate!r} is above rate {self._rate!r}")
        if increase_per_second is None:
            increase_per_second = self._rate / 30
        if math.isnan(increase_per_second) or increase_per_second < 0:
            raise ValueError(f"increase_per_second must be >= 0, got {increase_per_second!r}")
        self._increase = float(increase_per_second)
        if math.isnan(default_pause) or default_pause < 0:
            raise ValueError(f"default_pause must be >= 0, got {default_pause!r}")
        self._default_pause = float(default_pause)
        self._clock: _Clock = clock if clock is not None else time.monotonic
        self._sleep: _Sleep = sleep if sleep is not None else anyio.sleep

        # effective rate: _base_rate before _base_time, then + _increase per second up to _rate
        self._base_rate = self._rate
        self._base_time = -math.inf
        self._paused_until = -math.inf
        # the bucket: _level tokens at time _t (the last booked slot, or the last 429)
        self._t = -math.inf
        self._level = float(burst)
        self._slots: deque[RateSlot] = deque()  # booked slots, by time; may not have come yet
        self._abandoned = 0  # cancelled slots still in _slots
        self._epoch = 0  # bumped by every 429
        self._waiters = 0
        self._throttles = 0

    @classmethod
    def unlimited(cls, *, clock: _Clock | None = None, sleep: _Sleep | None = None) -> RateLimiter:
        """A limiter that never waits, except for the pauses of :meth:`on_rate_limited`."""
        return cls(math.inf, clock=clock, sleep=sleep)

    # -- properties -------------------------------------------------------------------------

    @property
    def rate(self) -> float:
        """The configured rate, requests per second (``math.inf``: unlimited)."""
        return self._rate

    @property
    def burst(self) -> int:
        """How many requests may go at once after a calm period."""
        return self._burst

    @property
    def min_rate(self) -> float:
        """The floor of the effective rate after 429s."""
        return self._min_rate

    @property
    def effective_rate(self) -> float:
        """The rate in force now, lowered by 429s and recovering towards :attr:`rate`."""
        return self._rate_at(self._clock())

    @property
    def paused_until(self) -> float:
        """Clock time until which no request may go (in the past when not paused)."""
        return self._paused_until

    @property
    def tokens(self) -> float:
        """Tokens in the bucket now: requests that could go at once (0 while booked ahead)."""
        now = self._clock()
        if math.isinf(self._rate):
            return math.inf
        if self._t > now:
            return 0.0
        return self._level_at(now)

    @property
    def pending(self) -> int:
        """Booked slots that have not come yet."""
        now = self._clock()
        return sum(1 for s in self._slots if s._at > now and not s._abandoned)

    @property
    def waiters(self) -> int:
        """Tasks waiting in :meth:`acquire`."""
        return self._waiters

    @property
    def throttles(self) -> int:
        """How many 429s were reported with :meth:`on_rate_limited`."""
        return self._throttles

    def __repr__(self) -> str:
        now = self._clock()
        paused_for = max(0.0, self._paused_until - now)
        tokens = self.tokens
        return (
            f"<RateLimiter rate={_fmt(self._rate_at(now))}/s (configured {_fmt(self._rate)})"
            f" burst={self._burst} tokens={_fmt(tokens)} paused_for={_fmt(paused_for)}s"
            f" waiters={self._waiters}>"
        )

    # -- the pure core ----------------------------------------------------------------------

    def reserve(self, now: float | None = None) -> float:
        """Book the next slot at clock time ``now``; return how long to wait for it (>= 0).

        A later 429 moves the slot behind its pause: use :meth:`book` to follow it, or
        :meth:`acquire`, which does.
        """
        if now is None:
            now = self._clock()
        return self.book(now).at - now

    def book(self, now: float | None = None) -> RateSlot:
        """Book the next slot at clock time ``now`` (default: the clock) and return it.

        A slot given up by a cancelled caller and not yet come is handed on first; otherwise
        the slot is after every slot already booked (first come, first served).
        """
        if now is None:
            now = self._clock()
        self._prune(now)
        if self._abandoned:
            for slot in self._slots:
                if slot._abandoned and slot._at >= now:
                    slot._abandoned = False
                    self._abandoned -= 1
                    return slot
        slot = RateSlot(self)
        self._book_into(slot, now)
        return slot

    def on_rate_limited(self, retry_after: float | None = None) -> None:
        """The service answered 429: pause every request and lower the rate.

        ``retry_after`` is the service's Retry-After in seconds; ``None`` means
        ``default_pause``.
        """
        now = self._clock()
        pause = self._default_pause if retry_after is None else float(retry_after)
        if math.isnan(pause) or pause < 0:
            pause = self._default_pause
        self._throttles += 1
        self._prune(now)
        # take back every slot that has not come yet, newest first, restoring the bucket
        moved: list[RateSlot] = []
        while self._slots and self._slots[-1]._at > now:
            slot = self._pop_last()
            if slot._abandoned:
                slot._abandoned = False
                self._abandoned -= 1
            else:
                moved.append(slot)
        moved.reverse()
        # checkpoint the bucket at `now` under the old rate, then change the rate
        if not math.isinf(self._rate):
            self._level = self._level_at(now)
            self._t = max(self._t, now)
            current = self._rate_at(now)
            if now >= self._paused_until:  # a new episode: lower the rate once
                current = max(self._min_rate, current * self._decrease_factor)
            self._base_rate = current
        self._paused_until = max(self._paused_until, now + pause)
        self._base_time = self._paused_until
        self._epoch += 1
        for slot in moved:
            self._book_into(slot, now)
            if slot._scope is not None:
                slot._scope.cancel()  # wake its acquire() to wait for the new time

    # -- async ------------------------------------------------------------------------------

    async def acquire(self) -> None:
        """Wait for a slot. Cancellation-safe: a cancelled waiter gives its slot up."""
        self._waiters += 1
        slot = self.book(self._clock())
        try:
            while True:
                now = self._clock()
                delay = max(slot._at, self._paused_until) - now
                with anyio.CancelScope() as scope:
                    slot._scope = scope
                    try:
                        await self._sleep(max(0.0, delay))
                    finally:
                        slot._scope = None
                if scope.cancelled_caught:
                    continue  # a 429 moved the slot
                now = self._clock()
                if slot._at <= now:
                    if now >= self._paused_until:
                        return
                    # a 429 came after the slot but before this task ran: book anew
                    self._abandon(slot)
                    slot = self.book(now)
        except BaseException:
            self._abandon(slot)
            raise
        finally:
            self._waiters -= 1

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(self, *exc_info: object) -> None:
        return None

    # -- internals --------------------------------------------------------------------------

    def _rate_at(self, t: float) -> float:
        if t < self._base_time or self._increase == 0:
            return self._base_rate
        return min(self._rate, self._base_rate + self._increase * (t - self._base_time))

    def _integral(self, a: float, c: float) -> float:
        """Tokens the effective rate adds over ``[a, c]``."""
        if c <= a:
            return 0.0
        total = 0.0
        rb, tb, k, cap = self._base_rate, self._base_time, self._increase, self._rate
        if a < tb:  # flat at the lowered rate until the pause ends
            end = min(c, tb)
            total += rb * (end - a)
            a = end
            if a >= c:
                return total
        if k == 0 or rb >= cap:
            return total + rb * (c - a)
        full = tb + (cap - rb) / k  # the moment the configured rate is reached again
        if a < full:
            end = min(c, full)
            total += (end - a) * (rb + k * ((end + a) / 2 - tb))  # trapezoid of a line
            a = end
            if a >= c:
                return total
        return total + cap * (c - a)

    def _level_at(self, t: float) -> float:
        if t <= self._t:
            return self._level
        if self._t == -math.inf:
            return float(self._burst)
        return min(float(self._burst), self._level + self._integral(self._t, t))

    def _book_into(self, slot: RateSlot, now: float) -> None:
        slot._prev_t, slot._prev_level = self._t, self._level
        if math.isinf(self._rate):
            at = max(now, self._paused_until)
        else:
            t0 = max(now, self._paused_until, self._t)
            level = self._level_at(t0)
            if level >= 1 - _EPS:
                at = t0
                self._level = max(0.0, level - 1)
            else:
                # the rate only climbs until the next 429 (which re-books this slot), so
                # the rate at t0 gives a slot that is never early
                at = t0 + (1 - level) / self._rate_at(t0)
                self._level = 0.0
            self._t = at
        slot._at = at
        slot._epoch = self._epoch
        slot._live = True
        slot._abandoned = False
        self._slots.append(slot)

    def _pop_last(self) -> RateSlot:
        slot = self._slots.pop()
        self._t, self._level = slot._prev_t, slot._prev_level
        slot._live = False
        return slot

    def _prune(self, now: float) -> None:
        while self._slots and self._slots[0]._at < now:
            slot = self._slots.popleft()
            slot._live = False
            if slot._abandoned:
                slot._abandoned = False
                self._abandoned -= 1

    def _abandon(self, slot: RateSlot) -> None:
        if not slot._live or slot._abandoned:
            return
        if self._slots[-1] is slot and slot._epoch == self._epoch:
            # the newest booking: hand its token back, and any cancelled ones before it
            self._pop_last()
            while (
                self._slots and self._slots[-1]._abandoned and self._slots[-1]._epoch == self._epoch
            ):
                self._pop_last()._abandoned = False
                self._abandoned -= 1
        else:
            # someone booked after it: keep the slot for the next caller of book()
            slot._abandoned = True
            self._abandoned += 1


# --------------------------------------------------------------------------------------------
# Tasks in flight
# --------------------------------------------------------------------------------------------


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
        clock: _Clock | None = None,
    ) -> None:
        if isinstance(max_in_flight, bool) or not isinstance(max_in_flight, int):
            raise TypeError(f"max_in_flight must be an int, got {max_in_flight!r}")
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1, got {max_in_flight!r}")
        if grow_every is not None:
            grow_every = _check_positive("grow_every", grow_every)
        self._configured = max_in_flight
        self._grow_every = grow_every
        self._clock: _Clock = clock if clock is not None else time.monotonic
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


# --------------------------------------------------------------------------------------------
# Credits
# --------------------------------------------------------------------------------------------

_DEFAULT_DURATIONS: Final[Mapping[str, int]] = {"sora-2-preview": 4}


class PriceTable:
    """Credits a create costs, by model and duration; ``None`` when the price is not known.

    A price table is also an :data:`Estimator`: ``table(model, duration, extra)``.
    """

    __slots__ = ("_default_durations", "_prices")

    def __init__(
        self,
        prices: Mapping[str, Mapping[int, float]] | None = None,
        default_durations: Mapping[str, int] | None = None,
    ) -> None:
        source = DEFAULT_PRICES if prices is None else prices
        self._prices = {model: dict(by_duration) for model, by_duration in source.items()}
        defaults = _DEFAULT_DURATIONS if default_durations is None else default_durations
        self._default_durations = dict(defaults)
        for model, by_duration in self._prices.items():
            for duration, credits in by_duration.items():
                if math.isnan(credits) or credits < 0:
                    raise ValueError(f"price of {model} {duration} s must be >= 0: {credits!r}")

    def price(self, model: str, duration: int | None = None) -> float | None:
        """Credits for ``model`` at ``duration`` seconds (None: the model's default)."""
        by_duration = self._prices.get(model)
        if by_duration is None:
            return None
        if duration is None:
            duration = self._default_durations.get(model)
            if duration is None:
                return None
        return by_duration.get(duration)

    @property
    def models(self) -> frozenset[str]:
        """The models with at least one known price."""
        return frozenset(self._prices)

    def __call__(
        self, model: str, duration: int | None, extra: Mapping[str, Any] | None = None
    ) -> float | None:
        """The :data:`Estimator` form; ``extra`` fields do not change a listed price."""
        return self.price(model, duration)

    def __repr__(self) -> str:
        return f"<PriceTable {self._prices!r}>"


ReservationState: TypeAlias = Literal["open", "committed", "released"]


class Reservation:
    """Credits held in a :class:`CreditBudget` for one create.

    :meth:`settle` it with the service's ``usage.credits_reserved``, then :meth:`commit` it
    (the task completed) or :meth:`release` it (it failed). Closing is idempotent: the first
    of ``commit``/``release`` wins, the later calls do nothing.
    """

    __slots__ = ("_amount", "_budget", "_estimate", "_state")

    def __init__(self, budget: CreditBudget, amount: float) -> None:
        self._budget = budget
        self._amount = amount
        self._estimate = amount
        self._state: ReservationState = "open"

    @property
    def amount(self) -> float:
        """Credits held now: the estimate, or what :meth:`settle` set."""
        return self._amount

    @property
    def estimate(self) -> float:
        """The amount first reserved."""
        return self._estimate

    @property
    def state(self) -> ReservationState:
        """``"open"``, ``"committed"`` or ``"released"``."""
        return self._state

    def settle(self, actual: float) -> None:
        """Replace the held amount by the service's figure. No-op once closed.

        An ``actual`` above the estimate is recorded even if the budget then holds more than
        its total; no new reservation fits until it is back under.
        """
        actual = _check_amount(actual)
        if self._state == "open":
            self._budget._resize(self._amount, actual)
            self._amount = actual

    def commit(self) -> None:
        """The task completed: the held credits become spent."""
        if self._state == "open":
            self._state = "committed"
            self._budget._close(self._amount, spend=True)

    def release(self) -> None:
        """The task failed: the credits are freed (or spent, with ``release_on_failure=False``)."""
        if self._state == "open":
            self._state = "released"
            self._budget._close(self._amount, spend=not self._budget._release_on_failure)

    def __repr__(self) -> str:
        return f"<Reservation amount={_fmt(self._amount)} {self._state}>"


def _check_amount(amount: float) -> float:
    amount = float(amount)
    if math.isnan(amount) or amount < 0 or math.isinf(amount):
        raise ValueError(f"a credit amount must be a finite number >= 0, got {amount!r}")
    return amount


class CreditBudget:
    """At most ``total`` credits spent or held, whatever the number of creates in flight.

    ``release_on_failure``: whether a failed task's credits come back (the service's
    behaviour is not documented; with ``False``, a released reservation counts as spent).

    :meth:`reserve` waits while open reservations could still be released and make room, and
    raises :class:`BudgetExceededError` as soon as the amount can never fit. Waiters are
    woken on every settle, commit and release; they are not served in order.
    """

    __slots__ = (
        "_changed",
        "_open",
        "_release_on_failure",
        "_reserved",
        "_spent",
        "_total",
        "_waiters",
    )

    def __init__(self, total: float, *, release_on_failure: bool = True) -> None:
        total = float(total)
        if math.isnan(total) or total < 0:
            raise ValueError(f"total must be >= 0, got {total!r}")
        self._total = total
        self._release_on_failure = release_on_failure
        self._spent = 0.0
        self._reserved = 0.0
        self._open = 0
        self._waiters = 0
        self._changed: anyio.Event | None = None

    @property
    def total(self) -> float:
        """The budget."""
        return self._total

    @property
    def spent(self) -> float:
        """Credits of committed reservations (and released ones, without release_on_failure)."""
        return self._spent

    @property
    def reserved(self) -> float:
        """Credits held by open reservations."""
        return self._reserved

    @property
    def available(self) -> float:
        """``total - spent - reserved``; negative only after a settle above the estimate."""
        return self._total - self._spent - self._reserved

    @property
    def release_on_failure(self) -> bool:
        """Whether a released reservation frees its credits."""
        return self._release_on_failure

    @property
    def open_reservations(self) -> int:
        """Reservations neither committed nor released."""
        return self._open

    @property
    def waiters(self) -> int:
        """Tasks waiting in :meth:`reserve`."""
        return self._waiters

    def _fits(self, amount: float) -> bool:
        return self._spent + self._reserved + amount <= self._total + _EPS * max(1.0, self._total)

    def _never_fits(self, amount: float) -> bool:
        floor = self._spent if self._release_on_failure else self._spent + self._reserved
        return floor + amount > self._total + _EPS * max(1.0, self._total)

    def try_reserve(self, amount: float) -> Reservation | None:
        """Hold ``amount`` credits if they fit now, else ``None``."""
        amount = _check_amount(amount)
        if not self._fits(amount):
            return None
        return self._take(amount)

    async def reserve(self, amount: float) -> Reservation:
        """Hold ``amount`` credits, waiting for open reservations to make room.

        :raises BudgetExceededError: as soon as ``amount`` can never fit.
        """
        amount = _check_amount(amount)
        while True:
            if self._fits(amount):
                await anyio.lowlevel.checkpoint()
                if self._fits(amount):  # still, after the checkpoint
                    return self._take(amount)
                continue
            if self._never_fits(amount):
                raise BudgetExceededError(
                    f"{amount:g} credits can never fit in the budget: total={self._total:g}"
                    f" spent={self._spent:g} reserved={self._reserved:g}"
                    f" (release_on_failure={self._release_on_failure})"
                )
            if self._changed is None:
                self._changed = anyio.Event()
            event = self._changed
            self._waiters += 1
            try:
                await event.wait()
            finally:
                self._waiters -= 1

    def _take(self, amount: float) -> Reservation:
        self._reserved += amount
        self._open += 1
        return Reservation(self, amount)

    def _resize(self, old: float, new: float) -> None:
        self._reserved += new - old
        self._notify()

    def _close(self, amount: float, *, spend: bool) -> None:
        self._open -= 1
        self._reserved = 0.0 if self._open == 0 else max(0.0, self._reserved - amount)
        if spend:
            self._spent += amount
        self._notify()

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    def __repr__(self) -> str:
        return (
            f"<CreditBudget total={_fmt(self._total)} spent={_fmt(self._spent)}"
            f" reserved={_fmt(self._reserved)} available={_fmt(self.available)}"
            f" open={self._open} waiters={self._waiters}>"
        )
