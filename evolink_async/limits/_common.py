"""What the limits share: clock types, the float slack, argument checks, number formatting."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final, TypeAlias

__all__ = ["EPS", "Clock", "Estimator", "Sleep", "check_positive", "fmt"]

Clock: TypeAlias = Callable[[], float]
Sleep: TypeAlias = Callable[[float], Awaitable[Any]]

Estimator: TypeAlias = Callable[[str, int | None, Mapping[str, Any]], float | None]
"""``(model, duration, extra fields) -> credits, or None when unknown``.

A user-supplied estimator of what a create will cost; a :class:`PriceTable` is one.
"""

# Slack for float round-off: a bucket level of 0.9999999999 is a whole token, a budget of
# 69.12 holds three reservations of 23.04.
EPS: Final = 1e-9


def check_positive(name: str, value: float, *, allow_inf: bool = False) -> float:
    value = float(value)
    if math.isnan(value) or value <= 0 or (math.isinf(value) and not allow_inf):
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return value


def fmt(value: float) -> str:
    return f"{value:.4g}"
