"""Callback delivery: one background loop over a heap of due times, for every task.

A task's first POST is due when it finishes (known at creation); a failed attempt (non-2xx,
refused, timed out) is retried after 1, 2 and 4 simulated seconds. Each POST runs as its own
short asyncio task, tracked so that ``close()`` can cancel and await everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import time
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp

from ._clock import Clock
from ._config import SimulatorConfig
from ._stats import CallbackAttempt, CallbackStats
from ._task import SimulatedTask

__all__ = ["CallbackSender"]

#: A callback's HTTP timeout is the simulated `callback_timeout`, but never under this many
#: real seconds: at time_scale 0.001 "10 s" would be 10 ms, too short even on loopback.
MIN_REAL_TIMEOUT = 1.0


class CallbackSender:
    """POSTs finished tasks to their callback_url, with the documented retries."""

    def __init__(
        self,
        config: SimulatorConfig,
        clock: Clock,
        tasks: Mapping[str, SimulatedTask],
        stats: CallbackStats,
        body_of: Callable[[SimulatedTask], dict[str, Any]],
    ) -> None:
        self._config, self._clock, self._tasks, self._stats = config, clock, tasks, stats
        self._body_of = body_of
        self._heap: list[tuple[float, int, str, int]] = []  # (due, tie, task id, attempt)
        self._tie = itertools.count()
        self._begun: set[str] = set()
        self._wake = asyncio.Event()
        self._inflight: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._session = aiohttp.ClientSession(
            trust_env=False, headers={"User-Agent": "evolink-simulator"}
        )
        self._clock.subscribe(self._wake.set)
        self._loop = asyncio.create_task(self._run(), name="evolink-simulator-callbacks")

    async def close(self) -> None:
        """Cancel the loop and every POST in flight, wait for them, close the session."""
        self._clock.unsubscribe(self._wake.set)
        pending = [*self._inflight, *([self._loop] if self._loop else [])]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    def schedule(self, task: SimulatedTask) -> None:
        """Plan the first POST of a task with a callback_url at its (new) finish time."""
        if task.callback_url is not None and task.id not in self._begun:
            self._push(task.finished_at, task.id, 0)

    def _push(self, due: float, task_id: str, attempt: int) -> None:
        heapq.heappush(self._heap, (due, next(self._tie), task_id, attempt))
        self._wake.set()

    async def drain(self) -> None:
        """Return once every POST due by now has been made and answered (for tests)."""
        while self._loop is not None and not self._loop.done():
            await asyncio.sleep(0)
            if self._inflight:
                await asyncio.wait(set(self._inflight))
            elif self._heap and self._heap[0][0] <= self._clock.now():
                self._wake.set()
            else:
                return

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            now = self._clock.now()
            while self._heap and self._heap[0][0] <= now:
                _, _, task_id, attempt = heapq.heappop(self._heap)
                self._start_attempt(self._tasks[task_id], attempt, now)
            delay = self._clock.real_delay(self._heap[0][0] - now) if self._heap else None
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    def _start_attempt(self, task: SimulatedTask, attempt: int, now: float) -> None:
        if attempt == 0:
            if task.id in self._begun or not task.is_terminal_at(now):
                return  # a stale entry: already sent, or the finish time moved
            self._begun.add(task.id)
            if task.callback_dropped:
                self._stats.dropped += 1
                return
        post = asyncio.create_task(self._post(task, attempt))
        self._inflight.add(post)
        post.add_done_callback(self._inflight.discard)

    async def _post(self, task: SimulatedTask, attempt: int) -> None:
        assert self._session is not None
        assert task.callback_url is not None
        sent_at, sent_real = self._clock.now(), time.monotonic()
        seconds = self._clock.real_seconds(self._config.callback_timeout)
        timeout = aiohttp.ClientTimeout(total=max(MIN_REAL_TIMEOUT, seconds))
        status: int | None = None
        error: str | None = None
        try:
            async with self._session.post(
                task.callback_url, json=self._body_of(task), timeout=timeout
            ) as response:
                status = response.status
                await response.read()
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        record = CallbackAttempt(
            task_id=task.id, attempt=attempt, status=status, error=error, at=sent_at, real=sent_real
        )
        self._stats.attempts.append(record)
        retries = self._config.callback_retry_delays
        if record.delivered:
            self._stats.delivered += 1
        elif attempt < len(retries):
            self._push(self._clock.now() + retries[attempt], task.id, attempt + 1)
        else:
            self._stats.gave_up += 1
