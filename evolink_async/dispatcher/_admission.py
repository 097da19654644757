"""Admission and the life of one request: a concurrency slot, a credit reservation and a rate
token, then a create (or, for an ``Attach``, none), then the poller until the task ends.

``Run`` is the machinery shared by a batch and by the dispatcher's single submits; it gets its
collaborators (``Services``) explicitly and reads nothing of a client.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable, Coroutine
from typing import Any

import anyio
import attrs

from .._keys import new_idempotency_key
from ..errors import (
    APIConnectionError,
    BudgetExceededError,
    DecodeError,
    EvolinkError,
    RateLimitError,
    ServerError,
    ServiceUnreachableError,
    TaskCancelledError,
    TaskFailedError,
)
from ..limits import (
    Budget,
    Hold,
    Permit,
    RateLimiter,
    SlotLimit,
    Throttle,
    final_charge,
    service_figure,
)
from ..models import Task, TaskStatus, VideoRequest
from ..poller import TaskResult
from ._services import Services, Signal, TaskAPI
from .events import (
    BatchStats,
    BeforeCreate,
    BudgetSkipped,
    Completed,
    Event,
    Failed,
    Outcome,
    OutcomeStatus,
    Progress,
    RateLimited,
    Retrying,
    Submitted,
)

__all__ = ["Job", "Run", "Services", "Signal", "TaskAPI"]

logger = logging.getLogger("evolink_async")

#: creates the service certainly did not take (a 429, a connection never opened; after the
#: transport's own retries) are tried again later, up to this many times
_REQUEUE_LIMIT = 50


@attrs.define(eq=False)
class Job:
    """One request of a run, over its attempts."""

    index: int
    request: VideoRequest
    max_attempts: int
    timeout: float | None
    attempts: int = 0
    requeues: int = 0
    # tuples, not lists: a job in flight holds one or two of each, and an empty tuple is
    # shared (10 000 jobs in flight held 30 000 lists the garbage collector walked)
    task_ids: tuple[str, ...] = ()
    slots: tuple[Permit, ...] = ()
    reservations: tuple[Hold, ...] = ()
    task: Task | None = None
    credits: float = 0.0
    #: a task an earlier run created, to follow instead of creating one (``Attach``)
    attach_id: str | None = None
    #: the idempotency key of the latest attempt, ``key_attempt`` (sent again with the
    #: attempt, never reused; attempts only grow, so earlier keys are not kept)
    key: str | None = None
    key_attempt: int = 0
    #: the create waits out an outage: it reached nothing (see ``_reach``)
    refused: ServiceUnreachableError | None = None

    def key_for(self, attempt: int) -> str:
        """The key of ``attempt``: the same each time the attempt is sent, a new one for a new
        attempt (the first is the request's ``client_request_id``, when it has one)."""
        if self.key is None or attempt != self.key_attempt:
            own = self.request.client_request_id
            self.key = own if own is not None and self.key is None else new_idempotency_key()
            self.key_attempt = attempt
        return self.key


class Run:
    """The shared machinery of one batch, or of the dispatcher's single submits."""

    #: set by ``halt`` (a batch): the service was never reached; no create is sent after it
    fatal: ServiceUnreachableError | None = None

    def __init__(
        self,
        services: Services,
        *,
        concurrency: list[SlotLimit],
        budgets: list[Budget],
        rate: RateLimiter | None = None,
        on_event: Callable[[Event], object] | None = None,
        create_parallelism: int = 16,
        before_create: BeforeCreate | None = None,
    ) -> None:
        self.services = services
        self.concurrency = concurrency
        self.budgets = budgets
        self.rate = rate
        self.on_event = on_event
        self.before_create = before_create
        self.stats = BatchStats()
        self.tasks: set[asyncio.Task[Any]] = set()
        self.live: dict[str, Job] = {}
        #: jobs answered with the task id of a live job (each still gets its own outcome)
        self.twins: dict[str, list[Job]] = {}
        #: set whenever something changed that a waiter (feeder, consumer) may care about
        self.changed = Signal()
        self.create_gate = anyio.Semaphore(create_parallelism, fast_acquire=True)
        self.closed = False
        self._requests_at_start = services.api.requests
        services.reach.listen(self.emit)  # Paused, Resumed

    # -- plumbing ----------------------------------------------------------------------------

    def notify(self) -> None:
        self.changed.set()

    def listens(self, index: int) -> bool:
        """Whether an event of request ``index`` has anybody to go to (else none is made)."""
        return self.on_event is not None

    def emit(self, event: Event) -> None:
        if self.on_event is None:
            return
        try:
            self.on_event(event)
        except Exception:  # a user's event handler must not break the batch
            logger.exception("on_event handler failed on %r", event)

    def deliver(self, outcome: Outcome) -> None:
        raise NotImplementedError

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        # A loose task, not a task group: a batch's steps may run in different tasks, where a
        # task group cannot live. Every task is kept, cancelled and awaited by aclose().
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self._spawned_done)

    def _spawned_done(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        self.notify()
        if not task.cancelled() and task.exception() is not None:
            logger.error("internal error in the dispatcher", exc_info=task.exception())

    def on_throttle(self, throttle: Throttle) -> None:
        """A 429, as the limits took it (they already paused and shrank what they hold)."""
        self.stats.rate_limited += 1
        self.emit(RateLimited(throttle.retry_after, throttle.effective_rate, throttle.concurrency))

    def snapshot(self) -> BatchStats:
        s = attrs.evolve(self.stats)
        s.requests = self.services.api.requests - self._requests_at_start
        s.effective_rate = self.services.limits.rate.effective_rate
        s.credits_reserved = sum(b.reserved for b in self.budgets)
        s.in_flight_task_ids = list(self.live)
        return s

    async def aclose(self) -> None:
        """Cancel creates in progress, stop polling this run's tasks, release slots."""
        self.closed = True
        self.services.reach.unlisten(self.emit)
        tasks = list(self.tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for task_id, job in self.live_jobs():
            self.services.poller.forget(task_id)
            # the task runs on at the service and may be billed: keep its credits
            self._settle(job, commit=True)
            self._release_slots(job)
        self.live.clear()
        self.twins.clear()
        self.notify()  # a consumer waiting for outcomes sees the run has ended

    # -- one job -----------------------------------------------------------------------------

    def _release_slots(self, job: Job) -> None:
        slots, job.slots = job.slots, ()
        for permit in slots:
            permit.release()
        self.notify()

    @staticmethod
    def _settle(job: Job, *, commit: bool) -> None:
        reservations, job.reservations = job.reservations, ()
        for r in reservations:
            if commit:
                r.commit()
            else:
                r.release()

    def _price(self, request: VideoRequest) -> float | None:
        return self.services.price(request.model, request.duration, request.extra)

    def finish(self, job: Job, status: OutcomeStatus, error: EvolinkError | None) -> None:
        outcome = Outcome(
            index=job.index,
            request=job.request,
            status=status,
            task=job.task,
            error=error,
            attempts=job.attempts,
            credits=job.credits,
            task_ids=job.task_ids,
        )
        setattr(self.stats, status, getattr(self.stats, status) + 1)
        if status == "completed":
            self.stats.credits_spent += job.credits
            self.emit(Completed(outcome))
        elif status != "skipped":
            self.emit(Failed(outcome))
        self.deliver(outcome)
        self.notify()

    def skip(self, job: Job, needed: float | None, error: EvolinkError) -> None:
        self._settle(job, commit=False)
        self._release_slots(job)
        self.emit(BudgetSkipped(job.index, needed, str(error)))
        self.finish(job, "skipped", error)

    async def attempt(self, job: Job) -> None:
        """Admit and create one attempt of a job (or attach it), then hand it to the poller."""
        self.stats.submitting += 1
        try:
            for limit in self.concurrency:
                permit = await limit.acquire()  # awaited before job.slots is read
                job.slots += (permit,)
            if job.attach_id is not None:
                self._attach(job, job.attach_id)
            else:
                await self._reserve_and_create(job)
        except BaseException:
            # Cancelled while waiting for a slot, credits or a rate token: nothing was sent, so
            # give them back (they may be the client's, shared with later batches). A no-op
            # after a create, which settles them itself.
            self._settle(job, commit=False)
            self._release_slots(job)
            raise
        finally:
            self.stats.submitting -= 1
            self.notify()

    def _attach(self, job: Job, task_id: str) -> None:
        """Follow a task an earlier run created: no credits, no create, no before_create."""
        job.attach_id = None  # a retry after it goes through the ordinary create path
        task = Task(id=task_id, status=TaskStatus.PENDING, raw_status="pending")
        job.task = task
        job.task_ids += (task_id,)
        self._go_live(job, task)
        self._track(job, task)

    async def _reserve_and_create(self, job: Job) -> None:
        price = self._price(job.request)
        if not await self._reserve(job, price):
            return
        if self.rate is not None:
            await self.rate.acquire()
        reach, api = self.services.reach, self.services.api
        async with reach.admit(lambda: api.connected):
            if self.fatal is not None:  # the service was never reached: send nothing more
                raise self.fatal
            job.attempts += 1
            self.stats.creates += 1
            try:
                hook = self.before_create
                key = await hook(job.index, job.request, job.attempts) if hook else None
                key = key or job.key_for(job.attempts)
                send = functools.partial(api.create_video, job.request, idempotency_key=key)
                keyed = api.idempotency  # the key is sent
                wait = functools.partial(_waits, self, job)
                task = await reach.create(send, wait, keyed=keyed)
            except BaseException as exc:
                _create_failed(self, job, exc)
                if not isinstance(exc, Exception):
                    raise
                return
        job.task = task
        job.task_ids += (task.id,)
        reserved = service_figure(task.credits_reserved, what="credits_reserved", task_id=task.id)
        _charge(self, job, price, reserved)
        self._go_live(job, task)
        self.emit(Submitted(job.index, task.id, job.attempts, task.credits_reserved))
        self._track(job, task)

    async def _reserve(self, job: Job, price: float | None) -> bool:
        """Hold the job's price in every budget; False when it was skipped instead."""
        if not self.budgets:
            return True
        if price is None:
            reason = (
                f"no known price for {job.request.model} while a budget is set "
                "(give the client an estimator=)"
            )
            self.skip(job, None, BudgetExceededError(reason))
            return False
        try:
            for budget in self.budgets:
                hold = await budget.reserve(price)  # awaited before job.reservations is read
                job.reservations += (hold,)
        except BudgetExceededError as exc:
            self.skip(job, price, exc)
            return False
        return True

    def live_jobs(self) -> list[tuple[str, Job]]:
        """Every job whose task is in flight, with its task id (twins included)."""
        return [*self.live.items(), *((t, j) for t, js in self.twins.items() for j in js)]

    def _go_live(self, job: Job, task: Task) -> None:
        if task.id in self.live:  # the same task id answered to two creates
            logger.warning("task %s was answered to two creates; both follow it", task.id)
            self.twins.setdefault(task.id, []).append(job)
        else:
            self.live[task.id] = job
        self.stats.in_flight += 1

    def _track(self, job: Job, task: Task) -> None:
        """Hand a created (or attached) task to the poller until it ends (not a twin's); the
        run watches it (``task_update``, ``task_done``): no closures a task in flight."""
        if self.live.get(task.id) is job:
            self.services.poller.track(task, timeout=job.timeout, gate=self.rate, watcher=self)

    def task_update(self, task: Task) -> None:
        job = self.live.get(task.id)
        if job is not None:
            job.task = task
            if self.listens(job.index):  # a read every few seconds of every task in flight
                self.emit(Progress(job.index, task.id, task.status, task.progress))

    def task_done(self, task_id: str, result: TaskResult) -> None:
        job = self.live.pop(task_id, None)
        if job is not None:
            for each in (job, *self.twins.pop(task_id, ())):
                self._job_done(each, task_id, result)

    def _job_done(self, job: Job, task_id: str, result: TaskResult) -> None:
        self.stats.in_flight -= 1
        self._release_slots(job)
        if not isinstance(result, Task):
            # Tracking ended without a final status (deadline, task gone): it may be billed.
            self._settle(job, commit=True)
            self.finish(job, "failed", result)
            return
        job.task = result
        if result.status is TaskStatus.COMPLETED:
            final = final_charge(result)
            if final is not None:  # the final charge replaces what was reserved
                _charge(self, job, self._price(job.request), final)
            self._settle(job, commit=True)
            self.finish(job, "completed", None)
            return
        self._settle(job, commit=False)
        job.credits = 0.0
        if result.is_cancelled:  # somebody's decision: never retried
            self.finish(job, "cancelled", TaskCancelledError(result))
            return
        if result.is_retryable_failure and job.attempts < job.max_attempts and not self.closed:
            self.stats.retries += 1
            code = result.error.code if result.error is not None else None
            reason = f"task failed: {code}"
            self.emit(Retrying(job.index, job.attempts + 1, reason, task_id, result))
            self.resubmit(job)
            return
        self.finish(job, "failed", TaskFailedError(result))

    def resubmit(self, job: Job) -> None:
        """A new attempt in its own coroutine (a batch queues it for its feeder instead)."""
        self.spawn(self.attempt(job))

    def halt(self, error: ServiceUnreachableError) -> None:
        """No create of the client ever reached the service: stop (a batch sends no more;
        a single submit has its outcome already)."""


def _waits(run: Run, job: Job, error: ServiceUnreachableError | None) -> None:
    """The job's create waits out an outage (``error``), or is sent again (None). It is
    queued again meanwhile (its intent stays: it is sent again with its key)."""
    job.refused = error if error is not None and not error.maybe_created else None
    if error is not None:
        run.stats.retries += 1
        reason = f"service unreachable: {error}"
        run.emit(Retrying(job.index, job.attempts, reason))


def _charge(run: Run, job: Job, price: float | None, figure: float | None) -> None:
    """Settle the job's reservations on the service's (checked) figure, else the price;
    a figure above the price teaches the price for the next reservations."""
    actual = figure if figure is not None else (price or 0.0)
    for r in job.reservations:
        r.settle(actual)
    job.credits = actual
    if figure is not None and figure > (price or 0.0) + 1e-9 and run.services.learn:
        request = job.request
        run.services.learn(request.model, request.duration, request.extra, figure)


def _create_failed(run: Run, job: Job, exc: BaseException) -> None:
    """A create raised ``exc``: ``unknown`` when the service may have taken it (its credits
    kept as spent), tried again later when it certainly did not, else ``failed``. When no
    create of the client ever reached the service, the run stops (``halt``); a create
    cancelled while it waited out an outage reached nothing: ``failed`` with that error."""
    waited, job.refused = job.refused, None
    unreachable = isinstance(exc, ServiceUnreachableError) and not run.services.reach.created
    if isinstance(exc, ServiceUnreachableError) and unreachable:
        run.services.reach.give_up(exc)
        waited = None if exc.maybe_created else exc
    if waited is not None:
        run._settle(job, commit=False)
        run._release_slots(job)
        run.finish(job, "failed", waited)
    elif not isinstance(exc, Exception) or _maybe_created(exc):
        # The service may have created (and billed) it: keep its credits as spent.
        run._settle(job, commit=True)
        run._release_slots(job)
        if isinstance(exc, Exception):
            run.finish(job, "unknown", exc if isinstance(exc, EvolinkError) else _wrap(exc))
        else:
            run.stats.unknown += 1  # cancelled in the middle of a create
    else:
        _refused(run, job, exc)
    if isinstance(exc, ServiceUnreachableError) and unreachable:
        run.halt(exc)


def _refused(run: Run, job: Job, exc: Exception) -> None:
    """The create certainly reached nothing, or was refused: queued again (a 429, a
    connection never opened) up to ``_REQUEUE_LIMIT`` times, else ``failed``."""
    run._settle(job, commit=False)
    run._release_slots(job)
    refused = isinstance(exc, (RateLimitError, APIConnectionError))  # a 5xx is unknown
    if refused and job.requeues < _REQUEUE_LIMIT and not run.closed:
        # The service certainly took nothing: try again later, not counted as an attempt.
        job.requeues += 1
        job.attempts -= 1
        run.stats.retries += 1
        run.emit(Retrying(job.index, job.attempts + 1, f"create refused: {exc}"))
        run.resubmit(job)
        return
    run.finish(job, "failed", exc if isinstance(exc, EvolinkError) else _wrap(exc))


def _maybe_created(exc: Exception) -> bool:
    """Whether the service may have taken a create that raised ``exc``: an answer that cannot
    be read, a 5xx, no answer (a create with a key was already sent again with it by the
    transport), or any error that is not the SDK's own (a bug, a decoder failure). Otherwise
    it certainly took nothing (a 429, a connection never opened, a 4xx)."""
    if isinstance(exc, (DecodeError, ServerError)) or not isinstance(exc, EvolinkError):
        return True
    return bool(getattr(exc, "maybe_created", False))


def _wrap(exc: BaseException) -> EvolinkError:
    err = EvolinkError(f"{type(exc).__name__}: {exc}")
    err.__cause__ = exc
    return err
