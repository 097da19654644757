"""The API key's own limits, as the gateway keeps them apart from the account's balance: a
total limit (``key_limit``) and a daily limit (``daily_limit``) that resets every
``daily_period`` simulated seconds (at midnight UTC for a clock on real Unix time).

A create is charged to both when it is accepted; a failed task's refund gives it back.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

from ._errors import ApiError

__all__ = ["KeyQuota"]

KEY_NAME = "simulated-key"


class KeyQuota:
    """What this key has spent, in total and per day, and the 402s its limits give."""

    __slots__ = ("_daily", "daily_limit", "key_limit", "period", "reset_timezone", "used")

    def __init__(
        self,
        key_limit: float | None,
        daily_limit: float | None,
        period: float,
        reset_timezone: str,
    ) -> None:
        self.key_limit = key_limit
        self.daily_limit = daily_limit
        self.period = period
        self.reset_timezone = reset_timezone
        self.used = 0.0  # charged (running tasks included), refunds taken off
        self._daily: defaultdict[int, float] = defaultdict(float)

    def day(self, now: float) -> int:
        return math.floor(now / self.period)

    def next_reset(self, now: float) -> float:
        """The simulated instant the daily limit resets next."""
        return (self.day(now) + 1) * self.period

    def check(self, price: float, now: float) -> None:
        """402 ``key_quota_exhausted`` / ``key_daily_quota_exhausted`` when ``price`` does not
        fit this key's limits."""
        if self.key_limit is not None and self.used + price > self.key_limit + 1e-9:
            remaining = max(0.0, self.key_limit - self.used)
            raise ApiError(
                402,
                "key_quota_exhausted",
                "This API key has reached its total credit limit",
                "insufficient_quota_error",
                details={
                    "key_name": KEY_NAME,
                    "estimated_credits": price,
                    "total_limit_credits": self.key_limit,
                    "used_credits": round(self.used, 4),
                    "remaining_credits": round(remaining, 4),
                },
            )
        spent_today = self._daily[self.day(now)]
        if self.daily_limit is not None and spent_today + price > self.daily_limit + 1e-9:
            raise ApiError(
                402,
                "key_daily_quota_exhausted",
                "This API key has reached its daily credit limit; it resets at midnight "
                f"({self.reset_timezone})",
                "insufficient_quota_error",
                details={
                    "key_name": KEY_NAME,
                    "estimated_credits": price,
                    "daily_limit_credits": self.daily_limit,
                    "daily_used_credits": round(spent_today, 4),
                    "reset_timezone": self.reset_timezone,
                },
            )

    def charge(self, price: float, created_at: float) -> None:
        self.used += price
        self._daily[self.day(created_at)] += price

    def refund(self, price: float, created_at: float) -> None:
        self.used -= price
        self._daily[self.day(created_at)] -= price

    def token_body(self, account_remaining: float, account_used: float) -> dict[str, Any]:
        """``data.token`` of GET /v1/credits: what this key has used and has left (without a
        key limit: the account's figures, as before the knob existed)."""
        if self.key_limit is None:
            return {
                "remaining_credits": account_remaining,
                "unlimited_credits": False,
                "used_credits": account_used,
            }
        return {
            "remaining_credits": round(max(0.0, self.key_limit - self.used), 4),
            "unlimited_credits": False,
            "used_credits": round(self.used, 4),
        }
