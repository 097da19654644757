"""Progress between reads: what a running task's reads said (``Track``), an estimate from
them for any instant, and ONE ticker for every task of ``submit`` that somebody listens to.

A read says ``processing, 40 %``; the next may come a minute later. Between reads the estimate
goes on at the rate the reads showed (the progress of the last read over the time since the
first one that saw it processing), else toward the end ``estimated_time`` announced. It only
rises, and stays below 100 until a read says the task completed. The ticker is one coroutine
for all tasks (none per task), running only while a listener waits for estimates.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Coroutine
from typing import Any

import anyio

from ..models import TaskStatus

__all__ = ["MAX_ESTIMATE", "Ticker", "Track"]

#: an estimate never says more (100 is for a read that saw the task completed)
MAX_ESTIMATE = 99


class Track:
    """The reads of one task, to estimate its progress between them. Times are the real
    seconds of the ticker's clock."""

    __slots__ = ("created", "end", "first", "last", "shown", "shown_estimated", "status")

    def __init__(self, now: float) -> None:
        #: when the create answered (``estimated_time`` counts from there)
        self.created = now
        #: when ``estimated_time`` says the task ends (``None``: it gave none)
        self.end: float | None = None
        #: (time, progress) of the first read that saw it processing, and of the latest read
        self.first: tuple[float, int] | None = None
        self.last: tuple[float, int] | None = None
        self.status = TaskStatus.PENDING
        #: the highest progress shown so far (read or estimated): estimates only rise above it
        self.shown: int | None = None
        self.shown_estimated = False

    def read(
        self, now: float, status: TaskStatus, progress: int | None, estimated: float | None
    ) -> None:
        """A read (or the create's answer) saw ``status`` and ``progress``; ``estimated`` is
        its ``estimated_time`` in real seconds (``None``: it gave none)."""
        if estimated is not None:
            self.end = self.created + estimated
        self.status = status
        if progress is None:
            return
        if status is not TaskStatus.PENDING and self.first is None:
            self.first = (now, progress)
        self.last = (now, progress)
        if self.shown is None or progress >= self.shown:
            self.shown, self.shown_estimated = progress, False

    def _guess(self, now: float) -> float | None:
        if self.status.is_terminal or self.last is None:
            return None
        t1, p1 = self.last
        if self.first is not None:
            t0, p0 = self.first
            if t1 > t0 and p1 > p0:  # the rate the reads showed
                return p1 + (p1 - p0) / (t1 - t0) * (now - t1)
        if self.end is not None and self.end > t1:  # toward the end estimated_time announced
            return p1 + (100 - p1) * min(1.0, (now - t1) / (self.end - t1))
        return None

    def estimate(self, now: float) -> int | None:
        """A new estimate at ``now``, when it is above everything shown so far (it is then
        the value shown); ``None`` otherwise."""
        guess = self._guess(now)
        if guess is None or guess < 1:
            return None
        value = min(MAX_ESTIMATE, int(guess))
        if self.shown is not None and value <= self.shown:
            return None
        self.shown, self.shown_estimated = value, True
        return value

    def current(self, now: float) -> tuple[int, bool] | None:
        """The progress to show at ``now`` and whether it is an estimate (``None``: nothing
        gave one yet)."""
        self.estimate(now)
        return None if self.shown is None else (self.shown, self.shown_estimated)


#: told an estimate: (request index, its track, the estimated progress)
Tell = Callable[[int, Track, int], None]
Spawn = Callable[[Coroutine[Any, Any, None]], None]


class Ticker:
    """One coroutine that estimates the progress of every watched task each ``every``
    seconds of service time (``None``: never) and tells the estimates that rose. It runs only
    while something is watched; ``spawn`` starts it (the run keeps, cancels and awaits it)."""

    __slots__ = ("clock", "every", "running", "scale", "ticks", "watched")

    def __init__(
        self,
        every: float | None,
        scale: Callable[[], float],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.every = every
        #: real seconds per service second (the poller's, which may adopt a simulator's)
        self.scale = scale
        self.clock = clock
        self.watched: dict[int, tuple[Track, Tell]] = {}
        self.running = False
        #: ticks run so far (for tests and the curious)
        self.ticks = 0

    def __repr__(self) -> str:
        return f"<Ticker every={self.every} watched={len(self.watched)} running={self.running}>"

    def watch(self, index: int, track: Track, tell: Tell, spawn: Spawn) -> None:
        if self.every is None:
            return
        self.watched[index] = (track, tell)
        if not self.running:
            self.running = True
            spawn(self._loop())

    def unwatch(self, index: int) -> None:
        self.watched.pop(index, None)

    async def _loop(self) -> None:
        try:
            while self.watched and self.every is not None:
                await anyio.sleep(self.every * self.scale())
                self.ticks += 1
                now = self.clock()
                for index, (track, tell) in list(self.watched.items()):
                    value = track.estimate(now)
                    if value is not None:
                        tell(index, track, value)
        finally:
            self.running = False
