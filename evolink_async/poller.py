"""One polling loop for every task in flight.

A heap of (next due time, task id) drives a fixed number of worker coroutines, whatever the
number of tasks tracked: 10 000 tasks cost 10 000 small heap entries, not 10 000 coroutines.
Each task's next poll is planned from what the service said:

* before progress moves: at the time ``task_info.estimated_time`` says it will be done;
* once progress moves: from the rate of progress, ``time left ~ (100 - p) / rate``;
* when it is overdue: a small fraction of its expected duration later;

clamped to ``[min_interval, max_interval]`` with jitter. Polls go through the client's rate
limiter like every request (the transport's gate); a failed poll is retried after a backoff of
the one retry engine (``_retry``). It knows tasks and due times, nothing of batches or files.
A status the SDK does not know is polled like ``processing``.
The loop stops when nothing is tracked and starts again on demand.

Concurrency is anyio's: the scheduling loop and its workers run in an anyio task group, due
task ids reach the workers through a memory object stream, the loop sleeps on an
``anyio.Event`` (with ``move_on_after`` for the next due time) and stops through a
``CancelScope``. One thing is asyncio's: the *host* task that holds the task group. The poller
starts on demand from ``track`` (a plain function, called from any task), and anyio has no way
to open a task group outside an ``async with`` of a running task, so ``track`` starts one
asyncio task to host it; ``aclose`` cancels its scope and awaits it.
"""

from __future__ import annotations

import asyncio
import functools
import heapq
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

import anyio
import attrs
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ._poll_plan import PollPolicy, plan_next_poll, plan_safety_poll
from ._retry import backoff
from .errors import (
    APIConnectionError,
    AuthenticationError,
    DecodeError,
    EvolinkError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    TaskTimeoutError,
)
from .models import Task, TaskStatus

__all__ = ["PollPolicy", "Poller", "TrackedTask", "plan_next_poll", "plan_safety_poll"]

logger = logging.getLogger("evolink_async")

TaskResult = Task | EvolinkError


class _Gate(Protocol):
    async def acquire(self) -> None: ...


@attrs.define(slots=True, eq=False)
class _Entry:
    task: Task
    start: float
    deadline: float | None
    on_update: Callable[[Task], object] | None
    on_done: Callable[[TaskResult], object] | None
    gate: _Gate | None = None
    due: float = 0.0
    polls: int = 0
    failures: int = 0
    # last time it was seen with progress 0 (not started), and the progress observations
    zero_at: float = 0.0
    p1: tuple[float, int] | None = None
    p2: tuple[float, int] | None = None
    # a callback woke it while a poll was queued or in flight: poll again if still running
    woken: bool = False
    #: how tracking ended, once it has; ``settled`` is made when a waiter first needs it
    result: TaskResult | None = None
    settled: anyio.Event | None = None

    def settle(self, result: TaskResult) -> None:
        """Give the waiters their result (the first one given stays)."""
        if self.result is None:
            self.result = result
            if self.settled is not None:
                self.settled.set()

    async def wait(self) -> TaskResult:
        if self.result is None:
            if self.settled is None:
                self.settled = anyio.Event()
            await self.settled.wait()
        assert self.result is not None
        return self.result

    def note(self, task: Task, now: float) -> None:
        """Take in a state of the task (when it was last seen not started, its progress) and
        tell ``on_update``."""
        self.task = task
        progress = task.progress or 0
        if task.status is TaskStatus.PENDING or (progress <= 0 and not task.is_terminal):
            self.zero_at = now
        elif 0 < progress < 100:
            if self.p1 is None:
                self.p1 = (now, progress)
            self.p2 = (now, progress)
        if self.on_update is not None:
            try:
                self.on_update(task)
            except Exception:  # a user's progress callback must not stop the poller
                logger.exception("on_update callback failed for %s", task.id)

    def resolve(self, result: TaskResult) -> None:
        """Tracking ended: settle the waiters and tell ``on_done``."""
        self.due = float("inf")
        self.settle(result)
        if self.on_done is not None:
            try:
                self.on_done(result)
            except Exception:
                logger.exception("poller on_done callback failed for %s", self.task.id)


def _plan_entry(
    entry: _Entry,
    now: float,
    policy: PollPolicy,
    scale: float,
    *,
    callbacks: bool,
    rng: random.Random,
) -> float:
    """Seconds until the next poll of a tracked task (see the two planners)."""
    est = entry.task.estimated_time
    planner = (
        functools.partial(plan_safety_poll, polls=entry.polls) if callbacks else plan_next_poll
    )
    return planner(
        now=now,
        start=entry.start,
        estimated=None if est is None else est * scale,
        zero_at=entry.zero_at,
        p1=entry.p1,
        p2=entry.p2,
        policy=policy,
        scale=scale,
        rng=rng,
    )


def _failed_poll_wait(policy: PollPolicy, scale: float, failures: int) -> float:
    """After a failed poll: 2, 4, 8, then 16 times ``min_interval`` (zero under
    ``set_testing``)."""
    step = policy.min_interval * scale
    return backoff(failures, initial=2 * step, maximum=16 * step, jitter=0.0)


class TrackedTask:
    """A task the poller tracks: ``await tracked.wait()`` gives the final ``Task`` (completed or
    failed) or the ``EvolinkError`` that ended tracking (``TaskTimeoutError``, ``NotFoundError``).
    """

    __slots__ = ("_entry",)

    def __init__(self, entry: _Entry) -> None:
        self._entry = entry

    @property
    def task(self) -> Task:
        """The latest state seen."""
        return self._entry.task

    @property
    def polls(self) -> int:
        return self._entry.polls

    def done(self) -> bool:
        return self._entry.result is not None

    async def wait(self) -> TaskResult:
        return await self._entry.wait()


class Poller:
    """Tracks tasks until they finish, with one scheduling loop and a few poll workers."""

    __slots__ = (
        "_clock",
        "_closed",
        "_entries",
        "_heap",
        "_host",
        "_rng",
        "_scope",
        "_seq",
        "_sleep_until",
        "_wakeup",
        "_workers",
        "callbacks",
        "fetch",
        "policy",
        "polls",
        "time_scale",
    )

    def __init__(
        self,
        fetch: Callable[[str], Awaitable[Task]],
        policy: PollPolicy | None = None,
        *,
        time_scale: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        seed: int | None = None,
        callbacks: bool = False,
    ) -> None:
        #: callbacks are on: polls are only the safety net (``plan_safety_poll``)
        self.callbacks = callbacks
        self.fetch = fetch
        self.policy = policy or PollPolicy()
        self.time_scale = time_scale
        self._clock = clock
        self._rng = random.Random(seed)
        self._entries: dict[str, _Entry] = {}
        self._heap: list[tuple[float, int, str]] = []
        self._seq = 0
        #: the one asyncio task, hosting the anyio task group (see the module's docstring)
        self._host: asyncio.Task[None] | None = None
        self._scope: anyio.CancelScope | None = None
        #: set when the loop should look at the heap again; it sleeps until ``_sleep_until``
        self._wakeup: anyio.Event | None = None
        self._sleep_until = -math.inf
        self._workers = 0
        self._closed = False
        self.polls = 0

    def __repr__(self) -> str:
        return (
            f"<Poller tracked={len(self._entries)} polls={self.polls} "
            f"workers={self._workers} running={self._host is not None}>"
        )

    @property
    def tracked(self) -> int:
        return len(self._entries)

    def tracked_ids(self) -> list[str]:
        return list(self._entries)

    def track(
        self,
        task: Task,
        *,
        timeout: float | None = None,
        on_update: Callable[[Task], object] | None = None,
        on_done: Callable[[TaskResult], object] | None = None,
        gate: _Gate | None = None,
    ) -> TrackedTask:
        """Start tracking ``task`` (already created). Tracking the same id twice shares the
        entry. ``timeout`` (local seconds) gives up with ``TaskTimeoutError``. ``on_update`` is
        called with every state polled, ``on_done`` once with the final task or error. ``gate``
        is an extra rate limiter this task's polls also pass (a batch's own rate)."""
        if self._closed:
            raise RuntimeError("the poller is closed")
        existing = self._entries.get(task.id)
        if existing is not None:
            return TrackedTask(existing)
        now = self._clock()
        entry = _Entry(
            task=task,
            start=now,
            deadline=None if timeout is None else now + timeout,
            on_update=on_update,
            on_done=on_done,
            gate=gate,
            zero_at=now,
        )
        self._entries[task.id] = entry
        if task.is_terminal:
            self._finish(task.id, entry, task)
        else:
            self._schedule(task.id, entry, self._plan(entry, now))
            self._ensure_running()
        return TrackedTask(entry)

    def wake(self, task_id: str) -> bool:
        """Poll this task now (a callback said it changed). False if it is not tracked.

        Idempotent: waking a task already due, queued or being polled adds no poll, except
        that a poll in flight is followed by one more if the task was still running.
        """
        entry = self._entries.get(task_id)
        if entry is None:
            return False
        if entry.due == float("inf"):  # queued or being polled
            entry.woken = True
        elif entry.due > self._clock():
            self._schedule(task_id, entry, 0.0)
        return True

    def report(self, task: Task) -> bool:
        """Take a terminal ``task`` as if a poll had just returned it, without a GET (a
        callback body the user chose to trust). A task still running is woken instead.
        False if its id is not tracked."""
        entry = self._entries.get(task.id)
        if entry is None:
            return False
        if not task.is_terminal:
            return self.wake(task.id)
        self._observe(task.id, entry, task)
        return True

    def forget(self, task_id: str) -> None:
        """Stop tracking a task without a result (its waiters get ``TaskTimeoutError``)."""
        entry = self._entries.pop(task_id, None)
        if entry is not None:
            entry.settle(TaskTimeoutError(task_id, 0.0, entry.task))
        if not self._entries and self._wakeup is not None:
            self._wakeup.set()  # let the loop see it is idle and stop, not at the next due time

    async def aclose(self) -> None:
        """Stop the loop and the workers (cancelled and awaited); tasks still tracked end with
        ``TaskTimeoutError``."""
        self._closed = True
        host = self._host
        if host is not None:
            if self._scope is not None:
                self._scope.cancel()
            await host  # a host not started yet sees ``_closed`` and returns at once
        for task_id in list(self._entries):
            self.forget(task_id)

    # -- scheduling -----------------------------------------------------------------------

    def _plan(self, entry: _Entry, now: float) -> float:
        return _plan_entry(
            entry, now, self.policy, self.time_scale, callbacks=self.callbacks, rng=self._rng
        )

    def _schedule(self, task_id: str, entry: _Entry, delay: float) -> None:
        due = self._clock() + delay
        if entry.deadline is not None:
            due = min(due, entry.deadline)
        entry.due = due
        self._seq += 1
        heapq.heappush(self._heap, (due, self._seq, task_id))
        if due < self._sleep_until and self._wakeup is not None:
            self._wakeup.set()  # due before the loop would look again: wake it

    def _ensure_running(self) -> None:
        if self._host is None and not self._closed:
            self._host = asyncio.get_running_loop().create_task(self._hold(), name="evolink-poller")

    async def _hold(self) -> None:
        """The host task: runs the loop while anything is tracked (again if a task was tracked
        while it wound down), until idle or closed."""
        try:
            with anyio.CancelScope() as self._scope:
                while self._entries and not self._closed:
                    await self._run()
        finally:
            self._scope = None
            self._host = None

    async def _run(self) -> None:
        """The scheduling loop in this task, the workers in an anyio task group beside it."""
        send, receive = anyio.create_memory_object_stream[str](math.inf)
        with send, receive:
            async with anyio.create_task_group() as tg:
                for i in range(max(1, self.policy.workers)):
                    tg.start_soon(self._worker, receive, name=f"evolink-poll-worker-{i}")
                self._workers = max(1, self.policy.workers)
                try:
                    await self._dispatch(send)
                finally:
                    self._workers = 0
                    self._sleep_until = -math.inf
                    tg.cancel_scope.cancel()

    async def _dispatch(self, send: MemoryObjectSendStream[str]) -> None:
        """Hand each task to the workers when due; sleep until the next due time or a wake."""
        heap = self._heap
        while self._entries:
            now = self._clock()
            while heap and heap[0][0] <= now:
                due, _, task_id = heapq.heappop(heap)
                entry = self._entries.get(task_id)
                if entry is None or entry.due != due:
                    continue  # stale heap item: rescheduled or finished since
                entry.due = float("inf")  # in the stream; not due again until replanned
                send.send_nowait(task_id)
            wakeup = self._wakeup = anyio.Event()
            if heap:
                self._sleep_until = heap[0][0]
                with anyio.move_on_after(heap[0][0] - now):
                    await wakeup.wait()
            else:
                self._sleep_until = math.inf
                await wakeup.wait()
            self._sleep_until = -math.inf

    async def _worker(self, receive: MemoryObjectReceiveStream[str]) -> None:
        while True:
            try:  # no checkpoint when a task is waiting: the poll itself yields
                task_id = receive.receive_nowait()
            except anyio.WouldBlock:
                task_id = await receive.receive()
            entry = self._entries.get(task_id)
            if entry is None:
                continue
            try:
                await self._poll(task_id, entry)
            except Exception as exc:  # a bug must not kill the worker and strand its task
                logger.exception("poll of %s failed unexpectedly", task_id)
                err = EvolinkError(f"polling failed: {type(exc).__name__}: {exc}")
                err.__cause__ = exc
                self._finish(task_id, entry, err)

    async def _poll(self, task_id: str, entry: _Entry) -> None:
        now = self._clock()
        if entry.deadline is not None and now >= entry.deadline and entry.polls > 0:
            self._finish(
                task_id, entry, TaskTimeoutError(task_id, entry.deadline - entry.start, entry.task)
            )
            return
        entry.woken = False
        try:
            if entry.gate is not None:
                await entry.gate.acquire()
            task = await self.fetch(task_id)
        except (NotFoundError, AuthenticationError, PermissionDeniedError) as exc:
            self._finish(task_id, entry, exc)
            return
        except (APIConnectionError, ServerError, RateLimitError, DecodeError) as exc:
            # The transport already retried; the task still exists: try again later.
            entry.failures += 1
            logger.debug("poll of %s failed (%s); retrying later", task_id, exc)
            self._reschedule(
                task_id, entry, _failed_poll_wait(self.policy, self.time_scale, entry.failures)
            )
            return
        except EvolinkError as exc:  # any other answer (400, 402, 4xx...): polling won't help
            self._finish(task_id, entry, exc)
            return
        finally:
            self.polls += 1
            entry.polls += 1
        if task_id not in self._entries:
            return
        self._observe(task_id, entry, task)

    def _observe(self, task_id: str, entry: _Entry, task: Task) -> None:
        """Take in a state of the task (polled, or reported by a trusted callback)."""
        now = self._clock()
        entry.note(task, now)
        if task.is_terminal:
            self._finish(task_id, entry, task)
        else:
            delay = 0.0 if entry.woken else self._plan(entry, now)
            entry.woken = False
            self._reschedule(task_id, entry, delay)

    def _reschedule(self, task_id: str, entry: _Entry, delay: float) -> None:
        if task_id in self._entries:
            self._schedule(task_id, entry, delay)

    def _finish(self, task_id: str, entry: _Entry, result: TaskResult) -> None:
        self._entries.pop(task_id, None)
        entry.resolve(result)
        if not self._entries and self._wakeup is not None:
            self._wakeup.set()  # let the loop see it is idle and stop
