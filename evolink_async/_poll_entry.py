"""One tracked task's state in the poller (what it saw, when, who waits) and the public
handle on it. No I/O and no planning here: the poller and its reader drive it."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

import anyio
import attrs

from .errors import EvolinkError
from .models import TERMINAL_STATUSES, Task, TaskStatus

__all__ = ["Callbacks", "Entry", "Gate", "TaskResult", "TrackedTask", "Watcher"]

logger = logging.getLogger("evolink_async")

TaskResult = Task | EvolinkError


class Gate(Protocol):
    async def acquire(self) -> None: ...


class Watcher(Protocol):
    """Who is told of a tracked task's states and of its end. One watcher serves many tasks
    (the dispatcher's run is one): an entry holds a reference, not two closures a task."""

    def task_update(self, task: Task) -> object: ...

    def task_done(self, task_id: str, result: TaskResult) -> object: ...


@attrs.define(slots=True, eq=False)
class Callbacks:
    """``Poller.track``'s ``on_update``/``on_done`` as a :class:`Watcher`."""

    on_update: Callable[[Task], object] | None
    on_done: Callable[[TaskResult], object] | None

    def task_update(self, task: Task) -> object:
        return None if self.on_update is None else self.on_update(task)

    def task_done(self, task_id: str, result: TaskResult) -> object:
        return None if self.on_done is None else self.on_done(result)


@attrs.define(slots=True, eq=False)
class Entry:
    task: Task
    start: float
    deadline: float | None
    watcher: Watcher | None
    gate: Gate | None = None
    due: float = 0.0
    polls: int = 0
    failures: int = 0
    # last time it was seen with progress 0 (not started), and the progress observations
    zero_at: float = 0.0
    p1: tuple[float, int] | None = None
    p2: tuple[float, int] | None = None
    # a callback woke it while a poll was queued or in flight: poll again if still running
    woken: bool = False
    # a batch read did not return it: confirm with one single read
    confirm: bool = False
    # since when (local seconds) it has shown the same status the SDK does not know
    unknown_since: float | None = None
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
        tell the watcher."""
        if task.status is TaskStatus.UNKNOWN:
            same = (
                self.task.status is TaskStatus.UNKNOWN and self.task.raw_status == task.raw_status
            )
            if not same or self.unknown_since is None:
                self.unknown_since = now
        else:
            self.unknown_since = None
        self.task = task
        progress, status = task.progress or 0, task.status
        if status is TaskStatus.PENDING or (progress <= 0 and status not in TERMINAL_STATUSES):
            self.zero_at = now
        elif 0 < progress < 100:
            if self.p1 is None:
                self.p1 = (now, progress)
            self.p2 = (now, progress)
        if self.watcher is not None:
            try:
                self.watcher.task_update(task)
            except Exception:  # a user's progress callback must not stop the poller
                logger.exception("on_update callback failed for %s", task.id)

    def resolve(self, result: TaskResult) -> None:
        """Tracking ended: settle the waiters and tell the watcher."""
        self.due = float("inf")
        self.settle(result)
        if self.watcher is not None:
            try:
                self.watcher.task_done(self.task.id, result)
            except Exception:
                logger.exception("poller on_done callback failed for %s", self.task.id)


class TrackedTask:
    """A task the poller tracks: ``await tracked.wait()`` gives the final ``Task`` (completed,
    failed or cancelled) or the ``EvolinkError`` that ended tracking (``TaskTimeoutError``,
    ``TaskStalledError``, ``NotFoundError``).
    """

    __slots__ = ("_entry",)

    def __init__(self, entry: Entry) -> None:
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
