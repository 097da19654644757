"""The token bucket's arithmetic under the in-process rate limiter (``rate.RateLimiter``):
tokens at a time, filled at a rate that a 429 lowers and that then climbs back."""

from __future__ import annotations

import math

from ._common import EPS

__all__ = ["TokenBucket"]


class TokenBucket:
    """The token bucket's arithmetic: ``level`` tokens at time ``t`` (the last booked slot,
    or the last 429), filled at the effective rate: ``base_rate`` until ``base_time``, then
    climbing by ``increase`` a second up to ``rate``."""

    __slots__ = ("base_rate", "base_time", "burst", "increase", "level", "rate", "t", "unlimited")

    def __init__(self, rate: float, burst: int, increase: float) -> None:
        self.rate = rate
        #: no rate at all (only a 429's pause holds requests); ``rate`` is never changed
        self.unlimited = math.isinf(rate)
        self.burst = burst
        self.increase = increase
        self.base_rate = rate
        self.base_time = -math.inf
        self.t = -math.inf
        self.level = float(burst)

    @property
    def state(self) -> tuple[float, float]:
        return self.t, self.level

    @state.setter
    def state(self, value: tuple[float, float]) -> None:
        self.t, self.level = value

    def rate_at(self, t: float) -> float:
        """The effective rate at ``t``."""
        if t < self.base_time or self.increase == 0:
            return self.base_rate
        return min(self.rate, self.base_rate + self.increase * (t - self.base_time))

    def tokens_added(self, a: float, c: float) -> float:
        """Tokens the effective rate adds over ``[a, c]``."""
        if c <= a:
            return 0.0
        total = 0.0
        rb, tb, k, cap = self.base_rate, self.base_time, self.increase, self.rate
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

    def level_at(self, t: float) -> float:
        if t <= self.t:
            return self.level
        if self.t == -math.inf:
            return float(self.burst)
        return min(float(self.burst), self.level + self.tokens_added(self.t, t))

    def ready(self, now: float) -> bool:
        """Whether a token is there at ``now`` (nothing booked after it)."""
        if math.isinf(self.rate):
            return True
        return self.t <= now and self.level_at(now) >= 1 - EPS

    def tokens(self, now: float) -> float:
        if math.isinf(self.rate):
            return math.inf
        if self.t > now:
            return 0.0
        return self.level_at(now)

    def take_now(self, now: float) -> bool:
        """Take a token if one is there at ``now``."""
        if self.unlimited:
            return True
        if not self.ready(now):
            return False
        self.take(now)
        return True

    def take(self, earliest: float) -> float:
        """Take one token at ``earliest`` or later; return when it is there."""
        if math.isinf(self.rate):
            return earliest
        t0 = max(earliest, self.t)
        level = self.level_at(t0)
        if level >= 1 - EPS:
            at = t0
            self.level = max(0.0, level - 1)
        else:
            # the rate only climbs until the next 429 (which re-books this slot), so
            # the rate at t0 gives a slot that is never early
            at = t0 + (1 - level) / self.rate_at(t0)
            self.level = 0.0
        self.t = at
        return at

    def slow_down(self, now: float, until: float, factor: float | None, floor: float) -> None:
        """A 429 at ``now``: checkpoint the bucket under the old rate, then hold the rate
        at ``factor`` times the current one (not below ``floor``; ``None``: unchanged) until
        ``until``."""
        if not math.isinf(self.rate):
            self.level = self.level_at(now)
            self.t = max(self.t, now)
            current = self.rate_at(now)
            if factor is not None:
                current = max(floor, current * factor)
            self.base_rate = current
        self.base_time = until
