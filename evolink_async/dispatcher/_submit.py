"""The requests of ``Dispatcher.submit``: a queue in submission order, one feeder that starts
the attempts (at most the run's create parallelism at once, each waiting for its slot and
credits), the queue positions handles show, and the progress estimates between reads.

``submit`` returns as soon as a request is queued; the feeder creates it when the limits let
it. A request whose create failed, or that is retried after a task failure, goes back to the
front of the queue. No coroutine per request waits in the queue: only the feeder, the attempts
it started and the one progress ticker run.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable
from typing import Any

import anyio

from ..errors import EvolinkError, ServiceUnreachableError
from ..limits import SharedLimitsError
from ._admission import Job, Services, Signal
from ._progress import Ticker, Track
from ._run import SingleRun
from .events import Event, Outcome, Progress, Retrying, Submitted

__all__ = ["SubmitRun"]

logger = logging.getLogger("evolink_async")


class SubmitRun(SingleRun):
    """``submit``'s run: each outcome to its handle, requests created in submission order.

    ``progress_every``: seconds of service time between progress estimates told to the
    requests' ``on_event`` (``None``: none); ``clock`` is the estimates' (real) clock."""

    def __init__(
        self,
        services: Services,
        *,
        progress_every: float | None = 2.0,
        clock: Callable[[], float] = time.monotonic,
        **kw: Any,
    ) -> None:
        super().__init__(services, **kw)
        #: requests not started yet, in the order they are to be created
        self.pending: collections.deque[Job] = collections.deque()
        #: requests queued or waiting for admission (not yet created), by index
        self.waiting: dict[int, Job] = {}
        self._pending_ids: set[int] = set()
        #: requests whose attempt started (waiting for a slot, or being created), in the
        #: order they started: the order the slots go to them
        self._started: dict[int, Job] = {}
        #: set when a request left the queue (created, or ended without a task)
        self.moved = Signal()
        self._wake = Signal()
        self._feeding = False
        self._attempting = 0
        self.tracks: dict[int, tuple[Job, Track]] = {}
        self.ticker = Ticker(progress_every, lambda: services.poller.time_scale, clock)

    # -- the queue ---------------------------------------------------------------------------

    def enqueue(self, job: Job, *, front: bool = False) -> None:
        """Queue ``job`` to be created (``front``: before every other)."""
        self.waiting[job.index] = job
        self._pending_ids.add(job.index)
        if front:
            self.pending.appendleft(job)
        else:
            self.pending.append(job)
        self.stats.queued += 1
        self._wake.set()
        if not self._feeding and not self.closed:
            self._feeding = True
            self.spawn(self._feed())

    def resubmit(self, job: Job) -> None:
        """A new attempt after a refused create or a retryable task failure: first in the
        queue (behind the requests already waiting for a slot)."""
        self.enqueue(job, front=True)

    def _admitted(self, job: Job) -> bool:
        return len(job.slots) >= len(self.concurrency)

    def position(self, job: Job) -> int:
        """How many requests are ahead of ``job`` in the queue (0 once it is admitted, being
        created, or out of the queue): those that wait for a slot already (they get theirs
        first), then those before it in the queue. A retry of an earlier request goes ahead."""
        if job.index not in self.waiting:
            return 0
        ahead = 0
        for index, other in self._started.items():
            if index == job.index:
                return 0 if self._admitted(job) else ahead
            ahead += not self._admitted(other)
        for other in self.pending:
            if other is job:
                break
            ahead += 1
        return ahead

    def is_queued(self, job: Job) -> bool:
        """Whether ``job`` waits in the queue or for admission (no task for it yet)."""
        return job.index in self.waiting

    async def _feed(self) -> None:
        try:
            async with anyio.create_task_group() as attempts:
                while True:
                    if not self.pending:
                        if self._attempting == 0:
                            self._feeding = False
                            return
                        self._wake.clear()
                        await self._wake.wait()
                        continue
                    await self.create_gate.acquire()
                    if not self.pending:
                        self.create_gate.release()
                        continue
                    job = self.pending.popleft()
                    self._pending_ids.discard(job.index)
                    self.stats.queued -= 1
                    self._attempting += 1
                    self._started[job.index] = job
                    attempts.start_soon(self._gated, job)
        finally:
            self._feeding = False

    async def _gated(self, job: Job) -> None:
        try:
            await self.attempt(job)
        except (SharedLimitsError, ServiceUnreachableError) as exc:
            # Redis unreachable, or the service never reached by the client (told while this
            # create waited behind the first): nothing was sent, all given back
            self.finish(job, "failed", exc)
        except Exception as exc:  # a bug: the handle still gets an outcome
            logger.exception("internal error in the dispatcher")
            err = EvolinkError(f"internal error: {type(exc).__name__}: {exc}")
            self.finish(job, "failed", err)
        finally:
            self._started.pop(job.index, None)
            if job.index not in self._pending_ids:  # not queued again by a refused create
                self.waiting.pop(job.index, None)
            self._attempting -= 1
            self.create_gate.release()
            self._wake.set()
            self.moved.set()

    # -- progress ----------------------------------------------------------------------------

    def listens(self, index: int) -> bool:
        return True  # every read feeds the handle's status and progress (``_follow``)

    def emit(self, event: Event) -> None:
        if isinstance(event, (Submitted, Progress, Retrying)):
            self._follow(event)
        super().emit(event)

    def _real(self, job: Job) -> float | None:
        est = job.task.estimated_time if job.task is not None else None
        return None if est is None else est * self.services.poller.time_scale

    def _follow(self, event: Submitted | Progress | Retrying) -> None:
        index = event.index
        if isinstance(event, Retrying):
            self.tracks.pop(index, None)
            self.ticker.unwatch(index)
            return
        job = self.live.get(event.task_id) if event.task_id else None
        if job is None or job.index != index:
            return
        now = self.ticker.clock()
        if isinstance(event, Submitted):
            self.waiting.pop(index, None)  # created: out of the queue
            track = Track(now)
            self.tracks[index] = (job, track)
            if job.task is not None:  # the create's answer: its status and estimated_time
                track.read(now, job.task.status, job.task.progress, self._real(job))
            if index in self.handlers:
                self.ticker.watch(index, track, self._tell, self.spawn)
        elif not event.estimated and index in self.tracks:
            self.tracks[index][1].read(now, event.status, event.progress, self._real(job))

    def _tell(self, index: int, track: Track, value: int) -> None:
        job = self.tracks[index][0]
        task_id = job.task_ids[-1]
        super().emit(Progress(index, task_id, track.status, value, estimated=True))

    def progress_of(self, job: Job) -> tuple[int, bool] | None:
        """``job``'s progress to show now and whether it is an estimate."""
        entry = self.tracks.get(job.index)
        return None if entry is None else entry[1].current(self.ticker.clock())

    def deliver(self, outcome: Outcome) -> None:
        self.tracks.pop(outcome.index, None)
        self.ticker.unwatch(outcome.index)
        super().deliver(outcome)
        self.moved.set()

    async def aclose(self) -> None:
        self.pending.clear()
        self._pending_ids.clear()
        self.waiting.clear()
        self.ticker.watched.clear()
        await super().aclose()
        self.moved.set()
