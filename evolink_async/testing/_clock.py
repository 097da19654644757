"""Simulated time: a scaled real clock, or a manual one that tests step by hand.

Simulated time is a float of Unix seconds (it fills the tasks' ``created`` fields). Nothing in
the simulator runs a timer per task: a task's state is computed from its timestamps whenever
someone looks, so only the clock has to move.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

__all__ = ["Clock", "ManualClock", "ScaledClock"]


class Clock(Protocol):
    """What the simulator needs from a clock."""

    def now(self) -> float:
        """The current simulated time, in Unix seconds."""
        ...

    def real_seconds(self, sim_seconds: float) -> float:
        """How many real seconds a simulated interval stands for (for Retry-After, timeouts)."""
        ...

    def real_delay(self, sim_seconds: float) -> float | None:
        """Real seconds until a simulated interval passes by itself; None: it never does."""
        ...

    def to_real(self, sim_time: float) -> float | None:
        """The ``time.monotonic()`` value matching a simulated instant, if the clock has one."""
        ...

    def subscribe(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` whenever time jumps (only a manual clock ever does)."""
        ...

    def unsubscribe(self, listener: Callable[[], None]) -> None:
        """Stop calling ``listener``."""
        ...


class ScaledClock:
    """Simulated time that runs ``1 / time_scale`` times as fast as real time.

    ``time_scale`` is real seconds per simulated second: at 0.01 a "300 s" task takes 3 real
    seconds. Simulated time starts at ``start`` (default: the wall clock at construction).
    """

    __slots__ = ("_mono0", "_start", "time_scale")

    def __init__(self, time_scale: float = 1.0, *, start: float | None = None) -> None:
        if time_scale <= 0:
            raise ValueError(f"time_scale must be > 0, got {time_scale}")
        self.time_scale = time_scale
        self._start = time.time() if start is None else start
        self._mono0 = time.monotonic()

    def now(self) -> float:
        return self._start + (time.monotonic() - self._mono0) / self.time_scale

    def real_seconds(self, sim_seconds: float) -> float:
        return sim_seconds * self.time_scale

    def real_delay(self, sim_seconds: float) -> float | None:
        return max(0.0, sim_seconds * self.time_scale)

    def to_real(self, sim_time: float) -> float | None:
        return self._mono0 + (sim_time - self._start) * self.time_scale

    def jump(self, seconds: float) -> None:
        """Move simulated time ``seconds`` ahead at once (e.g. past a daily quota reset
        between two runs). Meant for a quiet simulator: nothing already planned in real time
        (a callback) is moved."""
        if seconds < 0:
            raise ValueError(f"a clock only jumps forward, got {seconds}")
        self._start += seconds

    def subscribe(self, listener: Callable[[], None]) -> None:
        """Nothing is notified of a jump on this clock."""

    def unsubscribe(self, listener: Callable[[], None]) -> None:
        """Nothing was kept."""

    def __repr__(self) -> str:
        return f"ScaledClock(time_scale={self.time_scale}, now={self.now():.3f})"


class ManualClock:
    """Simulated time that moves only when ``advance()`` is called: tests with no wall clock.

    Real-time figures derived from it (Retry-After, callback timeouts) count one simulated
    second as one real second.
    """

    __slots__ = ("_listeners", "_now")

    #: The seed example's ``created`` value: a fixed, realistic start that keeps runs identical.
    DEFAULT_START = 1_757_169_743.0

    def __init__(self, start: float = DEFAULT_START) -> None:
        self._now = start
        self._listeners: list[Callable[[], None]] = []

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        """Move simulated time forward by ``seconds`` (≥ 0) and wake whoever waits on it."""
        if seconds < 0:
            raise ValueError(f"time only moves forward, got {seconds}")
        self._now += seconds
        for listener in list(self._listeners):
            listener()

    def real_seconds(self, sim_seconds: float) -> float:
        return sim_seconds

    def real_delay(self, sim_seconds: float) -> float | None:
        return None

    def to_real(self, sim_time: float) -> float | None:
        return None

    def subscribe(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)

    def unsubscribe(self, listener: Callable[[], None]) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def __repr__(self) -> str:
        return f"ManualClock(now={self._now:.3f})"
