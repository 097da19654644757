"""The dispatcher: admit requests within the limits, create tasks, hand them to the poller.

A request is admitted when a concurrency slot, a credit reservation and a rate token (taken by
the transport for every request) are all available. Once created, a task costs no coroutine of
its own: the client's one poller tracks it and calls back when it ends. Retryable task failures
are resubmitted (a new create, counted in ``attempts``); fatal ones end the request at once; a
create whose outcome is unknown (the service may have taken it) is reported ``unknown`` and never
resubmitted by the SDK.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterable,
    Mapping,
)
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

import attrs

from ._http import RetryEvent
from .errors import (
    APIConnectionError,
    BudgetExceededError,
    DecodeError,
    EvolinkError,
    InvalidRequestError,
    RateLimitError,
    ServerError,
    TaskFailedError,
    TaskTimeoutError,
)
from .limits import ConcurrencyLimit, ConcurrencyPermit, CreditBudget, RateLimiter, Reservation
from .models import Task, TaskStatus, VideoRequest
from .poller import TaskResult

if TYPE_CHECKING:
    from .client import EvolinkClient

__all__ = [
    "Batch",
    "BatchStats",
    "BudgetSkipped",
    "Completed",
    "Dispatcher",
    "Event",
    "Failed",
    "Outcome",
    "OutcomeStatus",
    "Progress",
    "RateLimited",
    "Retrying",
    "Submitted",
    "TaskHandle",
    "as_request",
]

logger = logging.getLogger("evolink_async")

OutcomeStatus = Literal["completed", "failed", "unknown", "skipped"]
RequestLike = VideoRequest | Mapping[str, Any] | str
#: ``await before_create(index, request, attempt)`` runs just before each create is sent
#: (after admission); an exception from it fails that attempt without sending anything.
BeforeCreate = Callable[[int, VideoRequest, int], Awaitable[None]]

#: creates that fail with one of these (after the transport's own retries) are tried again
#: later, up to ``max_attempts`` times: the service certainly did not take them.
_REQUEUE_LIMIT = 50


def as_request(item: RequestLike) -> VideoRequest:
    """A ``VideoRequest`` from a request, a dict with the API's field names, or a prompt."""
    if isinstance(item, VideoRequest):
        return item
    if isinstance(item, str):
        return VideoRequest(prompt=item)
    if isinstance(item, Mapping):
        return VideoRequest.from_json(item)
    raise InvalidRequestError("request", item, "must be a VideoRequest, a mapping or a prompt")


@attrs.frozen
class Outcome:
    """What became of one request.

    ``status``: ``completed`` (``task`` has the video URL), ``failed`` (``error`` says why,
    e.g. a ``TaskFailedError`` with the task's code), ``unknown`` (the create may or may not
    have been taken: not resubmitted; ``error`` has ``maybe_created=True``), or ``skipped``
    (never sent: the budget could not pay for it, or the request was invalid).
    """

    index: int
    request: VideoRequest | None
    status: OutcomeStatus
    task: Task | None = None
    error: EvolinkError | None = None
    attempts: int = 0
    credits: float = 0.0
    task_ids: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.status == "completed"

    @property
    def task_id(self) -> str | None:
        return self.task_ids[-1] if self.task_ids else None

    @property
    def video_url(self) -> str | None:
        return self.task.video_url if self.task is not None else None


# -- events -----------------------------------------------------------------------------------


@attrs.frozen
class Submitted:
    """A task was created for request ``index`` (attempt ``attempt``)."""

    index: int
    task_id: str
    attempt: int
    credits_reserved: float | None


@attrs.frozen
class Progress:
    """A poll saw the task; ``status``/``progress`` as the service reported them."""

    index: int
    task_id: str
    status: TaskStatus
    progress: int | None


@attrs.frozen
class Retrying:
    """Request ``index`` is submitted again after ``reason`` (a retryable task failure or a
    create the service refused)."""

    index: int
    attempt: int
    reason: str
    task_id: str | None = None


@attrs.frozen
class RateLimited:
    """The service answered 429; every request pauses ``retry_after`` seconds."""

    retry_after: float | None
    effective_rate: float
    concurrency: bool


@attrs.frozen
class BudgetSkipped:
    """Request ``index`` was not sent: the budget cannot pay ``needed`` credits."""

    index: int
    needed: float | None
    reason: str


@attrs.frozen
class Completed:
    outcome: Outcome


@attrs.frozen
class Failed:
    """A request ended ``failed`` or ``unknown`` (see ``outcome.status``)."""

    outcome: Outcome


Event = Submitted | Progress | Retrying | RateLimited | BudgetSkipped | Completed | Failed


@attrs.define
class BatchStats:
    """Live counters of a batch (``generate_many``) or of all ``submit`` calls."""

    queued: int = 0
    submitting: int = 0
    in_flight: int = 0
    completed: int = 0
    failed: int = 0
    unknown: int = 0
    skipped: int = 0
    retries: int = 0
    creates: int = 0
    rate_limited: int = 0
    credits_spent: float = 0.0
    requests: int = 0
    effective_rate: float = 0.0
    credits_reserved: float = 0.0
    #: ids of tasks created and not finished (still running on the service)
    in_flight_task_ids: list[str] = attrs.field(factory=list)

    @property
    def done(self) -> int:
        return self.completed + self.failed + self.unknown + self.skipped


@attrs.define(eq=False)
class _Job:
    index: int
    request: VideoRequest
    max_attempts: int
    timeout: float | None
    attempts: int = 0
    requeues: int = 0
    task_ids: list[str] = attrs.field(factory=list)
    slots: list[ConcurrencyPermit] = attrs.field(factory=list)
    reservations: list[Reservation] = attrs.field(factory=list)
    task: Task | None = None
    credits: float = 0.0


class _Run:
    """The shared machinery of one batch, or of the dispatcher's single submits."""

    def __init__(
        self,
        client: EvolinkClient,
        *,
        concurrency: list[ConcurrencyLimit],
        budgets: list[CreditBudget],
        rate: RateLimiter | None = None,
        on_event: Callable[[Event], object] | None = None,
        create_parallelism: int = 16,
        before_create: BeforeCreate | None = None,
    ) -> None:
        self.client = client
        self.concurrency = concurrency
        self.budgets = budgets
        self.rate = rate
        self.on_event = on_event
        self.before_create = before_create
        self.stats = BatchStats()
        self.tasks: set[asyncio.Task[Any]] = set()
        self.live: dict[str, _Job] = {}
        #: set whenever something changed that a waiter (feeder, consumer) may care about
        self.changed = asyncio.Event()
        self.create_gate = asyncio.Semaphore(create_parallelism)
        self.closed = False
        self._requests_at_start = client.transport.requests

    # -- plumbing ----------------------------------------------------------------------------

    def notify(self) -> None:
        self.changed.set()

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
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self._spawned_done)

    def _spawned_done(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        self.notify()
        if not task.cancelled() and task.exception() is not None:
            logger.error("internal error in the dispatcher", exc_info=task.exception())

    def on_retry(self, event: RetryEvent) -> None:
        if not isinstance(event.error, RateLimitError):
            return
        self.stats.rate_limited += 1
        concurrency = event.error.is_concurrency_limit
        if concurrency:
            # The service holds at most the tasks this client has running there now. Slots
            # also count creates still waiting for an answer (or retrying this very 429), so
            # "in_flight - 1" alone never converged: one 429 per create, each halving the rate.
            running = self.client.in_flight
            for limit in self.concurrency:
                limit.shrink(max(1, min(limit.in_flight - 1, running)))
        self.emit(
            RateLimited(
                event.error.retry_after, self.client.rate_limiter.effective_rate, concurrency
            )
        )

    def snapshot(self) -> BatchStats:
        s = attrs.evolve(self.stats)
        s.requests = self.client.transport.requests - self._requests_at_start
        s.effective_rate = self.client.rate_limiter.effective_rate
        s.credits_reserved = sum(b.reserved for b in self.budgets)
        s.in_flight_task_ids = list(self.live)
        return s

    async def aclose(self) -> None:
        """Cancel creates in progress, stop polling this run's tasks, release slots."""
        self.closed = True
        tasks = list(self.tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        poller = self.client._poller
        for task_id, job in list(self.live.items()):
            if poller is not None:
                poller.forget(task_id)
            # the task runs on at the service and may be billed: keep its credits
            self._settle(job, commit=True)
            self._release_slots(job)
        self.live.clear()
        self.notify()  # a consumer waiting for outcomes sees the run has ended

    # -- one job -----------------------------------------------------------------------------

    def _release_slots(self, job: _Job) -> None:
        for permit in job.slots:
            permit.release()
        job.slots.clear()
        self.notify()

    @staticmethod
    def _settle(job: _Job, *, commit: bool) -> None:
        for r in job.reservations:
            if commit:
                r.commit()
            else:
                r.release()
        job.reservations.clear()

    def _price(self, request: VideoRequest) -> float | None:
        if self.client.estimator is not None:
            price = self.client.estimator(request.model, request.duration, request.extra)
            if price is not None:
                return price
        return self.client.prices.price(request.model, request.duration)

    def finish(self, job: _Job, status: OutcomeStatus, error: EvolinkError | None) -> None:
        outcome = Outcome(
            index=job.index,
            request=job.request,
            status=status,
            task=job.task,
            error=error,
            attempts=job.attempts,
            credits=job.credits,
            task_ids=tuple(job.task_ids),
        )
        setattr(self.stats, status, getattr(self.stats, status) + 1)
        if status == "completed":
            self.stats.credits_spent += job.credits
            self.emit(Completed(outcome))
        elif status != "skipped":
            self.emit(Failed(outcome))
        self.deliver(outcome)
        self.notify()

    def skip(self, job: _Job, needed: float | None, error: EvolinkError) -> None:
        self._settle(job, commit=False)
        self._release_slots(job)
        self.emit(BudgetSkipped(job.index, needed, str(error)))
        self.finish(job, "skipped", error)

    async def attempt(self, job: _Job) -> None:
        """Admit and create one attempt of a job, then hand the task to the poller."""
        self.stats.submitting += 1
        try:
            await self._admit_and_create(job)
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

    async def _admit_and_create(self, job: _Job) -> None:
        for limit in self.concurrency:
            job.slots.append(await limit.acquire())
        price = self._price(job.request)
        if self.budgets:
            if price is None:
                reason = (
                    f"no known price for {job.request.model} while a budget is set "
                    "(give the client an estimator=)"
                )
                self.skip(job, None, BudgetExceededError(reason))
                return
            try:
                for budget in self.budgets:
                    job.reservations.append(await budget.reserve(price))
            except BudgetExceededError as exc:
                self.skip(job, price, exc)
                return
        if self.rate is not None:
            await self.rate.acquire()
        job.attempts += 1
        self.stats.creates += 1
        try:
            if self.before_create is not None:
                await self.before_create(job.index, job.request, job.attempts)
            task = await self.client.create_video(job.request)
        except BaseException as exc:
            self._create_failed(job, exc)
            raise_it = not isinstance(exc, Exception)
            if raise_it:
                raise
            return
        job.task = task
        job.task_ids.append(task.id)
        actual = task.credits_reserved if task.credits_reserved is not None else (price or 0.0)
        for r in job.reservations:
            r.settle(actual)
        job.credits = actual
        self.live[task.id] = job
        self.stats.in_flight += 1
        self.emit(Submitted(job.index, task.id, job.attempts, task.credits_reserved))

        def on_update(t: Task) -> None:
            job.task = t
            self.emit(Progress(job.index, t.id, t.status, t.progress))

        def on_done(result: TaskResult) -> None:
            self._task_done(job, task.id, result)

        self.client.poller.track(
            task, timeout=job.timeout, on_update=on_update, on_done=on_done, gate=self.rate
        )

    def _create_failed(self, job: _Job, exc: BaseException) -> None:
        maybe_created = isinstance(exc, DecodeError) or (
            isinstance(exc, APIConnectionError) and exc.maybe_created
        )
        if not isinstance(exc, Exception) or maybe_created:
            # The service may have created (and billed) it: keep its credits as spent.
            self._settle(job, commit=True)
            self._release_slots(job)
            if isinstance(exc, EvolinkError):
                self.finish(job, "unknown", exc)
            else:
                self.stats.unknown += 1  # cancelled in the middle of a create
            return
        self._settle(job, commit=False)
        self._release_slots(job)
        refused = isinstance(exc, (RateLimitError, ServerError, APIConnectionError))
        if refused and job.requeues < _REQUEUE_LIMIT and not self.closed:
            # The service certainly took nothing: try again later, not counted as an attempt.
            job.requeues += 1
            job.attempts -= 1
            self.stats.retries += 1
            self.emit(Retrying(job.index, job.attempts + 1, f"create refused: {exc}"))
            self.resubmit(job)
            return
        self.finish(job, "failed", exc if isinstance(exc, EvolinkError) else _wrap(exc))

    def _task_done(self, job: _Job, task_id: str, result: TaskResult) -> None:
        if self.live.pop(task_id, None) is None:
            return
        self.stats.in_flight -= 1
        self._release_slots(job)
        if not isinstance(result, Task):
            # Tracking ended without a final status (deadline, task gone): it may be billed.
            self._settle(job, commit=True)
            self.finish(job, "failed", result)
            return
        job.task = result
        if result.status is TaskStatus.COMPLETED:
            self._settle(job, commit=True)
            self.finish(job, "completed", None)
            return
        self._settle(job, commit=False)
        job.credits = 0.0
        if result.is_retryable_failure and job.attempts < job.max_attempts and not self.closed:
            self.stats.retries += 1
            code = result.error.code if result.error is not None else None
            self.emit(Retrying(job.index, job.attempts + 1, f"task failed: {code}", task_id))
            self.resubmit(job)
            return
        self.finish(job, "failed", TaskFailedError(result))

    def resubmit(self, job: _Job) -> None:
        """A new attempt in its own coroutine (a batch queues it for its feeder instead)."""
        self.spawn(self.attempt(job))


class _SingleRun(_Run):
    """The requests of ``Dispatcher.submit``: each outcome goes to its own handle."""

    def __init__(self, client: EvolinkClient, **kw: Any) -> None:
        super().__init__(client, **kw)
        self.futures: dict[int, asyncio.Future[Outcome]] = {}
        self.handlers: dict[int, Callable[[Event], object]] = {}

    def emit(self, event: Event) -> None:
        index = event.outcome.index if isinstance(event, (Completed, Failed)) else None
        if index is None:
            index = getattr(event, "index", None)
        handler = self.handlers.get(index) if isinstance(index, int) else None
        if handler is not None:
            try:
                handler(event)
            except Exception:
                logger.exception("on_event handler failed on %r", event)

    def deliver(self, outcome: Outcome) -> None:
        self.handlers.pop(outcome.index, None)
        future = self.futures.pop(outcome.index, None)
        if future is not None and not future.done():
            future.set_result(outcome)

    async def aclose(self) -> None:
        """Also settle every handle still awaited: nobody would ever resolve it otherwise.
        A task still running ends ``failed`` with ``TaskTimeoutError`` (as when its deadline
        passes: it may finish later at the service); a request never created is cancelled."""
        self.closed = True
        for task_id, job in list(self.live.items()):
            self.finish(job, "failed", TaskTimeoutError(task_id, 0.0, job.task))
        await super().aclose()
        for future in self.futures.values():
            future.cancel()
        self.futures.clear()
        self.handlers.clear()


class _BatchRun(_Run):
    """One ``generate_many``: a feeder pulls requests lazily, outcomes go to a buffer."""

    max_buffer = 256

    def __init__(self, client: EvolinkClient, **kw: Any) -> None:
        super().__init__(client, **kw)
        self.retry_queue: collections.deque[_Job] = collections.deque()
        self.out: collections.deque[Outcome] = collections.deque()
        self.ready = asyncio.Event()
        self.feeding = True

    def notify(self) -> None:
        self.changed.set()
        self.ready.set()

    def deliver(self, outcome: Outcome) -> None:
        self.out.append(outcome)

    def resubmit(self, job: _Job) -> None:
        self.retry_queue.append(job)
        self.notify()

    @property
    def finished(self) -> bool:
        return not self.feeding and not self.out and not self.live and not self.tasks

    async def _next_job(
        self,
        source: AsyncIterator[RequestLike],
        counter: list[int],
        max_attempts: int,
        timeout: float | None,
    ) -> _Job | None:
        while True:
            if self.retry_queue:
                return self.retry_queue.popleft()
            if len(self.out) >= self.max_buffer:  # the consumer is behind: wait for it
                self.changed.clear()
                await self.changed.wait()
                continue
            if counter[1] == 0:
                try:
                    item = await source.__anext__()
                except StopAsyncIteration:
                    counter[1] = 1
                    continue
                counter[0] += 1
                try:
                    request = as_request(item)
                except InvalidRequestError as exc:  # reported, and the batch goes on
                    self.stats.skipped += 1
                    self.deliver(
                        Outcome(index=counter[0], request=None, status="skipped", error=exc)
                    )
                    self.notify()
                    continue
                return _Job(counter[0], request, max_attempts, timeout)
            if not self.live and self.stats.submitting == 0:
                return None
            self.changed.clear()
            await self.changed.wait()

    async def feed(
        self,
        requests: Iterable[RequestLike] | AsyncIterable[RequestLike],
        max_attempts: int,
        timeout: float | None,
    ) -> None:
        """Pull requests lazily and start an attempt for each, retries first."""
        source = _aiter(requests)
        counter = [0, 0]  # requests pulled, exhausted flag
        try:
            while True:
                await self.create_gate.acquire()
                try:
                    job = await self._next_job(source, counter, max_attempts, timeout)
                except BaseException:
                    self.create_gate.release()
                    raise
                if job is None:
                    self.create_gate.release()
                    return
                self.stats.submitting += 1  # counted until the attempt itself takes over
                self.spawn(self._gated(job))
        finally:
            self.feeding = False
            self.notify()
            await source.aclose()

    async def _gated(self, job: _Job) -> None:
        self.stats.submitting -= 1
        try:
            await self.attempt(job)
        finally:
            self.create_gate.release()


def _wrap(exc: BaseException) -> EvolinkError:
    err = EvolinkError(f"{type(exc).__name__}: {exc}")
    err.__cause__ = exc
    return err


class TaskHandle:
    """A request admitted by ``submit``: ``task_id``, ``status`` and ``progress`` follow the
    latest poll; ``await handle`` (or ``await handle.result()``) gives the final ``Outcome``."""

    __slots__ = ("_future", "_job")

    def __init__(self, job: _Job, future: asyncio.Future[Outcome]) -> None:
        self._job = job
        self._future = future

    def __repr__(self) -> str:
        return f"<TaskHandle task_id={self.task_id} status={self.status} progress={self.progress}>"

    @property
    def task_id(self) -> str | None:
        return self._job.task_ids[-1] if self._job.task_ids else None

    @property
    def task(self) -> Task | None:
        return self._job.task

    @property
    def status(self) -> TaskStatus | None:
        return self._job.task.status if self._job.task is not None else None

    @property
    def progress(self) -> int | None:
        return self._job.task.progress if self._job.task is not None else None

    @property
    def attempts(self) -> int:
        return self._job.attempts

    def done(self) -> bool:
        return self._future.done()

    async def result(self) -> Outcome:
        return await asyncio.shield(self._future)

    def __await__(self) -> Any:
        return self.result().__await__()


class Batch:
    """The async iterator ``generate_many`` returns: yields one ``Outcome`` per request as each
    finishes. ``stats()`` gives live counters; leaving ``async with`` or ``aclose()`` (or
    breaking out of ``async for``) cancels what is left and awaits it."""

    def __init__(self, run: _BatchRun, agen: AsyncIterator[Outcome]) -> None:
        self._run = run
        self._agen = agen

    def __aiter__(self) -> Batch:
        return self

    async def __anext__(self) -> Outcome:
        return await self._agen.__anext__()

    async def __aenter__(self) -> Batch:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        aclose = getattr(self._agen, "aclose", None)
        if aclose is not None:
            await aclose()
        await self._run.aclose()

    def stats(self) -> BatchStats:
        return self._run.snapshot()


class Dispatcher:
    """Admits requests of one client within its limits. Reached as ``client.dispatcher``."""

    def __init__(self, client: EvolinkClient) -> None:
        self.client = client
        self._runs: set[_Run] = set()
        self._single: _SingleRun | None = None
        self._index = 0

    def __repr__(self) -> str:
        return f"<Dispatcher runs={len(self._runs)}>"

    def _client_limits(self) -> tuple[list[ConcurrencyLimit], list[CreditBudget]]:
        conc = [self.client.concurrency] if self.client.concurrency is not None else []
        budgets = [self.client.budget] if self.client.budget is not None else []
        return conc, budgets

    def stats(self) -> BatchStats:
        """Counters of the requests made through ``submit``."""
        return self._single.snapshot() if self._single is not None else BatchStats()

    async def aclose(self) -> None:
        for run in list(self._runs):
            await run.aclose()
        self._runs.clear()

    async def submit(
        self,
        request: RequestLike,
        *,
        timeout: float | None = None,
        max_attempts: int = 3,
        on_event: Callable[[Event], object] | None = None,
    ) -> TaskHandle:
        req = as_request(request)
        if self._single is None:
            conc, budgets = self._client_limits()
            self._single = _SingleRun(self.client, concurrency=conc, budgets=budgets)
            self._runs.add(self._single)
        run = self._single
        self._index += 1
        job = _Job(
            index=self._index,
            request=req,
            max_attempts=max_attempts,
            timeout=self.client.task_timeout if timeout is None else timeout,
        )
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        run.futures[job.index] = future
        if on_event is not None:
            run.handlers[job.index] = on_event
        await run.attempt(job)
        return TaskHandle(job, future)

    def generate_many(
        self,
        requests: Iterable[RequestLike] | AsyncIterable[RequestLike],
        *,
        max_in_flight: int | None = None,
        rate: float | None = None,
        budget: float | None = None,
        max_attempts: int = 3,
        timeout: float | None = None,
        on_event: Callable[[Event], object] | None = None,
        before_create: BeforeCreate | None = None,
    ) -> Batch:
        conc, budgets = self._client_limits()
        if max_in_flight is not None:
            # like the client's: shrunk by "too many concurrent tasks" 429s, it grows back
            # (without grow_every a 429 caused by another user of the key shrank it for good)
            grow = 60.0 * self.client.time_scale
            conc.append(ConcurrencyLimit(max_in_flight, grow_every=grow))
        if budget is not None:
            budgets.append(CreditBudget(budget))
        run = _BatchRun(
            self.client,
            concurrency=conc,
            budgets=budgets,
            rate=RateLimiter(rate, 1) if rate is not None else None,
            on_event=on_event,
            before_create=before_create,
        )
        limit = self.client.task_timeout if timeout is None else timeout
        return Batch(run, self._generate(run, requests, max_attempts, limit))

    async def _generate(
        self,
        run: _BatchRun,
        requests: Iterable[RequestLike] | AsyncIterable[RequestLike],
        max_attempts: int,
        timeout: float | None,
    ) -> AsyncIterator[Outcome]:
        self._runs.add(run)
        self.client.add_retry_listener(run.on_retry)
        run.spawn(run.feed(requests, max_attempts, timeout))
        try:
            while True:
                while run.out:
                    outcome = run.out.popleft()
                    run.changed.set()  # room in the buffer: the feeder may go on
                    yield outcome
                if run.finished:
                    return
                run.ready.clear()
                if run.out or run.finished:
                    continue
                await run.ready.wait()
        finally:
            self.client.remove_retry_listener(run.on_retry)
            await run.aclose()
            self._runs.discard(run)


async def _aiter(
    items: Iterable[RequestLike] | AsyncIterable[RequestLike],
) -> AsyncGenerator[RequestLike, None]:
    if isinstance(items, AsyncIterable):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item
