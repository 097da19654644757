"""The request rate: a token bucket (in GCRA form) paused and slowed down by 429s.

Every request books a *slot*, a point in time. A 429 from the service pauses *all* requests
until its Retry-After has passed and lowers the rate multiplicatively; the rate climbs back
additively while no 429 comes (AIMD). ``reserve(now)``/``book(now)`` are the pure core, driven
by any clock; ``acquire()`` is the async form.
"""

from __future__ import annotations

import math
import time
from collections import deque

import anyio
import anyio.lowlevel

from ._bucket import TokenBucket
from ._common import Clock, Sleep, check_positive, fmt

__all__ = ["RateLimiter", "RateSlot"]


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
        "_prev",
        "_scope",
    )

    def __init__(self, limiter: RateLimiter) -> None:
        self._limiter = limiter
        self._at = 0.0
        self._prev = (-math.inf, 0.0)  # the bucket's (time, level) before this booking
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
        "_bucket",
        "_clock",
        "_decrease_factor",
        "_default_pause",
        "_epoch",
        "_min_rate",
        "_paused_until",
        "_sleep",
        "_slots",
        "_throttles",
        "_waiters",
    )

    def __init__(
        self,
        rate: float | None,
        burst: int = 1,
        *,
        clock: Clock | None = None,
        sleep: Sleep | None = None,
        min_rate: float | None = None,
        decrease_factor: float = 0.5,
        increase_per_second: float | None = None,
        default_pause: float = 2.0,
    ) -> None:
        rate_, self._min_rate, self._decrease_factor, increase, self._default_pause = _checked(
            rate,
            burst,
            min_rate=min_rate,
            decrease_factor=decrease_factor,
            increase_per_second=increase_per_second,
            default_pause=default_pause,
        )
        # the bucket and the effective rate (lowered by 429s, climbing back)
        self._bucket = TokenBucket(rate_, burst, increase)
        self._clock: Clock = clock if clock is not None else time.monotonic
        self._sleep: Sleep = sleep if sleep is not None else anyio.sleep

        self._paused_until = -math.inf
        self._slots: deque[RateSlot] = deque()  # booked slots, by time; may not have come yet
        self._abandoned = 0  # cancelled slots still in _slots
        self._epoch = 0  # bumped by every 429
        self._waiters = 0
        self._throttles = 0

    @classmethod
    def unlimited(cls, *, clock: Clock | None = None, sleep: Sleep | None = None) -> RateLimiter:
        """A limiter that never waits, except for the pauses of :meth:`on_rate_limited`."""
        return cls(math.inf, clock=clock, sleep=sleep)

    # -- properties -------------------------------------------------------------------------

    @property
    def rate(self) -> float:
        """The configured rate, requests per second (``math.inf``: unlimited)."""
        return self._bucket.rate

    @property
    def burst(self) -> int:
        """How many requests may go at once after a calm period."""
        return self._bucket.burst

    @property
    def min_rate(self) -> float:
        """The floor of the effective rate after 429s."""
        return self._min_rate

    @property
    def effective_rate(self) -> float:
        """The rate in force now, lowered by 429s and recovering towards :attr:`rate`."""
        return self._bucket.rate_at(self._clock())

    @property
    def paused_until(self) -> float:
        """Clock time until which no request may go (in the past when not paused)."""
        return self._paused_until

    @property
    def pause_left(self) -> float:
        """Seconds until requests may go again after a 429 (0.0 when not paused)."""
        return max(0.0, self._paused_until - self._clock())

    @property
    def tokens(self) -> float:
        """Tokens in the bucket now: requests that could go at once (0 while booked ahead)."""
        now = self._clock()
        return self._bucket.tokens(now)

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
            f"<RateLimiter rate={fmt(self._bucket.rate_at(now))}/s"
            f" (configured {fmt(self._bucket.rate)}) burst={self._bucket.burst}"
            f" tokens={fmt(tokens)} paused_for={fmt(paused_for)}s"
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
        new_episode = now >= self._paused_until  # lower the rate once an episode
        self._paused_until = max(self._paused_until, now + pause)
        factor = self._decrease_factor if new_episode else None
        self._bucket.slow_down(now, self._paused_until, factor, self._min_rate)
        self._epoch += 1
        for slot in moved:
            self._book_into(slot, now)
            if slot._scope is not None:
                slot._scope.cancel()  # wake its acquire() to wait for the new time

    def take_now(self) -> bool:
        """Take a token if one is free now (no pause, nothing booked): no wait, no checkpoint,
        nothing allocated. False: call :meth:`acquire`, which waits its turn."""
        now = self._clock()
        if now < self._paused_until or self._abandoned:
            return False
        if self._slots:
            self._prune(now)
            if self._slots:  # a slot booked for this very instant: it goes first
                return False
        return self._bucket.take_now(now)  # no slot kept: a 429 would not move it

    # -- async ------------------------------------------------------------------------------

    async def acquire(self) -> None:
        """Wait for a slot. Cancellation-safe: a cancelled waiter gives its slot up. A token
        free now is taken as :meth:`take_now` does, after a check that the caller is not
        cancelled; every earlier caller holds an earlier slot (first come, first served)."""
        await anyio.lowlevel.checkpoint_if_cancelled()
        if self.take_now():
            return
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

    def _book_into(self, slot: RateSlot, now: float) -> None:
        slot._prev = self._bucket.state
        slot._at = self._bucket.take(max(now, self._paused_until))
        slot._epoch = self._epoch
        slot._live = True
        slot._abandoned = False
        self._slots.append(slot)

    def _pop_last(self) -> RateSlot:
        slot = self._slots.pop()
        self._bucket.state = slot._prev
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


def _checked(
    rate: float | None,
    burst: int,
    *,
    min_rate: float | None,
    decrease_factor: float,
    increase_per_second: float | None,
    default_pause: float,
) -> tuple[float, float, float, float, float]:
    """The limiter's numbers, checked: rate, min_rate, decrease, increase, default pause."""
    rate_ = math.inf if rate is None else check_positive("rate", rate, allow_inf=True)
    if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
        raise ValueError(f"burst must be an int >= 1, got {burst!r}")
    if not 0 < decrease_factor <= 1:
        raise ValueError(f"decrease_factor must be in (0, 1], got {decrease_factor!r}")
    if min_rate is None:
        min_rate = rate_ / 16
    min_rate_ = check_positive("min_rate", min_rate, allow_inf=True)
    if min_rate_ > rate_:
        raise ValueError(f"min_rate {min_rate!r} is above rate {rate_!r}")
    if increase_per_second is None:
        increase_per_second = rate_ / 30
    if math.isnan(increase_per_second) or increase_per_second < 0:
        raise ValueError(f"increase_per_second must be >= 0, got {increase_per_second!r}")
    if math.isnan(default_pause) or default_pause < 0:
        raise ValueError(f"default_pause must be >= 0, got {default_pause!r}")
    return (
        rate_,
        min_rate_,
        float(decrease_factor),
        float(increase_per_second),
        float(default_pause),
    )
