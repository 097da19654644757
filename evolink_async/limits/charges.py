"""The service's own credit figures, checked before they are trusted, and the prices they
teach: a figure above the price table's wins, and is used for the next reservations of the
same (model, duration, quality)."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any, Final

from ..models import Task

__all__ = ["ABSURD_CREDITS", "LearnedPrices", "final_charge", "service_figure"]

logger = logging.getLogger("evolink_async")

#: a figure above this is not a credit amount any clip costs: it is ignored
ABSURD_CREDITS: Final = 1_000_000.0

_Key = tuple[str, "int | None", "str | None"]


def service_figure(value: float | None, *, what: str, task_id: str) -> float | None:
    """``value`` when it is a sane credit amount (finite, >= 0, at most ``ABSURD_CREDITS``);
    else None, with a warning (never an exception: the task is tracked all the same)."""
    if value is None:
        return None
    if not math.isfinite(value) or value < 0 or value > ABSURD_CREDITS:
        logger.warning(
            "ignoring %s=%r of task %s: not a credit amount (negative, NaN or absurd)",
            what,
            value,
            task_id,
        )
        return None
    return value


def final_charge(task: Task) -> float | None:
    """What a completed task finally cost: ``usage.credits_used``, else
    ``usage.cost.credits``; None when the service gave neither (or nothing sane)."""
    usage = task.usage
    if usage is None:
        return None
    for what, value in (
        ("usage.credits_used", usage.credits_used),
        ("usage.cost.credits", usage.cost.credits if usage.cost is not None else None),
    ):
        figure = service_figure(value, what=what, task_id=task.id)
        if figure is not None:
            return figure
    return None


def _key(model: str, duration: int | None, extra: Mapping[str, Any]) -> _Key:
    quality = extra.get("quality")
    return (model, duration, quality if isinstance(quality, str) else None)


class LearnedPrices:
    """The highest figure the service charged, per (model, duration, quality), where it was
    above what the price table or estimator said."""

    __slots__ = ("_seen",)

    def __init__(self) -> None:
        self._seen: dict[_Key, float] = {}

    def learn(
        self, model: str, duration: int | None, extra: Mapping[str, Any], figure: float
    ) -> None:
        key = _key(model, duration, extra)
        if figure > self._seen.get(key, 0.0):
            logger.warning(
                "the service charged %.4g credits for %s (duration %s, quality %s), more "
                "than the price table: later reservations use that figure",
                figure,
                *key,
            )
            self._seen[key] = figure

    def adjust(
        self, model: str, duration: int | None, extra: Mapping[str, Any], base: float | None
    ) -> float | None:
        """``base`` (the table's or the estimator's figure), raised to a learned figure."""
        learned = self._seen.get(_key(model, duration, extra))
        if learned is None:
            return base
        return learned if base is None else max(base, learned)

    def __len__(self) -> int:
        return len(self._seen)

    def __repr__(self) -> str:
        return f"<LearnedPrices {len(self._seen)} figures>"
