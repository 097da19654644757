"""Which limits a client gets: those it was given, Redis's when ``$EVOLINK_REDIS_URL`` is set,
else the in-process ones built from its settings."""

from __future__ import annotations

from .._env import env_redis_url
from .bundle import Limits, LimitSettings
from .concurrency import ConcurrencyLimit
from .credits import CreditBudget
from .rate import RateLimiter
from .redis_limits import RedisLimits

__all__ = ["build_limits"]


def build_limits(settings: LimitSettings, limits: Limits | None = None) -> Limits:
    """``limits`` configured with ``settings`` (``RedisLimits``: shared through Redis), else
    ``RedisLimits($EVOLINK_REDIS_URL)`` when set, else in-process limits."""
    url = env_redis_url()
    if limits is None and url is not None:
        limits = RedisLimits(url)
    if limits is not None:
        limits.configure(settings)
        return limits
    n = settings.max_in_flight
    rate = settings.rate
    return Limits(
        RateLimiter.unlimited() if rate is None else RateLimiter(rate, settings.burst),
        ConcurrencyLimit(n, grow_every=settings.grow_every) if n else None,
        CreditBudget(settings.budget) if settings.budget is not None else None,
        running=settings.running,
    )
