"""``TaskHandle``: what ``submit`` returns at once, before the request is created."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any, Literal

from ..models import Task, TaskStatus
from ._admission import Job
from ._run import Promise
from ._submit import SubmitRun
from .events import Outcome

__all__ = ["HandleState", "TaskHandle"]

#: where a request stands: ``queued`` (not created yet: waiting for its turn, its slot and
#: credits), ``pending``/``processing`` (the task's status at the service), then its
#: outcome's status
HandleState = Literal[
    "queued", "pending", "processing", "completed", "failed", "cancelled", "unknown", "skipped"
]


class TaskHandle:
    """A request given to ``submit``, returned at once in state ``queued``.

    ``queue_position`` says how many requests are ahead of it until it is admitted;
    ``await handle.created()`` waits until its task exists (``task_id`` set) or it ended
    without one; ``state``, ``status`` and ``progress`` follow the latest read, and
    ``current_progress()`` adds an estimate between reads. ``await handle`` (or ``await
    handle.result()``) gives the final ``Outcome``: an error of the create is in it, never
    raised."""

    __slots__ = ("_future", "_job", "_run")

    def __init__(self, job: Job, future: Promise, run: SubmitRun) -> None:
        self._job = job
        self._future = future
        self._run = run

    def __repr__(self) -> str:
        return (
            f"<TaskHandle state={self.state} queue_position={self.queue_position}"
            f" task_id={self.task_id} progress={self.progress}>"
        )

    @property
    def index(self) -> int:
        """The request's number among the dispatcher's submits (from 0, in submission order;
        its outcome's ``index``)."""
        return self._job.index

    @property
    def task_id(self) -> str | None:
        return self._job.task_ids[-1] if self._job.task_ids else None

    @property
    def task(self) -> Task | None:
        return self._job.task

    @property
    def status(self) -> TaskStatus | None:
        """The task's status at the latest read (``None`` before it is created)."""
        return self._job.task.status if self._job.task is not None else None

    @property
    def progress(self) -> int | None:
        """The task's progress at the latest read (``None`` before it is created)."""
        return self._job.task.progress if self._job.task is not None else None

    @property
    def attempts(self) -> int:
        return self._job.attempts

    @property
    def queue_position(self) -> int:
        """How many requests submitted before it are still waiting to be admitted; 0 once it
        is being created (and after)."""
        return self._run.position(self._job)

    @property
    def state(self) -> HandleState:
        outcome = self._future.outcome
        if outcome is not None:
            return outcome.status
        task = self._job.task
        if task is None or self._run.is_queued(self._job):
            return "queued"  # also while a retry waits for its turn
        return "pending" if task.status is TaskStatus.PENDING else "processing"

    def current_progress(self) -> tuple[int, bool] | None:
        """The progress to show now and whether it is an estimate: the latest read's, or
        above it an estimate from ``estimated_time`` and the rate of progress (it only rises,
        and stays below 100 until a read says completed). ``None`` before any read gave one."""
        if self._future.outcome is not None:
            return (self.progress, False) if self.progress is not None else None
        return self._run.progress_of(self._job)

    async def created(self) -> str | None:
        """Wait until the request was created; its task id (``None``: it ended without a task,
        e.g. a refused create or the budget; the outcome says why)."""
        while self.task_id is None and not self._future.done():
            self._run.moved.clear()
            if self.task_id is not None or self._future.done():
                break
            await self._run.moved.wait()
        return self.task_id

    @property
    def outcome(self) -> Outcome | None:
        """The final ``Outcome`` once there is one (``await handle`` waits for it)."""
        return self._future.outcome

    def done(self) -> bool:
        return self._future.done()

    async def result(self) -> Outcome:
        return await self._future.wait()

    def __await__(self) -> Generator[Any, None, Outcome]:
        return self.result().__await__()
