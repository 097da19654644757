"""A debug timeline of :class:`~.redis_limits.RedisLimits` (off by default).

``RedisLimits(url, trace=True)`` records, with ``time.monotonic()`` (one clock for every
process of a machine, and the simulator's ``*_real`` times), when a lease was asked for and
granted (directly or from the line), when a rate slot was asked for and reached, when a lease
was released and when each script call went out and came back. ``benchmarks/bench_fleet.py
--breakdown`` turns it into the stages of a handover (a task done -> the next create).
Events hold lease ids and operation names only: never the key, never a secret.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

__all__ = ["Trace", "task_key"]


def task_key() -> int:
    """Which asyncio task made an event (a create's lease and rate slot share one)."""
    try:
        return id(asyncio.current_task())
    except RuntimeError:  # pragma: no cover - outside a loop
        return 0


class Trace:
    """Events as dicts: ``kind``, ``t`` (monotonic seconds), ``task`` and the kind's fields."""

    __slots__ = ("events",)

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def add(self, kind: str, **fields: Any) -> None:
        fields.update(kind=kind, t=time.monotonic(), task=task_key())
        self.events.append(fields)
